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
import { imageReferenceProblem } from '../../shared/resources/image.js';
import { containerSpecHash, infraSpecHash } from './hash.js';
import type { Waiting } from './status.js';

/** What the agent sees: its own containers (by node label) and the images present. */
export interface ActualState {
  containers: RuntimeContainer[];
  images: ReadonlySet<string>;
}

export interface PlanContext {
  pauseImage: string;
  /**
   * Pods of the desired set that this agent could not read (refusedPods), by uid: their
   * containers are left exactly as they are, never removed for a spec the device cannot read.
   */
  leaveAlone?: ReadonlySet<string>;
  podNetwork: string;
  /**
   * Set while the pod network is not ready (the overlay has no pod CIDR yet, or cannot be built):
   * a pod without a running sandbox waits with it (the kubelet's NetworkNotReady), and a running
   * sandbox is left as it is. hostNetwork pods go ahead.
   */
  networkNotReady?: Waiting;
  now: number;
  /** Containers in back-off after a crash, by `podUid/container`: not restarted before `until`. */
  backoff: ReadonlyMap<string, { until: number }>;
  /**
   * Pulls that failed, not retried before `until` (ImagePullBackOff), by pullBackoffKey: per pod
   * and image, as the kubelet keys its image back-off (one pod's missing credentials do not hold
   * back another pod's pull of the same image), and for the pause image alone.
   */
  pullBackoff: ReadonlyMap<string, { until: number; message: string }>;
  /** Images pulled during (or just before) the current reconcile: pullPolicy Always is satisfied by them. */
  pulledThisPass: ReadonlySet<string>;
  /** Images being pulled (in the background): no new pull, and nothing made of them until it ends. */
  pulling?: ReadonlySet<string>;
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
  /**
   * Containers and sandboxes the engine refused to make, by `podUid/container` or `podUid/` (see
   * failures.ts): not tried again before `until` while their spec hash is the same.
   */
  failures?: ReadonlyMap<string, { until: number; hash: string }>;
}

/** The steps, and what they do or defer of spec changes that replace running containers. */
export interface Plan {
  steps: Step[];
  /** Pods in which a running container is to be replaced for a spec change (whether now or deferred), by uid. */
  specChanged: Set<string>;
  /** Replacements the update lock defers, by `podUid/container`, or `podUid/` for the pod's sandbox. */
  deferred: Set<string>;
  /**
   * Containers that cannot be made whatever is tried, by `podUid/container` (or `podUid/` for the
   * sandbox): an image reference the engine cannot parse (InvalidImageName), an image that is
   * absent under imagePullPolicy Never (ErrImageNeverPull). Nothing is asked of the engine for them.
   */
  waiting: Map<string, Waiting>;
}

