import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cidr, containsAddress, containsCidr, overlaps, parseIPv4 } from '../../shared/net/cidr.js';
import { overlayNode, remoteAddrSeenBy, runEchoPod, startOverlayLab, waitReach, wgPeers, type OverlayLab } from '../harness/overlay.js';
import { stopAll, waitFor } from '../harness/processes.js';

// The pod overlay across four devices: one on the internet, two behind one NAT router (one
// public address, a LAN between them) and one behind a NAT of its own, both NATs symmetric.
// Every pod reaches every other by its pod IP, both ways, and sees the other's pod IP (no NAT
// anywhere on the path); the two devices that share a NAT talk over their LAN.

const CLUSTER_CIDR = '10.42.0.0/16';
const DEVICES = [
  { name: 'pub' },
  { name: 'lan-a', behind: 'shared' },
  { name: 'lan-b', behind: 'shared' },
  { name: 'lone', behind: 'own' },
];

let o: OverlayLab;
const pods: Record<string, { pod: string; ip: string }> = {};

beforeAll(async () => {
  o = await startOverlayLab('mesh', { devices: DEVICES });
  await Promise.all(DEVICES.map(async ({ name }) => {
    pods[name] = { pod: `echo-${name}`, ip: await runEchoPod(o.hub, `echo-${name}`, name) };
  }));
}, 300_000);

afterAll(async () => {
  await stopAll();
  await o?.lab.teardown();
});

describe('pod overlay: a mesh of public and NATed devices', () => {
  it('gives every node its own block of the cluster CIDR, and every pod an IP in its node\'s block', () => {
    const blocks = DEVICES.map(({ name }) => {
      const node = overlayNode(o.hub, name);
      const podCIDR = node.spec?.podCIDR;
      expect(podCIDR, `${name}'s podCIDR`).toBeDefined();
      expect(node.spec?.podCIDRs).toEqual([podCIDR]);
      expect(containsCidr(cidr(CLUSTER_CIDR), cidr(podCIDR!))).toBe(true);
      expect(cidr(podCIDR!).bits).toBe(24);
      // What the agent took into use is what the hub allocated, on the interface the lab named.
      expect(node.status?.overlay).toMatchObject({ overlay: 'wireguard', ready: true, podCIDR, implementation: 'wireguard-go', interface: o.devices[name]!.wgIfname });
      const ip = pods[name]!.ip;
      expect(containsAddress(cidr(podCIDR!), parseIPv4(ip)!), `${ip} in ${podCIDR}`).toBe(true);
      return cidr(podCIDR!);
    });
    for (let i = 0; i < blocks.length; i++) for (let j = i + 1; j < blocks.length; j++) expect(overlaps(blocks[i]!, blocks[j]!)).toBe(false);
    expect(new Set(Object.values(pods).map((p) => p.ip)).size).toBe(DEVICES.length);
  });

  it('lets a pod on every device reach a pod on every other device by pod IP, both ways, and the receiver sees the sender\'s pod IP', async () => {
    const seen: string[] = [];
    for (const from of DEVICES) {
      for (const to of DEVICES) {
        if (from === to) continue;
        const source = pods[from.name]!;
        const target = pods[to.name]!;
        // The first packet between two devices may wait for a handshake, or for the relay.
        const addr = await waitReach(o.devices[from.name]!, source.pod, target.ip, 45_000);
        expect(addr, `${from.name} -> ${to.name}: ${to.name}'s pod saw`).toBe(source.ip);
        seen.push(`${from.name}->${to.name}`);
      }
    }
    expect(seen).toHaveLength(DEVICES.length * (DEVICES.length - 1));
  });

  it('keeps the two devices behind one NAT on their LAN: each has the other\'s LAN address as its WireGuard endpoint', async () => {
    const a = o.devices['lan-a']!;
    const b = o.devices['lan-b']!;
    const keyOf = (name: string) => overlayNode(o.hub, name).status?.overlay?.publicKey;
    await waitFor('lan-a and lan-b to use each other\'s LAN address', async () => {
      const toB = (await wgPeers(a.ns, a.wgIfname)).find((p) => p.publicKey === keyOf('lan-b'));
      const toA = (await wgPeers(b.ns, b.wgIfname)).find((p) => p.publicKey === keyOf('lan-a'));
      return toB?.endpoint?.startsWith(`${b.address}:`) && toA?.endpoint?.startsWith(`${a.address}:`) && toB.latestHandshake > 0;
    }, 60_000, 500);
    const report = await waitFor('lan-a to report lan-b as a direct peer', () => overlayNode(o.hub, 'lan-a').status?.overlay?.peers?.find((p) => p.node === 'lan-b' && p.path === 'direct'), 60_000, 500);
    expect(report.endpoint).toMatch(new RegExp(`^${b.address.replace(/\./g, '\\.')}:`));
    expect(report.latestHandshake).toBeDefined();
  });

  it('reaches the public device directly from behind either NAT, and its peers show the NATs\' public addresses', async () => {
    const pub = o.devices.pub!;
    const shared = o.routers.shared!;
    const own = o.routers.own!;
    // A request from behind each NAT, so that the handshakes are fresh.
    for (const name of ['lan-a', 'lone']) expect(await remoteAddrSeenBy(o.devices[name]!, pods[name]!.pod, pods.pub!.ip)).toBe(pods[name]!.ip);
    const keyOf = (name: string) => overlayNode(o.hub, name).status?.overlay?.publicKey;
    const peers = await wgPeers(pub.ns, pub.wgIfname);
    const endpointOf = (name: string) => peers.find((p) => p.publicKey === keyOf(name))?.endpoint;
    expect(endpointOf('lan-a')).toMatch(new RegExp(`^${shared.publicAddress.replace(/\./g, '\\.')}:`));
    expect(endpointOf('lone')).toMatch(new RegExp(`^${own.publicAddress.replace(/\./g, '\\.')}:`));
    await waitFor('pub to report its NATed peers as direct', () => {
      const reported = overlayNode(o.hub, 'pub').status?.overlay?.peers ?? [];
      return ['lan-a', 'lan-b', 'lone'].every((n) => reported.find((p) => p.node === n)?.path === 'direct');
    }, 60_000, 500);
  });
});
