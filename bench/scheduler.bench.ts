import { afterAll, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { EventRecorder } from '../hub/events/recorder.js';
import { Scheduler } from '../hub/scheduler/scheduler.js';
import type { Database } from '../hub/store/db.js';
import { ObjectStore } from '../hub/store/objects.js';
import { openHubDatabase } from '../hub/store/schema.js';
import type { NewObject } from '../hub/store/types.js';
import type { PodSpec } from '../shared/resources/pod.js';
import { HOSTNAME_LABEL } from '../shared/resources/scheduling.js';
import { median, round, writeResult } from './results.js';

// The scheduler at fleet scale (docs/ARCHITECTURE.md, 'Performance targets': ≥ 2,000 pods/s with 10,000 nodes, aim
// ≥ 10,000): Node objects made directly in an ObjectStore on a temporary SQLite file, then pods
// with requests and a mix of placement rules, timed from their creation until every one has its
// node. The floor, measured in the same run, makes the same pods and writes the same number of
// bare bindings (nodeName set, round robin, nothing chosen), so the ratio is what scheduling adds.

const NODES = Number(process.env.FLOTILLA_BENCH_NODES ?? 10_000);
const PODS = Number(process.env.FLOTILLA_BENCH_PODS ?? 10_000);
const RUNS = Number(process.env.FLOTILLA_BENCH_RUNS ?? 3);
/** Pods created per store transaction (as an API burst or a controller's batch would). */
const CREATE_BATCH = 1_000;
const ANTI_AFFINITY_APPS = 200;
const log = pino({ level: 'silent' });
const dirs: string[] = [];

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Fleet {
  db: Database;
  store: ObjectStore;
}

function fleet(): Fleet {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-sched-bench-'));
  dirs.push(dir);
  const db = openHubDatabase(join(dir, 'flotilla.db'));
  const store = new ObjectStore(db, { onWatchError: (err) => log.error({ err }) });
  store.transaction(() => {
    for (let i = 0; i < NODES; i++) {
      const name = `edge-${String(i).padStart(5, '0')}`;
      store.create({
        apiVersion: 'flotilla/v1',
        kind: 'Node',
        metadata: { name, labels: { [HOSTNAME_LABEL]: name, zone: `zone-${i % 10}`, site: `site-${i % 100}`, arch: i % 4 === 0 ? 'amd64' : 'arm64' } },
        spec: {},
        status: { conditions: [{ type: 'Ready', status: 'True' }], allocatable: { cpu: '4', memory: '8Gi', pods: '110' }, capacity: { cpu: '4', memory: '8Gi', pods: '110' } },
      });
    }
  });
  return { db, store };
}

/**
 * The mix: half plain pods with requests; a fifth pinned to a zone by nodeSelector; a fifth
 * replicas of 200 apps with required anti-affinity on the hostname (one per device); a tenth
 * binpacked with a preferred anti-affinity on the site.
 */
function pod(i: number): NewObject {
  const requests = { cpu: '100m', memory: '128Mi' };
  const containers = [{ name: 'app', image: 'registry.example/app:1', resources: { requests } }];
  const kind = i % 10;
  let labels: Record<string, string> = { app: 'plain' };
  let spec: PodSpec = { containers };
  if (kind === 5 || kind === 6) {
    spec = { containers, nodeSelector: { zone: `zone-${i % 10}`, arch: 'arm64' } };
  } else if (kind === 7 || kind === 8) {
    const app = `replicated-${i % ANTI_AFFINITY_APPS}`;
    labels = { app };
    spec = { containers, affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app } }, topologyKey: HOSTNAME_LABEL }] } } };
  } else if (kind === 9) {
    const app = `packed-${i % 20}`;
    labels = { app };
    spec = {
      containers,
      schedulingStrategy: 'binpack',
      affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 10, podAffinityTerm: { labelSelector: { matchLabels: { app } }, topologyKey: 'site' } }] } },
    };
  }
  return { apiVersion: 'flotilla/v1', kind: 'Pod', metadata: { name: `pod-${i}`, namespace: 'default', labels }, spec };
}

const turn = () => new Promise<void>((r) => setImmediate(r));

/** Creates every pod, CREATE_BATCH to a transaction, yielding to the event loop between. */
async function createPods(store: ObjectStore, each?: (i: number) => void): Promise<void> {
  for (let start = 0; start < PODS; start += CREATE_BATCH) {
    store.transaction(() => {
      for (let i = start; i < Math.min(PODS, start + CREATE_BATCH); i++) {
        store.create(pod(i));
        each?.(i);
      }
    });
    await turn();
  }
}

/** Resolves once `n` pods have been bound (as seen through a watch). */
function boundWatch(store: ObjectStore, n: number): Promise<void> {
  let bound = 0;
  return new Promise((resolve) => {
    const stop = store.watch({ kind: 'Pod' }, (e) => {
      if (e.type === 'MODIFIED' && (e.object.spec as PodSpec).nodeName && ++bound === n) {
        stop();
        resolve();
      }
    });
  });
}

/** Every pod bound, within its node's allocatable, on a node its rules allow. */
function checkPlacements(store: ObjectStore): void {
  const nodes = new Map(store.list('Node').items.map((n) => [n.metadata.name, n.metadata.labels ?? {}]));
  const perNode = new Map<string, { pods: number; cpu: number }>();
  const replicaNodes = new Map<string, Set<string>>();
  for (const p of store.list('Pod').items) {
    const spec = p.spec as PodSpec;
    const node = spec.nodeName!;
    expect(node, p.metadata.name).toBeDefined();
    for (const [k, v] of Object.entries(spec.nodeSelector ?? {})) expect(nodes.get(node)?.[k]).toBe(v);
    const app = p.metadata.labels?.app ?? '';
    if (app.startsWith('replicated-')) {
      const seen = replicaNodes.get(app) ?? new Set();
      expect(seen.has(node), `${app} twice on ${node}`).toBe(false);
      replicaNodes.set(app, seen.add(node));
    }
    const used = perNode.get(node) ?? { pods: 0, cpu: 0 };
    perNode.set(node, { pods: used.pods + 1, cpu: used.cpu + 100 });
  }
  for (const used of perNode.values()) expect(used.pods <= 110 && used.cpu <= 4000).toBe(true);
}

