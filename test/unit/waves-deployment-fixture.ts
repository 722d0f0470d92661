/**
 * A Waves rollout of a Deployment on an in-memory hub store: the Deployment, ReplicaSet and
 * rollout controllers, the system clock faked (the store stamps pods with it), and pods the test
 * binds and reports as the scheduler and agents would.
 */
import { vi } from 'vitest';
import { DeploymentController } from '../../hub/controllers/deployment.js';
import { ReplicaSetController } from '../../hub/controllers/replicaset.js';
import { DeploymentWavesController } from '../../hub/controllers/waves/deployment.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import type { DeploymentSpec, ReplicaSetSpec } from '../../shared/resources/deployment.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { RolloutStatus } from '../../shared/resources/rollout.js';
import { createNode, eventsAbout, testHub, type TestHub } from './builders.js';

export const KEY = 'default/web';
export const START = Date.parse('2025-01-01T12:00:00Z');
export const V1 = 'registry.example/web:1';
export const V2 = 'registry.example/web:2';
export const BAD = 'registry.example/web:broken';
const NODES = ['edge-1', 'edge-2'];

export interface Rig {
  hub: TestHub;
  waves: DeploymentWavesController;
  deployments: DeploymentController;
  replicaSets: ReplicaSetController;
  /** Images whose containers crash-loop. */
  broken: Set<string>;
  /** Images whose pods are never reported (an agent that hangs on them). */
  silent: Set<string>;
  /** Every pod name ever seen, by image. */
  seen: Map<string, Set<string>>;
}

export function rig(): Rig {
  vi.useFakeTimers({ now: START, toFake: ['Date'] });
  const hub = testHub();
  for (const name of NODES) createNode(hub.store, { name });
  const r: Rig = { hub, broken: new Set(), silent: new Set(), seen: new Map(), waves: undefined as unknown as DeploymentWavesController, deployments: undefined as unknown as DeploymentController, replicaSets: undefined as unknown as ReplicaSetController };
  build(r);
  return r;
}

/** (Re)builds the controllers on the rig's store, as a restarted hub does. */
export function build(r: Rig): void {
  const ctx = { store: r.hub.store, events: r.hub.events, log: r.hub.log };
  r.waves = new DeploymentWavesController(ctx, { minIntervalMs: 0 });
  r.deployments = new DeploymentController(ctx, { wavesScale: r.waves.wavesScale });
  r.replicaSets = new ReplicaSetController(ctx);
}

export function close(r: Rig): void {
  r.waves.stop();
  r.deployments.stop();
  r.replicaSets.stop();
  r.hub.db.close();
  vi.useRealTimers();
}

export function applyWeb(r: Rig, image: string, strategy: Record<string, unknown>, replicas = 4): void {
  const spec: DeploymentSpec = {
    replicas,
    selector: { matchLabels: { app: 'web' } },
    template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image }] } },
    strategy: { type: 'Waves', ...strategy } as DeploymentSpec['strategy'],
  };
  const existing = r.hub.store.get('Deployment', 'default', 'web');
  if (existing) r.hub.store.update({ ...existing, spec });
  else r.hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' }, spec } as NewObject);
}

export function pods(r: Rig): StoredObject[] {
  return r.hub.store.list('Pod', { namespace: 'default' }).items.filter((p) => !p.metadata.deletionTimestamp);
}

export const imageOf = (p: StoredObject) => (p.spec as PodSpec).containers[0]!.image;

/** Image → how many pods run it now. */
export function census(r: Rig): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of pods(r)) out[imageOf(p)] = (out[imageOf(p)] ?? 0) + 1;
  return out;
}

/** ReplicaSet image → spec.replicas. */
export function sizes(r: Rig): Record<string, number> {
  const out: Record<string, number> = {};
  for (const rs of r.hub.store.list('ReplicaSet', { namespace: 'default' }).items) {
    const spec = rs.spec as ReplicaSetSpec;
    out[spec.template.spec.containers[0]!.image] = spec.replicas ?? 1;
  }
  return out;
}

/** Binds every pod to a node and reports it as an agent would: Ready, or crash-looping on a broken image. */
export function report(r: Rig): void {
  pods(r).forEach((pod, i) => {
    const image = imageOf(pod);
    let seen = r.seen.get(image);
    if (!seen) r.seen.set(image, (seen = new Set()));
    seen.add(pod.metadata.name);
    let current = pod;
    if (!(pod.spec as PodSpec).nodeName) current = r.hub.store.update({ ...pod, spec: { ...(pod.spec as PodSpec), nodeName: NODES[i % NODES.length] } });
    if (r.silent.has(image)) return;
    const prev = current.status as PodStatus | undefined;
    const crash = r.broken.has(image);
    const before = prev?.conditions?.find((c) => c.type === 'Ready');
    const since = before && (before.status === 'True') === !crash ? before.lastTransitionTime! : new Date().toISOString();
    const status: PodStatus = {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: crash ? 'False' : 'True', lastTransitionTime: since }],
      containerStatuses: [{ name: 'web', image, ready: !crash, restartCount: crash ? 3 : 0, state: crash ? { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s' } } : { running: { startedAt: since } } }],
    };
    if (JSON.stringify(prev) !== JSON.stringify(status)) r.hub.store.updateStatus('Pod', 'default', pod.metadata.name, status);
  });
}

/** The Deployment and ReplicaSet controllers until nothing changes, as their watches would run them. */
function settle(r: Rig): void {
  for (let i = 0; i < 50; i++) {
    const before = r.hub.store.currentResourceVersion();
    r.deployments.reconcile(KEY);
    for (const rs of r.hub.store.list('ReplicaSet').items) r.replicaSets.reconcile(`default/${rs.metadata.name}`);
    if (r.hub.store.currentResourceVersion() === before) return;
  }
  throw new Error('the controllers did not settle');
}

/** One round: the rollout decides, the ReplicaSets follow, pods report, the rollout looks again. */
export function step(r: Rig): void {
  r.waves.reconcile(KEY);
  settle(r);
  report(r);
  r.waves.reconcile(KEY);
  settle(r);
}

/** Moves the clock by `seconds`, a round at a time (every `every` seconds), calling `check` after each. */
export function advanceBy(r: Rig, seconds: number, every = 5, check: () => void = () => {}): void {
  for (let t = 0; t < seconds; t += every) {
    vi.setSystemTime(Date.now() + every * 1000);
    step(r);
    check();
  }
}

export function record(r: Rig, revision: number): StoredObject {
  const rec = r.hub.store.get('Rollout', 'default', `deployment.web.${revision}`);
  if (!rec) throw new Error(`no record deployment.web.${revision}`);
  return rec;
}

export function statusOf(r: Rig, revision: number): RolloutStatus {
  return record(r, revision).status as RolloutStatus;
}

export function reasons(r: Rig): string[] {
  return eventsAbout(r.hub.store, 'Deployment', 'web').map((e) => e.split(':')[0]!.split(' ')[1]!);
}
