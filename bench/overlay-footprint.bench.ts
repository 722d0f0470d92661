import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { PeerAnnouncement } from '../shared/protocol/network.js';
import { HUB_USERNAME, Topics } from '../shared/protocol/topics.js';
import { startDeviceAgent } from '../test/harness/device.js';
import { startDockerd, type TestDockerd } from '../test/harness/dockerd.js';
import { startMosquitto } from '../test/harness/mosquitto.js';
import { commOf, deleteTunLinksSync, pidsIn, requireLabTools, WG, mustRunIn } from '../test/harness/netns.js';
import { getJson, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../test/harness/processes.js';
import { uniqueIfname } from '../test/harness/wireguard.js';
import { MB, MiB, procStat, round, writeResult } from './results.js';

// Agent memory with the overlay on and 100 peers (must ≤ 60 MB RSS), wireguard-go's own RSS
// reported apart. The 100 peers are retained announcements with random keys, published by the
// test on the peer topics as the hub does, on an external Mosquitto where the test may log in
// as the hub. Their endpoints are documentation addresses the device has no route to, so no
// packet leaves its namespace. The hub runs without its relay; the agent in a harness dockerd's
// namespace reaches Mosquitto through the loopback relays of test/harness/device.ts.

const PEERS = 100;
const SETTLE_MS = 10_000;
const WINDOW_MS = 30_000;

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('ovfoot');
const ifname = uniqueIfname('fwb');

beforeAll(async () => {
  requireLabTools();
  dockerd = await startDockerd({ name: 'ovfoot' });
  const hubDir = join(dirs.path, 'hub');
  const mosquitto = await startMosquitto({ dir: join(dirs.path, 'broker'), hubDataDir: hubDir });
  hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url, '--relay', 'off'] });
}, 180_000);

afterAll(async () => {
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

  const password = readFileSync(join(hub.dataDir, 'broker.password'), 'utf8').trim();
  const client = await mqtt.connectAsync(hub.mqttUrl, { clientId: `flotilla-bench-peers-${process.pid}`, username: HUB_USERNAME, password, protocolVersion: 4 });
  const topics = new Topics();
  try {
    for (let i = 0; i < PEERS; i++) {
      const peer: PeerAnnouncement = {
        v: 1,
        node: `hollow-${i}`,
        publicKey: randomBytes(32).toString('base64'),
        podCIDR: `10.42.${150 + i}.0/24`,
        endpoints: [{ address: `192.0.2.${i + 1}`, port: 51820, source: 'hub-observed' }],
        generation: 1,
      };
      await client.publishAsync(topics.peer(peer.node), JSON.stringify(peer), { qos: 1, retain: true });
    }
  } finally {
    await client.endAsync();
  }
  await waitFor(`${PEERS} peers on the interface`, async () => (await mustRunIn(dockerd.netns, [WG, 'show', ifname, 'peers'])).trim().split('\n').filter(Boolean).length >= PEERS, 60_000, 500);
  await new Promise((r) => setTimeout(r, SETTLE_MS));

  const wgPid = pidsIn(dockerd.netns).find((pid) => commOf(pid) === 'wireguard-go');
  expect(wgPid, 'wireguard-go in the device namespace').toBeDefined();
  const [agentRss, wgRss] = await Promise.all([medianRss(device.process.child.pid!), medianRss(wgPid!)]);
  const agentMB = agentRss / MB;

  const result = {
    benchmark: 'overlay-footprint',
    parameters: { peers: PEERS, settleMs: SETTLE_MS, windowMs: WINDOW_MS, implementation: 'wireguard-go', broker: 'mosquitto (the test publishes the peers as the hub)' },
    figures: { agentRssMiB: round(agentRss / MiB), wireguardGoRssMiB: round(wgRss / MiB) },
    targets: { agentRss100Peers: { what: 'agent memory, overlay on, 100 peers (wireguard-go apart)', measured: round(agentMB), unit: 'MB RSS', must: 60, better: 'lower' as const } },
  };
  writeResult(result);
  console.log(JSON.stringify(result.figures));
  expect(agentMB).toBeLessThanOrEqual(60);
});
