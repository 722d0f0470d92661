import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { DesiredPod, PodConditionReport } from '../../shared/protocol/messages.js';
import {
  UPDATE_LOCK_FILE,
  UPDATE_LOCK_HELD_REASON,
  UPDATE_LOCK_MESSAGE,
  UPDATE_LOCK_MOUNT_PATH,
  UPDATE_LOCK_OVERRIDDEN_REASON,
  UPDATE_LOCK_OVERRIDE_ANNOTATION,
  UPDATE_LOCKED_CONDITION,
  overrideCovers,
  parseOverrideTime,
} from '../../shared/protocol/update-lock.js';
import { updateLockDir } from '../volumes/layout.js';
import type { PodEvent } from './execute.js';
import type { Plan } from './plan.js';
import type { UpdateLockView } from './status.js';

/** What a pod's lock means for its update now. */
export type LockDecision =
  | { state: 'free' }
  | { state: 'held'; lockedAt: number; invalidOverride?: string }
  | { state: 'overridden'; lockedAt: number; override: string };

/**
 * Whether a lock written at `lockedAt` (ms; undefined: no lock file) holds back `pod`'s update,
 * given the pod's override annotation. An override that is not an ISO 8601 time overrides nothing.
 */
export function lockDecision(pod: DesiredPod, lockedAt: number | undefined): LockDecision {
  if (lockedAt === undefined) return { state: 'free' };
  const override = pod.annotations?.[UPDATE_LOCK_OVERRIDE_ANNOTATION];
  if (override === undefined) return { state: 'held', lockedAt };
  const overrideAt = parseOverrideTime(override);
  if (overrideAt === undefined) return { state: 'held', lockedAt, invalidOverride: override };
  return overrideCovers(lockedAt, overrideAt) ? { state: 'overridden', lockedAt, override } : { state: 'held', lockedAt };
}

/** The lock's time as the condition and events show it: the millisecond of the file's mtime. */
export function lockTime(lockedAt: number): string {
  return new Date(Math.trunc(lockedAt)).toISOString();
}

/** The UpdateLocked condition of a pod whose update a lock written at `lockedAt` defers. */
export function updateLockedCondition(lockedAt: number): PodConditionReport {
  return { type: UPDATE_LOCKED_CONDITION, status: 'True', reason: UPDATE_LOCK_HELD_REASON, message: UPDATE_LOCK_MESSAGE, lastTransitionTime: lockTime(lockedAt) };
}

/** How often the locks that defer an update are looked at between reconciles. */
export const DEFERRED_LOCK_POLL_MS = 2_000;

/**
 * The agent's side of the update lock: before each plan it makes every pod's lock folder
 * (mounted at /run/flotilla in its app containers) and reads the lock file in it; after the
 * reconcile it says which pods' updates the lock defers (the UpdateLocked condition) and
 * records an event when a deferral starts and when an override lets an update through. While
 * an update is deferred, its lock file is looked at every DEFERRED_LOCK_POLL_MS (one stat), so a
 * lock that goes or changes leads to a reconcile without waiting for the resync. The folder
 * lives under the pod's own, so it goes when the pod's volumes do.
 */
export class UpdateLocks {
  /** As of the last finish(): what the status reports. */
  view: UpdateLockView = { deferred: new Set(), conditions: new Map() };
  private decisions = new Map<string, LockDecision>();
  private deferred: ReadonlySet<string> = new Set();
  private readonly made = new Set<string>();
  /** Events sent: deferrals by pod uid, overrides by `uid|lock time`, bad overrides by `uid|value`. */
  private readonly announced = new Set<string>();
  private poll: NodeJS.Timeout | undefined;

  constructor(
    private readonly stateDir: string,
    private readonly log: Logger,
    private readonly onEvent: (e: PodEvent) => void,
    /** A deferring lock went or changed: reconcile. */
    private readonly onLockChange: () => void = () => {},
  ) {}

  stop(): void {
    clearInterval(this.poll);
    this.poll = undefined;
  }

  /** Reads every pod's lock; returns the pods whose lock holds back a spec change, by uid. */
  scan(pods: readonly DesiredPod[]): ReadonlySet<string> {
    const locked = new Set<string>();
    this.decisions = new Map();
    for (const pod of pods) {
      this.makeFolder(pod.uid);
      const decision = lockDecision(pod, this.readLock(pod.uid));
      this.decisions.set(pod.uid, decision);
      if (decision.state === 'held') locked.add(pod.uid);
    }
    return locked;
  }

