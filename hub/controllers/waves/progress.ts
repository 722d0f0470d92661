import type { RolloutStatus, WaveStatus } from '../../../shared/resources/rollout.js';
import { applyWaveDeadline, assessDevice, toleratedFailures, waveVerdict, type GateContext, type WaveDevice } from './gate.js';
import { isFinished, specOf, statusOf } from './records.js';
import { planRelease } from './release.js';
import { targetsOf } from './targets.js';
import type { StoredObject } from '../../store/types.js';
import type { WavePod, WavesView } from './view.js';

/** What the controller keeps in memory about a running rollout (nothing that a restart could not rebuild). */
export interface RolloutRuntime {
  /** The record it belongs to. */
  record: string;
  /** Wave index of each planned device. */
  planned: Map<string, number>;
  /** Devices that joined the targets after the waves were planned: the wave they were given. */
  joined: Map<string, number>;
  /** Released, not yet written to the pod by the DaemonSet controller (ms). */
  pending: Map<string, number>;
  /** Last time a device was seen holding an update lock (ms). */
  lastLockedAt: Map<string, number>;
  /** The targets and each wave's members, as of the view's targetsVersion: a pass rebuilds them only when a node came, went or was relabelled. */
  membership?: Membership;
}

interface Membership {
  version: number;
  /** The targets' names. */
  targets: string[];
  /** Each wave's devices: the planned ones still targeted, in their planned order, then those that joined. */
  members: string[][];
}

/** The rollout's targets and wave members now; joins and leaves are noted in the runtime. */
function membershipOf(record: StoredObject, view: WavesView, runtime: RolloutRuntime, status: RolloutStatus): Membership {
  if (runtime.membership?.version === view.targetsVersion) return runtime.membership;
  const spec = specOf(record);
  const targets = targetsOf(spec.toTemplate, view.nodes);
  const targeted = new Set(targets.map((t) => t.name));
  const members = spec.waves.map((w) => w.nodes.filter((n) => targeted.has(n)));
  for (const t of targets) {
    if (runtime.planned.has(t.name)) continue;
    let w = runtime.joined.get(t.name);
    if (w === undefined) runtime.joined.set(t.name, (w = joinWave(status)));
    members[w]!.push(t.name);
  }
  for (const n of runtime.joined.keys()) if (!targeted.has(n)) runtime.joined.delete(n);
  runtime.membership = { version: view.targetsVersion, targets: [...targeted], members };
  return runtime.membership;
}

export interface ProgressContext {
  dsKey: string;
  record: StoredObject;
  view: WavesView;
  runtime: RolloutRuntime;
  now: number;
  note: (type: 'Normal' | 'Warning', reason: string, message: string) => void;
  overrideLock: (pod: WavePod, lockTime: string) => void;
}

export interface ProgressResult {
  status: RolloutStatus;
  /** The revision some node should run changed: the DaemonSet controller must look again. */
  revisionsChanged: boolean;
  nextAt?: number;
}

const iso = (ms: number) => new Date(ms).toISOString();
const ms = (text: string | undefined) => (text === undefined ? 0 : Date.parse(text) || 0);

/** The wave a device that joined the targets mid-rollout belongs to: the earliest not started, else the current one. */
export function joinWave(status: RolloutStatus): number {
  const i = status.waves.findIndex((w) => w.phase === 'Pending');
  return i >= 0 ? i : status.wave;
}

export function startWave(status: RolloutStatus, index: number, now: number): void {
  status.wave = index;
  const ws = status.waves[index]!;
  ws.phase = 'Progressing';
  ws.startedAt = iso(now);
}

/**
 * Resumes a Paused rollout: after a passed wave, the next wave starts; after a failed gate, the
 * failures so far are accepted and the wave goes on; after `rollout pause`, the wave goes on. A
 * resumed wave's progress deadline counts from now. Returns what happened, in words.
 */
export function resumeRollout(status: RolloutStatus, now: number): string {
  const ws = status.waves[status.wave];
  status.phase = 'Progressing';
  delete status.pauseUntil;
  delete status.message;
  if (!ws) return 'resumed';
  if (ws.phase === 'Passed' && status.wave + 1 < status.waves.length) {
    startWave(status, status.wave + 1, now);
    return `resumed: wave ${status.waves[status.wave]!.name} started`;
  }
  if (ws.phase === 'Failed') status.acceptedFailures = status.failedNodes.length;
  ws.phase = 'Progressing';
  ws.resumedAt = iso(now);
  delete ws.finishedAt;
  return `resumed: wave ${ws.name} goes on`;
}

/**
 * One step of a rollout, from the record, the view and the clock: assess every device, record
 * failures and skips, override old update locks, judge the gate of the wave in progress, move
 * to the next wave (or pause, roll back, succeed), and release the next devices. Returns the new
 * status; the caller writes it.
 */