export type Step =
  | { action: 'remove'; container: RuntimeContainer; reason: string }
  | { action: 'pull'; image: string; pod: DesiredPod }
  | { action: 'createInfra'; pod: DesiredPod; hash: string }
  | { action: 'createContainer'; pod: DesiredPod; container: Container; infraId: string; hash: string; restartCount: number; env?: string[]; podIP?: string }
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
  const waiting = new Map<string, Waiting>();
  const desiredByUid = new Map(desired.map((p) => [p.uid, p]));
  const byPod = new Map<string, RuntimeContainer[]>();
  for (const c of actual.containers) {
    const uid = c.labels[LABEL_POD_UID] ?? '';
    if (!desiredByUid.has(uid)) {
      if (ctx.leaveAlone?.has(uid)) continue;
      steps.push({ action: 'remove', container: c, reason: 'pod is no longer desired on this node' });
      continue;
    }
    byPod.set(uid, [...(byPod.get(uid) ?? []), c]);
  }
  const pulls = new Set<string>();
  /** Whether `image` can be used now; if not, a pull is planned (once per image). `key` is what waits for it. */
  const needImage = (image: string, pod: DesiredPod, policy: 'Always' | 'IfNotPresent' | 'Never', creating: boolean, key: string): boolean => {
    // The kubelet's InvalidImageName: the reference is checked before anything is asked of the engine.
    const problem = imageReferenceProblem(image);
    if (problem) {
      waiting.set(key, { reason: 'InvalidImageName', message: `Failed to apply default image tag "${image}": couldn't parse image reference "${image}": ${problem}` });
      return false;
    }
    const present = actual.images.has(image);
    if (policy === 'Never') {
      if (!present) waiting.set(key, { reason: 'ErrImageNeverPull', message: `Container image "${image}" is not present with pull policy of Never` });
      return present;
    }
    if (present && (policy === 'IfNotPresent' || !creating || ctx.pulledThisPass.has(image))) return true;
    if (ctx.pulling?.has(image)) return false;
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
    // A sandbox attached to another network than the pod network (the pod CIDR changed, the
    // overlay was turned on or off) is made anew, as the kubelet recreates a sandbox whose
    // network changed.
    const moved = infra?.networkMode !== undefined && infra.networkMode !== (pod.spec.hostNetwork ? 'host' : ctx.podNetwork);
    const waitForNetwork = !pod.spec.hostNetwork && ctx.networkNotReady !== undefined;
    if (waitForNetwork) {
      if (!infra || !RUNNING.has(infra.state)) {
        waiting.set(`${pod.uid}/`, ctx.networkNotReady!);
        continue;
      }
      // No network to move it to: the running sandbox, and the app containers in it, stay.
      appInfraHash = infra.labels[LABEL_SPEC_HASH] ?? '';
    } else if (infra && (infra.labels[LABEL_SPEC_HASH] !== infraHash || moved) && RUNNING.has(infra.state)) {
      specChanged.add(pod.uid);
      if (locked) {
        deferred.add(`${pod.uid}/`);
        appInfraHash = infra.labels[LABEL_SPEC_HASH] ?? '';
      }
    }
    const replaceMoved = moved && !waitForNetwork && !locked;

    // The infra container is missing, stale or dead: the pod's network namespace is gone, so
    // every app container goes with it and the pod starts over (Kubernetes' sandbox recreation).
    if (!infra || infra.labels[LABEL_SPEC_HASH] !== appInfraHash || !RUNNING.has(infra.state) || replaceMoved) {
      // A sandbox the engine refused waits out its back-off; the rest of the node goes on.
      const sandboxFailing = backingOff(ctx, `${pod.uid}/`, infraHash);
      if (infra && infra.state === 'created' && !startFailed(infra) && infra.labels[LABEL_SPEC_HASH] === infraHash && !moved) {
        if (!sandboxFailing) steps.push({ action: 'start', container: infra, pod });
        continue;
      }
      if (infra) steps.push({ action: 'remove', container: infra, reason: moved ? 'pod sandbox network changed' : infra.labels[LABEL_SPEC_HASH] !== infraHash ? 'pod sandbox changed' : 'pod sandbox is not running' });
      for (const app of apps) steps.push({ action: 'remove', container: app, reason: 'pod sandbox is being recreated' });
      if (!sandboxFailing && needImage(ctx.pauseImage, pod, 'IfNotPresent', true, `${pod.uid}/`)) steps.push({ action: 'createInfra', pod, hash: infraHash });
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
      const create = (restartCount: number): Step => ({ action: 'createContainer', pod, container: spec, infraId: infra.id, hash, restartCount, ...(env ? { env } : {}), ...(infra.podIP ? { podIP: infra.podIP } : {}) });
      const blocked = ctx.blocked?.has(key) || ctx.blocked?.has(`${pod.uid}/`);
      const mine = newestFirst(apps.filter((c) => c.labels[LABEL_CONTAINER] === spec.name));
      const [current, ...older] = mine;
      // Kubernetes' kubelet keeps the last dead instance of each container: the status's
      // lastState (and the logs of the attempt before) come from it. Older instances go.
      const previous = current && older[0] && isPreviousAttempt(older[0], current) ? older[0] : undefined;
      for (const old of older) if (old !== previous) steps.push({ action: 'remove', container: old, reason: 'older instance of the container' });
      const restartCount = current ? attempt(current) : 0;
      if (blocked) continue;
      // A container the engine refused to create waits out its back-off (for this spec).
      const failing = backingOff(ctx, key, hash);
      if (!current) {
        if (!failing && needImage(spec.image, pod, pullPolicy(spec), true, key)) steps.push(create(0));
        continue;
      }
      if (current.labels[LABEL_SPEC_HASH] !== hash) {
        if (RUNNING.has(current.state)) specChanged.add(pod.uid);
        // The update lock (balena's): the running container stays. Under download-then-kill the
        // new image is fetched ahead, so the update is quick once the lock goes; a container
        // that is not running is made anew, since nothing is interrupted.
        if (locked && RUNNING.has(current.state)) {
          deferred.add(key);
          if (updateOrder(pod) === 'download-then-kill' && !actual.images.has(spec.image) && pullPolicy(spec) !== 'Never') needImage(spec.image, pod, 'IfNotPresent', true, key);
          continue;
        }
        // Kill-then-download, for devices short of disk: when the image changes and is absent,
        // the old container goes first (its image may then be collected), and the pull and the
        // create follow in later passes, once no instance is left.
        // An image that no pull can bring (an invalid reference, pull policy Never) kills nothing.
        if (updateOrder(pod) === 'kill-then-download' && current.image !== spec.image && !actual.images.has(spec.image) && pullPolicy(spec) !== 'Never' && !imageReferenceProblem(spec.image)) {
          if (previous) steps.push({ action: 'remove', container: previous, reason: 'container image changed (kill-then-download)' });
          steps.push({ action: 'remove', container: current, reason: 'container image changed (kill-then-download)' });
          continue;
        }
        // Download-then-kill: the old container is only removed once the new image is here, so a
        // failed pull leaves it running.
        if (needImage(spec.image, pod, pullPolicy(spec), true, key)) {
          // The new container starts a new count (restart 0): no dead instance may sort above it.
          if (previous) steps.push({ action: 'remove', container: previous, reason: 'container spec changed' });
          steps.push({ action: 'remove', container: current, reason: 'container spec changed' });
          steps.push(create(0));
        }
        continue;
      }
      if (current.state === 'created' && !startFailed(current)) {
        steps.push({ action: 'start', container: current, pod });
        continue;
      }
      // A container the engine could not start is a failed attempt, as the kubelet's StartError:
      // it is restarted by the pod's restartPolicy, with the crash-loop back-off.
      if (isDead(current)) {
        const policy = pod.spec.restartPolicy ?? 'Always';
        const restart = policy === 'Always' || (policy === 'OnFailure' && (startFailed(current) || current.exitCode !== 0));
        if (!restart || failing) continue;
        if ((ctx.backoff.get(backoffKey(pod.uid, spec.name))?.until ?? 0) > ctx.now) continue;
        if (needImage(spec.image, pod, pullPolicy(spec), false, key)) {
          // The exited instance stays as the new one's previous attempt; the one before it goes.
          if (previous) steps.push({ action: 'remove', container: previous, reason: `superseded by a newer dead instance (restartPolicy ${policy})` });
          steps.push(create(restartCount + 1));
        }
      }
    }
  }
  return { steps, specChanged, deferred, waiting };
}

