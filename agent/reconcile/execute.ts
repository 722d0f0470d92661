import type { Logger } from 'pino';
import type { DesiredPod } from '../../shared/protocol/messages.js';
import type { Container } from '../../shared/resources/pod.js';
import { bytes, cpuToMilli, parseQuantity } from '../../shared/quantities/quantity.js';
import {
  INFRA_CONTAINER,
  LABEL_CONTAINER,
  LABEL_NAMESPACE,
  LABEL_NODE,
  LABEL_POD,
  LABEL_POD_UID,
  LABEL_RESTART_COUNT,
  LABEL_SPEC_HASH,
  type ContainerCreateSpec,
  type ContainerRuntime,
} from '../runtime/runtime.js';
import type { SecurityContext } from '../../shared/resources/volumes.js';
import { PullProgress, progressDue, type RegistryAuth } from '../runtime/images.js';
import { containerBinds, updateLockBind } from '../volumes/layout.js';
import { expandCommand, type EnvResolution } from './env.js';
import { podDnsBinds } from '../services/dns/pod-files.js';
import { podHostname, type PodDnsContext } from '../services/dns/resolv.js';
import type { Step } from './plan.js';

export interface ExecutorOptions {
  node: string;
  /** Where pod volumes live on the device (see volumes/layout.ts). */
  stateDir: string;
  pauseImage: string;
  podNetwork: string;
  /**
   * The pids limit of a container whose spec sets no `resources.limits.pids` (the kubelet's
   * podPidsLimit); none when absent. Applied when a container is made: a change of it reaches
   * running containers only as they are replaced, as the kubelet's reaches new pods.
   */
  podPidsLimit?: number;
  /**
   * A container's whole environment, built when it is created (reconcile/env.ts: the Service
   * links, ConfigMaps and Secrets, the downward API with the sandbox's address `podIP`). Without
   * it, the env the plan resolved, or the spec's plain values.
   */
  environment?: (pod: DesiredPod, container: Container, podIP: string | undefined) => EnvResolution;
  /** The registry credentials for pulling `image` for `pod` (from its imagePullSecrets), if any. */
  pullAuth?: (image: string, pod: DesiredPod) => RegistryAuth | undefined;
  /**
   * What pods' /etc/resolv.conf and /etc/hosts are made of (agent/services/dns/): with it, each
   * app container gets the pod's files bound in; without it (the hollow devices), the engine's.
   */
  podDns?: () => PodDnsContext;
}

/** Something that happened to a pod, for the pod's status and (later) its Events. */
export interface PodEvent {
  podUid: string;
  container?: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/**
 * The kubelet's reasons for a step that the engine (or the spec itself) refused: the container
 * could not be configured (CreateContainerConfigError), created (CreateContainerError) or
 * started (RunContainerError), or the pod's sandbox could not be made (FailedCreatePodSandBox).
 */
export type StepFailureReason = 'CreateContainerConfigError' | 'CreateContainerError' | 'RunContainerError' | 'FailedCreatePodSandBox';

/** A step that failed because of what one pod asks: it fails that pod alone, with the kubelet's reason. */
export class StepError extends Error {
  constructor(
    readonly reason: StepFailureReason,
    message: string,
  ) {
    super(message);
  }
}

/** Runs `fn`, turning its failure into a StepError of `reason` (a StepError already made passes as is). */
async function failsAs<T>(reason: StepFailureReason, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StepError) throw err;
    throw new StepError(reason, err instanceof Error ? err.message : String(err));
  }
}

/** How each step kind is carried out. The mapped type makes the compiler refuse a step kind without an executor. */
type Executors = { [K in Step['action']]: (step: Extract<Step, { action: K }>) => Promise<void> };

