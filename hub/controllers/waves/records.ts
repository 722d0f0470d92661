import type { DaemonSetSpec, PodTemplate } from '../../../shared/resources/daemonset.js';
import { ROLLOUT_KIND, type RolloutPhase, type RolloutSpec, type RolloutStatus, type WaveStatus } from '../../../shared/resources/rollout.js';
import type { PlannedWave } from '../../../shared/rollout/plan.js';
import { WAVES, wavesStrategy, type WavesStrategy } from '../../../shared/resources/waves.js';
import type { NewObject, StoredObject } from '../../store/types.js';

/** The label that ties a Rollout record to its DaemonSet (records are listed by it). */
export const ROLLOUT_DAEMONSET_LABEL = 'flotilla.io/daemonset';
/** Kubernetes' annotation for why a revision was made; copied into the record. */
export const CHANGE_CAUSE_ANNOTATION = 'kubernetes.io/change-cause';
/** Who applied the revision, when a client says so (e.g. `rollout undo`); the API's principal otherwise. */
export const STARTED_BY_ANNOTATION = 'flotilla.io/rollout-started-by';
/** The API has one principal, the admin token's holder. */
export const DEFAULT_PRINCIPAL = 'admin';

/** A phase after which the record no longer changes. */
export function isFinished(phase: RolloutPhase): boolean {
  return phase === 'Succeeded' || phase === 'RolledBack' || phase === 'Aborted' || phase === 'Superseded';
}

/** Still moving devices, or stopped but resumable. */
export function isActive(phase: RolloutPhase): boolean {
  return phase === 'Progressing' || phase === 'Paused';
}

/** The Waves strategy of a DaemonSet, with its defaults; undefined for another type. */
export function wavesStrategyOf(spec: DaemonSetSpec): WavesStrategy | undefined {
  const s = spec.updateStrategy;
  if (s?.type !== WAVES) return undefined;
  return wavesStrategy(s);
}

export function rolloutName(daemonSet: string, revision: number): string {
  return `${daemonSet}-${revision}`;
}

export function specOf(record: StoredObject): RolloutSpec {
  return record.spec as RolloutSpec;
}

/** The status of a rollout ended by abort or a newer revision: the wave it stopped in says so. */
export function endedStatus(record: StoredObject, phase: 'Superseded' | 'Aborted', message: string, now: number): RolloutStatus {
  const before = statusOf(record);
  const waves = before.waves.map((w) => (w.phase === 'Progressing' || w.phase === 'Paused' ? { ...w, phase: 'Stopped' as const } : w));
  const status: RolloutStatus = { ...before, waves, phase, message, finishedAt: new Date(now).toISOString() };
  delete status.pauseUntil;
  return status;
}

export function statusOf(record: StoredObject): RolloutStatus {
  return record.status as RolloutStatus;
}

export interface NewRollout {
  ds: StoredObject;
  revision: number;
  from?: { revision: number; hash: string; template: PodTemplate };
  to: { hash: string; template: PodTemplate };
  strategy: WavesStrategy;
  /** Planned waves; none for the first revision (it goes to every target at once). */
  waves: PlannedWave[];
  now: number;
}

function waveStatus(w: PlannedWave, started: boolean, now: string): WaveStatus {
  return {
    name: w.name,
    phase: started ? 'Progressing' : 'Pending',
    ...(started ? { startedAt: now } : {}),
    total: w.nodes.length,
    released: 0,
    updated: 0,
    ready: 0,
    failed: 0,
    waiting: w.nodes.length,
    skipped: 0,
  };
}

/** What a rollout of `target` (a DaemonSet or a Deployment) is, decided when it starts: who, from what, to what, in which waves. */
export function rolloutSpecFor(kind: RolloutSpec['target']['kind'], target: StoredObject, r: Pick<NewRollout, 'revision' | 'from' | 'to' | 'strategy' | 'waves'>): RolloutSpec {
  const annotations = target.metadata.annotations ?? {};
  const changeCause = annotations[CHANGE_CAUSE_ANNOTATION];
  return {
    target: { kind, name: target.metadata.name, uid: target.metadata.uid },
    revision: r.revision,
    fromRevision: r.from?.revision ?? 0,
    ...(r.from ? { fromHash: r.from.hash, fromTemplate: r.from.template } : {}),
    toHash: r.to.hash,
    toTemplate: r.to.template,
    strategy: r.strategy,
    waves: r.waves,
    startedBy: annotations[STARTED_BY_ANNOTATION] ?? DEFAULT_PRINCIPAL,
    ...(changeCause !== undefined ? { changeCause } : {}),
  };
}

/**
 * The record of a new rollout, written once when it starts. Without a previous revision it is
 * the DaemonSet's first template: nothing to roll from, so it is recorded as Succeeded at once.
 */
export function newRolloutRecord(r: NewRollout): NewObject {
  const now = new Date(r.now).toISOString();
  const spec = rolloutSpecFor('DaemonSet', r.ds, r);
  const first = !r.from;
  const status: RolloutStatus = first
    ? { phase: 'Succeeded', wave: 0, waves: [], failedNodes: [], startedAt: now, finishedAt: now, message: 'first revision: every target at once' }
    : { phase: 'Progressing', wave: 0, waves: r.waves.map((w, i) => waveStatus(w, i === 0, now)), failedNodes: [], startedAt: now };
  return {
    apiVersion: 'flotilla/v1',
    kind: ROLLOUT_KIND,
    metadata: {
      name: rolloutName(r.ds.metadata.name, r.revision),
      namespace: r.ds.metadata.namespace ?? 'default',
      labels: { [ROLLOUT_DAEMONSET_LABEL]: r.ds.metadata.name },
      ownerReferences: [{ apiVersion: 'flotilla/v1', kind: 'DaemonSet', name: r.ds.metadata.name, uid: r.ds.metadata.uid, controller: true }],
    },
    spec,
    status,
  };
}

/**
 * What the devices run before a new rollout of `previous`'s DaemonSet starts, as its `from`:
 * after a success, the revision it rolled out; otherwise (rolled back, aborted, superseded or
 * still running) the revision it rolled from, which most devices still run. A device already on
 * a newer revision keeps it until its wave of the new rollout.
 */
export function fromOf(previous: StoredObject): { revision: number; hash: string; template: PodTemplate } {
  const spec = specOf(previous);
  const status = statusOf(previous);
  if (status.phase === 'Succeeded' || !spec.fromTemplate || spec.fromHash === undefined) return { revision: spec.revision, hash: spec.toHash, template: spec.toTemplate };
  return { revision: spec.fromRevision, hash: spec.fromHash, template: spec.fromTemplate };
}
