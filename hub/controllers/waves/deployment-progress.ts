import type { RolloutStatus, WaveStatus } from '../../../shared/resources/rollout.js';
import type { WavesStrategy } from '../../../shared/resources/waves.js';
import type { StoredObject } from '../../store/types.js';
import { assessDevice, toleratedFailures, waveVerdict, type DeviceAssessment, type GateContext, type WaveDevice } from './gate.js';
import { resumeRollout, startWave } from './progress.js';
import { isFinished, specOf, statusOf } from './records.js';
import { waveUnavailable } from './release.js';
import { podFacts, type WaveNode } from './view.js';

/**
 * One step of a Deployment's Waves rollout (docs/ARCHITECTURE.md, 'Waves rollouts'). A Deployment's pods are placed
 * by the scheduler, so its waves count pods: releasing a pod means the new ReplicaSet grows by
 * one (and an old one shrinks by one, hub/controllers/deployment-sync.ts). How many pods each
 * wave has released is kept in the record (status.waves[i].released), so a restarted hub knows;
 * the pods of wave i are the new ReplicaSet's pods in the order they were created, after those
 * of the earlier waves. Failed pods are recorded by pod name in failedNodes.
 */

/** What the controller keeps in memory about a running rollout (only the rate limit's recent releases). */
export interface DeploymentRuntime {
  record: string;
  /** Release times (ms) of pods released by this hub. */
  releases: number[];
}

export interface DeploymentProgressContext {
  record: StoredObject;
  /** The Deployment's replicas now. */
  replicas: number;
  /** The active pods of the new ReplicaSet, in the order they were created. */
  newPods: StoredObject[];
  /** Pods of the new ReplicaSet not being deleted, plus the replicas it is asked for: 0 ends a rollback. */
  newRemaining: number;
  nodes: ReadonlyMap<string, WaveNode>;
  runtime: DeploymentRuntime;
  now: number;
  note: (type: 'Normal' | 'Warning', reason: string, message: string) => void;
  overrideLock: (pod: { namespace: string; name: string }, lockTime: string) => void;
}

export interface DeploymentProgressResult {
  status: RolloutStatus;
  nextAt?: number;
}

const iso = (ms: number) => new Date(ms).toISOString();
const ms = (text: string | undefined) => (text === undefined ? 0 : Date.parse(text) || 0);
const MINUTE_MS = 60_000;

/** The pods each wave moves with the Deployment's replicas now: as planned, the last wave taking what the others leave. */
export function waveSizes(planned: readonly { replicas?: number }[], replicas: number): number[] {
  let offset = 0;
  return planned.map((w, i) => {
    const size = i === planned.length - 1 ? Math.max(0, replicas - offset) : Math.min(w.replicas ?? 0, Math.max(0, replicas - offset));
    offset += size;
    return size;
  });
}

/** Pods released by the rollout so far: the size the new ReplicaSet is asked for. */
export function releasedPods(status: RolloutStatus): number {
  return status.waves.reduce((n, w) => n + w.released, 0);
}

const placeholder = (released: boolean): DeviceAssessment => ({ state: released ? 'updating' : 'pending', released, updated: false, podReady: false, lockedNow: false });

