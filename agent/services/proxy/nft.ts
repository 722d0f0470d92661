import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError, isMissingCommand, run } from '../../../shared/net/exec.js';
import { SVC_FAMILY, SVC_TABLE } from './plan.js';

/** What the proxy does to the kernel: behind an interface, so that its tests can watch it and a device without nft says why. */
export interface ProxyDataPlane {
  /** Runs one nft script (a full table, or one transaction) as one `nft -f`. */
  apply(script: string): Promise<void>;
  /** `nft -j list table` of the proxy's table, parsed; undefined when there is no such table. */
  list(): Promise<unknown[] | undefined>;
  /** Deletes the proxy's table (nothing when there is none). */
  remove(): Promise<void>;
  /**
   * Clears the UDP conntrack entries of one traffic path (`vip:port` or `node:nodePort`) to one
   * endpoint: false when the device cannot (no `conntrack` tool).
   */
  clearUdp(path: string, ip: string): Promise<boolean>;
  /**
   * Turns hairpin mode on for every port of the bridge that holds `gateway` (the pod bridge):
   * with bridge netfilter on, a pod's packet DNATed back to that pod is bridged out of the port
   * it came in on, which a bridge refuses without it. Returns how many ports it changed.
   */
  hairpin(gateway: string): Promise<number>;
  close(): void;
}

const NO_TABLE = /No such file or directory|does not exist/i;

/** The device's own nftables and conntrack, through the `nft` and `conntrack` tools. */
export class KernelProxyPlane implements ProxyDataPlane {
  private dir: string | undefined;

  private readonly nft: string;
  private readonly conntrack: string;
  private readonly ip: string;
  /** A command the tools run through (tests: `nsenter --net=… --`, to program a namespace of their own). */
  private readonly wrap: readonly string[];

  constructor(opts: { nft?: string; conntrack?: string; ip?: string; wrap?: readonly string[] } = {}) {
    this.ip = opts.ip ?? 'ip';
    this.nft = opts.nft ?? 'nft';
    this.conntrack = opts.conntrack ?? 'conntrack';
    this.wrap = opts.wrap ?? [];
  }

  private tool(cmd: string, args: readonly string[], timeoutMs = 15_000): Promise<string> {
    const [head, ...rest] = [...this.wrap, cmd, ...args];
    return run(head!, rest, { timeoutMs });
  }

  async apply(script: string): Promise<void> {
    // nft -f reads a file by name: one private directory for the proxy's life, one file rewritten each time.
    this.dir ??= mkdtempSync(join(tmpdir(), 'flotilla-svc-'));
    const file = join(this.dir, 'svc.nft');
    writeFileSync(file, script, { mode: 0o600 });
    await this.tool(this.nft, ['-f', file], 60_000);
  }

  async list(): Promise<unknown[] | undefined> {
    try {
      const out = await this.tool(this.nft, ['-j', 'list', 'table', SVC_FAMILY, SVC_TABLE], 60_000);
      const parsed = JSON.parse(out) as { nftables?: unknown[] };
      return parsed.nftables ?? [];
    } catch (err) {
      if (err instanceof CommandError && NO_TABLE.test(err.stderr)) return undefined;
      throw err;
    }
  }

  async remove(): Promise<void> {
    try {
      await this.tool(this.nft, ['delete', 'table', SVC_FAMILY, SVC_TABLE]);
    } catch (err) {
      if (!(err instanceof CommandError && NO_TABLE.test(err.stderr))) throw err;
    }
  }

  async clearUdp(path: string, ip: string): Promise<boolean> {
    const colon = path.lastIndexOf(':');
    const host = path.slice(0, colon);
    const port = path.slice(colon + 1);
    const args = ['-D', '-p', 'udp', ...(host === 'node' ? [] : ['--orig-dst', host]), '--orig-port-dst', port, '--dst-nat', ip];
    try {
      await this.tool(this.conntrack, args);
    } catch (err) {
      if (isMissingCommand(err)) return false;
      // conntrack exits 1 when no entry matched: nothing to clear.
      if (!(err instanceof CommandError && /0 flow entries/.test(err.stderr))) throw err;
    }
    return true;
  }

  async hairpin(gateway: string): Promise<number> {
    const addresses = JSON.parse(await this.tool(this.ip, ['-j', '-4', 'addr', 'show'])) as { ifname: string; addr_info?: { local?: string }[] }[];
    const bridge = addresses.find((a) => a.addr_info?.some((i) => i.local === gateway))?.ifname;
    if (!bridge) return 0;
    const ports = JSON.parse(await this.tool(this.ip, ['-j', '-d', 'link', 'show', 'master', bridge])) as { ifname: string; linkinfo?: { info_slave_kind?: string; info_slave_data?: { hairpin?: boolean } } }[];
    let changed = 0;
    for (const p of ports) {
      if (p.linkinfo?.info_slave_kind !== 'bridge' || p.linkinfo.info_slave_data?.hairpin !== false) continue;
      await this.tool(this.ip, ['link', 'set', 'dev', p.ifname, 'type', 'bridge_slave', 'hairpin', 'on']);
      changed++;
    }
    return changed;
  }

  close(): void {
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}
