import type { PullProgressEvent, RegistryAuth, RuntimeImage } from './images.js';
import type { Readable } from 'node:stream';

/**
 * What the agent needs of a container engine. dockerode lives behind it in docker.ts; the
 * hollow devices of bench/ put an in-memory engine behind the same interface.
 */
export type ContainerRunState = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';

export interface RuntimeContainer {
  id: string;
  name: string;
  image: string;
  imageId?: string;
  labels: Record<string, string>;
  state: ContainerRunState;
  exitCode?: number;
  /** The engine's reason for a stop it caused, e.g. OOMKilled. */
  oomKilled?: boolean;
  error?: string;
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** The address the container has on the network it was attached to by name (an infra container's pod network); absent for joined and host-network containers. */
  podIP?: string;
  /** The engine's HostConfig.NetworkMode: `host`, `none`, a network name, or `container:<id>`. */
  networkMode?: string;
}

/** An engine network as the overlay needs to see it (docs/ARCHITECTURE.md, 'The pod network'). */
export interface RuntimeNetwork {
  id: string;
  name: string;
  labels: Record<string, string>;
  /** The first IPv4 subnet of its IPAM configuration, and its gateway. */
  subnet?: string;
  gateway?: string;
  /** The driver's options (`com.docker.network.bridge.name`, `com.docker.network.driver.mtu`…). */
  options: Record<string, string>;
}

/** A bridge network to make: a fixed subnet and gateway, a host-side bridge name of at most 15 characters. */
export interface BridgeNetworkSpec {
  name: string;
  subnet: string;
  gateway: string;
  labels: Record<string, string>;
  options: Record<string, string>;
}

/** What a command run inside a container returned: its exit code and its output (stdout and stderr interleaved). */
export interface ExecResult {
  exitCode: number;
  output: string;
}

export interface ContainerCreateSpec {
  name: string;
  image: string;
  labels: Record<string, string>;
  /** Kubernetes' command (the image's ENTRYPOINT) and args (its CMD). */
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  /** `host`, `none`, a network name, or `container:<id>` to join another container's network namespace. */
  networkMode: string;
  /** The container's hostname (a pod's infra container: the pod's; the containers joined to it take it from there). */
  hostname?: string;
  portBindings?: { containerPort: number; hostPort: number; protocol: 'tcp' | 'udp' }[];
  /** Kubernetes' limits.memory: the engine's Memory. */
  memoryBytes?: number;
  /** Kubernetes' limits.cpu: the engine's NanoCpus (CFS quota over its default period). */
  nanoCpus?: number;
  /** At most this many processes (threads) in the container: the engine's PidsLimit. */
  pidsLimit?: number;
  /** Seconds the engine waits after SIGTERM before SIGKILL on stop. */
  stopTimeout?: number;
  /** Bind mounts, `source:target[:ro]`. */
  binds?: string[];
  privileged?: boolean;
  /** `uid[:gid]`. */
  user?: string;
  readonlyRootfs?: boolean;
  capAdd?: string[];
  capDrop?: string[];
}

export interface ContainerLogOptions {
  /** Keep the stream open and pass on new output until the container stops or the stream is destroyed. */
  follow: boolean;
  /** The last N lines only; all when absent. */
  tail?: number;
  /** Only output newer than this many seconds. */
  sinceSeconds?: number;
}

export interface EngineInfo {
  name: string;
  version: string;
  /** Where the engine keeps images and containers: watched for DiskPressure. */
  dataRoot?: string;
  os?: string;
  arch?: string;
}

/** One network interface's counters, as the kernel keeps them (cumulative). */
export interface InterfaceStats {
  rxBytes: number;
  rxPackets: number;
  rxErrors: number;
  rxDropped: number;
  txBytes: number;
  txPackets: number;
  txErrors: number;
  txDropped: number;
}

/**
 * A container's resource figures at one moment, as the engine reads them from its cgroup and
 * network namespace. Counters are cumulative since the container started; a figure the engine
 * does not give is absent.
 */
export interface ContainerStats {
  cpuTotalNs?: number;
  cpuUserNs?: number;
  cpuSystemNs?: number;
  memoryUsageBytes?: number;
  /** Usage minus inactive file pages: what the kernel cannot easily reclaim (cAdvisor's working set). */
  memoryWorkingSetBytes?: number;
  memoryRssBytes?: number;
  memoryCacheBytes?: number;
  memoryLimitBytes?: number;
  /** By interface, for a container that owns its network namespace (a pod's infra container). */
  networks?: Record<string, InterfaceStats>;
  blockReadBytes?: number;
  blockWriteBytes?: number;
  pids?: number;
}

export interface ContainerRuntime {
  ping(): Promise<EngineInfo>;
  /**
   * One reading of a running container's figures (not a stream); undefined when it is not
   * running or gone. Optional: an engine without it reports node metrics only.
   */
  containerStats?(id: string): Promise<ContainerStats | undefined>;
  /** Every container (running or not) carrying all of the given labels. */
  listContainers(labels: Record<string, string>): Promise<RuntimeContainer[]>;
  hasImage(ref: string): Promise<boolean>;
  /** Pulls an image, with the registry's credentials when given; `onProgress` sees each progress message of the engine. */
  pullImage(ref: string, opts?: { auth?: RegistryAuth; onProgress?: (event: PullProgressEvent) => void }): Promise<void>;
  /** Every image of the engine (tagged or not). */
  listImages(): Promise<RuntimeImage[]>;
  /** Removes an image (all of its tags). The engine refuses an image that a container uses. */
  removeImage(id: string): Promise<void>;
  /** Imports a root file system tarball as an image; `changes` are Dockerfile instructions (CMD, ENTRYPOINT…). */
  importImage(tar: Buffer, repo: string, tag: string, changes?: readonly string[]): Promise<void>;
  ensureNetwork(name: string, subnet: string | undefined): Promise<void>;
  /** Every network carrying all of the given labels. Optional: the overlay needs it, the hollow devices of bench/ do not. */
  listNetworks?(labels: Record<string, string>): Promise<RuntimeNetwork[]>;
  /** Makes a bridge network exactly as given; one of the same name that exists is left as it is. */
  createBridgeNetwork?(spec: BridgeNetworkSpec): Promise<void>;
  /** Removes a network; one that is gone is no error. The engine refuses one with containers attached. */
  removeNetwork?(name: string): Promise<void>;
  createContainer(spec: ContainerCreateSpec): Promise<string>;
  startContainer(id: string): Promise<void>;
  /** Stops with SIGTERM, then SIGKILL after `timeoutSeconds` (default: the container's own StopTimeout, set from the pod's grace period). */
  stopContainer(id: string, timeoutSeconds?: number): Promise<void>;
  removeContainer(id: string): Promise<void>;
  /**
   * A container's output, stdout and stderr interleaved as the engine recorded them, as plain
   * bytes. Destroying the stream stops reading (and following).
   */
  containerLogs(id: string, opts: ContainerLogOptions): Promise<Readable>;
  /**
   * Runs a command inside a running container and waits for it, at most `timeoutMs` (then it
   * rejects; the command may linger in the container, as a Kubernetes exec probe's does).
   */
  exec(id: string, cmd: readonly string[], timeoutMs: number): Promise<ExecResult>;
  /** Calls back when a container of the given labels changes state; returns a stop function. */
  watchContainers(labels: Record<string, string>, onChange: () => void, onError: (err: Error) => void): Promise<() => void>;
}

/** Labels on every container the agent makes (docs/ARCHITECTURE.md, 'The agent and the container engine'). */
export const LABEL_NODE = 'flotilla.node';
export const LABEL_POD_UID = 'flotilla.pod-uid';
export const LABEL_POD = 'flotilla.pod';
export const LABEL_NAMESPACE = 'flotilla.namespace';
export const LABEL_CONTAINER = 'flotilla.container';
export const LABEL_SPEC_HASH = 'flotilla.spec-hash';
export const LABEL_RESTART_COUNT = 'flotilla.restart-count';
/** The container name of a pod's infra container, as Kubernetes names its sandbox "POD". */
export const INFRA_CONTAINER = 'POD';
