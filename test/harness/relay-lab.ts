import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';
import { requireTool } from './dockerd.js';
import { REPO, spawnLogged, waitFor, type ManagedProcess } from './processes.js';

// Network namespaces for tests of the WireGuard relay: made with names of the test's own,
// joined by veth pairs made inside them (nothing is ever added to the host's namespace), and
// hand-made WireGuard ends (wireguard-go + wg). wireguard-go keeps its control socket in
// /var/run/wireguard/IFNAME.sock, shared by every namespace, and keeps its namespace alive
// after `ip netns del`: cleanup deletes each interface first (which ends its daemon), then
// kills any daemon left by pid (found by the interface names this lab made, and only those).

export const IP = '/usr/sbin/ip';
export const WG = '/usr/bin/wg';
export const WIREGUARD_GO = '/usr/bin/wireguard-go';
export const NSENTER = '/usr/bin/nsenter';
const RELAY_SCRIPT = join(REPO, 'test', 'harness', 'relay.mjs');
export const ECHO_PORT = 7007;

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000, ...(input !== undefined ? { input } : {}) });
}

/** `cmd ARGS` inside namespace `ns` (nsenter: only the network namespace changes). */
export function inNs(ns: string, cmd: string, args: string[], input?: string): string {
  return sh(NSENTER, [`--net=/var/run/netns/${ns}`, cmd, ...args], input);
}

