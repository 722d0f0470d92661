import type { DeploymentStatus, WorkloadCondition } from '../../shared/resources/deployment.js';
import type { ReplicaSetView } from './deployment-plan.js';

// A Deployment's status and its Available and Progressing conditions, as Kubernetes' deployment
// controller computes them (sync.go calculateStatus, progress.go syncRolloutStatus), with no I/O.

/** Kubernetes' condition reasons (pkg/controller/deployment/util). */
export const Reason = {
  MinimumReplicasAvailable: 'MinimumReplicasAvailable',
  MinimumReplicasUnavailable: 'MinimumReplicasUnavailable',
  NewReplicaSetCreated: 'NewReplicaSetCreated',
  FoundNewReplicaSet: 'FoundNewReplicaSet',
  ReplicaSetUpdated: 'ReplicaSetUpdated',
  NewReplicaSetAvailable: 'NewReplicaSetAvailable',
  ProgressDeadlineExceeded: 'ProgressDeadlineExceeded',
  DeploymentPaused: 'DeploymentPaused',
  DeploymentResumed: 'DeploymentResumed',
} as const;

export const DEFAULT_PROGRESS_DEADLINE_SECONDS = 600;

export function getCondition(conditions: WorkloadCondition[] | undefined, type: string): WorkloadCondition | undefined {
  return conditions?.find((c) => c.type === type);
}

/**
 * `conditions` with `next` set (Kubernetes' SetDeploymentCondition): unchanged when a condition
 * of the same status and reason is there; the transition time kept when only the reason changes.
 */
export function setCondition(conditions: WorkloadCondition[], next: Omit<WorkloadCondition, 'lastUpdateTime' | 'lastTransitionTime'>, nowIso: string, keepTransition = false): WorkloadCondition[] {
  const prev = getCondition(conditions, next.type);
  if (prev && prev.status === next.status && prev.reason === next.reason && !keepTransition) return conditions;
  const lastTransitionTime = prev && prev.status === next.status ? (prev.lastTransitionTime ?? nowIso) : nowIso;
  return [...conditions.filter((c) => c.type !== next.type), { ...next, lastUpdateTime: nowIso, lastTransitionTime }];
}

export interface StatusInput {
  replicas: number;
  maxUnavailable: number;
  generation: number;
  conditions: WorkloadCondition[];
  newRS: ReplicaSetView | undefined;
  all: ReplicaSetView[];
}

/** Kubernetes' calculateStatus: counts over every ReplicaSet, and the Available condition. */
export function calculateStatus(input: StatusInput, nowIso: string): DeploymentStatus {
  const { all } = input;
  const available = all.reduce((n, v) => n + v.available, 0);
  const wanted = all.reduce((n, v) => n + v.replicas, 0);
  const status: DeploymentStatus = {
    observedGeneration: input.generation,
    replicas: all.reduce((n, v) => n + v.current, 0),
    updatedReplicas: input.newRS?.current ?? 0,
    readyReplicas: all.reduce((n, v) => n + v.ready, 0),
    availableReplicas: available,
    unavailableReplicas: Math.max(0, wanted - available),
  };
  const minimum = available >= input.replicas - input.maxUnavailable;
  status.conditions = setCondition(
    input.conditions,
    minimum
      ? { type: 'Available', status: 'True', reason: Reason.MinimumReplicasAvailable, message: 'Deployment has minimum availability.' }
      : { type: 'Available', status: 'False', reason: Reason.MinimumReplicasUnavailable, message: 'Deployment does not have minimum availability.' },
    nowIso,
  );
  return status;
}

/** Every replica is updated and available, and the latest spec has been seen (Kubernetes' DeploymentComplete). */
export function isComplete(replicas: number, generation: number, s: DeploymentStatus): boolean {
  return s.updatedReplicas === replicas && s.replicas === replicas && s.availableReplicas === replicas && (s.observedGeneration ?? 0) >= generation;
}