async function scheduledRun(): Promise<{ endToEndSeconds: number; createOnlySeconds: number; eventsPerPod: number }> {
  const { db, store } = fleet();
  const scheduler = new Scheduler(store, new EventRecorder(store, 'bench', log), log);
  scheduler.start();
  const done = boundWatch(store, PODS);
  const started = performance.now();
  await createPods(store);
  const created = performance.now();
  await done;
  const finished = performance.now();
  await scheduler.idle();
  const events = store.list('Event').items.length;
  checkPlacements(store);
  scheduler.stop();
  db.close();
  return { endToEndSeconds: (finished - started) / 1000, createOnlySeconds: (created - started) / 1000, eventsPerPod: events / PODS };
}

/** Pods that exist already; a scheduler starts and binds them all (its initial list included). */
async function backlogRun(): Promise<number> {
  const { db, store } = fleet();
  await createPods(store);
  const scheduler = new Scheduler(store, new EventRecorder(store, 'bench', log), log);
  const done = boundWatch(store, PODS);
  const started = performance.now();
  scheduler.start();
  await done;
  const seconds = (performance.now() - started) / 1000;
  scheduler.stop();
  db.close();
  return seconds;
}

/** The floor: the same creations, and a bare binding written for each pod in the same transactions. */
async function floorRun(withEvents: boolean): Promise<number> {
  const { db, store } = fleet();
  const events = new EventRecorder(store, 'bench', log);
  const names = store.list('Node').items.map((n) => n.metadata.name);
  const done = boundWatch(store, PODS);
  const started = performance.now();
  await createPods(store, (i) => {
    const nodeName = names[i % names.length]!;
    const bound = store.mutate('Pod', 'default', `pod-${i}`, (cur) => ({ ...cur, spec: { ...(cur.spec as PodSpec), nodeName } }));
    if (withEvents && bound) events.normal(bound, 'Scheduled', `Successfully assigned default/pod-${i} to ${nodeName}`);
  });
  await done;
  const seconds = (performance.now() - started) / 1000;
  db.close();
  return seconds;
}

it(`binds ${PODS} pods over ${NODES} nodes`, async () => {
  const runs: Awaited<ReturnType<typeof scheduledRun>>[] = [];
  const backlog: number[] = [];
  const floor: number[] = [];
  const floorWithEvents: number[] = [];
  // Interleaved, so that other load on the machine weighs on all of them alike.
  for (let r = 0; r < RUNS; r++) {
    floor.push(await floorRun(false));
    runs.push(await scheduledRun());
    floorWithEvents.push(await floorRun(true));
    backlog.push(await backlogRun());
  }
  const endToEnd = median(runs.map((r) => r.endToEndSeconds));
  const podsPerSecond = PODS / endToEnd;
  const floorSeconds = median(floor);
  const result = {
    benchmark: 'scheduler',
    parameters: {
      nodes: NODES,
      pods: PODS,
      runs: RUNS,
      createBatch: CREATE_BATCH,
      mix: '50% plain (100m, 128Mi), 20% nodeSelector zone+arch, 20% required anti-affinity on kubernetes.io/hostname (200 apps), 10% binpack with preferred anti-affinity on site',
      node: 'Ready, allocatable cpu 4, memory 8Gi, pods 110; labels hostname, zone (10), site (100), arch',
      store: 'ObjectStore on a temporary SQLite file (WAL, synchronous NORMAL)',
      writesPerPod: 'scheduled: create + bind (nodeName and PodScheduled) + Scheduled event; floor: create + bare bind',
    },
    figures: {
      podsPerSecondEndToEnd: round(podsPerSecond),
      endToEndSeconds: round(endToEnd, 3),
      endToEndRunsSeconds: runs.map((r) => round(r.endToEndSeconds, 3)),
      creationSecondsWithinEndToEnd: round(median(runs.map((r) => r.createOnlySeconds)), 3),
      backlogPodsPerSecond: round(PODS / median(backlog)),
      backlogRunsSeconds: backlog.map((s) => round(s, 3)),
      eventsPerPod: round(median(runs.map((r) => r.eventsPerPod)), 2),
    },
    floor: {
      bareBindingsSeconds: round(floorSeconds, 3),
      bareBindingsPodsPerSecond: round(PODS / floorSeconds),
      bareBindingsRunsSeconds: floor.map((s) => round(s, 3)),
      bareBindingsWithEventSeconds: round(median(floorWithEvents), 3),
    },
    ratios: {
      endToEndOverBareBindings: round(endToEnd / floorSeconds, 2),
      endToEndOverBindingsWithEvents: round(endToEnd / median(floorWithEvents), 2),
    },
    targets: {
      scheduler: { what: 'scheduler, 10,000 nodes', measured: round(podsPerSecond), unit: 'pods/s', must: 2_000, aim: 10_000, better: 'higher' as const },
    },
  };
  const file = writeResult(result);
  console.log(file, JSON.stringify(result.figures), JSON.stringify(result.floor), JSON.stringify(result.ratios));
  expect(runs.every((r) => r.eventsPerPod >= 1)).toBe(true);
});
