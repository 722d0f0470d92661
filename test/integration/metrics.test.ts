import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import mqtt from 'mqtt';
import { joinHub } from '../../agent/link/join.js';
import { encodeMetricsBatch, METRICS_INTERVAL_ANNOTATION } from '../../shared/protocol/metrics.js';
import { deviceClientId, Topics } from '../../shared/protocol/topics.js';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, podManifest, podRunning, readyCondition } from '../harness/fleet.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { cli, startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// Metrics end to end: a real engine's containers, sampled by a real agent every 2 s, sent over
// MQTT, stored by the hub, and read back by `flotilla top` and by Prometheus' own checker.

const NODE = 'metrics-node';
const INTERVAL_SECONDS = 2;
const PROMTOOL = '/usr/bin/promtool';
const MiB = 1048576;

let dockerd: TestDockerd;
let hub: RunningHub;
let agent: ManagedProcess;
const dirs = tempDir('metrics');

function startMetricsAgent(): ManagedProcess {
  return startAgent({ hub, name: NODE, stateDir: join(dirs.path, 'state'), dockerHost: dockerd.dockerHost, extraArgs: ['--metrics-interval', `${INTERVAL_SECONDS}s`] });
}

async function metricsText(): Promise<string> {
  // A connection of its own per scrape: a pooled one may be the one the hub is closing as idle
  // (its keep-alive timeout) just as the request goes out, and the fetch then fails.
  const res = await fetch(`${hub.apiUrl}/metrics`, { headers: { authorization: `Bearer ${hub.adminToken}`, connection: 'close' } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
  return res.text();
}

/** Sample lines of an exposition: `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^(\S+?(?:\{.*\})?) (\S+)(?: \d+)?$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

function find(text: string, name: string, ...labels: string[]): number | undefined {
  for (const [series, value] of samples(text)) if (series.startsWith(`${name}{`) && labels.every((l) => series.includes(l))) return value;
  return undefined;
}

async function batches(): Promise<number> {
  return samples(await metricsText()).get('flotilla_metrics_batches_ingested_total') ?? 0;
}

/** `flotilla top pods` as rows of cells, by pod name. */
function topPods(): Map<string, string[]> {
  const r = cli(hub, ['top', 'pods']);
  if (r.code !== 0) return new Map();
  return new Map(r.stdout.trim().split('\n').slice(1).map((line) => line.trim().split(/\s+/)).map((cells) => [cells[0]!, cells]));
}

const milli = (text: string | undefined) => (text?.endsWith('m') ? Number(text.slice(0, -1)) : NaN);
const mebi = (text: string | undefined) => (text?.endsWith('Mi') ? Number(text.slice(0, -2)) : NaN);

function promtool(body: string): { code: number; problems: string[] } {
  const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: body, encoding: 'utf8' });
  return { code: r.status ?? -1, problems: `${r.stdout}${r.stderr}`.split('\n').filter(Boolean) };
}