export function advanceDeployment(ctx: DeploymentProgressContext): DeploymentProgressResult {
  const { record, now, note } = ctx;
  const spec = specOf(record);
  const status = structuredClone(statusOf(record));
  if (isFinished(status.phase)) return { status };
  if (status.phase === 'RollingBack') {
    if (ctx.newRemaining > 0) return { status, nextAt: now + 5_000 };
    status.phase = 'RolledBack';
    status.finishedAt = iso(now);
    status.message = `rolled back: every pod is back on revision ${spec.fromRevision}`;
    note('Warning', 'RolloutRolledBack', status.message);
    return { status };
  }
  const strategy = spec.strategy;
  const sizes = waveSizes(spec.waves, ctx.replicas);
  const toImages: Record<string, string> = {};
  for (const c of spec.toTemplate.spec.containers) toImages[c.name] = c.image;
  const failed = new Set(status.failedNodes.map((f) => f.node));
  let offset = 0;
  const devices: WaveDevice[][] = sizes.map((size, i) => {
    const ws = status.waves[i]!;
    const gate: GateContext = { toHash: spec.toHash, toImages, strategy, now, waveBase: Math.max(ms(ws.startedAt), ms(ws.resumedAt)) };
    const pods = ctx.newPods.slice(offset, offset + Math.min(ws.released, size));
    offset += Math.min(ws.released, size);
    const wave: WaveDevice[] = pods.map((pod) => {
      const facts = { ...podFacts(pod, { uid: '' }), hash: spec.toHash, releasedAt: pod.metadata.creationTimestamp };
      const nodeInfo = facts.node ? ctx.nodes.get(facts.node) : { uid: '', labels: {}, ready: true };
      const a = assessDevice({ node: pod.metadata.name, nodeInfo, pod: facts, recordedFailure: failed.has(pod.metadata.name), recordedSkip: false }, gate);
      return { node: pod.metadata.name, a };
    });
    for (let k = wave.length; k < size; k++) wave.push({ node: `${ws.name}#${k + 1}`, a: placeholder(k < ws.released) });
    return wave;
  });

  let nextAt: number | undefined = status.pauseUntil !== undefined ? ms(status.pauseUntil) : undefined;
  const soonest = (t: number | undefined) => {
    if (t !== undefined && (nextAt === undefined || t < nextAt)) nextAt = t;
  };
  const current = status.wave;
  const waveBase = (i: number) => {
    const ws = status.waves[i]!;
    let base = Math.max(ms(ws.startedAt), ms(ws.resumedAt));
    for (const d of devices[i]!) if (d.a.releasedAt !== undefined && d.a.releasedAt > base) base = d.a.releasedAt;
    return base;
  };

  for (let i = 0; i <= current && i < devices.length; i++) {
    const waveName = status.waves[i]!.name;
    for (const { node, a } of devices[i]!) {
      if (a.failure && !failed.has(node)) {
        failed.add(node);
        status.failedNodes.push({ node, wave: waveName, reason: a.failure.reason, message: a.failure.message, at: iso(now) });
        note('Warning', 'PodUpdateFailed', `pod ${node} (wave ${waveName}): ${a.failure.reason}: ${a.failure.message}`);
      }
      if (a.overrideLock !== undefined) {
        ctx.overrideLock({ namespace: record.metadata.namespace ?? 'default', name: node }, a.overrideLock);
        note('Warning', 'UpdateLockOverridden', `pod ${node}: update lock held since ${a.overrideLock}, longer than ${strategy.updateLockMaxAgeSeconds}s; overridden`);
      }
      if (status.phase === 'Progressing' || i < current) soonest(a.nextAt);
    }
  }

  if (status.phase === 'Paused' && status.pauseUntil !== undefined && now >= ms(status.pauseUntil)) {
    const what = resumeRollout(status, now);
    note('Normal', 'RolloutResumed', `the pause ended; ${what}`);
    if (status.wave !== current) note('Normal', 'WaveStarted', `wave ${status.waves[status.wave]!.name} started: ${sizes[status.wave]} pod(s)`);
    soonest(now);
  } else if (status.phase === 'Progressing') {
    const ws = status.waves[current]!;
    const failures = status.failedNodes.length - (status.acceptedFailures ?? 0);
    const verdict = waveVerdict(devices[current]!, failures, toleratedFailures(strategy, releasedPods(status)), strategy, now, waveBase(current));
    if (verdict.kind === 'passed') {
      ws.phase = 'Passed';
      ws.finishedAt = iso(now);
      note('Normal', 'WaveGatePassed', `wave ${ws.name} passed its health gate: ${devices[current]!.filter((d) => d.a.state === 'ready').length}/${sizes[current]} pod(s) Ready`);
      const pause = spec.waves[current]!.pause;
      if (current + 1 >= status.waves.length) {
        status.phase = 'Succeeded';
        status.finishedAt = iso(now);
        note('Normal', 'RolloutSucceeded', `revision ${spec.revision} rolled out to every wave`);
      } else if (pause !== undefined) {
        status.phase = 'Paused';
        if (pause === 'resume') status.message = `paused after wave ${ws.name} until resumed`;
        else {
          status.pauseUntil = iso(now + pause * 1000);
          status.message = `paused for ${pause}s after wave ${ws.name}`;
          soonest(ms(status.pauseUntil));
        }
        note('Normal', 'RolloutPaused', status.message);
      } else {
        startWave(status, current + 1, now);
        note('Normal', 'WaveStarted', `wave ${status.waves[current + 1]!.name} started: ${sizes[current + 1]} pod(s)`);
        soonest(now);
      }
    } else if (verdict.kind === 'failed') {
      ws.phase = 'Failed';
      ws.finishedAt = iso(now);
      note('Warning', 'WaveGateFailed', `wave ${ws.name} failed its health gate: ${verdict.message}`);
      if (strategy.onFailure === 'rollback') {
        status.phase = 'RollingBack';
        status.message = `wave ${ws.name} failed its health gate (${verdict.reason}): rolling back to revision ${spec.fromRevision}`;
        note('Warning', 'RollingBack', status.message);
        soonest(now);
      } else {
        status.phase = 'Paused';
        status.message = `wave ${ws.name} failed its health gate (${verdict.reason}): ${verdict.message}; resume to go on, or abort`;
        note('Warning', 'RolloutPaused', status.message);
      }
    } else {
      soonest(verdict.nextAt);
      const n = releasable(devices[current]!, sizes[current]!, ws.released, strategy, ctx, now);
      if (n.count > 0) {
        ws.released += n.count;
        for (let k = 0; k < n.count; k++) ctx.runtime.releases.push(now);
        // The new pods become members of the wave; their gate is judged on the next pass.
        for (const d of devices[current]!) if (d.a.state === 'pending' && n.count-- > 0) d.a = placeholder(true);
      }
      soonest(n.nextAt);
    }
  }
  status.waves = status.waves.map((ws, i) => countWave(ws, sizes[i]!, devices[i]!));
  return { status, ...(nextAt !== undefined ? { nextAt } : {}) };
}

