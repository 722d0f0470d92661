import { overrideCovers, parseOverrideTime } from '../../../shared/protocol/update-lock.js';
import type { WavesStrategy } from '../../../shared/resources/waves.js';
import type { WaveNode, WavePod } from './view.js';

/**
 * Where one device of a rollout stands, from its node and its pod alone (pure: no store, no
 * clock but `now`):
 *   pending  — its update is not released yet, and it is online
 *   offline  — its node is not Ready
 *   updating — released, its new pod not yet Ready for minReadySeconds
 *   locked   — released, but an update lock holds the old containers
 *   ready    — its updated pod has been Ready for minReadySeconds
 *   failed   — failed (recorded, or found now: `failure`)
 *   skipped  — recorded as skipped (offline past the deadline, or left out under offlineNodes: skip)
 */
export type DeviceState = 'pending' | 'offline' | 'updating' | 'locked' | 'ready' | 'failed' | 'skipped';

export interface DeviceInput {
  node: string;
  nodeInfo: WaveNode | undefined;
  pod: WavePod | undefined;
  /** Released by this hub, not yet written to the pod. */
  pendingReleaseAt?: number;
  recordedFailure: boolean;
  recordedSkip: boolean;
  /** Last time this hub saw the device's update lock held (ms). */
  lastLockedAt?: number;
}

export interface GateContext {
  toHash: string;
  /** Container images of the new template, by container name. */
  toImages: Record<string, string>;
  strategy: WavesStrategy;
  now: number;
  /** When the device's wave started (or was resumed): the base of a deadline without a release time. */
  waveBase: number;
}

export interface DeviceAssessment {
  state: DeviceState;
  released: boolean;
  releasedAt?: number;
  /** Runs the new revision (its pod's status is of the new spec, no lock holds it back). */
  updated: boolean;
  /** … and its pod is Ready. */
  podReady: boolean;
  /** A failure found now, not yet recorded. */
  failure?: { reason: string; message: string };
  /** To record as skipped now. */
  skip?: string;
  /** An update lock to override now: the lock's time (its condition's lastTransitionTime). */
  overrideLock?: string;
  lockedNow: boolean;
  /** When time alone may change this assessment (ms). */
  nextAt?: number;
}

// Many devices share a time (released in one pass), and Date.parse is the cost of a pass over
// thousands of them: remember recent parses.
const parsedTimes = new Map<string, number | undefined>();

function at(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (parsedTimes.has(text)) return parsedTimes.get(text);
  const ms = Date.parse(text);
  if (parsedTimes.size >= 20_000) parsedTimes.clear();
  parsedTimes.set(text, Number.isNaN(ms) ? undefined : ms);
  return parsedTimes.get(text);
}

/**
 * The pod's status is of its current spec: the agent has applied the node's latest desired set
 * (node.observedRevision ≥ node.desiredRevision, when both are known: a device's report carries
 * its node's status and its pods' together) and reports the new images.
 */
export function statusIsCurrent(pod: WavePod, node: WaveNode | undefined, toImages: Record<string, string>): boolean {
  if (node?.observedRevision !== undefined && node.desiredRevision !== undefined && node.observedRevision < node.desiredRevision) return false;
  const names = Object.keys(toImages);
  return names.length > 0 && names.every((n) => pod.images[n] === toImages[n]);
}

export function assessDevice(d: DeviceInput, ctx: GateContext): DeviceAssessment {
  const { strategy, now } = ctx;
  const pod = d.pod;
  const onNew = pod !== undefined && pod.hash === ctx.toHash;
  const released = onNew || d.pendingReleaseAt !== undefined;
  const releasedAt = onNew ? (at(pod.releasedAt) ?? d.pendingReleaseAt) : d.pendingReleaseAt;
  const online = d.nodeInfo?.ready ?? false;
  const current = onNew && statusIsCurrent(pod, d.nodeInfo, ctx.toImages);
  const lockedAt = pod?.lockedSince !== undefined ? (at(pod.lockedSince) ?? now) : undefined;
  const overrideAt = pod?.overriddenAt !== undefined ? parseOverrideTime(pod.overriddenAt) : undefined;
  const locked = onNew && lockedAt !== undefined && !(overrideAt !== undefined && overrideCovers(lockedAt, overrideAt));
  const updated = current && !locked;
  const podReady = updated && pod.ready && pod.running;
  // Built without spreads: a pass assesses every device of the rollout, thousands at a time.
  const out = (state: DeviceState, nextAt?: number): DeviceAssessment => {
    const a: DeviceAssessment = { state, released, updated, podReady, lockedNow: locked };
    if (releasedAt !== undefined) a.releasedAt = releasedAt;
    if (nextAt !== undefined) a.nextAt = nextAt;
    return a;
  };
  const failed = (reason: string, message: string): DeviceAssessment => Object.assign(out('failed'), { failure: { reason, message } });
  if (d.recordedSkip) return out('skipped');
  if (d.recordedFailure) return out('failed');
  if (!released) return out(online ? 'pending' : 'offline');

  const maxAgeMs = strategy.updateLockMaxAgeSeconds * 1000;
  if (locked) {
    const due = lockedAt + maxAgeMs;
    // A device that holds a lock waits (it is neither updating nor failed) until the override.
    if (now >= due) return Object.assign(out('locked'), { overrideLock: pod.lockedSince! });
    return out('locked', due);
  }
  if (current && pod.failure) return failed(pod.failure.reason, pod.failure.message ?? `container waiting: ${pod.failure.reason}`);
  if (podReady && online) {
    const since = at(pod.readySince) ?? now;
    const readyAt = since + strategy.healthGate.minReadySeconds * 1000;
    if (now >= readyAt) return out('ready');
    return out('updating', readyAt);
  }
  // The progress deadline runs from the release, or from the end of a lock that held the update back.
  let deadlineBase = releasedAt ?? ctx.waveBase;
  if (d.lastLockedAt !== undefined) deadlineBase = Math.max(deadlineBase, d.lastLockedAt);
  if (overrideAt !== undefined) deadlineBase = Math.max(deadlineBase, overrideAt + maxAgeMs);
  const deadline = deadlineBase + strategy.healthGate.progressDeadlineSeconds * 1000;
  const state: DeviceState = online ? 'updating' : 'offline';
  if (now < deadline) return out(state, deadline);
  const seconds = strategy.healthGate.progressDeadlineSeconds;
  if (!online) {
    // Under offlineNodes: skip an offline device is left out of the gate while it is away (see waveVerdict).
    if (strategy.offlineNodes === 'skip') return out(state);
    if (strategy.offlineAfterDeadline === 'skipped') return Object.assign(out('skipped'), { skip: 'Offline' });
    return failed('Offline', `node offline ${seconds}s after its update was released`);
  }
  if (current && pod.running && !pod.ready) return failed('ReadinessFailed', `updated pod not Ready ${seconds}s after its update was released`);
  return failed('ProgressDeadlineExceeded', `no Ready updated pod ${seconds}s after the update was released`);
}

