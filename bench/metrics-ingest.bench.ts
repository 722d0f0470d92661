import { afterAll, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { joinHub } from '../agent/link/join.js';
import { Partitions } from '../hub/metrics/partitions.js';
import { MetricsService } from '../hub/metrics/service.js';
import { ObjectStore } from '../hub/store/objects.js';
import { openHubDatabase } from '../hub/store/schema.js';
import { encodeMetricsBatch, type ContainerSeries, type MetricsBatch } from '../shared/protocol/metrics.js';
import { deviceClientId, Topics } from '../shared/protocol/topics.js';
import { stopAll, tempDir } from '../test/harness/processes.js';
import { startBenchHub } from './hollow/setup.js';
import { median, quantile, round, sampleProcess, writeResult } from './results.js';

// Metrics ingest on the hub (docs/ARCHITECTURE.md, 'Performance targets': ≥ 50,000 samples/s, aim ≥ 200,000): devices'
// batches over real MQTT into a real hub process, with the API asked all along how it is doing;
// beside it the same ingest in-process (no MQTT), and its floor measured in the same run: SQLite
// inserting the same rows in one transaction, the least any ingest into SQLite can cost.
// FLOTILLA_BENCH_METRICS_DEVICES and FLOTILLA_BENCH_METRICS_RATES (batches/s per device, per stage) change the load.

const DEVICES = Number(process.env.FLOTILLA_BENCH_METRICS_DEVICES ?? 200);
const CONTAINERS = 10;
/**
 * Batches a second from each device, one stage per rate: far more often than a real device
 * (every 15 s), so that few devices load the hub: about 67,000, 112,000 and 180,000 samples/s offered.
 */
const STAGES = (process.env.FLOTILLA_BENCH_METRICS_RATES ?? '1.5,2.5,4').split(',').map(Number);
/** An API that answers: 99 % of the requests within a second, Kubernetes' API call latency SLO for one object. */
const ANSWERING_P99_MS = 1_000;
const WARMUP_MS = 5_000;
const WINDOW_MS = 15_000;
const API_PAUSE_MS = 100;
const IN_PROCESS_BATCHES = 4_000;

const dirs = tempDir('metrics-ingest');
afterAll(async () => {
  await stopAll();
  dirs.remove();
});

/** A full batch of a node with 10 pods (no series left out, as in a keyframe): every value moves on each time. */
function fullBatch(at: number, tick: number): MetricsBatch {
  const node: MetricsBatch['node'] = {};
  for (const mode of ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal']) node[`cpu|${mode}`] = [1_000_000 + tick * 37];
  for (const key of ['load1', 'load5', 'load15', 'mem_total', 'mem_avail', 'boot', 'fs_size|/|/dev/root|ext4', 'fs_avail|/|/dev/root|ext4', 'temp|0|cpu-thermal']) node[key] = [500_000 + tick];
  for (const key of ['net_rxb', 'net_rxp', 'net_rxe', 'net_rxd', 'net_txb', 'net_txp', 'net_txe', 'net_txd']) node[`${key}|eth0`] = [9_000 + tick * 3];
  const containers: ContainerSeries[] = [];
  for (let i = 0; i < CONTAINERS; i++) {
    const id = (i + 1).toString(16).padStart(12, 'a');
    containers.push({ ns: 'default', pod: `app-${i}`, c: 'main', id, s: Object.fromEntries(['cpu', 'cpu_user', 'cpu_sys', 'mem', 'mem_ws', 'mem_rss', 'mem_cache', 'mem_limit', 'io_rd', 'io_wr', 'pids', 'restarts'].map((k, j) => [k, [tick * (j + 1)]])) });
    containers.push({ ns: 'default', pod: `app-${i}`, c: 'POD', id: `${id.slice(0, 11)}f`, s: Object.fromEntries(['net_rxb', 'net_rxp', 'net_rxe', 'net_rxd', 'net_txb', 'net_txp', 'net_txe', 'net_txd'].map((k) => [`${k}|eth0`, [tick * 11]])) });
  }
  return { times: [at], keyframe: true, node, containers };
}

const samplesIn = (b: MetricsBatch) => Object.keys(b.node).length + b.containers.reduce((n, c) => n + Object.keys(c.s).length, 0);

/** The hub's own counters, and when it answered (a busy hub answers late: rates are taken between its answers). */
async function scrape(apiUrl: string, token: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${apiUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  const out = new Map<string, number>([['answeredAt', performance.now()]]);
  for (const line of text.split('\n')) if (line.startsWith('flotilla_')) out.set(line.slice(0, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1)));
  return out;
}

/**
 * GET /healthz and a list of every Node, one after the other, until stopped: their latencies in
 * ms. Asked from a process of its own, so that the load generator's busy event loop here does
 * not count as the hub's slowness.
 */
const PROBE = `
const [url, token, pauseMs] = process.argv.slice(1);
const healthz = [], nodes = [];
let running = true;
process.on('message', () => { running = false; });
(async () => {
  while (running) {
    let t = performance.now();
    await (await fetch(url + '/healthz')).text();
    healthz.push(performance.now() - t);
    t = performance.now();
    await (await fetch(url + '/api/v1/nodes', { headers: { authorization: 'Bearer ' + token } })).text();
    nodes.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, Number(pauseMs)));
  }
  process.send({ healthz, nodes }, () => process.exit(0));
})();
`;

function askApiMeanwhile(apiUrl: string, token: string): { stop: () => Promise<{ healthz: number[]; nodes: number[] }> } {
  const child = spawn(process.execPath, ['-e', PROBE, apiUrl, token, String(API_PAUSE_MS)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return {
    stop: () =>
      new Promise((resolve, reject) => {
        child.once('message', (m) => resolve(m as { healthz: number[]; nodes: number[] }));
        child.once('error', reject);
        child.send('stop');
      }),
  };
}

const latency = (ms: number[]) => ({ p50: round(median(ms), 2), p99: round(quantile(ms, 0.99), 2), max: round(Math.max(...ms), 2), requests: ms.length });

it(`ingests the metrics of ${DEVICES} devices over MQTT while the API answers`, async () => {
  const hub = await startBenchHub(join(dirs.path, 'hub'));
  const topics = new Topics();
  const clients: { client: MqttClient; topic: string }[] = [];
  for (let i = 0; i < DEVICES; i += 25) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(25, DEVICES - i) }, async (_, j) => {
        const creds = await joinHub({ hub: hub.mqttUrl, token: hub.joinToken, name: `metrics-${i + j}`, labels: {}, topics, timeoutMs: 30_000 });
        const client = await mqtt.connectAsync(hub.mqttUrl, { clientId: deviceClientId(creds.node), username: creds.username, password: creds.password, protocolVersion: 4, reconnectPeriod: 0, writeCache: false });
        return { client, topic: topics.node(creds.node, 'metrics') };
      }),
    );
    clients.push(...batch);
  }

  const perBatch = samplesIn(fullBatch(0, 0));
  let tick = 0;
  let payload = encodeMetricsBatch(fullBatch(Date.now(), tick));
  const stages = [];
  for (const rate of STAGES) {
    // Every device sends a full batch with a fresh time, the devices spread over each period.
    const periodMs = 1000 / rate;
    let sent = 0;
    const timer = setInterval(() => {
      payload = encodeMetricsBatch(fullBatch(Date.now(), ++tick));
      clients.forEach(({ client, topic }, i) =>
        setTimeout(() => {
          client.publish(topic, payload, { qos: 0 });
          sent++;
        }, (i * periodMs) / clients.length),
      );
    }, periodMs);
    await new Promise((r) => setTimeout(r, WARMUP_MS));
    const before = await scrape(hub.apiUrl, hub.adminToken);
    const sentBefore = sent;
    const hubUse = sampleProcess(hub.process.child.pid!);
    const api = askApiMeanwhile(hub.apiUrl, hub.adminToken);
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const latencies = await api.stop();
    const use = hubUse.stop();
    const after = await scrape(hub.apiUrl, hub.adminToken);
    const sentInWindow = sent - sentBefore;
    clearInterval(timer);
    const seconds = (after.get('answeredAt')! - before.get('answeredAt')!) / 1000;
    // Let what is in flight land before the next stage.
    await new Promise((r) => setTimeout(r, 3_000));
    const ingested = (after.get('flotilla_metrics_samples_ingested_total')! - before.get('flotilla_metrics_samples_ingested_total')!) / seconds;
    stages.push({
      batchesPerDevicePerSecond: rate,
      offeredSamplesPerSecond: Math.round((sentInWindow * perBatch) / use.wallSeconds),
      hubIngestSamplesPerSecond: Math.round(ingested),
      droppedInWindow: [...after].filter(([k]) => k.startsWith('flotilla_metrics_dropped_total')).reduce((n, [k, v]) => n + v - (before.get(k) ?? 0), 0),
      hubCpuCores: round(use.cpuSeconds / use.wallSeconds, 2),
      hubPeakRssMiB: round(use.peakRssBytes / 1048576, 1),
      apiLatencyMs: { healthz: latency(latencies.healthz), listNodes: latency(latencies.nodes) },
    });
  }
  await Promise.all(clients.map(({ client }) => client.endAsync()));
  // The hub goes, so that what follows has the machine to itself.
  await hub.process.stop();
  const answering = stages.filter((st) => st.apiLatencyMs.healthz.p99 <= ANSWERING_P99_MS && st.apiLatencyMs.listNodes.p99 <= ANSWERING_P99_MS);
  const ingested = Math.max(0, ...answering.map((st) => st.hubIngestSamplesPerSecond));
  const ceiling = Math.max(...stages.map((st) => st.hubIngestSamplesPerSecond));

  // The same ingest in this process, without MQTT: decode, validate, write.
  const inProcess = ingestInProcess(join(dirs.path, 'in-process.db'));
  // The floor: the same number of rows inserted in one transaction, nothing else.
  const floor = sqliteFloor(join(dirs.path, 'floor.db'), inProcess.samples);

  const result = {
    benchmark: 'metrics-ingest',
    parameters: { devices: DEVICES, containersPerDevice: CONTAINERS, samplesPerBatch: perBatch, payloadBytesPerBatch: payload.length, stagesBatchesPerDevicePerSecond: STAGES, windowSeconds: WINDOW_MS / 1000, apiPauseMs: API_PAUSE_MS, apiAnsweringP99Ms: ANSWERING_P99_MS, loadGenerator: 'this process, on the same 2 cores as the hub; the API is asked from a process of its own' },
    figures: {
      hubIngestSamplesPerSecondApiAnswering: ingested,
      hubIngestSamplesPerSecondCeiling: ceiling,
      stages,
      inProcessIngestSamplesPerSecond: Math.round(inProcess.samplesPerSecond),
    },
    floor: { sqliteInsertRowsPerSecondOneTransaction: Math.round(floor) },
    ratios: { hubIngestOverFloor: round(ingested / floor, 3), hubCeilingOverFloor: round(ceiling / floor, 3), inProcessIngestOverFloor: round(inProcess.samplesPerSecond / floor, 3) },
    targets: {
      ingest: { what: 'metrics ingest on the hub, the API answering', measured: ingested, unit: 'samples/s', must: 50_000, aim: 200_000, better: 'higher' as const },
    },
  };
  writeResult(result);
  console.log(JSON.stringify(result.figures), JSON.stringify(result.floor));
  expect(ceiling).toBeGreaterThan(0);
  expect(stages.every((st) => st.apiLatencyMs.healthz.requests > 0)).toBe(true);
});

