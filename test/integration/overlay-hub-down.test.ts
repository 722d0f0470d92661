import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentOf, startLabAgent } from '../harness/lab-flotilla.js';
import { ip, tunLinksSync } from '../harness/netns.js';
import { remoteAddrSeenBy, runEchoPod, startOverlayLab, waitReach, type OverlayLab } from '../harness/overlay.js';
import { stopAll, waitFor } from '../harness/processes.js';

// Fleet devices lose their hub for hours; the overlay must not notice. With the hub stopped,
// tunnels that exist keep carrying traffic past a keepalive period, and an agent restarted
// while the hub is still down (its WireGuard interface deleted, as a reboot does) builds its
// tunnels again from the peer set it keeps on its disk.

let o: OverlayLab;
const pods: Record<string, { pod: string; ip: string }> = {};
// Past one keepalive period (25 s), so that a tunnel held up by nothing but the hub would show.
const HOLD_MS = 35_000;

beforeAll(async () => {
  o = await startOverlayLab('hubdown', { devices: [{ name: 'pub' }, { name: 'nat', behind: 'r' }] });
  await Promise.all(['pub', 'nat'].map(async (name) => {
    pods[name] = { pod: `echo-${name}`, ip: await runEchoPod(o.hub, `echo-${name}`, name) };
  }));
  await waitReach(o.devices.nat!, pods.nat!.pod, pods.pub!.ip, 45_000);
  await waitReach(o.devices.pub!, pods.pub!.pod, pods.nat!.ip, 45_000);
}, 300_000);

afterAll(async () => {
  await stopAll();
  await o?.lab.teardown();
});

async function bothWays(): Promise<boolean> {
  const there = await remoteAddrSeenBy(o.devices.nat!, pods.nat!.pod, pods.pub!.ip, 2);
  const back = await remoteAddrSeenBy(o.devices.pub!, pods.pub!.pod, pods.nat!.ip, 2);
  return there === pods.nat!.ip && back === pods.pub!.ip;
}

describe('pod overlay without its hub', () => {
  it('keeps existing tunnels carrying traffic while the hub is stopped', async () => {
    await o.hub.stop();
    expect(o.hub.process.exitCode).not.toBeUndefined();
    const until = Date.now() + HOLD_MS;
    let rounds = 0;
    while (Date.now() < until) {
      expect(await bothWays(), `round ${rounds} with the hub down`).toBe(true);
      rounds++;
      await new Promise((r) => setTimeout(r, 2_000));
    }
    expect(rounds).toBeGreaterThan(5);
  });

  it('rebuilds the tunnels of an agent restarted with the hub down (its interface deleted, as by a reboot) from its disk', async () => {
    const device = o.devices.nat!;
    await agentOf(device).stop();
    await ip(device.ns, 'link', 'del', device.wgIfname);
    await waitFor('the WireGuard interface to be gone', () => !tunLinksSync(device.ns).includes(device.wgIfname), 10_000);
    expect(await remoteAddrSeenBy(device, pods.nat!.pod, pods.pub!.ip, 2)).toBeUndefined();

    const agent = startLabAgent(o.lab, o.hub, device);
    await waitFor('the agent to make its WireGuard interface again', () => {
      if (agent.exitCode !== undefined) throw new Error(`agent exited ${agent.exitCode}: ${agent.log().slice(-2000)}`);
      return tunLinksSync(device.ns).includes(device.wgIfname);
    }, 30_000, 200);
    await waitFor('traffic both ways again, hub still down', bothWays, 45_000, 500);
    expect(o.hub.process.exitCode).not.toBeUndefined();
  });

  it('carries on when the hub comes back', async () => {
    await o.hub.start();
    await waitFor('traffic both ways with the hub back', bothWays, 30_000, 500);
  });
});
