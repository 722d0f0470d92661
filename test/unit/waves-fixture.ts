/**
 * A Waves rollout on an in-memory hub store: the DaemonSet and rollout controllers, a clock the
 * test moves, and devices whose pod reports the test writes (as agents would).
 */
import { DaemonSetController } from '../../hub/controllers/daemonset.js';
import { REVISION_HASH_LABEL } from '../../hub/controllers/daemonset-index.js';
import { WavesController } from '../../hub/controllers/waves/controller.js';
import type { StoredObject } from '../../hub/store/types.js';
import type { RolloutStatus } from '../../shared/resources/rollout.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import { UPDATE_LOCKED_CONDITION } from '../../shared/protocol/update-lock.js';
import { container, createNode, daemonSetObject, eventsAbout, testHub, type TestHub } from './builders.js';

export const KEY = 'default/reader';
export const START = Date.parse('2025-01-01T12:00:00Z');
export const GOOD = 'registry.example/reader:1';
export const NEXT = 'registry.example/reader:2';
export const BAD = 'registry.example/reader:broken';

export interface Fleet {
  hub: TestHub;
  waves: WavesController;
  ds: DaemonSetController;
  now: number;
  /** Images whose containers crash-loop. */
  broken: Set<string>;
  /** Nodes whose agent does not report (hung, or its device is away). */
  silent: Set<string>;
}

export function fleet(nodes: { name: string; labels?: Record<string, string>; ready?: boolean }[]): Fleet {
  const hub = testHub();
  for (const n of nodes) createNode(hub.store, { name: n.name, labels: { fleet: 'sensors', ...(n.labels ?? {}) }, ready: n.ready ?? true });
  const f: Fleet = { hub, now: START, broken: new Set(), silent: new Set(), waves: undefined as unknown as WavesController, ds: undefined as unknown as DaemonSetController };
  build(f);
  return f;
}

/** (Re)builds the controllers on the fleet's store, as a restarted hub does. */
export function build(f: Fleet): void {
  f.waves = new WavesController({ store: f.hub.store, events: f.hub.events, log: f.hub.log }, { now: () => f.now, minIntervalMs: 0 });
  f.ds = new DaemonSetController(f.hub.store, f.hub.events, f.hub.log, f.waves.revisionsFor);
}

export function close(f: Fleet): void {
  f.waves.stop();
  f.ds.stop();
  f.hub.db.close();
}

export function applyReader(f: Fleet, image: string, strategy: Record<string, unknown>, annotations?: Record<string, string>): void {
  const obj = daemonSetObject({ name: 'reader', nodeSelector: { fleet: 'sensors' }, containers: [container({ name: 'app', image })] });
  const spec = { ...(obj.spec as object), updateStrategy: { type: 'Waves', ...strategy } };
  const existing = f.hub.store.get('DaemonSet', 'default', 'reader');
  if (existing) f.hub.store.update({ ...existing, metadata: { ...existing.metadata, ...(annotations ? { annotations } : {}) }, spec });
  else f.hub.store.create({ ...obj, metadata: { ...obj.metadata, ...(annotations ? { annotations } : {}) }, spec });
}

export function pods(f: Fleet): StoredObject[] {
  return f.hub.store.list('Pod', { namespace: 'default' }).items;
}

export function podOf(f: Fleet, node: string): StoredObject | undefined {
  return pods(f).find((p) => (p.spec as PodSpec).nodeName === node);
}

export function imageOn(f: Fleet, node: string): string | undefined {
  return (podOf(f, node)?.spec as PodSpec | undefined)?.containers[0]?.image;
}

/** Node → image of its pod. */
export function images(f: Fleet): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pods(f)) out[(p.spec as PodSpec).nodeName!] = (p.spec as PodSpec).containers[0]!.image;
  return out;
}

export function hashOn(f: Fleet, node: string): string | undefined {
  return podOf(f, node)?.metadata.labels?.[REVISION_HASH_LABEL];
}

/** Each device reports its pod as an agent would once it runs the pod's spec: Ready, or crash-looping on a broken image. */
export function report(f: Fleet): void {
  for (const pod of pods(f)) {
    const spec = pod.spec as PodSpec;
    if (f.silent.has(spec.nodeName!)) continue;
    const prev = pod.status as PodStatus | undefined;
    const image = spec.containers[0]!.image;
    const crash = f.broken.has(image);
    const ready = !crash;
    const before = prev?.conditions?.find((c) => c.type === 'Ready');
    const since = before && (before.status === 'True') === ready && prev?.containerStatuses?.[0]?.image === image ? before.lastTransitionTime : new Date(f.now).toISOString();
    const locks = (prev?.conditions ?? []).filter((c) => c.type === UPDATE_LOCKED_CONDITION);
    const status: PodStatus = {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: since! }, ...locks],
      containerStatuses: [{ name: 'app', image, ready, restartCount: crash ? 3 : 0, state: crash ? { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s' } } : { running: { startedAt: since! } } }],
    };
    f.hub.store.updateStatus('Pod', 'default', pod.metadata.name, status);
  }
}

/** One round: the rollout decides, the DaemonSet controller writes pods, devices report. */
export function step(f: Fleet): void {
  f.waves.reconcile(KEY);
  f.ds.reconcile(KEY);
  report(f);
  f.waves.reconcile(KEY);
}

/** Moves the clock by `seconds`, a round at a time (every `every` seconds). */
export function advanceBy(f: Fleet, seconds: number, every = 5): void {
  for (let t = 0; t < seconds; t += every) {
    f.now += every * 1000;
    step(f);
  }
}

export function record(f: Fleet, revision: number): StoredObject {
  const r = f.hub.store.get('Rollout', 'default', `reader-${revision}`);
  if (!r) throw new Error(`no record reader-${revision}`);
  return r;
}

export function statusOf(f: Fleet, revision: number): RolloutStatus {
  return record(f, revision).status as RolloutStatus;
}

export function reasons(f: Fleet): string[] {
  return eventsAbout(f.hub.store, 'DaemonSet', 'reader').map((e) => e.split(':')[0]!.split(' ')[1]!);
}