export function advance(ctx: ProgressContext): ProgressResult {
  const { record, view, runtime, now, note } = ctx;
  const spec = specOf(record);
  const status = structuredClone(statusOf(record));
  if (isFinished(status.phase)) return { status, revisionsChanged: false };
  const strategy = spec.strategy;
  const { targets, members } = membershipOf(record, view, runtime, status);
  if (status.phase === 'RollingBack') return rollingBack(ctx, status, targets);

  const toImages: Record<string, string> = {};
  for (const c of spec.toTemplate.spec.containers) toImages[c.name] = c.image;
  const failed = new Set(status.failedNodes.map((f) => f.node));
  const skipped = new Set((status.skippedNodes ?? []).map((s) => s.node));
  const devices: WaveDevice[][] = members.map((nodes, i) => {
    const ws = status.waves[i]!;
    const gate: GateContext = { toHash: spec.toHash, toImages, strategy, now, waveBase: Math.max(ms(ws.startedAt), ms(ws.resumedAt)) };
    return nodes.map((node) => {
      const pod = view.podOn(ctx.dsKey, node, spec.target.uid);
      if (runtime.pending.has(node) && pod?.hash === spec.toHash) runtime.pending.delete(node);
      const a = assessDevice({ node, nodeInfo: view.nodes.get(node), pod, pendingReleaseAt: runtime.pending.get(node), recordedFailure: failed.has(node), recordedSkip: skipped.has(node), lastLockedAt: runtime.lastLockedAt.get(node) }, gate);
      if (a.lockedNow) runtime.lastLockedAt.set(node, now);
      return { node, a };
    });
  });

  let nextAt: number | undefined = status.pauseUntil !== undefined ? ms(status.pauseUntil) : undefined;
  const soonest = (t: number | undefined) => {
    if (t !== undefined && (nextAt === undefined || t < nextAt)) nextAt = t;
  };
  const current = status.wave;
  const waveBase = (i: number) => {
    const ws = status.waves[i]!;
    let base = Math.max(ms(ws.startedAt), ms(ws.resumedAt));
    for (const d of devices[i]!) {
      if (d.a.releasedAt !== undefined && d.a.releasedAt > base) base = d.a.releasedAt;
      // A device held back by an update lock is waiting, not stuck: the wave's deadline runs from the end of the lock.
      const locked = runtime.lastLockedAt.get(d.node);
      if (locked !== undefined && locked > base) base = locked;
    }
    return base;
  };
  let currentBase: number | undefined;
  const baseOfCurrent = () => (currentBase ??= waveBase(current));
  if (status.phase === 'Progressing') applyWaveDeadline(devices[current]!, strategy, now, baseOfCurrent());

  // Failures, skips and lock overrides of the waves that have started.
  for (let i = 0; i <= current && i < devices.length; i++) {
    const waveName = status.waves[i]!.name;
    for (const { node, a } of devices[i]!) {
      if (a.failure && !failed.has(node)) {
        failed.add(node);
        status.failedNodes.push({ node, wave: waveName, reason: a.failure.reason, message: a.failure.message, at: iso(now) });
        note('Warning', 'NodeUpdateFailed', `node ${node} (wave ${waveName}): ${a.failure.reason}: ${a.failure.message}`);
      }
      if (a.skip && !skipped.has(node)) {
        skipped.add(node);
        (status.skippedNodes ??= []).push({ node, wave: waveName, reason: a.skip });
        note('Normal', 'NodeUpdateSkipped', `node ${node} (wave ${waveName}): ${a.skip}; it gets revision ${spec.revision} when it returns`);
      }
      if (a.overrideLock !== undefined) {
        const pod = view.podOn(ctx.dsKey, node, spec.target.uid);
        if (pod) {
          ctx.overrideLock(pod, a.overrideLock);
          note('Warning', 'UpdateLockOverridden', `node ${node}: update lock held since ${a.overrideLock}, longer than ${strategy.updateLockMaxAgeSeconds}s; overridden`);
        }
      }
      if (status.phase === 'Progressing' || i < current) soonest(a.nextAt);
    }
  }

  let revisionsChanged = false;
  if (status.phase === 'Paused' && status.pauseUntil !== undefined && now >= ms(status.pauseUntil)) {
    const what = resumeRollout(status, now);
    note('Normal', 'RolloutResumed', `the pause ended; ${what}`);
    if (status.wave !== current) note('Normal', 'WaveStarted', `wave ${status.waves[status.wave]!.name} started: ${members[status.wave]!.length} device(s)`);
    soonest(now);
  } else if (status.phase === 'Progressing') {
    const ws = status.waves[current]!;
    const released = devices.slice(0, current + 1).reduce((n, wave) => n + wave.filter((d) => d.a.released).length, 0);
    const failures = status.failedNodes.length - (status.acceptedFailures ?? 0);
    const verdict = waveVerdict(devices[current]!, failures, toleratedFailures(strategy, released), strategy, now, baseOfCurrent());
    if (verdict.kind === 'passed') {
      ws.phase = 'Passed';
      ws.finishedAt = iso(now);
      for (const node of verdict.skipped) {
        if (skipped.has(node)) continue;
        skipped.add(node);
        (status.skippedNodes ??= []).push({ node, wave: ws.name, reason: 'Offline' });
        note('Normal', 'NodeUpdateSkipped', `node ${node} (wave ${ws.name}): offline, left out (offlineNodes: skip); it gets revision ${spec.revision} when it returns`);
      }
      note('Normal', 'WaveGatePassed', `wave ${ws.name} passed its health gate: ${devices[current]!.filter((d) => d.a.state === 'ready').length}/${members[current]!.length} device(s) Ready`);
      const pause = spec.waves[current]!.pause;
      if (current + 1 >= status.waves.length) {
        status.phase = 'Succeeded';
        status.finishedAt = iso(now);
        note('Normal', 'RolloutSucceeded', `revision ${spec.revision} rolled out to every wave`);
        revisionsChanged = true;
      } else if (pause !== undefined) {
        status.phase = 'Paused';
        if (pause === 'resume') {
          status.message = `paused after wave ${ws.name} until resumed`;
        } else {
          status.pauseUntil = iso(now + pause * 1000);
          status.message = `paused for ${pause}s after wave ${ws.name}`;
          soonest(ms(status.pauseUntil));
        }
        note('Normal', 'RolloutPaused', status.message);
      } else {
        startWave(status, current + 1, now);
        note('Normal', 'WaveStarted', `wave ${status.waves[current + 1]!.name} started: ${members[current + 1]!.length} device(s)`);
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
        revisionsChanged = true;
      } else {
        status.phase = 'Paused';
        status.message = `wave ${ws.name} failed its health gate (${verdict.reason}): ${verdict.message}; resume to go on, or abort`;
        note('Warning', 'RolloutPaused', status.message);
      }
    } else {
      soonest(verdict.nextAt);
      const recent: number[] = [];
      // The release times of the whole rollout matter only to the rate limit.
      if (strategy.maxPerMinute !== undefined) for (const wave of devices) for (const d of wave) if (d.a.releasedAt !== undefined) recent.push(d.a.releasedAt);
      const plan = planRelease(devices[current]!, strategy, recent, now);
      // Skipped devices of started waves converge when they are back.
      for (let i = 0; i <= current; i++) for (const d of devices[i]!) if (d.a.state === 'skipped' && !d.a.released && view.nodes.get(d.node)?.ready) plan.nodes.push(d.node);
      for (const node of plan.nodes) runtime.pending.set(node, now);
      if (plan.nodes.length > 0) revisionsChanged = true;
      soonest(plan.nextAt);
    }
  }
  status.waves = status.waves.map((ws, i) => countWave(ws, devices[i]!, runtime));
  return { status, revisionsChanged, ...(nextAt !== undefined ? { nextAt } : {}) };
}