/** Any sign of progress between two statuses (Kubernetes' DeploymentProgressing). */
function progressed(prev: DeploymentStatus, next: DeploymentStatus): boolean {
  const oldBefore = (prev.replicas ?? 0) - (prev.updatedReplicas ?? 0);
  const oldNow = (next.replicas ?? 0) - (next.updatedReplicas ?? 0);
  return (
    (next.updatedReplicas ?? 0) > (prev.updatedReplicas ?? 0) ||
    oldNow < oldBefore ||
    (next.readyReplicas ?? 0) > (prev.readyReplicas ?? 0) ||
    (next.availableReplicas ?? 0) > (prev.availableReplicas ?? 0)
  );
}

export interface RolloutInput {
  deploymentName: string;
  newReplicaSetName: string | undefined;
  replicas: number;
  generation: number;
  deadlineSeconds: number;
  /** The status stored before this pass. */
  prev: DeploymentStatus;
  now: number;
}

export interface RolloutVerdict {
  status: DeploymentStatus;
  /** The deadline passed in this pass (not before). */
  timedOut: boolean;
  /** When to look again for the deadline, if the rollout is under way. */
  recheckInMs?: number;
}

/**
 * The Progressing condition (Kubernetes' syncRolloutStatus): NewReplicaSetAvailable once the
 * rollout is complete; refreshed (ReplicaSetUpdated) on any progress; ProgressDeadlineExceeded
 * when nothing has moved for progressDeadlineSeconds since it was last refreshed.
 */
export function rolloutVerdict(next: DeploymentStatus, input: RolloutInput): RolloutVerdict {
  const nowIso = new Date(input.now).toISOString();
  const before = getCondition(input.prev.conditions, 'Progressing');
  let conditions = next.conditions ?? [];
  const settled = next.replicas === next.updatedReplicas && before?.reason === Reason.NewReplicaSetAvailable;
  const subject = input.newReplicaSetName ? `ReplicaSet "${input.newReplicaSetName}"` : `Deployment "${input.deploymentName}"`;
  let timedOut = false;
  if (!settled) {
    if (isComplete(input.replicas, input.generation, next)) {
      conditions = setCondition(conditions, { type: 'Progressing', status: 'True', reason: Reason.NewReplicaSetAvailable, message: `${subject} has successfully progressed.` }, nowIso);
    } else if (progressed(input.prev, next)) {
      // Progress refreshes lastUpdateTime even with the same reason: the deadline counts from it.
      conditions = setCondition(conditions, { type: 'Progressing', status: 'True', reason: Reason.ReplicaSetUpdated, message: `${subject} is progressing.` }, nowIso, true);
    } else {
      const current = getCondition(conditions, 'Progressing');
      const from = Date.parse(current?.lastUpdateTime ?? '');
      const due = current && current.reason !== Reason.NewReplicaSetAvailable && current.reason !== Reason.ProgressDeadlineExceeded && !Number.isNaN(from) && input.now >= from + input.deadlineSeconds * 1000;
      if (due) {
        conditions = setCondition(conditions, { type: 'Progressing', status: 'False', reason: Reason.ProgressDeadlineExceeded, message: `${subject} has timed out progressing.` }, nowIso);
        timedOut = true;
      }
    }
  }
  const status = { ...next, conditions };
  const current = getCondition(conditions, 'Progressing');
  let recheckInMs: number | undefined;
  const waiting = current && current.reason !== Reason.NewReplicaSetAvailable && current.reason !== Reason.ProgressDeadlineExceeded;
  if (waiting && !isComplete(input.replicas, input.generation, status)) {
    const from = Date.parse(current.lastUpdateTime ?? '');
    if (!Number.isNaN(from)) recheckInMs = Math.max(0, from + input.deadlineSeconds * 1000 - input.now);
  }
  return { status, timedOut, ...(recheckInMs !== undefined ? { recheckInMs } : {}) };
}
