import type { DesiredPod } from '../../shared/protocol/messages.js';
import type { Container } from '../../shared/resources/pod.js';
import {
  INFRA_CONTAINER,
  LABEL_CONTAINER,
  LABEL_POD_UID,
  LABEL_RESTART_COUNT,
  LABEL_SPEC_HASH,
  type RuntimeContainer,
} from '../runtime/runtime.js';
import { containerSpecHash, infraSpecHash } from './hash.js';

/** What the agent sees: its own containers (by node label) and the images present. */
export interface ActualState {
  containers: RuntimeContainer[];
  images: ReadonlySet<string>;
}

export interface PlanContext {
  pauseImage: string;
  podNetwork: string;
  now: number;
  /** Containers in back-off after a crash, by `podUid/container`: not restarted before `until`. */
  backoff: ReadonlyMap<string, { until: number }>;
  /**
   * Pulls that failed, not retried before `until` (ImagePullBackOff), by pullBackoffKey: per pod
   * and image, as the kubelet keys its image back-off (one pod's missing credentials do not hold
   * back another pod's pull of the same image), and for the pause image alone.
   */
  pullBackoff: ReadonlyMap<string, { until: number; message: string }>;
  /** Images pulled during the current reconcile pass: pullPolicy Always is satisfied by them. */
  pulledThisPass: ReadonlySet<string>;
  /** The environment of containers that take env from ConfigMaps or Secrets, by `podUid/container`. */
  resolvedEnv?: ReadonlyMap<string, string[]>;
  /**
   * Containers that cannot be made now (a missing ConfigMap or Secret, a volume that cannot be
   * set up), by `podUid/container`, or by `podUid/` for the whole pod: none is created or
   * replaced, and a running one is left running, as the kubelet does.
   */
  blocked?: ReadonlySet<string>;
  /**
   * Pods whose update lock is held and not overridden, by uid: a running container of theirs is
   * not replaced or removed for a spec change (see update-lock.ts). A first start, a restart
   * after a crash and the pod's removal go ahead.
   */
  updateLocked?: ReadonlySet<string>;
}

/** The steps, and what they do or defer of spec changes that replace running containers. */
export interface Plan {
  steps: Step[];
  /** Pods in which a running container is to be replaced for a spec change (whether now or deferred), by uid. */
  specChanged: Set<string>;
  /** Replacements the update lock defers, by `podUid/container`, or `podUid/` for the pod's sandbox. */
  deferred: Set<string>;
}

export type Step =
  | { action: 'remove'; container: RuntimeContainer; reason: string }
  | { action: 'pull'; image: string; pod: DesiredPod }
  | { action: 'createInfra'; pod: DesiredPod; hash: string }
  | { action: 'createContainer'; pod: DesiredPod; container: Container; infraId: string; hash: string; restartCount: number; env?: string[] }
  | { action: 'start'; container: RuntimeContainer; pod: DesiredPod };

export type StepAction = Step['action'];

/** The pod annotation that chooses how a container whose image changes is replaced (balena's update strategies). */
export const UPDATE_ORDER_ANNOTATION = 'flotilla.io/update-order';

export type UpdateOrder = 'download-then-kill' | 'kill-then-download';

/** The pod's update order: `download-then-kill` unless the annotation says `kill-then-download`. */
export function updateOrder(pod: DesiredPod): UpdateOrder {
  return pod.annotations?.[UPDATE_ORDER_ANNOTATION] === 'kill-then-download' ? 'kill-then-download' : 'download-then-kill';
}

const RUNNING: ReadonlySet<string> = new Set(['running', 'restarting', 'paused']);

export function backoffKey(podUid: string, container: string): string {
  return `${podUid}/${container}`;
}

/** The key of a pull's back-off: the pod's uid and the image, or the pause image alone (the same for every pod). */
export function pullBackoffKey(podUid: string, image: string, pauseImage: string): string {
  return image === pauseImage ? image : `${podUid}|${image}`;
}

/** Kubernetes' default pull policy: Always for `:latest` or an untagged image, else IfNotPresent. */
export function pullPolicy(c: Container): 'Always' | 'IfNotPresent' | 'Never' {
  if (c.imagePullPolicy) return c.imagePullPolicy;
  const lastSegment = c.image.split('/').pop() ?? c.image;
  const tagged = lastSegment.includes(':') || c.image.includes('@');
  return !tagged || c.image.endsWith(':latest') ? 'Always' : 'IfNotPresent';
}