/** The pids of wireguard-go daemons serving `iface` (by their command line). */
export function wireguardGoPids(iface: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (argv.length >= 2 && argv[0]!.endsWith('wireguard-go') && argv[argv.length - 1] === iface) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

export interface WireguardEnd {
  ns: string;
  iface: string;
  privateKey: string;
  publicKey: string;
  address: string;
}

export class RelayLab {
  private readonly namespaces: string[] = [];
  /** Interfaces this lab made or had made (the hub's relay): [namespace, name]. */
  private readonly interfaces: [string, string][] = [];
  private readonly bridges: ManagedProcess[] = [];

  constructor(readonly dir: string) {
    for (const tool of [IP, WG, WIREGUARD_GO, NSENTER]) requireTool(tool);
  }

  namespace(name: string): string {
    sh(IP, ['netns', 'add', name]);
    this.namespaces.push(name);
    sh(IP, ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** A veth pair between two namespaces of the lab, `a` end `aName` with `aAddr`, `b` end `bName` with `bAddr` (CIDR notation). */
  link(a: string, aName: string, aAddr: string, b: string, bName: string, bAddr: string): void {
    sh(IP, ['-n', a, 'link', 'add', aName, 'type', 'veth', 'peer', 'name', bName, 'netns', b]);
    sh(IP, ['-n', a, 'addr', 'add', aAddr, 'dev', aName]);
    sh(IP, ['-n', b, 'addr', 'add', bAddr, 'dev', bName]);
    sh(IP, ['-n', a, 'link', 'set', aName, 'up']);
    sh(IP, ['-n', b, 'link', 'set', bName, 'up']);
  }

  /** Records an interface someone else makes in a lab namespace (the hub's relay), so cleanup removes it. */
  owns(ns: string, iface: string): void {
    this.interfaces.push([ns, iface]);
  }

  /**
   * A WireGuard end made by hand in `ns`: wireguard-go, `address` (a.b.c.d/24, its pod block's
   * first address) on it, one peer (the relay) for the whole cluster CIDR, and a route to it.
   */
  wireguardEnd(ns: string, iface: string, address: string): WireguardEnd {
    this.owns(ns, iface);
    const env = { ...process.env };
    delete env['WG_PROCESS_FOREGROUND'];
    delete env['LOG_LEVEL'];
    execFileSync(NSENTER, [`--net=/var/run/netns/${ns}`, WIREGUARD_GO, iface], { env, stdio: 'ignore', timeout: 20_000 });
    const privateKey = generatePrivateKey();
    const keyFile = join(this.dir, `${iface}.key`);
    writeFileSync(keyFile, `${privateKey}\n`, { mode: 0o600 });
    inNs(ns, WG, ['set', iface, 'private-key', keyFile, 'listen-port', '51820']);
    rmSync(keyFile);
    inNs(ns, IP, ['addr', 'add', address, 'dev', iface]);
    inNs(ns, IP, ['link', 'set', iface, 'mtu', '1420', 'up']);
    return { ns, iface, privateKey, publicKey: publicKeyOf(privateKey), address: address.split('/')[0]! };
  }

  /** Points an end at the relay: its only peer, for the whole cluster CIDR, keepalive 25 s as a device behind NAT does. */
  peerWithRelay(end: WireguardEnd, relayPublicKey: string, relayEndpoint: string, clusterCIDR: string): void {
    inNs(end.ns, WG, ['set', end.iface, 'peer', relayPublicKey, 'endpoint', relayEndpoint, 'allowed-ips', clusterCIDR, 'persistent-keepalive', '25']);
    inNs(end.ns, IP, ['route', 'replace', clusterCIDR, 'dev', end.iface]);
  }

  /**
   * A TCP port on the host's loopback that reaches `port` on namespace `ns`'s loopback: two
   * relays joined by a unix socket (test/harness/device.ts), so no address is added anywhere.
   * Each connection is made anew, so it outlives restarts of what listens in the namespace.
   */
  async bridge(ns: string, port: number, name: string): Promise<number> {
    const socket = join(this.dir, `${name}.sock`);
    const inside = this.startRelay(`unix:${socket}`, `tcp:127.0.0.1:${port}`, `bridge-${name}-in`, ns);
    await inside.listening;
    const outside = this.startRelay('tcp:127.0.0.1:0', `unix:${socket}`, `bridge-${name}-out`);
    return Number(await outside.listening);
  }

  private startRelay(listen: string, connect: string, name: string, ns?: string): { listening: Promise<number | string> } {
    const proc = spawnLogged([RELAY_SCRIPT, listen, connect], join(this.dir, `${name}.log`), REPO, {}, undefined, ns ? [NSENTER, `--net=/var/run/netns/${ns}`] : []);
    this.bridges.push(proc);
    const listening = waitFor(`the bridge ${name}`, () => {
      if (proc.exitCode !== undefined) throw new Error(`bridge ${name} exited: ${proc.log()}`);
      const line = proc.log().split('\n').find((l) => l.startsWith('{"listening"'));
      return line ? (JSON.parse(line) as { listening: number | string }).listening : undefined;
    }, 10_000, 50);
    return { listening };
  }

  /**
   * A UDP echo server on `end`'s overlay address (port ECHO_PORT): it answers each datagram with
   * the source address it saw, so a test can tell that no NAT is on the path. Plain node: no
   * ping is needed on the machine.
   */
  async echoServer(end: WireguardEnd): Promise<void> {
    const script = `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(JSON.stringify({seen:r.address,bytes:m.length}),r.port,r.address));s.bind(${ECHO_PORT},'${end.address}',()=>console.log('{"listening":${ECHO_PORT}}'))`;
    const proc = spawnLogged(['-e', script], join(this.dir, `echo-${end.iface}.log`), REPO, {}, undefined, [NSENTER, `--net=/var/run/netns/${end.ns}`]);
    this.bridges.push(proc);
    await waitFor(`the echo server on ${end.address}`, () => {
      if (proc.exitCode !== undefined) throw new Error(`echo server exited: ${proc.log()}`);
      return proc.log().includes('"listening"');
    }, 10_000, 50);
  }

  /**
   * Sends `count` datagrams of `size` bytes from `from`'s overlay address to `to`'s echo server
   * and returns the source addresses the server saw for those answered (empty: no path).
   */
  echo(from: WireguardEnd, to: WireguardEnd, count = 1, size = 64): string[] {
    const script = `const s=require('dgram').createSocket('udp4');const seen=[];s.on('message',(m)=>{seen.push(JSON.parse(m).seen);if(seen.length===${count}){console.log(JSON.stringify(seen));process.exit(0)}});s.bind(0,'${from.address}',()=>{let n=0;const t=setInterval(()=>{s.send(Buffer.alloc(${size}),${ECHO_PORT},'${to.address}');if(++n===${count})clearInterval(t)},50)});setTimeout(()=>{console.log(JSON.stringify(seen));process.exit(1)},${1_000 + count * 100})`;
    const r = spawnSync(NSENTER, [`--net=/var/run/netns/${from.ns}`, process.execPath, '-e', script], { encoding: 'utf8', timeout: 30_000 });
    try {
      return JSON.parse(r.stdout.trim() || '[]') as string[];
    } catch {
      return [];
    }
  }

  /** Removes everything the lab made, whatever state the test left it in. */
  async cleanup(): Promise<void> {
    await Promise.all(this.bridges.map((b) => b.stop(2_000)));
    for (const [ns, iface] of this.interfaces) {
      try {
        sh(IP, ['-n', ns, 'link', 'del', iface]);
      } catch {
        // Already gone (the test removed it, or it was never made).
      }
    }
    // A daemon that outlived its interface (or a failed test's) holds its namespace: end it by pid.
    await new Promise((r) => setTimeout(r, 300));
    for (const [, iface] of this.interfaces) {
      for (const pid of wireguardGoPids(iface)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Ended meanwhile.
        }
      }
      rmSync(`/var/run/wireguard/${iface}.sock`, { force: true });
    }
    for (const ns of this.namespaces) {
      try {
        sh(IP, ['netns', 'del', ns]);
      } catch {
        // Not there.
      }
    }
  }
}
