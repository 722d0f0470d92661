import * as z from 'zod';
import type { PlannedWave } from '../rollout/plan.js';
import type { PodTemplate } from './daemonset.js';
import type { WavesStrategy } from './waves.js';

/**
 * A Rollout is the hub's record of one move of a DaemonSet with `updateStrategy.type: Waves` from
 * one template revision to the next (docs/ARCHITECTURE.md, 'Waves rollouts'): written by the hub only, named
 * `<daemonset>-<revision>`, in the DaemonSet's namespace, owned by it. Its spec is decided once,
 * when the rollout starts (the waves and their devices are fixed then); its status is where the
 * rollout stands, so that a hub restarted mid-wave goes on from there. Kept after the rollout
 * ends: the records are the DaemonSet's history (`flotilla rollout history`).
 */
export const ROLLOUT_KIND = 'Rollout';

/** Accepted as stored: the kind is system-only, never read from a manifest. */
export const rolloutSpecSchema = z.record(z.string(), z.unknown());

export interface RolloutSpec {
  target: { kind: 'DaemonSet' | 'Deployment'; name: string; uid: string };
  /** The revision rolled out; revisions count from 1 per DaemonSet. */
  revision: number;
  /** The revision the devices run before; 0 for the first. */
  fromRevision: number;
  /** The controller-revision-hash label of each side's pods. */
  fromHash?: string;
  toHash: string;
  fromTemplate?: PodTemplate;
  toTemplate: PodTemplate;
  strategy: WavesStrategy;
  waves: PlannedWave[];
  /** Who started it: the API's principal, or `rollout undo`, or the hub itself (rollback). */
  startedBy?: string;
  /** The change cause annotation of the DaemonSet when it started (kubernetes.io/change-cause). */
  changeCause?: string;
}

export type RolloutPhase =
  /** Waves are moving. */
  | 'Progressing'
  /** Stopped by a pause after a wave, `rollout pause`, or a failed gate under onFailure: pause. */
  | 'Paused'
  /** Every wave passed its gate. */
  | 'Succeeded'
  /** A gate failed; the updated devices are going back to the previous revision. */
  | 'RollingBack'
  /** A gate failed and every device is back on the previous revision. */
  | 'RolledBack'
  /** `rollout abort`: stopped where it was, nothing more is released. */
  | 'Aborted'
  /** A newer revision was applied mid-rollout and took over. */
  | 'Superseded';

/** Stopped: the rollout was aborted or superseded while the wave was open. */
export type WavePhase = 'Pending' | 'Progressing' | 'Paused' | 'Passed' | 'Failed' | 'Stopped';

export interface WaveStatus {
  name: string;
  phase: WavePhase;
  startedAt?: string;
  /** When it was last resumed after a pause or a failed gate: its progress deadline counts from then. */
  resumedAt?: string;
  /** When its gate passed or failed. */
  finishedAt?: string;
  /** Devices in the wave now (a device that left the targets is dropped from the counts). */
  total: number;
  /** Devices whose update has been released. */
  released: number;
  /** Devices running the new revision. */
  updated: number;
  /** … whose updated pod is Ready. */
  ready: number;
  failed: number;
  /** Offline, locked, or not yet released. */
  waiting: number;
  skipped: number;
}

export interface FailedNode {
  /** The device's node; for a Deployment (whose waves count pods), the pod's name. */
  node: string;
  wave: string;
  /** CrashLoopBackOff, ImagePullBackOff, ReadinessFailed, ProgressDeadlineExceeded, Offline, … */
  reason: string;
  message?: string;
  at: string;
}

export interface RolloutStatus {
  phase: RolloutPhase;
  /** Index of the wave in progress (or last reached). */
  wave: number;
  waves: WaveStatus[];
  failedNodes: FailedNode[];
  /** Failures accepted by `rollout resume` after a failed gate under onFailure: pause (the first this many of failedNodes). */
  acceptedFailures?: number;
  skippedNodes?: { node: string; wave: string; reason: string }[];
  /** While Paused: until when (a timed pause after a wave), absent for until resumed. */
  pauseUntil?: string;
  /** Why it is paused, failed, rolled back or aborted, in words. */
  message?: string;
  startedAt: string;
  finishedAt?: string;
}