function countWave(ws: WaveStatus, devices: WaveDevice[], runtime: RolloutRuntime): WaveStatus {
  const c = { total: devices.length, released: 0, updated: 0, ready: 0, failed: 0, waiting: 0, skipped: 0 };
  for (const { node, a } of devices) {
    if (a.released || runtime.pending.has(node)) c.released++;
    if (a.updated) c.updated++;
    if (a.podReady) c.ready++;
    if (a.state === 'failed') c.failed++;
    else if (a.state === 'skipped') c.skipped++;
    else if (a.state === 'pending' || a.state === 'offline' || a.state === 'locked') c.waiting++;
  }
  return { ...ws, ...c };
}

function rollingBack(ctx: ProgressContext, status: RolloutStatus, targets: string[]): ProgressResult {
  const spec = specOf(ctx.record);
  let back = 0;
  let withPod = 0;
  for (const node of targets) {
    const pod = ctx.view.podOn(ctx.dsKey, node, spec.target.uid);
    if (!pod) continue;
    withPod++;
    if (pod.hash === spec.fromHash) back++;
  }
  if (back === withPod) {
    status.phase = 'RolledBack';
    status.finishedAt = iso(ctx.now);
    status.message = `rolled back: every device is back on revision ${spec.fromRevision}`;
    ctx.note('Warning', 'RolloutRolledBack', status.message);
    return { status, revisionsChanged: true };
  }
  return { status, revisionsChanged: false, nextAt: ctx.now + 5_000 };
}