function ingestInProcess(file: string): { samples: number; samplesPerSecond: number } {
  const db = openHubDatabase(file);
  try {
    const store = new ObjectStore(db);
    for (let d = 0; d < DEVICES; d++) store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: `node-${d}` }, spec: {} });
    const metrics = new MetricsService({ db, store, retention: { raw: 6 * 3_600_000, '1m': 7 * 86_400_000, '1h': 90 * 86_400_000 }, log: pino({ level: 'silent' }) });
    const t0 = Date.now() - 30_000;
    const payloads = Array.from({ length: IN_PROCESS_BATCHES / DEVICES }, (_, k) => encodeMetricsBatch(fullBatch(t0 + k * 10, k + 1)));
    const start = performance.now();
    for (const p of payloads) for (let d = 0; d < DEVICES; d++) metrics.ingest.accept(`node-${d}`, p);
    metrics.ingest.flush();
    const seconds = (performance.now() - start) / 1000;
    const samples = metrics.ingest.samplesIngested;
    return { samples, samplesPerSecond: samples / seconds };
  } finally {
    db.close();
  }
}

/** The same rows, the same table, one transaction, 16 rows a statement as the ingest writes them: nothing else. */
function sqliteFloor(file: string, rows: number): number {
  const db = openHubDatabase(file);
  try {
    const partitions = new Partitions(db);
    const insert = partitions.rawWriter(partitions.ensure('raw', Date.now()), 16);
    const t0 = Date.now();
    const series = DEVICES * samplesIn(fullBatch(0, 0));
    const args = new Array<number>(48);
    const start = performance.now();
    db.transaction(() => {
      for (let i = 0; i + 16 <= rows; i += 16) {
        for (let k = 0; k < 16; k++) {
          args[k * 3] = ((i + k) % series) + 1;
          args[k * 3 + 1] = t0 + Math.floor((i + k) / series) * 10;
          args[k * 3 + 2] = i + k;
        }
        insert.run(args);
      }
    })();
    return (rows - (rows % 16)) / ((performance.now() - start) / 1000);
  } finally {
    db.close();
  }
}
