import type { DeploymentSpec, DeploymentStatus, WorkloadCondition } from '../../shared/resources/deployment.js';
import {
  activeOrLatest,
  fenceposts,
  isRollingUpdate,
  newReplicaSetSize,
  oldReplicaSetSizes,
  proportionalSizes,
  replicaSetsToPrune,
  type Fenceposts,
  type ReplicaSetView,
} from './deployment-plan.js';
import { WAVES } from '../../shared/resources/waves.js';
import { calculateStatus, DEFAULT_PROGRESS_DEADLINE_SECONDS, getCondition, isComplete, Reason, rolloutVerdict, setCondition } from './deployment-status.js';

export const DEFAULT_REVISION_HISTORY_LIMIT = 10;

/** What the Deployment controller knows when it plans one pass over a Deployment. */
export interface DeploymentState {
  name: string;
  generation: number;
  spec: DeploymentSpec;
  status: DeploymentStatus;
  /** The ReplicaSet whose template is the Deployment's, if there is one. */
  newRS: ReplicaSetView | undefined;
  olds: ReplicaSetView[];
  /** The name (and pod-template-hash) a new ReplicaSet would get. */
  candidate: { name: string; hash: string };
  now: number;
  /** strategy type Waves: where its rollout stands (hub/controllers/waves/deployment.ts); undefined holds every ReplicaSet as it is. */
  waves?: WavesScale;
}

/**
 * The sizes a Waves rollout asks of a Deployment's ReplicaSets: the new one holds the pods
 * released so far (the cumulative size of the waves released), the old ones the rest.
 */
export interface WavesScale {
  newReplicas: number;
  /** The ReplicaSet the rollout moves from: it gets the pods back on a rollback. */
  fromName?: string;
  /** start-first: old pods go once new ones are available; stop-first: up to maxUnavailable before. */
  order: 'start-first' | 'stop-first';
  /** maxUnavailable of the wave in progress, in pods. */
  maxUnavailable: number;
}

export type DeploymentAction =
  | { type: 'create'; name: string; hash: string; replicas: number; revision: number; desiredReplicas: number; maxReplicas: number }
  /** Sets spec.replicas and the desired/max-replicas annotations. */
  | { type: 'scale'; name: string; replicas: number; desiredReplicas: number; maxReplicas: number }
  /** Copies the Deployment's annotations and minReadySeconds to the new ReplicaSet, with its revision. */
  | { type: 'sync-new'; name: string; revision: number }
  | { type: 'delete'; name: string };

export interface PlannedEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface DeploymentPlan {
  actions: DeploymentAction[];
  events: PlannedEvent[];
  status: DeploymentStatus;
  /** The Deployment's revision annotation: the new ReplicaSet's revision. */
  revision?: number;
  requeueAfterMs?: number;
}

/**
 * One pass of Kubernetes' syncDeployment over a Deployment, as a plan: which ReplicaSets to
 * create, scale or delete, the events that explain each decision, and the new status. Like
 * Kubernetes it takes one step per pass (scale the new ReplicaSet up, or the old ones down)
 * and is called again when the ReplicaSets or their pods change.
 */
export function planDeployment(state: DeploymentState): DeploymentPlan {
  return new Planner(state).run();
}

class Planner {
  private readonly actions: DeploymentAction[] = [];
  private readonly events: PlannedEvent[] = [];
  private readonly replicas: number;
  private readonly fences: Fenceposts;
  private readonly nowIso: string;
  private conditions: WorkloadCondition[];
  private newRS: ReplicaSetView | undefined;
  private olds: ReplicaSetView[];
  private revision: number | undefined;

  constructor(private readonly s: DeploymentState) {
    this.replicas = s.spec.replicas ?? 1;
    this.fences = fenceposts(s.spec);
    this.nowIso = new Date(s.now).toISOString();
    this.conditions = [...(s.status.conditions ?? [])];
    this.newRS = s.newRS ? { ...s.newRS } : undefined;
    this.olds = s.olds.map((v) => ({ ...v }));
  }

  run(): DeploymentPlan {
    this.pausedConditions();
    if (this.s.spec.strategy?.type === WAVES) {
      // The rollout record keeps its own progress deadline (its waves' health gates).
      if (this.s.waves && !this.s.spec.paused) this.waves(this.s.waves);
      else if (this.s.waves) this.sync();
      return this.finish(false);
    }
    if (this.s.spec.paused || this.isScalingEvent()) {
      this.sync();
      return this.finish(false);
    }
    if (isRollingUpdate(this.s.spec)) this.rolling();
    else this.recreate();
    return this.finish(true);
  }

  /** A rollout's clock stops while paused and starts again on resume (Kubernetes' checkPausedConditions). */
  private pausedConditions(): void {
    const cond = getCondition(this.conditions, 'Progressing');
    if (cond?.reason === Reason.ProgressDeadlineExceeded) return;
    const pausedBefore = cond?.reason === Reason.DeploymentPaused;
    if (this.s.spec.paused && !pausedBefore) {
      this.condition('Unknown', Reason.DeploymentPaused, 'Deployment is paused');
      this.event('Normal', 'Paused', 'Rollout paused: no new revision is rolled out until it is resumed');
    } else if (!this.s.spec.paused && pausedBefore) {
      this.condition('Unknown', Reason.DeploymentResumed, 'Deployment is resumed');
      this.event('Normal', 'Resumed', 'Rollout resumed');
    }
  }

