import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startDeviceAgent } from '../test/harness/device.js';
import { startDockerd, type TestDockerd } from '../test/harness/dockerd.js';
import { commOf, deleteTunLinksSync, pidsIn, requireLabTools, WG, mustRunIn } from '../test/harness/netns.js';
import { getJson, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../test/harness/processes.js';
import { uniqueIfname } from '../test/harness/wireguard.js';
import { paperPeers, type PaperPeers } from './overlay-peers.js';
import { MB, MiB, procStat, round, writeResult } from './results.js';

// Agent memory with the overlay on and 100 peers (must ≤ 60 MB RSS), wireguard-go's own RSS
// reported apart. The 100 peers are paper nodes (bench/overlay-peers.ts): joined, each with a
// random key, so that the hub publishes their announcements as it does for real devices. Their
// endpoints are documentation addresses and loopback, so no packet leaves the device's
// namespace. The hub runs on loopback without its relay; the agent, in a harness dockerd's
// namespace, reaches it through the loopback relays of test/harness/device.ts.

const PEERS = 100;
const SETTLE_MS = 10_000;
const WINDOW_MS = 30_000;

let dockerd: TestDockerd;
let hub: RunningHub;
let peers: PaperPeers | undefined;
const dirs = tempDir('ovfoot');
const ifname = uniqueIfname('fwb');

beforeAll(async () => {
  requireLabTools();
  dockerd = await startDockerd({ name: 'ovfoot' });
  hub = await startHub({ dataDir: join(dirs.path, 'hub'), extraArgs: ['--relay', 'off'] });
}, 180_000);

afterAll(async () => {
  await peers?.close();
  await stopAll();
  // The agent's interface: wireguard-go exits with it, and the namespace can then go.
  if (dockerd) deleteTunLinksSync(dockerd.netns);
  await dockerd?.stop();
  dirs.remove();
});

/** The RSS of a process, sampled every second over the window; the median. */
async function medianRss(pid: number): Promise<number> {
  const samples: number[] = [];
  const end = Date.now() + WINDOW_MS;
  while (Date.now() < end) {
    samples.push(procStat(pid).rssBytes);
    await new Promise((r) => setTimeout(r, 1_000));
  }
  return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;
}

it(`agent with the overlay on and ${PEERS} peers`, async () => {
  const device = await startDeviceAgent({ hub, dockerd, name: 'foot', stateDir: join(dirs.path, 'state'), extraArgs: ['--overlay', 'wireguard', '--wireguard-interface', ifname] });
  await waitFor('the overlay up', () => getJson<{ status?: { overlay?: { ready?: boolean } } }>(hub, ['node', 'foot']).status?.overlay?.ready, 90_000, 250);

  peers = await paperPeers({ mqttUrl: hub.mqttUrl, joinToken: hub.joinToken, count: PEERS, prefix: 'paper' });
  await waitFor(`${PEERS} peers on the interface`, async () => (await mustRunIn(dockerd.netns, [WG, 'show', ifname, 'peers'])).trim().split('\n').filter(Boolean).length >= PEERS, 60_000, 500);
  await new Promise((r) => setTimeout(r, SETTLE_MS));

  const wgPid = pidsIn(dockerd.netns).find((pid) => commOf(pid) === 'wireguard-go');
  expect(wgPid, 'wireguard-go in the device namespace').toBeDefined();
  const [agentRss, wgRss] = await Promise.all([medianRss(device.process.child.pid!), medianRss(wgPid!)]);
  const agentMB = agentRss / MB;

  // The floor, in the same run: the same agent on the same device with --overlay none (which
  // also takes down what the overlay made), so the difference is what the overlay costs.
  await device.process.stop();
  const plain = await startDeviceAgent({ hub, dockerd, name: 'foot', stateDir: join(dirs.path, 'state'), extraArgs: ['--overlay', 'none', '--wireguard-interface', ifname] });
  await waitFor('the overlay off', () => getJson<{ status?: { overlay?: { overlay?: string } } }>(hub, ['node', 'foot']).status?.overlay?.overlay === 'none', 60_000, 250);
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const plainRss = await medianRss(plain.process.child.pid!);

  const result = {
    benchmark: 'overlay-footprint',
    parameters: { peers: PEERS, settleMs: SETTLE_MS, windowMs: WINDOW_MS, implementation: 'wireguard-go', peerSource: 'paper nodes: joined, one status report each with a random key; the hub publishes their announcements' },
    figures: { agentRssMB: round(agentMB), agentRssMiB: round(agentRss / MiB), wireguardGoRssMiB: round(wgRss / MiB) },
    floor: { agentWithoutOverlayRssMiB: round(plainRss / MiB) },
    ratios: { overlayCostMiB: round((agentRss - plainRss) / MiB) },
    targets: { agentRss100Peers: { what: 'agent memory, overlay on, 100 peers (wireguard-go apart)', measured: round(agentMB), unit: 'MB RSS', must: 60, better: 'lower' as const } },
  };
  writeResult(result);
  console.log(JSON.stringify(result.figures), JSON.stringify(result.floor));
  expect(agentMB).toBeLessThanOrEqual(60);
});
