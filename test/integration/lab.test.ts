import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HUB_ADDRESS, Lab, type LabDevice, type LabRouter } from '../harness/lab.js';
import { IP, liveWireguardGo, netnsExists, WIREGUARD_SOCKETS } from '../harness/netns.js';
import { stopAll, waitFor } from '../harness/processes.js';
import { listenUdp, pingOnce, sendUdp, type UdpListener } from '../harness/udp-probe.js';
import { handTunnel } from '../harness/wireguard.js';

// The device lab proves itself before any overlay test leans on it: every device reaches the
// hub's address, a NAT router translates symmetrically (one source port per destination), an
// address change of the NAT takes the flows with it, a hand-made WireGuard tunnel carries a
// ping across the lab, and teardown leaves nothing of the lab behind.

let lab: Lab;
let publicDevice: LabDevice;
let sharedA: LabDevice;
let sharedB: LabDevice;
let lonely: LabDevice;
let routerShared: LabRouter;
let routerLonely: LabRouter;
let listener: UdpListener;

beforeAll(async () => {
  lab = await Lab.create('selftest');
  routerShared = await lab.addRouter('shared');
  routerLonely = await lab.addRouter('lonely');
  [publicDevice, sharedA, sharedB, lonely] = await Promise.all([
    lab.addDevice('pub'),
    lab.addDevice('sha', { router: routerShared }),
    lab.addDevice('shb', { router: routerShared }),
    lab.addDevice('lon', { router: routerLonely }),
  ]);
  listener = await listenUdp(lab.hubNs, [7001, 7002], lab.dirs.path);
});

afterAll(async () => {
  await stopAll();
  await lab?.teardown();
});

describe('device lab', () => {
  it('every device, public or behind NAT, reaches the hub address', async () => {
    for (const device of [publicDevice, sharedA, sharedB, lonely]) {
      expect(await pingOnce(device.ns, HUB_ADDRESS), `${device.name} pings ${HUB_ADDRESS}`).toBe(true);
    }
    // Two devices behind one router reach each other over their LAN; a device behind another NAT is not reachable from outside.
    expect(await pingOnce(sharedA.ns, sharedB.address)).toBe(true);
    expect(await pingOnce(publicDevice.ns, lonely.address, 1)).toBe(false);
  });

  it('the hub sees a NATed device at its router\'s public address, with a new port per destination (symmetric NAT)', async () => {
    await sendUdp(lonely.ns, 40000, 'lonely', [`${HUB_ADDRESS}:7001`, `${HUB_ADDRESS}:7002`]);
    await sendUdp(publicDevice.ns, 40000, 'public', [`${HUB_ADDRESS}:7001`]);
    const seen = await waitFor('three datagrams at the hub', () => {
      const s = listener.seen();
      return s.length >= 3 ? s : undefined;
    }, 10_000);
    const fromLonely = seen.filter((o) => o.body === 'lonely');
    expect(fromLonely.map((o) => o.from)).toEqual([routerLonely.publicAddress, routerLonely.publicAddress]);
    // fully-random: one local socket, two destinations, two different outside ports, neither the device's own.
    expect(fromLonely[0]!.fromPort).not.toBe(fromLonely[1]!.fromPort);
    expect(fromLonely.map((o) => o.fromPort)).not.toContain(40000);
    expect(seen.find((o) => o.body === 'public')).toMatchObject({ from: publicDevice.address, fromPort: 40000 });
  });

  it('a NAT that changes its public address takes a running flow to the new address', async () => {
    const before = listener.seen().length;
    await sendUdp(sharedA.ns, 40001, 'flow-1', [`${HUB_ADDRESS}:7001`]);
    await waitFor('the first datagram', () => listener.seen().length > before, 10_000);
    const old = routerShared.publicAddress;
    expect(listener.seen().at(-1)).toMatchObject({ body: 'flow-1', from: old });
    const next = await routerShared.changePublicAddress();
    expect(next).not.toBe(old);
    // The same 5-tuple again: its old mapping must be gone, so it leaves from the new address.
    await sendUdp(sharedA.ns, 40001, 'flow-2', [`${HUB_ADDRESS}:7001`]);
    await waitFor('the second datagram', () => listener.seen().some((o) => o.body === 'flow-2'), 10_000);
    expect(listener.seen().find((o) => o.body === 'flow-2')?.from).toBe(next);
    // Nothing answers at the old address any more.
    expect(await pingOnce(lab.hubNs, old, 1)).toBe(false);
    expect(await pingOnce(sharedB.ns, HUB_ADDRESS)).toBe(true);
  });

  it('a WireGuard tunnel configured by hand (wireguard-go) between two lab namespaces carries a ping', async () => {
    const tunnel = await handTunnel({ ns: publicDevice.ns, underlay: publicDevice.address, address: '10.99.0.1' }, { ns: lab.hubNs, underlay: HUB_ADDRESS, address: '10.99.0.2' });
    try {
      expect(await waitFor('a ping through the tunnel', async () => pingOnce(publicDevice.ns, '10.99.0.2'), 15_000, 200)).toBe(true);
      const dump = execFileSync('/usr/bin/nsenter', [`--net=/var/run/netns/${publicDevice.ns}`, '--', '/usr/bin/wg', 'show', tunnel.a.ifname, 'latest-handshakes'], { encoding: 'utf8' });
      expect(Number(dump.trim().split(/\s+/)[1])).toBeGreaterThan(0);
    } finally {
      await tunnel.remove();
    }
  });

  it('teardown leaves no namespace, interface, wireguard-go or control socket of the lab', async () => {
    // A tunnel left up on purpose: teardown must take it (and its wireguard-go) down too.
    const tunnel = await handTunnel({ ns: publicDevice.ns, underlay: publicDevice.address, address: '10.99.1.1' }, { ns: lab.hubNs, underlay: HUB_ADDRESS, address: '10.99.1.2' });
    const ifnames = [tunnel.a.ifname, tunnel.b.ifname];
    const wgPids = (): number[] => liveWireguardGo(ifnames);
    expect(wgPids()).toHaveLength(2);
    const { namespaces } = lab.leftovers();
    expect(namespaces.every(netnsExists)).toBe(true);

    await stopAll();
    await lab.teardown();

    expect(namespaces.filter(netnsExists)).toEqual([]);
    await waitFor('wireguard-go to exit', () => wgPids().length === 0, 10_000);
    const sockets = fs.existsSync(WIREGUARD_SOCKETS) ? fs.readdirSync(WIREGUARD_SOCKETS) : [];
    expect(sockets.filter((s) => ifnames.some((i) => s.startsWith(`${i}.`)))).toEqual([]);
    // The host's own links never held a lab interface, and hold none now.
    const hostLinks = (JSON.parse(execFileSync(IP, ['-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);
    expect(hostLinks.filter((l) => ifnames.includes(l))).toEqual([]);
  });
});