/** Whether the container (or sandbox) of `key` failed to be made with this spec hash, and waits out its back-off. */
function backingOff(ctx: PlanContext, key: string, hash: string): boolean {
  const failure = ctx.failures?.get(key);
  return failure !== undefined && failure.hash === hash && failure.until > ctx.now;
}

/**
 * A container the engine made but could not start (an entrypoint that does not exist, a mount
 * it refused at start): the engine leaves it created, with its error.
 */
export function startFailed(c: RuntimeContainer): boolean {
  return c.state === 'created' && Boolean(c.error);
}

/** The container ran and stopped, or never could start: either way, an attempt that is over. */
export function isDead(c: RuntimeContainer): boolean {
  return c.state === 'exited' || c.state === 'dead' || startFailed(c);
}

function attempt(c: RuntimeContainer): number {
  return Number(c.labels[LABEL_RESTART_COUNT] ?? '0') || 0;
}

/** `older` is a dead earlier attempt of the same spec as `current`, i.e. its previous run. */
function isPreviousAttempt(older: RuntimeContainer, current: RuntimeContainer): boolean {
  return isDead(older) && older.labels[LABEL_SPEC_HASH] === current.labels[LABEL_SPEC_HASH] && attempt(older) < attempt(current);
}

/**
 * Newest first: by the attempt number the agent wrote, then by creation time. Creation times
 * are compared as instants, not strings: the engine trims trailing zeros of the fraction.
 */
export function newestFirst(containers: readonly RuntimeContainer[]): RuntimeContainer[] {
  const created = (c: RuntimeContainer) => (c.createdAt ? Date.parse(c.createdAt) : 0) || 0;
  return [...containers].sort((a, b) => attempt(b) - attempt(a) || created(b) - created(a));
}