/** The only code that changes the engine: it runs the steps that planSteps chose. */
export class StepExecutor {
  private readonly executors: Executors;

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly opts: ExecutorOptions,
    private readonly log: Logger,
    private readonly onEvent: (e: PodEvent) => void,
  ) {
    this.executors = {
      remove: async ({ container, reason }) => {
        const uid = container.labels[LABEL_POD_UID] ?? '';
        const name = container.labels[LABEL_CONTAINER] ?? container.name;
        if (container.state === 'running') this.onEvent({ podUid: uid, container: name, type: 'Normal', reason: 'Killing', message: `Stopping container ${name}: ${reason}` });
        // Each container was made with StopTimeout = the pod's terminationGracePeriodSeconds
        // (Kubernetes' default 30 s), so the engine's own timeout is the pod's grace period.
        await this.runtime.stopContainer(container.id);
        await this.runtime.removeContainer(container.id);
      },
      pull: async ({ image, pod }) => {
        this.onEvent({ podUid: pod.uid, type: 'Normal', reason: 'Pulling', message: `Pulling image "${image}"` });
        // A long pull tells how far it got, at most once per PULL_PROGRESS_INTERVAL_MS.
        const progress = new PullProgress();
        const startedAt = Date.now();
        let toldAt: number | undefined;
        const auth = this.opts.pullAuth?.(image, pod);
        await this.runtime.pullImage(image, {
          ...(auth ? { auth } : {}),
          onProgress: (e) => {
            progress.add(e);
            const now = Date.now();
            if (!progressDue(startedAt, toldAt, now)) return;
            toldAt = now;
            this.onEvent({ podUid: pod.uid, type: 'Normal', reason: 'Pulling', message: `Pulling image "${image}": ${progress.summary()}` });
          },
        });
        this.onEvent({ podUid: pod.uid, type: 'Normal', reason: 'Pulled', message: `Successfully pulled image "${image}"` });
      },
      createInfra: async ({ pod, hash }) => {
        const ports = pod.spec.containers.flatMap((c) => (c.ports ?? []).filter((p) => p.hostPort !== undefined).map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort!, protocol: (p.protocol ?? 'TCP').toLowerCase() as 'tcp' | 'udp' })));
        const spec: ContainerCreateSpec = {
          name: containerName(pod, INFRA_CONTAINER),
          image: this.opts.pauseImage,
          labels: this.labels(pod, INFRA_CONTAINER, hash, 0),
          networkMode: pod.spec.hostNetwork ? 'host' : this.opts.podNetwork,
          // The pod's hostname is its name (or spec.hostname), as Kubernetes sets it; not in the
          // infra hash, so an agent that starts setting it replaces no running pod.
          ...(pod.spec.hostNetwork ? {} : { hostname: podHostname(pod) }),
          stopTimeout: 2,
          ...(ports.length && !pod.spec.hostNetwork ? { portBindings: ports } : {}),
        };
        await failsAs('FailedCreatePodSandBox', async () => {
          const id = await this.runtime.createContainer(spec);
          await this.runtime.startContainer(id);
        });
      },
      createContainer: async ({ pod, container, infraId, hash, restartCount, env, podIP }) => {
        const spec = await failsAs('CreateContainerConfigError', async () => this.appSpec(pod, container, infraId, hash, restartCount, this.environment(pod, container, podIP, env), podIP));
        const id = await failsAs('CreateContainerError', () => this.runtime.createContainer(spec));
        this.onEvent({ podUid: pod.uid, container: container.name, type: 'Normal', reason: 'Created', message: `Created container ${container.name}` });
        await failsAs('RunContainerError', () => this.runtime.startContainer(id));
        this.onEvent({ podUid: pod.uid, container: container.name, type: 'Normal', reason: 'Started', message: `Started container ${container.name}` });
      },
      start: async ({ container }) => {
        const infra = container.labels[LABEL_CONTAINER] === INFRA_CONTAINER;
        await failsAs(infra ? 'FailedCreatePodSandBox' : 'RunContainerError', () => this.runtime.startContainer(container.id));
      },
    };
  }

  async run(step: Step): Promise<void> {
    this.log.debug({ action: step.action }, 'step');
    await (this.executors[step.action] as (s: Step) => Promise<void>)(step);
  }

  private environment(pod: DesiredPod, c: Container, podIP: string | undefined, planned: string[] | undefined): string[] | undefined {
    if (!this.opts.environment) return planned;
    const env = this.opts.environment(pod, c, podIP);
    if (!env.ok) throw new StepError('CreateContainerConfigError', env.message);
    return env.env.length > 0 || planned !== undefined || c.env !== undefined ? env.env : undefined;
  }

  private labels(pod: DesiredPod, container: string, hash: string, restartCount: number): Record<string, string> {
    return {
      [LABEL_NODE]: this.opts.node,
      [LABEL_POD_UID]: pod.uid,
      [LABEL_POD]: pod.name,
      [LABEL_NAMESPACE]: pod.namespace,
      [LABEL_CONTAINER]: container,
      [LABEL_SPEC_HASH]: hash,
      [LABEL_RESTART_COUNT]: String(restartCount),
    };
  }

  private appSpec(pod: DesiredPod, c: Container, infraId: string, hash: string, restartCount: number, resolvedEnv?: string[], podIP?: string): ContainerCreateSpec {
    const limits = c.resources?.limits ?? {};
    const env = resolvedEnv ?? c.env?.map((e) => `${e.name}=${e.value ?? ''}`);
    const lockBind = updateLockBind(this.opts.stateDir, pod, c);
    // The pod's hosts and resolv.conf (kubelet's way): binds, like the update lock's, outside the spec hash.
    const dnsBinds = this.opts.podDns ? podDnsBinds(this.opts.stateDir, pod, c, podIP, this.opts.podDns(), (message) => this.log.warn({ pod: pod.name, namespace: pod.namespace }, message)) : [];
    const binds = [...containerBinds(this.opts.stateDir, pod, c), ...(lockBind ? [lockBind] : []), ...dnsBinds];
    const sc = c.securityContext;
    return {
      name: containerName(pod, c.name, restartCount),
      image: c.image,
      labels: this.labels(pod, c.name, hash, restartCount),
      // With the environment built at creation, `$(NAME)` in command and args is expanded from it.
      ...(c.command ? { entrypoint: this.opts.environment && env ? expandCommand(c.command, env)! : c.command } : {}),
      ...(c.args ? { cmd: this.opts.environment && env ? expandCommand(c.args, env)! : c.args } : {}),
      ...(env ? { env } : {}),
      ...(binds.length ? { binds } : {}),
      ...securityOptions(sc),
      ...(c.workingDir ? { workingDir: c.workingDir } : {}),
      // Joined to the infra container's network namespace, as Kubernetes' pod sandbox.
      networkMode: pod.spec.hostNetwork ? 'host' : `container:${infraId}`,
      // Limits only: requests are for the scheduler, never a cap on the container.
      ...(limits.memory !== undefined ? { memoryBytes: bytes(limits.memory) } : {}),
      ...(limits.cpu !== undefined ? { nanoCpus: cpuToMilli(limits.cpu) * 1_000_000 } : {}),
      ...pidsLimit(limits.pids, this.opts.podPidsLimit),
      stopTimeout: pod.spec.terminationGracePeriodSeconds ?? 30,
    };
  }
}

