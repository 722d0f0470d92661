import type { ContainerStatusReport, DesiredPod, PodConditionReport, PodStatusReport } from '../../shared/protocol/messages.js';
import { UPDATE_LOCK_MESSAGE, UPDATE_LOCKED_CONDITION } from '../../shared/protocol/update-lock.js';
import { isDead, newestFirst, startFailed } from './plan.js';
import { INFRA_CONTAINER, LABEL_CONTAINER, LABEL_POD_UID, LABEL_RESTART_COUNT, type RuntimeContainer } from '../runtime/runtime.js';

export interface Waiting {
  reason: string;
  message: string;
}

/** What the probes say of one container instance; undefined when none speaks for it. */
export type ProbeReadiness = (podUid: string, container: string, containerId: string) => boolean | undefined;

/** What the reconcile knows of the update lock: the replacements it defers and the pods' conditions. */
export interface UpdateLockView {
  /** By `podUid/container`, or `podUid/` for the whole pod (see Plan.deferred). */
  deferred: ReadonlySet<string>;
  /** The device's own pod conditions, by pod uid. */
  conditions: ReadonlyMap<string, PodConditionReport[]>;
}

const NO_LOCKS: UpdateLockView = { deferred: new Set(), conditions: new Map() };

/**
 * Pod and container statuses from what the engine shows, in Kubernetes' terms. `waiting`
 * carries what the agent knows and the engine does not (an image pull that failed, a container
 * in back-off), by `podUid/container`. `probeReady` gives the readiness (and startup) probes'
 * verdict on a running container.
 */
export function podStatuses(desired: readonly DesiredPod[], containers: readonly RuntimeContainer[], waiting: ReadonlyMap<string, Waiting>, probeReady: ProbeReadiness = () => undefined, locks: UpdateLockView = NO_LOCKS): PodStatusReport[] {
  return desired.map((pod) => {
    const mine = containers.filter((c) => c.labels[LABEL_POD_UID] === pod.uid);
    const infra = mine.find((c) => c.labels[LABEL_CONTAINER] === INFRA_CONTAINER && c.state === 'running');
    const statuses: ContainerStatusReport[] = pod.spec.containers.map((spec) => {
      const [current, previous] = newestFirst(mine.filter((c) => c.labels[LABEL_CONTAINER] === spec.name));
      const pending = waiting.get(`${pod.uid}/${spec.name}`) ?? waiting.get(`${pod.uid}/`);
      const restartCount = Number(current?.labels[LABEL_RESTART_COUNT] ?? '0') || 0;
      const base = { name: spec.name, image: spec.image, restartCount, ...(current ? { containerID: `docker://${current.id}`, ...(current.imageId ? { imageID: current.imageId } : {}) } : {}) };
      // The run before this one, as Kubernetes' lastState: the planner keeps its dead instance.
      const last = previous && isDead(previous) ? { lastState: terminated(previous) } : {};
      if (current && current.state === 'running') {
        // Kubernetes' ready: running and the readiness probe passed, true when there is none;
        // a container with a probe that has not answered yet is not ready.
        const ready = probeReady(pod.uid, spec.name, current.id) ?? !(spec.readinessProbe || spec.startupProbe);
        // Download-then-kill: the old container serves on while the new image cannot be pulled;
        // the status says what the container waits for, and `ready` that the old one still serves.
        if (pending && current.image !== spec.image) return { ...base, ready, state: { waiting: pending }, ...last };
        // The update lock keeps the old container: it serves on, and waits for the lock to go.
        if (locks.deferred.has(`${pod.uid}/${spec.name}`) || locks.deferred.has(`${pod.uid}/`)) return { ...base, ready, state: { waiting: { reason: UPDATE_LOCKED_CONDITION, message: UPDATE_LOCK_MESSAGE } }, ...last };
        return { ...base, ready, state: { running: { ...(current.startedAt ? { startedAt: current.startedAt } : {}) } }, ...last };
      }
      if (pending) return { ...base, ready: false, state: { waiting: pending }, ...(current && isDead(current) ? { lastState: terminated(current) } : last) };
      if (current && isDead(current)) return { ...base, ready: false, state: terminated(current), ...last };
      return { ...base, ready: false, state: { waiting: { reason: 'ContainerCreating' } }, ...last };
    });
    const conditions = locks.conditions.get(pod.uid);
    const problems = statuses.flatMap((c) => (c.state.waiting?.message ? [`${c.name}: ${c.state.waiting.reason ?? 'Waiting'}: ${c.state.waiting.message}`] : []));
    return {
      uid: pod.uid,
      name: pod.name,
      namespace: pod.namespace,
      phase: phase(pod, statuses, Boolean(infra)),
      ...(infra?.startedAt ? { startTime: infra.startedAt } : {}),
      ...(infra?.podIP ? { podIP: infra.podIP } : {}),
      // Why the pod is not (yet) what its spec asks, in one line.
      ...(problems.length ? { message: problems.join('; ') } : {}),
      containerStatuses: statuses,
      ...(conditions?.length ? { conditions } : {}),
    };
  });
}

function terminated(c: RuntimeContainer): { terminated: { exitCode: number; reason: string; message?: string; startedAt?: string; finishedAt?: string } } {
  // The kubelet's StartError (exit code 128) for a container the engine could not start.
  if (startFailed(c)) return { terminated: { exitCode: c.exitCode || 128, reason: 'StartError', ...(c.error ? { message: c.error } : {}) } };
  const exitCode = c.exitCode ?? 0;
  const reason = c.oomKilled ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error';
  return { terminated: { exitCode, reason, ...(c.startedAt ? { startedAt: c.startedAt } : {}), ...(c.finishedAt ? { finishedAt: c.finishedAt } : {}) } };
}

/** Kubernetes' pod phase: Pending until every container has started once, Succeeded/Failed when all are done for good. */
function phase(pod: DesiredPod, statuses: ContainerStatusReport[], sandboxRunning: boolean): PodStatusReport['phase'] {
  if (!sandboxRunning && statuses.every((s) => !s.state.terminated)) return 'Pending';
  const policy = pod.spec.restartPolicy ?? 'Always';
  const terminatedAll = statuses.every((s) => s.state.terminated);
  if (terminatedAll && policy !== 'Always') {
    const failed = statuses.some((s) => (s.state.terminated?.exitCode ?? 0) !== 0);
    if (policy === 'Never') return failed ? 'Failed' : 'Succeeded';
    if (!failed) return 'Succeeded';
  }
  if (statuses.some((s) => s.ready || s.state.running || s.state.terminated || s.lastState || s.restartCount > 0)) return 'Running';
  return 'Pending';
}