/**
 * How many more pods of the wave in progress to release now: as many as keep fewer than the
 * wave's maxUnavailable released and not yet Ready for minReadySeconds, within maxPerMinute
 * pods released in the last minute (counted from this hub's releases, or from the new pods'
 * creation times after a restart, whichever is more).
 */
function releasable(wave: WaveDevice[], size: number, released: number, strategy: WavesStrategy, ctx: DeploymentProgressContext, now: number): { count: number; nextAt?: number } {
  const unavailable = wave.filter((d) => d.a.released && (d.a.state === 'updating' || d.a.state === 'locked' || d.a.state === 'offline')).length;
  let slots = Math.min(waveUnavailable(strategy, size) - unavailable, size - released);
  let nextAt: number | undefined;
  if (strategy.maxPerMinute !== undefined) {
    ctx.runtime.releases = ctx.runtime.releases.filter((t) => t > now - MINUTE_MS);
    const created = ctx.newPods.map((p) => ms(p.metadata.creationTimestamp)).filter((t) => t > now - MINUTE_MS);
    const window = (created.length > ctx.runtime.releases.length ? created : ctx.runtime.releases).sort((a, b) => a - b);
    const rateSlots = strategy.maxPerMinute - window.length;
    if (rateSlots < slots) {
      slots = rateSlots;
      if (window.length > 0) nextAt = window[0]! + MINUTE_MS;
    }
  }
  return { count: Math.max(0, slots), ...(nextAt !== undefined ? { nextAt } : {}) };
}

function countWave(ws: WaveStatus, size: number, devices: WaveDevice[]): WaveStatus {
  const c = { total: size, released: ws.released, updated: 0, ready: 0, failed: 0, waiting: 0, skipped: 0 };
  for (const { a } of devices) {
    if (a.updated) c.updated++;
    if (a.podReady) c.ready++;
    if (a.state === 'failed') c.failed++;
    else if (a.state === 'skipped') c.skipped++;
    else if (a.state === 'pending' || a.state === 'offline' || a.state === 'locked') c.waiting++;
  }
  return { ...ws, ...c };
}