/** The container's own `limits.pids` (validated a positive integer at the hub), else the node's default. */
function pidsLimit(own: string | number | undefined, nodeDefault: number | undefined): Partial<ContainerCreateSpec> {
  const limit = own !== undefined ? parseQuantity(own).value() : nodeDefault;
  return limit !== undefined && limit > 0 ? { pidsLimit: limit } : {};
}

/** Kubernetes' container securityContext in the engine's terms. */
function securityOptions(sc: SecurityContext | undefined): Partial<ContainerCreateSpec> {
  if (!sc) return {};
  const user = sc.runAsUser !== undefined ? `${sc.runAsUser}${sc.runAsGroup !== undefined ? `:${sc.runAsGroup}` : ''}` : undefined;
  return {
    ...(sc.privileged ? { privileged: true } : {}),
    ...(user ? { user } : {}),
    ...(sc.readOnlyRootFilesystem ? { readonlyRootfs: true } : {}),
    ...(sc.capabilities?.add?.length ? { capAdd: sc.capabilities.add } : {}),
    ...(sc.capabilities?.drop?.length ? { capDrop: sc.capabilities.drop } : {}),
  };
}

/** Engine-unique container names that say what they are: flt_<namespace>_<pod>_<container>_<uid prefix>_<attempt>. */
export function containerName(pod: DesiredPod, container: string, attempt = 0): string {
  return `flt_${pod.namespace}_${pod.name}_${container}_${pod.uid.slice(0, 8)}_${attempt}`;
}
