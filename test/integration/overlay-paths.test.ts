import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PathSelector, type PathPlan } from '../../agent/network/paths.js';
import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';
import { DEFAULT_TOOLS, deleteInterface, ensureInterface, show, syncConfig, type WireguardTools } from '../../shared/net/wireguard.js';
import type { PeerAnnouncement, RelayAnnouncement } from '../../shared/protocol/network.js';

const execFileP = promisify(execFile);

/**
 * The path selector driving real WireGuard interfaces: two devices, each a network namespace of
 * this test's own joined by a veth pair, each announcing a dead endpoint before its live one,
 * and a relay that is announced but never answers. Their direct entries carry no traffic (the
 * CIDRs sit on the relay entry while they are tried), so a handshake happens only because the
 * plan starts one on every trial: both must end direct, on the live endpoint, with the CIDR
 * moved to the peer's own entry.
 */
describe('PathSelector on real WireGuard interfaces', () => {
  const tag = `${process.pid % 100_000}`;
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-paths-'));
  const RELAY_KEY = publicKeyOf(generatePrivateKey());
  const relay: RelayAnnouncement = { v: 1, publicKey: RELAY_KEY, port: 51821, endpoints: [{ address: '192.0.2.250', port: 51821 }], clusterCIDR: '10.42.0.0/16' };

  interface Device {
    node: string;
    netns: string;
    iface: string;
    address: string;
    port: number;
    privateKey: string;
    announcement: PeerAnnouncement;
    tools: WireguardTools;
    selector: PathSelector;
    plans: PathPlan[];
    /** Every endpoint it configured for the other device, in order, without repeats. */
    endpointsTried: string[];
  }

  function device(node: string, address: string, podCIDR: string): Device {
    const netns = `fltp-${tag}-${node}`;
    const privateKey = generatePrivateKey();
    const port = 51820;
    // The tools run inside the device's namespace (wireguard-go's control socket is shared between namespaces: the interface names are unique).
    const tools: WireguardTools = { ip: wrapper(`ip-${node}`, netns, 'ip'), wg: wrapper(`wg-${node}`, netns, 'wg'), wireguardGo: wrapper(`wggo-${node}`, netns, 'wireguard-go') };
    return {
      node,
      netns,
      iface: `fpw${node}${tag}`.slice(0, 15),
      address,
      port,
      privateKey,
      tools,
      // Short trials so that the test runs in seconds; the rules are the selector's own.
      selector: new PathSelector({ trialMs: 3_000, trialPollMs: 500, relayPollMs: 500 }),
      plans: [],
      endpointsTried: [],
      announcement: {
        v: 1,
        node,
        publicKey: publicKeyOf(privateKey),
        podCIDR,
        // The advertised address answers nothing; the reported one is the device's own.
        endpoints: [
          { address: '192.0.2.99', port, source: 'advertised' },
          { address, port, source: 'reported' },
        ],
        publicAddress: `198.51.100.${address.split('.')[3]}`,
        generation: 1,
      },
    };
  }

  function wrapper(name: string, netns: string, tool: string): string {
    const file = join(dir, name);
    writeFileSync(file, `#!/bin/sh\nexec ip netns exec ${netns} ${tool} "$@"\n`);
    chmodSync(file, 0o755);
    return file;
  }

  const a = device('a', '192.0.2.1', '10.42.1.0/24');
  const b = device('b', '192.0.2.2', '10.42.2.0/24');
  const peers = new Map([
    ['a', a.announcement],
    ['b', b.announcement],
  ]);
  let made: Device[] = [];

  const ip = (...args: string[]) => execFileP(DEFAULT_TOOLS.ip, args);

  beforeAll(async () => {
    for (const d of [a, b]) await ip('netns', 'add', d.netns);
    made = [a, b];
    await ip('link', 'add', `fpva${tag}`, 'netns', a.netns, 'type', 'veth', 'peer', 'name', `fpvb${tag}`, 'netns', b.netns);
    for (const [d, veth] of [
      [a, `fpva${tag}`],
      [b, `fpvb${tag}`],
    ] as const) {
      await ip('-n', d.netns, 'link', 'set', 'lo', 'up');
      await ip('-n', d.netns, 'addr', 'add', `${d.address}/24`, 'dev', veth);
      await ip('-n', d.netns, 'link', 'set', veth, 'up');
      await ensureInterface(d.iface, d.tools);
      await ip('-n', d.netns, 'link', 'set', d.iface, 'up');
    }
  });

  afterAll(async () => {
    for (const d of made) {
      // Deleting the interface ends wireguard-go, which would otherwise keep the namespace alive.
      await deleteInterface(d.iface, d.tools).catch(() => {});
      await ip('netns', 'del', d.netns).catch(() => {});
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** One pass of what the data plane does: read the interface, plan, apply, start the handshakes the plan asks for. */
  async function step(d: Device, other: Device): Promise<PathPlan> {
    const observed = (await show(d.iface, d.tools))?.peers ?? [];
    const plan = d.selector.plan({ self: { node: d.node }, peers, relay, observed, now: Date.now() });
    await syncConfig(d.iface, d.privateKey, d.port, plan.wgPeers, d.tools);
    for (const key of plan.startHandshake) {
      await execFileP(d.tools.wg, ['set', d.iface, 'peer', key, 'persistent-keepalive', '0']);
      await execFileP(d.tools.wg, ['set', d.iface, 'peer', key, 'persistent-keepalive', '25']);
    }
    const endpoint = plan.wgPeers.find((p) => p.publicKey === other.announcement.publicKey)?.endpoint;
    if (endpoint && d.endpointsTried.at(-1) !== endpoint) d.endpointsTried.push(endpoint);
    d.plans.push(plan);
    return plan;
  }

  it('tries the dead endpoint, moves to the live one, and both ends go direct with the CIDR on the peer\'s entry', async () => {
    const deadline = Date.now() + 60_000;
    let planA: PathPlan | undefined;
    let planB: PathPlan | undefined;
    // B starts late: A's first handshakes go nowhere (B has no entry for A yet).
    planA = await step(a, b);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    while (Date.now() < deadline) {
      planA = await step(a, b);
      planB = await step(b, a);
      const direct = (plan: PathPlan | undefined, node: string) => plan?.reports.find((r) => r.node === node)?.path === 'direct';
      if (direct(planA, 'b') && direct(planB, 'a')) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(planA?.reports).toEqual([expect.objectContaining({ node: 'b', path: 'direct', endpoint: `192.0.2.2:51820` })]);
    expect(planB?.reports).toEqual([expect.objectContaining({ node: 'a', path: 'direct', endpoint: `192.0.2.1:51820` })]);
    expect(planA?.wgPeers).toEqual([
      { publicKey: b.announcement.publicKey, endpoint: '192.0.2.2:51820', allowedIPs: ['10.42.2.0/24'], keepaliveSeconds: 25 },
      { publicKey: RELAY_KEY, endpoint: '192.0.2.250:51821', allowedIPs: [], keepaliveSeconds: 25 },
    ]);
    expect(planB?.wgPeers[0]).toEqual({ publicKey: a.announcement.publicKey, endpoint: '192.0.2.1:51820', allowedIPs: ['10.42.1.0/24'], keepaliveSeconds: 25 });
    // A tried the dead advertised endpoint first, while the CIDR sat on the relay entry.
    expect(a.endpointsTried[0]).toBe('192.0.2.99:51820');
    expect(a.plans[0]?.wgPeers.find((p) => p.publicKey === RELAY_KEY)?.allowedIPs).toEqual(['10.42.2.0/24']);
    // The interface agrees with the plan.
    const onA = (await show(a.iface, a.tools))?.peers.find((p) => p.publicKey === b.announcement.publicKey);
    expect(onA?.allowedIPs).toEqual(['10.42.2.0/24']);
    expect(onA?.latestHandshakeMs).toBeGreaterThan(0);
  });
});