  /** Takes in one pass's plan: an update that goes ahead over an overridden lock is recorded. */
  observe(plan: Pick<Plan, 'specChanged' | 'deferred'>, pods: readonly DesiredPod[]): void {
    this.deferred = plan.deferred;
    for (const pod of pods) {
      const decision = this.decisions.get(pod.uid);
      if (decision?.state !== 'overridden' || !plan.specChanged.has(pod.uid)) continue;
      const key = `${pod.uid}|${lockTime(decision.lockedAt)}`;
      if (this.announced.has(key)) continue;
      this.announced.add(key);
      this.onEvent({
        podUid: pod.uid,
        type: 'Warning',
        reason: UPDATE_LOCK_OVERRIDDEN_REASON,
        message: `Update lock ${UPDATE_LOCK_MOUNT_PATH}/${UPDATE_LOCK_FILE} written at ${lockTime(decision.lockedAt)} overridden by ${UPDATE_LOCK_OVERRIDE_ANNOTATION}=${decision.override}: replacing the pod's containers`,
      });
    }
  }

  /** After the reconcile's last pass: the conditions to report, and the deferral events. */
  finish(pods: readonly DesiredPod[]): void {
    const conditions = new Map<string, PodConditionReport[]>();
    const held = new Map<string, number>();
    const live = new Set(pods.map((p) => p.uid));
    for (const pod of pods) {
      const decision = this.decisions.get(pod.uid);
      const deferredHere = [...this.deferred].some((key) => key.startsWith(`${pod.uid}/`));
      if (!deferredHere || decision?.state !== 'held') {
        this.announced.delete(pod.uid);
        continue;
      }
      conditions.set(pod.uid, [updateLockedCondition(decision.lockedAt)]);
      held.set(pod.uid, decision.lockedAt);
      if (!this.announced.has(pod.uid)) {
        this.announced.add(pod.uid);
        this.onEvent({ podUid: pod.uid, type: 'Normal', reason: UPDATE_LOCK_HELD_REASON, message: `Update deferred: ${UPDATE_LOCK_MOUNT_PATH}/${UPDATE_LOCK_FILE} written at ${lockTime(decision.lockedAt)} is held` });
      }
      const bad = decision.invalidOverride;
      if (bad !== undefined && !this.announced.has(`${pod.uid}|${bad}`)) {
        this.announced.add(`${pod.uid}|${bad}`);
        this.onEvent({ podUid: pod.uid, type: 'Warning', reason: 'InvalidUpdateLockOverride', message: `annotation ${UPDATE_LOCK_OVERRIDE_ANNOTATION}: "${bad}" is not an ISO 8601 time with a zone; the update lock is kept` });
      }
    }
    this.view = { deferred: this.deferred, conditions };
    this.pollWhileDeferred(held);
    for (const key of this.announced) if (!live.has(key.split('|')[0]!)) this.announced.delete(key);
    for (const uid of this.made) if (!live.has(uid)) this.made.delete(uid);
  }

  private pollWhileDeferred(held: ReadonlyMap<string, number>): void {
    this.stop();
    if (held.size === 0) return;
    this.poll = setInterval(() => {
      for (const [uid, lockedAt] of held) {
        if (this.readLock(uid) === lockedAt) continue;
        this.stop();
        this.onLockChange();
        return;
      }
    }, DEFERRED_LOCK_POLL_MS);
    this.poll.unref();
  }

  /**
   * Makes the lock folders of `pods` (each once: a container mounts it), and reads the locks of
   * those among `changing` alone, the pods whose running containers a spec change would
   * replace: a lock defers nothing else, so a reconcile with no update pending reads no file.
   * Returns the pods whose lock holds back their spec change, by uid.
   */
  scanChanging(pods: readonly DesiredPod[], changing: ReadonlySet<string>): ReadonlySet<string> {
    for (const pod of pods) this.makeFolder(pod.uid);
    return this.scan(pods.filter((p) => changing.has(p.uid)));
  }

  private makeFolder(uid: string): void {
    if (!this.made.has(uid)) {
      const dir = updateLockDir(this.stateDir, uid);
      try {
        if (mkdirSync(dir, { recursive: true }) !== undefined) {
          // Writable by whichever user the pod's containers run as, as an emptyDir is.
          chmodSync(dir, 0o777);
        }
        this.made.add(uid);
      } catch (err) {
        this.log.warn({ pod: uid, err: (err as Error).message }, 'could not make the pod\'s update lock folder');
      }
    }
  }

  /** The lock file's mtime (ms), or undefined when there is none. */
  private readLock(uid: string): number | undefined {
    const dir = updateLockDir(this.stateDir, uid);
    try {
      return statSync(join(dir, UPDATE_LOCK_FILE)).mtimeMs;
    } catch {
      return undefined;
    }
  }
}
