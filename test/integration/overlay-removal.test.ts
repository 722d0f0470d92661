import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentOf, startLabAgent } from '../harness/lab-flotilla.js';
import { ipJson, NFT, runIn, tunLinksSync } from '../harness/netns.js';
import { overlayNode, runEchoPod, startOverlayLab, waitOverlayReady, waitReach, wgPeers, type OverlayLab } from '../harness/overlay.js';
import { cli, stopAll, waitFor } from '../harness/processes.js';

// Taking the overlay apart: a deleted node's peer leaves every device (and the relay) and its
// pod CIDR is not handed to the next node that joins; `--overlay none` on a device that had the
// overlay leaves nothing of the agent's in its namespace: no interface, no route of protocol
// 241, no `ip flotilla` nftables table, no engine network with the overlay's label.

let o: OverlayLab;
const pods: Record<string, { pod: string; ip: string }> = {};
const NAMES = ['one', 'two', 'gone'];

beforeAll(async () => {
  o = await startOverlayLab('removal', { devices: [{ name: 'one' }, { name: 'two' }, { name: 'gone', behind: 'r' }] });
  await Promise.all(NAMES.map(async (name) => {
    pods[name] = { pod: `echo-${name}`, ip: await runEchoPod(o.hub, `echo-${name}`, name) };
  }));
  await waitReach(o.devices.gone!, pods.gone!.pod, pods.one!.ip, 45_000);
  await waitReach(o.devices.gone!, pods.gone!.pod, pods.two!.ip, 45_000);
}, 300_000);

afterAll(async () => {
  await stopAll();
  await o?.lab.teardown();
});

describe('pod overlay: removal', () => {
  it('removes a deleted node\'s peer from every device and does not hand its pod CIDR to the next node', async () => {
    const gone = overlayNode(o.hub, 'gone');
    const key = gone.status!.overlay!.publicKey!;
    const podCIDR = gone.spec!.podCIDR!;
    for (const name of ['one', 'two']) {
      const d = o.devices[name]!;
      expect((await wgPeers(d.ns, d.wgIfname)).map((p) => p.publicKey), `${name} has gone's peer before`).toContain(key);
    }
    // The device is switched off for good, then its node deleted.
    await agentOf(o.devices.gone!).stop();
    const r = cli(o.hub, ['delete', 'node', 'gone']);
    expect(r.code, r.stderr).toBe(0);

    for (const name of ['one', 'two']) {
      const d = o.devices[name]!;
      await waitFor(`gone's peer to leave ${name}`, async () => {
        const peers = await wgPeers(d.ns, d.wgIfname);
        return !peers.some((p) => p.publicKey === key || p.allowedIps.includes(podCIDR));
      }, 30_000, 250);
    }
    await waitFor('gone\'s peer to leave the relay', async () => !(await wgPeers(o.hub.ns, o.hub.relayIfname)).some((p) => p.publicKey === key), 30_000, 250);

    const late = await o.lab.addDevice('late');
    startLabAgent(o.lab, o.hub, late);
    const node = await waitOverlayReady(o.hub, 'late', 90_000);
    expect(node.spec?.podCIDR).toBeDefined();
    expect(node.spec?.podCIDR).not.toBe(podCIDR);
    const blocks = ['one', 'two', 'late'].map((n) => overlayNode(o.hub, n).spec?.podCIDR);
    expect(new Set(blocks).size).toBe(3);
  });

  it('leaves nothing of the agent\'s in the namespace after --overlay none', async () => {
    const d = o.devices.two!;
    const routes241 = async () => (await ipJson(d.ns, 'route', 'show', 'table', 'all', 'proto', '241'));
    const nftTable = async () => (await runIn(d.ns, [NFT, 'list', 'table', 'ip', 'flotilla'])).code === 0;
    // Labelled as the overlay's, or on a subnet of the cluster CIDR whatever its label.
    const labelled = async () => (await d.dockerd.docker.listNetworks()).filter((n) => n.Labels?.['flotilla.network'] === 'overlay' || (n.IPAM?.Config ?? []).some((c) => c.Subnet?.startsWith('10.42.')));
    // All four exist while the overlay is on: the check below is not vacuous.
    expect(tunLinksSync(d.ns)).toContain(d.wgIfname);
    expect((await routes241()).length).toBeGreaterThan(0);
    expect(await nftTable()).toBe(true);
    expect((await labelled()).length).toBeGreaterThan(0);

    await agentOf(d).stop();
    const agent = startLabAgent(o.lab, o.hub, d, { overlay: 'none' });
    await waitFor('two to report the overlay off', () => {
      if (agent.exitCode !== undefined) throw new Error(`agent exited ${agent.exitCode}: ${agent.log().slice(-2000)}`);
      return overlayNode(o.hub, 'two').status?.overlay?.overlay === 'none';
    }, 60_000, 250);
    // What is left, named, so that a failure says what stayed behind.
    const leftovers = async (): Promise<string[]> => {
      const left: string[] = [];
      const tun = tunLinksSync(d.ns);
      if (tun.length > 0) left.push(`interfaces ${tun.join(', ')}`);
      const routes = await routes241();
      if (routes.length > 0) left.push(`proto 241 routes ${JSON.stringify(routes)}`);
      if (await nftTable()) left.push('nft table ip flotilla');
      const networks = await labelled();
      if (networks.length > 0) left.push(`engine networks ${networks.map((n) => n.Name).join(', ')}`);
      return left;
    };
    await waitFor('nothing of the overlay left in two\'s namespace', async () => {
      const left = await leftovers();
      if (left.length > 0) throw new Error(`left: ${left.join('; ')}`);
      return true;
    }, 60_000, 500);
    const links = (await ipJson<{ ifname: string }>(d.ns, 'link', 'show')).map((l) => l.ifname);
    expect(links).not.toContain(d.wgIfname);
    // The device's own underlay is untouched.
    expect(links).toContain('eth0');
    expect(JSON.stringify(await ipJson(d.ns, 'addr', 'show', 'dev', 'eth0'))).toContain(`"${d.address}"`);
  });
});
