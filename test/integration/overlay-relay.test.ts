import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { overlayNode, remoteAddrSeenBy, runEchoPod, startOverlayLab, waitReach, wgPeers, type OverlayLab } from '../harness/overlay.js';
import { stopAll, waitFor } from '../harness/processes.js';

// Two devices each behind a symmetric NAT of its own cannot reach each other directly (each
// NAT gives every destination a new random port, so neither learns a port the other's NAT will
// let in): their traffic goes through the hub's WireGuard relay. A third device on the
// internet sees them directly. Then one NAT changes its public address, and the peers follow.

let o: OverlayLab;
const pods: Record<string, { pod: string; ip: string }> = {};
const NAMES = ['pub', 'nat-a', 'nat-b'];

beforeAll(async () => {
  o = await startOverlayLab('relay', { devices: [{ name: 'pub' }, { name: 'nat-a', behind: 'ra' }, { name: 'nat-b', behind: 'rb' }] });
  await Promise.all(NAMES.map(async (name) => {
    pods[name] = { pod: `echo-${name}`, ip: await runEchoPod(o.hub, `echo-${name}`, name) };
  }));
}, 300_000);

afterAll(async () => {
  await stopAll();
  await o?.lab.teardown();
});

const keyOf = (name: string): string | undefined => overlayNode(o.hub, name).status?.overlay?.publicKey;
const escape = (address: string): string => address.replace(/\./g, '\\.');

describe('pod overlay: the relay and NATs that move', () => {
  it('carries traffic between two devices behind their own symmetric NATs through the relay, and both report path relay', async () => {
    const a = o.devices['nat-a']!;
    const b = o.devices['nat-b']!;
    expect(await waitReach(a, pods['nat-a']!.pod, pods['nat-b']!.ip, 60_000)).toBe(pods['nat-a']!.ip);
    expect(await waitReach(b, pods['nat-b']!.pod, pods['nat-a']!.ip, 60_000)).toBe(pods['nat-b']!.ip);
    await waitFor('nat-a and nat-b to report each other as relayed', () => {
      const ab = overlayNode(o.hub, 'nat-a').status?.overlay?.peers?.find((p) => p.node === 'nat-b');
      const ba = overlayNode(o.hub, 'nat-b').status?.overlay?.peers?.find((p) => p.node === 'nat-a');
      return ab?.path === 'relay' && ba?.path === 'relay';
    }, 90_000, 500);
    // The hub's relay interface holds both as peers, each at its NAT's public address, with a handshake.
    const relayPeers = await wgPeers(o.hub.ns, o.hub.relayIfname);
    for (const [name, router] of [['nat-a', o.routers.ra!], ['nat-b', o.routers.rb!]] as const) {
      const peer = relayPeers.find((p) => p.publicKey === keyOf(name));
      expect(peer, `${name} on the relay`).toBeDefined();
      expect(peer!.endpoint).toMatch(new RegExp(`^${escape(router.publicAddress)}:`));
      expect(peer!.latestHandshake).toBeGreaterThan(0);
      expect(peer!.rx).toBeGreaterThan(0);
    }
    // On the device, the relayed peer's pod CIDR lies in the relay peer's allowed IPs.
    const podCIDRofB = overlayNode(o.hub, 'nat-b').spec!.podCIDR!;
    const onA = await wgPeers(a.ns, a.wgIfname);
    const relayOnA = onA.find((p) => p.allowedIps.includes(podCIDRofB));
    expect(relayOnA, `a peer of nat-a carrying ${podCIDRofB}`).toBeDefined();
    expect(relayOnA!.publicKey).not.toBe(keyOf('nat-b'));
    expect(relayOnA!.endpoint).toMatch(/^203\.0\.113\.1:/);
  });

  it('reaches the public device directly from behind a symmetric NAT', async () => {
    expect(await waitReach(o.devices['nat-a']!, pods['nat-a']!.pod, pods.pub!.ip, 45_000)).toBe(pods['nat-a']!.ip);
    expect(await waitReach(o.devices.pub!, pods.pub!.pod, pods['nat-a']!.ip, 45_000)).toBe(pods.pub!.ip);
    await waitFor('pub to report nat-a as direct', () => overlayNode(o.hub, 'pub').status?.overlay?.peers?.find((p) => p.node === 'nat-a')?.path === 'direct', 60_000, 500);
  });

  it('follows a NAT that changes its public address within a minute', async () => {
    const router = o.routers.ra!;
    const pub = o.devices.pub!;
    const natA = o.devices['nat-a']!;
    const old = router.publicAddress;
    const next = await router.changePublicAddress();
    const changedAt = Date.now();
    // Traffic both ways again, and the public device's peer entry at the new address.
    await waitFor('pub to reach nat-a again', async () => (await remoteAddrSeenBy(pub, pods.pub!.pod, pods['nat-a']!.ip, 2)) === pods.pub!.ip, 60_000, 500);
    await waitFor('nat-a to reach pub again', async () => (await remoteAddrSeenBy(natA, pods['nat-a']!.pod, pods.pub!.ip, 2)) === pods['nat-a']!.ip, 60_000, 500);
    await waitFor('pub\'s peer for nat-a at the new address', async () => (await wgPeers(pub.ns, pub.wgIfname)).find((p) => p.publicKey === keyOf('nat-a'))?.endpoint?.startsWith(`${next}:`), 60_000, 500);
    // The relayed pair too: nat-b still reaches nat-a.
    await waitFor('nat-b to reach nat-a again', async () => (await remoteAddrSeenBy(o.devices['nat-b']!, pods['nat-b']!.pod, pods['nat-a']!.ip, 2)) === pods['nat-b']!.ip, 60_000, 500);
    const followedMs = Date.now() - changedAt;
    console.log(`NAT ${old} -> ${next}: peers followed in ${followedMs} ms`);
    expect(followedMs).toBeLessThanOrEqual(60_000);
    // The hub has the new address too, for devices that join from now on.
    await waitFor('the relay\'s peer for nat-a at the new address', async () => (await wgPeers(o.hub.ns, o.hub.relayIfname)).find((p) => p.publicKey === keyOf('nat-a'))?.endpoint?.startsWith(`${next}:`), 30_000, 500);
  });
});