  /** spec.replicas differs from what an active ReplicaSet was last sized for (Kubernetes' isScalingEvent). */
  private isScalingEvent(): boolean {
    const all = this.newRS ? [...this.olds, this.newRS] : this.olds;
    return all.some((v) => v.replicas > 0 && v.desiredReplicas !== undefined && v.desiredReplicas !== this.replicas);
  }

  /** Paused, or resized: scale what is there, roll nothing out (Kubernetes' sync). */
  private sync(): void {
    const newRS = this.findNew();
    const only = activeOrLatest(newRS, this.olds);
    if (only) {
      this.scale(only, this.replicas);
    } else if (newRS && newRS.replicas === this.replicas && newRS.desiredReplicas === this.replicas && newRS.available >= this.replicas) {
      for (const old of this.olds.filter((v) => v.replicas > 0)) this.scale(old, 0);
    } else if (isRollingUpdate(this.s.spec)) {
      const all = (newRS ? [...this.olds, newRS] : this.olds).filter((v) => v.replicas > 0);
      const sizes = proportionalSizes(this.replicas, this.fences.maxSurge, this.s.status.replicas ?? 0, all);
      for (const v of all) this.scale(v, sizes.get(v.name) ?? v.replicas);
    }
    if (this.s.spec.paused) this.cleanup();
  }

  private rolling(): void {
    const newRS = this.findNew() ?? this.createNew(newReplicaSetSize(this.replicas, this.fences.maxSurge, this.emptyNew(), this.olds));
    if (newRS.replicas !== this.replicas) {
      if (this.scale(newRS, newReplicaSetSize(this.replicas, this.fences.maxSurge, newRS, [...this.olds, newRS]))) return;
    }
    let scaledDown = false;
    for (const [name, size] of oldReplicaSetSizes(this.replicas, this.fences.maxUnavailable, newRS, this.olds)) {
      scaledDown = this.scale(this.olds.find((v) => v.name === name)!, size) || scaledDown;
    }
    if (scaledDown) return;
    if (this.complete()) this.cleanup();
  }

  /**
   * A Waves rollout: the new ReplicaSet to the pods released so far, the old ones down by as
   * much, no faster than availability allows (as rolling() does, with the wave's maxUnavailable);
   * back up when the rollout rolls back, or the Deployment grew.
   */
  private waves(w: WavesScale): void {
    const target = Math.min(w.newReplicas, this.replicas);
    const newRS = this.findNew() ?? this.createNew(target);
    if (newRS.replicas !== target) this.scale(newRS, target);
    const floor = this.replicas - target;
    const active = this.olds.filter((v) => v.replicas > 0);
    const oldTotal = active.reduce((n, v) => n + v.replicas, 0);
    if (oldTotal < floor) {
      const from = this.olds.find((v) => v.name === w.fromName) ?? [...active].sort((a, b) => a.created.localeCompare(b.created)).at(-1);
      if (from) this.scale(from, from.replicas + floor - oldTotal);
    } else if (oldTotal > floor) {
      let budget = oldTotal - floor;
      for (const [name, size] of oldReplicaSetSizes(this.replicas, w.order === 'stop-first' ? w.maxUnavailable : 0, newRS, this.olds)) {
        const v = this.olds.find((o) => o.name === name)!;
        const down = Math.min(v.replicas - size, budget);
        if (down <= 0) continue;
        this.scale(v, v.replicas - down);
        budget -= down;
      }
    }
    if (target === this.replicas && this.complete()) this.cleanup();
  }

  /** Every old pod goes before the first new one starts (Kubernetes' rolloutRecreate). */
  private recreate(): void {
    let newRS = this.findNew();
    let scaledDown = false;
    for (const old of this.olds.filter((v) => v.replicas > 0)) scaledDown = this.scale(old, 0) || scaledDown;
    if (scaledDown || this.olds.some((v) => v.remaining > 0)) return;
    if (!newRS) newRS = this.createNew(this.replicas);
    else this.scale(newRS, this.replicas);
    if (this.complete()) this.cleanup();
  }

  /** The new ReplicaSet, its revision brought past the old ones' (Kubernetes' getNewReplicaSet, existing case). */
  private findNew(): ReplicaSetView | undefined {
    const newRS = this.newRS;
    if (!newRS) return undefined;
    const revision = this.nextRevision();
    if (newRS.revision < revision) {
      // An earlier template is back (an undo, or an older manifest applied): its ReplicaSet becomes
      // the newest revision and the progress deadline starts again.
      if (newRS.revision > 0) this.event('Normal', 'FoundNewReplicaSet', `Replica set ${newRS.name} (revision ${newRS.revision}) matches the template again; it is now revision ${revision}`);
      newRS.revision = revision;
      this.condition('True', Reason.FoundNewReplicaSet, `Found new replica set "${newRS.name}"`, true);
    } else if (!getCondition(this.conditions, 'Progressing')) {
      this.condition('True', Reason.FoundNewReplicaSet, `Found new replica set "${newRS.name}"`);
    }
    this.actions.push({ type: 'sync-new', name: newRS.name, revision: newRS.revision });
    this.revision = newRS.revision;
    return newRS;
  }