/**
 * The steps that move `actual` toward `desired`, computed without any I/O (balena's
 * nextStepsForAppUpdate). The executor runs them and the agent plans again until nothing is
 * left, so each plan only needs to make progress, not reach the goal in one go:
 *  - containers of pods no longer desired, duplicates, and containers whose spec hash changed are removed;
 *  - a pod's infra container is made first; its app containers join its network namespace;
 *  - an exited container is restarted as the pod's restartPolicy says, after its back-off, and
 *    its dead instance is kept until the next restart, as its previous attempt.
 */
export function planSteps(actual: ActualState, desired: readonly DesiredPod[], ctx: PlanContext): Step[] {
  return planPods(actual, desired, ctx).steps;
}

/** planSteps, with what the plan does of spec changes (for the update lock's condition and events). */
export function planPods(actual: ActualState, desired: readonly DesiredPod[], ctx: PlanContext): Plan {
  const steps: Step[] = [];
  const specChanged = new Set<string>();
  const deferred = new Set<string>();
  const desiredByUid = new Map(desired.map((p) => [p.uid, p]));
  const byPod = new Map<string, RuntimeContainer[]>();
  for (const c of actual.containers) {
    const uid = c.labels[LABEL_POD_UID] ?? '';
    if (!desiredByUid.has(uid)) {
      steps.push({ action: 'remove', container: c, reason: 'pod is no longer desired on this node' });
      continue;
    }
    byPod.set(uid, [...(byPod.get(uid) ?? []), c]);
  }
  const pulls = new Set<string>();
  /** Whether `image` can be used now; if not, a pull is planned (once per image). */
  const needImage = (image: string, pod: DesiredPod, policy: 'Always' | 'IfNotPresent' | 'Never', creating: boolean): boolean => {
    const present = actual.images.has(image);
    if (policy === 'Never') return present;
    if (present && (policy === 'IfNotPresent' || !creating || ctx.pulledThisPass.has(image))) return true;
    if ((ctx.pullBackoff.get(pullBackoffKey(pod.uid, image, ctx.pauseImage))?.until ?? 0) > ctx.now) return false;
    if (!pulls.has(image)) {
      pulls.add(image);
      steps.push({ action: 'pull', image, pod });
    }
    return false;
  };

  for (const pod of desired) {
    const containers = byPod.get(pod.uid) ?? [];
    const infraHash = infraSpecHash(pod, ctx.pauseImage, ctx.podNetwork);
    const infras = newestFirst(containers.filter((c) => c.labels[LABEL_CONTAINER] === INFRA_CONTAINER));
    const [infra, ...extraInfras] = infras;
    for (const extra of extraInfras) steps.push({ action: 'remove', container: extra, reason: 'duplicate infra container' });
    const apps = containers.filter((c) => c.labels[LABEL_CONTAINER] !== INFRA_CONTAINER);
    const locked = ctx.updateLocked?.has(pod.uid) ?? false;
    // The app containers are checked against the sandbox that stays: the new one, unless the
    // update lock keeps the running one.
    let appInfraHash = infraHash;
    if (infra && infra.labels[LABEL_SPEC_HASH] !== infraHash && RUNNING.has(infra.state)) {
      specChanged.add(pod.uid);
      if (locked) {
        deferred.add(`${pod.uid}/`);
        appInfraHash = infra.labels[LABEL_SPEC_HASH] ?? '';
      }
    }

    // The infra container is missing, stale or dead: the pod's network namespace is gone, so
    // every app container goes with it and the pod starts over (Kubernetes' sandbox recreation).
    if (!infra || infra.labels[LABEL_SPEC_HASH] !== appInfraHash || !RUNNING.has(infra.state)) {
      if (infra && infra.state === 'created' && infra.labels[LABEL_SPEC_HASH] === infraHash) {
        steps.push({ action: 'start', container: infra, pod });
        continue;
      }
      if (infra) steps.push({ action: 'remove', container: infra, reason: infra.labels[LABEL_SPEC_HASH] !== infraHash ? 'pod sandbox changed' : 'pod sandbox is not running' });
      for (const app of apps) steps.push({ action: 'remove', container: app, reason: 'pod sandbox is being recreated' });
      if (needImage(ctx.pauseImage, pod, 'IfNotPresent', true)) steps.push({ action: 'createInfra', pod, hash: infraHash });
      continue;
    }

    const wanted = new Set(pod.spec.containers.map((c) => c.name));
    for (const app of apps) {
      const name = app.labels[LABEL_CONTAINER] ?? '';
      if (wanted.has(name)) continue;
      if (RUNNING.has(app.state)) {
        specChanged.add(pod.uid);
        if (locked) {
          deferred.add(backoffKey(pod.uid, name));
          continue;
        }
      }
      steps.push({ action: 'remove', container: app, reason: 'container removed from the pod spec' });
    }
    for (const spec of pod.spec.containers) {
      const key = backoffKey(pod.uid, spec.name);
      const env = ctx.resolvedEnv?.get(key);
      const hash = containerSpecHash(pod, spec, appInfraHash, env);
      const create = (restartCount: number): Step => ({ action: 'createContainer', pod, container: spec, infraId: infra.id, hash, restartCount, ...(env ? { env } : {}) });
      const blocked = ctx.blocked?.has(key) || ctx.blocked?.has(`${pod.uid}/`);
      const mine = newestFirst(apps.filter((c) => c.labels[LABEL_CONTAINER] === spec.name));
      const [current, ...older] = mine;
      // Kubernetes' kubelet keeps the last dead instance of each container: the status's
      // lastState (and the logs of the attempt before) come from it. Older instances go.
      const previous = current && older[0] && isPreviousAttempt(older[0], current) ? older[0] : undefined;
      for (const old of older) if (old !== previous) steps.push({ action: 'remove', container: old, reason: 'older instance of the container' });
      const restartCount = current ? attempt(current) : 0;
      if (blocked) continue;
      if (!current) {
        if (needImage(spec.image, pod, pullPolicy(spec), true)) steps.push(create(0));
        continue;
      }
      if (current.labels[LABEL_SPEC_HASH] !== hash) {
        if (RUNNING.has(current.state)) specChanged.add(pod.uid);
        // The update lock (balena's): the running container stays. Under download-then-kill the
        // new image is fetched ahead, so the update is quick once the lock goes; a container
        // that is not running is made anew, since nothing is interrupted.
        if (locked && RUNNING.has(current.state)) {
          deferred.add(key);
          if (updateOrder(pod) === 'download-then-kill' && !actual.images.has(spec.image) && pullPolicy(spec) !== 'Never') needImage(spec.image, pod, 'IfNotPresent', true);
          continue;
        }
        // Kill-then-download, for devices short of disk: when the image changes and is absent,
        // the old container goes first (its image may then be collected), and the pull and the
        // create follow in later passes, once no instance is left.
        if (updateOrder(pod) === 'kill-then-download' && current.image !== spec.image && !actual.images.has(spec.image)) {
          if (previous) steps.push({ action: 'remove', container: previous, reason: 'container image changed (kill-then-download)' });
          steps.push({ action: 'remove', container: current, reason: 'container image changed (kill-then-download)' });
          continue;
        }
        // Download-then-kill: the old container is only removed once the new image is here, so a
        // failed pull leaves it running.
        if (needImage(spec.image, pod, pullPolicy(spec), true)) {
          // The new container starts a new count (restart 0): no dead instance may sort above it.
          if (previous) steps.push({ action: 'remove', container: previous, reason: 'container spec changed' });
          steps.push({ action: 'remove', container: current, reason: 'container spec changed' });
          steps.push(create(0));
        }
        continue;
      }
      if (current.state === 'created') {
        steps.push({ action: 'start', container: current, pod });
        continue;
      }
      if (current.state === 'exited' || current.state === 'dead') {
        const policy = pod.spec.restartPolicy ?? 'Always';
        const restart = policy === 'Always' || (policy === 'OnFailure' && current.exitCode !== 0);
        if (!restart) continue;
        if ((ctx.backoff.get(backoffKey(pod.uid, spec.name))?.until ?? 0) > ctx.now) continue;
        if (needImage(spec.image, pod, pullPolicy(spec), false)) {
          // The exited instance stays as the new one's previous attempt; the one before it goes.
          if (previous) steps.push({ action: 'remove', container: previous, reason: `superseded by a newer dead instance (restartPolicy ${policy})` });
          steps.push(create(restartCount + 1));
        }
      }
    }
  }
  return { steps, specChanged, deferred };
}

const DEAD: ReadonlySet<string> = new Set(['exited', 'dead']);

function attempt(c: RuntimeContainer): number {
  return Number(c.labels[LABEL_RESTART_COUNT] ?? '0') || 0;
}

/** `older` is a dead earlier attempt of the same spec as `current`, i.e. its previous run. */
function isPreviousAttempt(older: RuntimeContainer, current: RuntimeContainer): boolean {
  return DEAD.has(older.state) && older.labels[LABEL_SPEC_HASH] === current.labels[LABEL_SPEC_HASH] && attempt(older) < attempt(current);
}

/**
 * Newest first: by the attempt number the agent wrote, then by creation time. Creation times
 * are compared as instants, not strings: the engine trims trailing zeros of the fraction.
 */
export function newestFirst(containers: readonly RuntimeContainer[]): RuntimeContainer[] {
  const created = (c: RuntimeContainer) => (c.createdAt ? Date.parse(c.createdAt) : 0) || 0;
  return [...containers].sort((a, b) => attempt(b) - attempt(a) || created(b) - created(a));
}