/** Failures the gate tolerates: maxFailed, or maxFailedPercent of the devices released so far, whichever allows more. */
export function toleratedFailures(strategy: WavesStrategy, releasedSoFar: number): number {
  const byCount = strategy.healthGate.maxFailed ?? 0;
  const byPercent = Math.floor((strategy.healthGate.maxFailedPercent * releasedSoFar) / 100);
  return Math.max(byCount, byPercent);
}

export type WaveVerdict =
  | { kind: 'open'; nextAt?: number }
  | { kind: 'passed'; skipped: string[] }
  | { kind: 'failed'; reason: string; message: string };

export interface WaveDevice {
  node: string;
  a: DeviceAssessment;
}

/**
 * The health gate of the wave in progress. Passed when every device that counts is `ready`;
 * a device counts unless it failed within the tolerance, was skipped, or is offline under
 * offlineNodes: skip (then it is recorded as skipped and converges when it returns). Failed when
 * the rollout's failures exceed the tolerance, or when the wave is still open
 * progressDeadlineSeconds after `waveBase` (offline devices under wait count as failed or skipped
 * first, as offlineAfterDeadline says).
 */
export function waveVerdict(devices: WaveDevice[], failures: number, tolerated: number, strategy: WavesStrategy, now: number, waveBase: number): WaveVerdict {
  if (failures > tolerated) {
    return { kind: 'failed', reason: 'TooManyFailures', message: `${failures} device(s) failed, more than the ${tolerated} the health gate tolerates` };
  }
  const skipped: string[] = [];
  let open = false;
  let nextAt: number | undefined;
  const soonest = (t: number | undefined) => {
    if (t !== undefined && (nextAt === undefined || t < nextAt)) nextAt = t;
  };
  for (const { node, a } of devices) {
    if (a.state === 'failed' || a.state === 'skipped' || a.state === 'ready') continue;
    if (a.state === 'offline' && strategy.offlineNodes === 'skip') {
      skipped.push(node);
      continue;
    }
    open = true;
    soonest(a.nextAt);
  }
  if (!open) return { kind: 'passed', skipped };
  const deadline = waveBase + strategy.healthGate.progressDeadlineSeconds * 1000;
  if (now >= deadline) {
    return { kind: 'failed', reason: 'ProgressDeadlineExceeded', message: `the wave did not pass its health gate within ${strategy.healthGate.progressDeadlineSeconds}s` };
  }
  soonest(deadline);
  return { kind: 'open', ...(nextAt !== undefined ? { nextAt } : {}) };
}

/**
 * Once the wave's deadline has passed, its devices still offline and never released stop
 * holding it open under offlineNodes: wait: they count as failed or skipped, as
 * offlineAfterDeadline says. Changes `devices` in place.
 */
export function applyWaveDeadline(devices: WaveDevice[], strategy: WavesStrategy, now: number, waveBase: number): void {
  const seconds = strategy.healthGate.progressDeadlineSeconds;
  if (strategy.offlineNodes !== 'wait' || now < waveBase + seconds * 1000) return;
  for (const d of devices) {
    if (d.a.state !== 'offline' || d.a.released) continue;
    d.a = strategy.offlineAfterDeadline === 'skipped'
      ? { ...d.a, state: 'skipped', skip: 'Offline' }
      : { ...d.a, state: 'failed', failure: { reason: 'Offline', message: `node offline ${seconds}s after its wave started` } };
  }
}