  private createNew(replicas: number): ReplicaSetView {
    const { name, hash } = this.s.candidate;
    const revision = this.nextRevision();
    const view: ReplicaSetView = { ...this.emptyNew(), replicas, revision, desiredReplicas: this.replicas, maxReplicas: this.replicas + this.fences.maxSurge };
    this.actions.push({ type: 'create', name, hash, replicas, revision, desiredReplicas: this.replicas, maxReplicas: this.replicas + this.fences.maxSurge });
    if (replicas > 0) this.event('Normal', 'ScalingReplicaSet', `Scaled up replica set ${name} to ${replicas}`);
    else this.event('Normal', 'ScalingReplicaSet', `Created replica set ${name} with 0 replicas: the old ones hold replicas + maxSurge pods`);
    this.condition('True', Reason.NewReplicaSetCreated, `Created new replica set "${name}"`, true);
    this.newRS = view;
    this.revision = revision;
    return view;
  }

  private emptyNew(): ReplicaSetView {
    return { name: this.s.candidate.name, replicas: 0, current: 0, ready: 0, available: 0, remaining: 0, revision: 0, created: this.nowIso };
  }

  private nextRevision(): number {
    return Math.max(0, ...this.olds.map((v) => v.revision)) + 1;
  }

  /** Sets a ReplicaSet's size (and its replica annotations); true when the size changed. */
  private scale(v: ReplicaSetView, replicas: number): boolean {
    const maxReplicas = this.replicas + this.fences.maxSurge;
    const resized = v.replicas !== replicas;
    if (!resized && v.desiredReplicas === this.replicas && v.maxReplicas === maxReplicas) return false;
    this.actions.push({ type: 'scale', name: v.name, replicas, desiredReplicas: this.replicas, maxReplicas });
    if (resized) this.event('Normal', 'ScalingReplicaSet', `Scaled ${replicas > v.replicas ? 'up' : 'down'} replica set ${v.name} to ${replicas}`);
    Object.assign(v, { replicas, desiredReplicas: this.replicas, maxReplicas });
    return resized;
  }

  /** Old revisions beyond revisionHistoryLimit go, once scaled to zero and empty. */
  private cleanup(): void {
    const limit = this.s.spec.revisionHistoryLimit ?? DEFAULT_REVISION_HISTORY_LIMIT;
    for (const v of replicaSetsToPrune(this.olds, limit)) {
      this.actions.push({ type: 'delete', name: v.name });
      this.event('Normal', 'SuccessfulDelete', `Deleted old replica set ${v.name} (revision ${v.revision}): more than revisionHistoryLimit=${limit} old revisions`);
      this.olds = this.olds.filter((o) => o !== v);
    }
  }

  private all(): ReplicaSetView[] {
    return this.newRS ? [...this.olds, this.newRS] : this.olds;
  }

  private status(): DeploymentStatus {
    return calculateStatus({ replicas: this.replicas, maxUnavailable: this.fences.maxUnavailable, generation: this.s.generation, conditions: this.conditions, newRS: this.newRS, all: this.all() }, this.nowIso);
  }

  private complete(): boolean {
    return isComplete(this.replicas, this.s.generation, this.status());
  }

  private finish(rollout: boolean): DeploymentPlan {
    let status = this.status();
    let requeueAfterMs: number | undefined;
    if (rollout) {
      const verdict = rolloutVerdict(status, {
        deploymentName: this.s.name,
        newReplicaSetName: this.newRS?.name,
        replicas: this.replicas,
        generation: this.s.generation,
        deadlineSeconds: this.s.spec.progressDeadlineSeconds ?? DEFAULT_PROGRESS_DEADLINE_SECONDS,
        prev: this.s.status,
        now: this.s.now,
      });
      status = verdict.status;
      requeueAfterMs = verdict.recheckInMs;
      if (verdict.timedOut) {
        const cond = getCondition(status.conditions, 'Progressing');
        this.event('Warning', Reason.ProgressDeadlineExceeded, `${cond?.message ?? 'The rollout has timed out progressing.'} (progressDeadlineSeconds=${this.s.spec.progressDeadlineSeconds ?? DEFAULT_PROGRESS_DEADLINE_SECONDS})`);
      }
    }
    return { actions: this.actions, events: this.events, status, ...(this.revision !== undefined ? { revision: this.revision } : {}), ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) };
  }

  private condition(status: WorkloadCondition['status'], reason: string, message: string, refresh = false): void {
    this.conditions = setCondition(this.conditions, { type: 'Progressing', status, reason, message }, this.nowIso, refresh);
  }

  private event(type: PlannedEvent['type'], reason: string, message: string): void {
    this.events.push({ type, reason, message });
  }
}