beforeAll(async () => {
  if (!existsSync(PROMTOOL)) throw new Error(`required tool ${PROMTOOL} is missing: apt-get install prometheus`);
  dockerd = await startDockerd({ name: 'metrics' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  agent = startMetricsAgent();
  await waitFor('the node to be Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('metrics from a real engine', () => {
  it('shows a container that burns CPU and one that holds memory in top and /metrics within two intervals', async () => {
    apply(hub, podManifest({ name: 'burner', node: NODE, image: TEST_IMAGE, command: ['sh', '-c', 'while :; do :; done'] }));
    // 40 MiB written to the container's own /dev/shm (tmpfs): charged to its memory cgroup, not reclaimable as file cache.
    apply(hub, podManifest({ name: 'memhog', node: NODE, image: TEST_IMAGE, command: ['sh', '-c', 'dd if=/dev/zero of=/dev/shm/fill bs=1048576 count=40 2>/dev/null; exec sleep 3600'] }));
    await waitFor('both pods Running', () => podRunning(hub, 'burner') && podRunning(hub, 'memhog'), 90_000);
    const batchesAtRunning = await batches();

    const shown = await waitFor(
      'top pods to show the CPU burner and the memory holder',
      async () => {
        const rows = topPods();
        const burner = rows.get('burner');
        const memhog = rows.get('memhog');
        if (!burner || !memhog || !(milli(burner[1]) >= 200) || !(mebi(memhog[3]) >= 38)) return undefined;
        return { burner, memhog, batches: await batches() };
      },
      60_000,
      250,
    );
    // Two samples make a rate: it shows by the second batch after the pods run (a third may be in flight).
    expect(shown.batches - batchesAtRunning).toBeLessThanOrEqual(3);
    expect(shown.burner[2]).toMatch(/^\d+%$/);
    expect(mebi(shown.memhog[3])).toBeLessThan(200);

    const text = await metricsText();
    expect(find(text, 'container_cpu_usage_seconds_total', `node="${NODE}"`, 'namespace="default"', 'pod="burner"', 'container="app"')).toBeGreaterThan(0.2);
    expect(find(text, 'container_memory_working_set_bytes', 'pod="memhog"', 'container="app"')).toBeGreaterThanOrEqual(38 * MiB);
    expect(find(text, 'container_spec_memory_limit_bytes', 'pod="memhog"')).toBe(0);
    expect(find(text, 'container_network_receive_packets_total', 'pod="burner"', 'container="POD"', 'interface="eth0"')).toBeGreaterThanOrEqual(0);
    expect(find(text, 'node_cpu_seconds_total', `node="${NODE}"`, 'mode="idle"')).toBeGreaterThan(0);
    expect(find(text, 'node_memory_MemAvailable_bytes', `node="${NODE}"`)).toBeGreaterThan(0);
    expect(find(text, 'node_filesystem_avail_bytes', `node="${NODE}"`)).toBeGreaterThan(0);
    expect(text).toMatch(/^flotilla_reconcile_duration_seconds_count\{controller="\w+"\} [1-9]/m);
    expect(find(text, 'flotilla_dispatch_latency_seconds_count', 'stage="publish"')).toBeGreaterThan(0);
    expect(samples(text).get('flotilla_mqtt_messages_received_total')).toBeGreaterThan(0);
    expect(samples(text).get('flotilla_store_size_bytes')).toBeGreaterThan(0);

    const nodes = cli(hub, ['top', 'nodes']);
    expect(nodes.code, nodes.stderr).toBe(0);
    expect(nodes.stdout).toMatch(new RegExp(`^${NODE}\\s+\\d+m\\s+\\d+%\\s+\\d+Mi\\s+\\d+%`, 'm'));
    const sorted = cli(hub, ['top', 'pods', '--sort-by=cpu']);
    expect(sorted.stdout.trim().split('\n')[1]).toMatch(/^burner\s/);
    const describe = cli(hub, ['describe', 'pod', 'burner']);
    expect(describe.stdout).toMatch(/Resource Usage \(last hour\):\n {2}app:\n {4}CPU: +min \d+m/);
  });

  it('serves /metrics that promtool accepts', async () => {
    const text = await metricsText();
    const full = promtool(text);
    // No parse error; the only remarks are about node_exporter's own CamelCase names, kept for its dashboards.
    expect(full.code, full.problems.join('\n')).not.toBe(1);
    for (const p of full.problems) expect(p).toMatch(/^node_memory_Mem(Total|Available)_bytes metric names should be written in 'snake_case' not 'camelCase'$/);
    const withoutThem = text.replace(/^(# (HELP|TYPE) )?node_memory_Mem(Total|Available)_bytes.*\n/gm, '');
    const rest = promtool(withoutThem);
    expect(rest.code, rest.problems.join('\n')).toBe(0);
    const unauthorised = await fetch(`${hub.apiUrl}/metrics`);
    expect(unauthorised.status).toBe(401);
  });

  it('never moves a counter backwards across an agent restart', async () => {
    const counters = (text: string) => new Map([...samples(text)].filter(([series]) => /^(container|node|kube)_\w+_total\{/.test(series)));
    const before = counters(await metricsText());
    expect(before.size).toBeGreaterThan(20);
    await agent.stop();
    agent = startMetricsAgent();
    const start = await batches();
    await waitFor('three batches from the restarted agent', async () => (await batches()) >= start + 3, 60_000, 250);
    const after = counters(await metricsText());
    let compared = 0;
    for (const [series, value] of before) {
      const now = after.get(series);
      if (now === undefined) continue;
      compared++;
      expect(now, series).toBeGreaterThanOrEqual(value);
    }
    expect(compared).toBeGreaterThan(20);
  });

  it('takes a node\'s sampling interval from its annotation', async () => {
    const res = await fetch(`${hub.apiUrl}/api/v1/nodes/${NODE}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${hub.adminToken}`, 'content-type': 'application/merge-patch+json' },
      body: JSON.stringify({ metadata: { annotations: { [METRICS_INTERVAL_ANNOTATION]: '3s' } } }),
    });
    expect(res.status).toBe(200);
    await waitFor('the agent to sample every 3 s', () => agent.log().split('\n').some((l) => l.includes('"msg":"metrics sampling interval"') && l.includes('"intervalSeconds":3')), 30_000);
  });

  it('drops malformed and oversized messages from a device without harm to the hub or the device', async () => {
    const topics = new Topics();
    const intruder = await joinHub({ hub: hub.mqttUrl, token: hub.joinToken, name: 'intruder', labels: {}, topics, timeoutMs: 10_000 });
    const client = await mqtt.connectAsync(hub.mqttUrl, { clientId: deviceClientId(intruder.node), username: intruder.username, password: intruder.password, protocolVersion: 4, reconnectPeriod: 0 });
    const own = topics.node(intruder.node, 'metrics');
    const droppedBefore = samples(await metricsText());
    const bad = [
      Buffer.from('not json at all'),
      Buffer.from(JSON.stringify({ v: 1, t: [], n: {} })),
      Buffer.from(JSON.stringify({ v: 99, t: [Date.now()] })),
      Buffer.from(JSON.stringify({ v: 1, t: [Date.now()], n: { cpu: [1, 2] } })),
      deflateSync(Buffer.alloc(20 * MiB)), // inflates far past the limit
    ];
    for (const payload of bad) await client.publishAsync(own, payload, { qos: 1 });
    await client.publishAsync(own, Buffer.alloc(200 * 1024, 0x7b), { qos: 1 });
    const dropped = (reason: string, s: Map<string, number>) => s.get(`flotilla_metrics_dropped_total{reason="${reason}"}`) ?? 0;
    await waitFor('the bad messages to be counted as dropped', async () => {
      const s = samples(await metricsText());
      return dropped('malformed', s) - dropped('malformed', droppedBefore) >= bad.length && dropped('oversized', s) - dropped('oversized', droppedBefore) >= 1;
    });
    expect(hub.process.log()).toContain('"msg":"metrics dropped"');

    // A device speaks for itself only: the broker refuses a batch sent to another node's topic.
    const forged = encodeMetricsBatch({ times: [Date.now()], keyframe: true, node: {}, containers: [{ ns: 'default', pod: 'forged', c: 'app', id: 'abcdefabcdef', s: { cpu: [999_000] } }] });
    await client.publishAsync(topics.node(NODE, 'metrics'), forged, { qos: 0 }).catch(() => undefined);
    await client.endAsync().catch(() => undefined);

    // The hub still answers, and the real device still reports.
    expect((await fetch(`${hub.apiUrl}/healthz`)).status).toBe(200);
    expect(cli(hub, ['get', 'pods']).code).toBe(0);
    const start = await batches();
    await waitFor('more batches from the real device', async () => (await batches()) >= start + 2, 30_000, 250);
    expect(readyCondition(hub, NODE)?.status).toBe('True');
    expect(await metricsText()).not.toContain('pod="forged"');
  });
});
