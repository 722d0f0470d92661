import type { Logger } from 'pino';
import { PROTOCOL_VERSION, type DesiredPod, type DesiredState, type NodeReport, type StatusReport } from '../shared/protocol/messages.js';
import type { Container } from '../shared/resources/pod.js';
import { creationEnv, resolveEnv } from './reconcile/env.js';
import { Topics } from '../shared/protocol/topics.js';
import { fitStatusReport } from '../shared/protocol/bounds.js';
import { DeviceLink } from './link/link.js';
import { EVENT_BATCHING, EventBatcher, PodDirectory, deviceNodeEvent, devicePodEvent } from './link/events.js';
import { RPC_LIMITS, RpcServer } from './link/rpc.js';
import { serveLogs } from './logs/serve.js';
import { JoinLoop, JoinRefused } from './link/join.js';
import { NodeReporter } from './node/info.js';
import { ImageCollector, type NodeEvent } from './node/image-gc.js';
import { fsUsage } from './node/pressure.js';
import { ProbeManager } from './probes/manager.js';
import { RestartBackoff } from './reconcile/backoff.js';
import { EngineMonitor } from './reconcile/engine.js';
import { StepError, StepExecutor, type PodEvent } from './reconcile/execute.js';
import { StepFailures, failureKey } from './reconcile/failures.js';
import { backoffKey, newestFirst, planPods, startFailed, type Step } from './reconcile/plan.js';
import { PullBackoff } from './reconcile/pull-backoff.js';
import { PullQueue } from './reconcile/pull-queue.js';
import { podStatuses, type Waiting } from './reconcile/status.js';
import { PodConfigurator } from './reconcile/configurator.js';
import { UpdateLocks } from './reconcile/update-lock.js';
import { pullAuthFor } from './runtime/images.js';
import { PAUSE_IMAGE, PAUSE_IMAGE_CHANGES, pauseImageTar } from './runtime/pause/image.js';
import { INFRA_CONTAINER, LABEL_CONTAINER, LABEL_NODE, LABEL_POD_UID, LABEL_SPEC_HASH, type ContainerRuntime, type RuntimeContainer } from './runtime/runtime.js';
import { AgentState, type DeviceCredentials } from './state/state.js';
import { MetricsCollector } from './metrics/collector.js';
import { DEFAULT_METRICS_INTERVAL_SECONDS } from '../shared/protocol/metrics.js';
import { Overlay, steadyNetworkReport, type OverlayPass } from './network/overlay.js';
import type { NetPlane } from './network/plane.js';
import { ServiceBook } from './network/services.js';
import type { ProxyNode } from './services/proxy/plan.js';
import { ServiceProxy } from './services/proxy/proxy.js';
import { ClusterDns } from './services/dns/cluster-dns.js';
import { AnsweredServices } from './services/dns/view.js';
import { IngressProxy } from './services/ingress/proxy.js';
import { PolicyEnforcer } from './network/policy/enforcer.js';
import { kernelPolicyPlane } from './network/policy/kernel.js';

export interface AgentConfig {
  hub?: string;
  token?: string;
  name: string;
  labels: Record<string, string>;
  stateDir: string;
  topicPrefix: string;
  pauseImage: string;
  podNetwork: string;
  podSubnet?: string;
  maxPods: number;
  /** The engine's pids limit of a container whose spec sets none (the kubelet's podPidsLimit); none when absent. */
  podPidsLimit?: number;
  resyncIntervalMs: number;
  statusIntervalMs: number;
  /** MQTT keepalive, the device's heartbeat at the hub (default 15 s). */
  heartbeatSeconds?: number;
  /** Metrics sampling interval in seconds (0: no metrics); the hub's per-node setting, carried in the desired set, overrides it. Default 15. */
  metricsIntervalSeconds?: number;
  /**
   * The pod network: 'wireguard' (the overlay, `flotilla agent`'s default) or 'none' (the local
   * bridge `podNetwork`, and whatever the overlay made before is removed). Absent: the local
   * bridge, and the overlay is never looked at (the hollow devices of bench/).
   */
  overlay?: 'wireguard' | 'none';
  /** Whether the agent reads the fleet's Services (default true where the overlay is configured); bench/ turns it off. */
  services?: boolean;
  wireguardPort?: number;
  wireguardInterface?: string;
  /** The network the overlay observes and changes (default: the device's own, through ip, wg and nft); the hollow devices of bench/ give an in-memory one. */
  networkPlane?: NetPlane;
  /** Whether the overlay reads the peer table (default true); bench/ turns it off for all but a sample of its hollow devices. */
  peerTable?: boolean;
  /** An address of this device that peers can reach it at, offered first. */
  advertiseAddress?: string;
  /** The device's resolver configuration, where the DNS server forwards and pods of dnsPolicy Default look (default /etc/resolv.conf). */
  resolvConf?: string;
  /** The ingress proxy's ports on an ingress device (default 80 and 443; 0 turns one off). */
  ingressHttpPort?: number;
  ingressHttpsPort?: number;
}

const MAX_PASSES = 8;
/** How often the engine is pinged between reconciles, so that `engineReady` follows it promptly. */
const ENGINE_HEALTH_INTERVAL_MS = 5_000;
const NO_PODS: ReadonlySet<string> = new Set();
/** After a failed pull, how soon the status moves on from ErrImagePull to ImagePullBackOff. */
const PULL_STATUS_FOLLOW_UP_MS = 2_000;

/**
 * The device agent: keeps the engine's containers converged to the last desired set it was
 * sent (from the hub, or from its state directory when the hub is away), and tells the hub
 * what it sees. Level-triggered: every trigger (a desired set, an engine event, a timer) leads
 * to the same reconcile from current state.
 */
export class Agent {
  private desired: DesiredState | undefined;
  private link?: DeviceLink;
  private readonly engine: EngineMonitor;
  private readonly restartBackoff = new RestartBackoff();
  private readonly pullBackoff: PullBackoff;
  /** Containers and sandboxes the engine refused to make: that pod alone waits, with the kubelet's reason. */
  private readonly stepFailures = new StepFailures();
  /** What the last plan found that no step can fix (InvalidImageName, ErrImageNeverPull). */
  private planWaiting: ReadonlyMap<string, Waiting> = new Map();
  /** Pulls, in the background and one at a time: a slow registry holds back no other pod. */
  private readonly pulls: PullQueue;
  private readonly imageGc: ImageCollector;
  private readonly waiting = new Map<string, Waiting>();
  private reconciling: Promise<void> | undefined;
  private again = false;
  private observedRev: number | null = null;
  private lastStatusJson = '';
  private lastStatusAt = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private joiningAgain = false;
  private readonly joiner: JoinLoop;
  private readonly executor: StepExecutor;
  private readonly configurator: PodConfigurator;
  private readonly updateLocks: UpdateLocks;
  private readonly events: EventBatcher;
  private readonly podNames = new PodDirectory();
  /** The back-off period (its end) of each container that a BackOff event was sent for. */
  private readonly announcedBackoff = new Map<string, number>();
  private readonly rpc: RpcServer;
  private readonly probes: ProbeManager;
  readonly state: AgentState;
  private readonly topics: Topics;

  constructor(
    private readonly config: AgentConfig,
    private readonly runtime: ContainerRuntime,
    private readonly log: Logger,
  ) {
    this.podNetwork = config.podNetwork;
    this.state = new AgentState(config.stateDir, (message) => log.warn(message));
    this.topics = new Topics(config.topicPrefix);
    this.joiner = new JoinLoop(config, this.topics, (creds) => this.state.saveCredentials(creds), log);
    // Given the config itself: the node's name is only settled once the credentials are read.
    this.engine = new EngineMonitor(runtime, config, log, { onChange: () => this.trigger(), onUnavailable: () => this.publishStatus(false) });
    // `node` is read at each step: start() may switch to the name the device joined under.
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the getters below read the agent's current values
    const agent = this;
    const executorOptions = {
      get node() {
        return config.name;
      },
      stateDir: config.stateDir,
      pauseImage: config.pauseImage,
      // The overlay's network is named after the pod CIDR: read at each step.
      get podNetwork() {
        return agent.podNetwork;
      },
      ...(config.podPidsLimit !== undefined ? { podPidsLimit: config.podPidsLimit } : {}),
      pullAuth: (image: string, pod: DesiredPod) => pullAuthFor(image, pod, this.desired?.secrets ?? []),
      // Service links and the downward API, fixed when each container is made (reconcile/env.ts).
      environment: (pod: DesiredPod, c: Container, podIP: string | undefined) =>
        resolveEnv(pod.namespace, c, { configs: this.desired?.configs ?? [], secrets: this.desired?.secrets ?? [] }, creationEnv(pod, c, podIP, { name: config.name, stateDir: config.stateDir }, this.serviceBook?.services().values())),
      ...(config.services !== false && config.overlay ? { podDns: () => agent.dns!.podContext() } : {}),
    };
    this.pullBackoff = new PullBackoff(config.pauseImage);
    this.imageGc = new ImageCollector(runtime, () => [config.stateDir, this.engine.info?.dataRoot].filter((p): p is string => Boolean(p)).map((p) => fsUsage(p)), log, (e) => this.onNodeEvent(e));
    this.configurator = new PodConfigurator(config.stateDir, log, (e) => this.onPodEvent(e));
    this.updateLocks = new UpdateLocks(config.stateDir, log, (e) => this.onPodEvent(e), () => this.trigger());
    this.executor = new StepExecutor(runtime, executorOptions, log, (e) => this.onPodEvent(e));
    this.pulls = new PullQueue({
      pull: (step) => this.executor.run(step),
      pulled: (step) => this.pullBackoff.pulled(step.image),
      failed: (step, message) => {
        this.pullBackoff.failed(step.pod.uid, step.image, message, Date.now());
        this.onPodEvent({ podUid: step.pod.uid, type: 'Warning', reason: 'Failed', message: `Failed to pull image "${step.image}": ${message}` });
      },
      ended: () => this.trigger(),
    });
    // A readiness change is a status change; a probe's kill shows in the next reconcile's view.
    this.probes = new ProbeManager(runtime, { onChange: () => this.trigger(), onEvent: (e) => this.onPodEvent(e) }, log);
    this.events = new EventBatcher((batch) => this.link?.publishEvents(batch) ?? false, EVENT_BATCHING, log);
    if (config.overlay) {
      this.overlay = new Overlay(
        { overlay: config.overlay, interface: config.wireguardInterface ?? 'flotilla-wg', port: config.wireguardPort ?? 51820, stateDir: config.stateDir, ...(config.advertiseAddress ? { advertiseAddress: config.advertiseAddress } : {}) },
        runtime,
        { get node() { return config.name; }, relayHost: () => this.relayHost() },
        log.child({ part: 'network' }),
        () => this.trigger(),
        config.networkPlane,
      );
    }
    // Network policy for the device's own pods, in the kernel (the hollow devices' plane may have none).
    const policyPlane = config.networkPlane ? config.networkPlane.policy : kernelPolicyPlane();
    if (config.overlay && policyPlane) this.policy = new PolicyEnforcer(policyPlane, log.child({ part: 'policy' }), (e) => this.onNodeEvent(e));
    if (config.services !== false && config.overlay) {
      this.serviceBook = new ServiceBook({ stateDir: config.stateDir, log: log.child({ part: 'services' }), onChange: (keys) => this.onServicesChanged(keys) });
      this.dnsView = new AnsweredServices(this.serviceBook);
      this.dns = new ClusterDns({ book: this.dnsView, log: log.child({ part: 'dns' }), resolvConf: config.resolvConf ?? '/etc/resolv.conf' });
      // Serves only while the desired set carries an ingress section (docs/ARCHITECTURE.md, 'Ingress').
      this.ingress = new IngressProxy({ httpPort: config.ingressHttpPort ?? 80, httpsPort: config.ingressHttpsPort ?? 443, book: this.serviceBook, log: log.child({ part: 'ingress' }) });
    }
    // The service proxy programs the kernel: on with the overlay, never on bench/'s in-memory network.
    if (config.overlay === 'wireguard' && !config.networkPlane) {
      this.proxy = new ServiceProxy({ source: this.serviceBook ?? { services: () => new Map(), endpoints: () => new Map() }, log: log.child({ part: 'proxy' }) });
      if (this.serviceBook) this.onServices((keys) => this.proxy!.changed(keys));
    }
    // DNS names a changed Service once the proxy's sync of it is done (services/dns/view.ts), and
    // its cached answers go then.
    if (this.dnsView) {
      const view = this.dnsView;
      const proxy = this.proxy;
      const take = (keys: ReadonlySet<string>): void => {
        view.take(keys);
        this.dns?.invalidate();
      };
      this.onServices((keys) => (proxy ? void proxy.idle().then(() => take(keys)) : take(keys)));
    }
    this.rpc = new RpcServer((res) => this.link?.publishRpcResponse(res) ?? false, { logs: (params, call) => serveLogs(this.runtime, this.config.name, params, call) }, RPC_LIMITS, log);
  }

  /**
   * Joins if needed, then runs until stop(). Throws JoinRefused when the hub says no to a device
   * that has nothing to run yet; a device that kept a desired set runs it while it asks again.
   */
  async start(): Promise<void> {
    const saved = this.state.credentials();
    const canJoin = Boolean(this.config.hub && this.config.token);
    if (saved && saved.node !== this.config.name) this.log.warn({ joinedAs: saved.node }, 'this device joined under another name; keeping it');
    (this.config as { name: string }).name = saved?.node ?? this.config.name;
    const restored = this.state.restoreDesired();
    this.desired = restored.desired;
    if (this.desired) this.log.info({ rev: this.desired.rev, pods: this.desired.pods.length }, 'restored the last desired set from disk');
    if (restored.lost) {
      const message = `${restored.lost}: every container is left as it is until the hub sends the desired set`;
      this.log.warn(message);
      this.onNodeEvent({ type: 'Warning', reason: 'DesiredStateUnreadable', message });
    }
    this.podNames.remember(this.desired?.pods ?? []);
    const noCredentials = `no usable credentials in ${this.config.stateDir}`;
    if (!saved && !canJoin && !this.desired) throw new JoinRefused(`${noCredentials}: give --hub and --token to join`);
    // The key exists before the first report: the hub announces the device with its public key.
    this.overlay?.start();
    this.serviceBook?.restore();
    this.startProxy();
    this.ingress?.apply(this.desired?.ingress);
    if (!saved && !canJoin) {
      // Nothing to join with: the pods still run (and restart) from disk, and the log says what is missing.
      this.log.error({ stateDir: this.config.stateDir }, `${noCredentials} and no --token to join again: running the desired set from disk, cut off from the hub; restart the agent with --hub and --token`);
    } else if (saved) this.connect(this.config.hub && this.config.hub !== saved.hub ? { ...saved, hub: this.config.hub } : saved);
    // With nothing to run, a refusal ends the agent (a wrong token, a name taken): the user sees why.
    else if (!this.desired) this.connect(await this.joiner.run(true));
    else {
      // Credentials lost, desired set kept: the pods run from disk while the device joins again.
      this.log.warn({ stateDir: this.config.stateDir }, 'no usable credentials; running the desired set from disk while joining again');
      void this.joiner.run(false).then(
        (creds) => {
          if (!this.stopped) this.connect(creds);
        },
        (err: Error) => this.log.error({ err: err.message }, 'gave up joining'),
      );
    }
    this.metrics = new MetricsCollector({ runtime: this.runtime, containers: () => this.seenContainers, fsPaths: () => [this.config.stateDir, this.engine.info?.dataRoot], publish: (payload) => this.link?.publishMetrics(payload) ?? false, log: this.log, ...(this.overlay ? { nodeExtras: (emit: (key: string, value: number) => void) => this.overlay!.emitMetrics(emit) } : {}) });
    this.metrics.setInterval(this.metricsInterval());
    await this.engine.check();
    this.timers.push(setInterval(() => this.trigger(), this.config.resyncIntervalMs));
    // A reconcile pings the engine anyway; between them this notices an engine that went away
    // (or came back) with nothing else to do, and the event stream with it.
    this.timers.push(
      setInterval(() => {
        if (!this.reconciling) void this.engine.check();
      }, ENGINE_HEALTH_INTERVAL_MS),
    );
    this.timers.push(setInterval(() => this.publishStatus(Date.now() - this.lastStatusAt >= this.config.statusIntervalMs), 5_000));
    this.trigger();
  }

  private connect(creds: DeviceCredentials): void {
    this.hubUrl = creds.hub;
    this.link = new DeviceLink(
      creds,
      this.topics,
      {
        onDesired: (d) => this.onDesired(d),
        onConnected: () => {
          this.publishStatus(true);
          this.events.kick();
        },
        onRpcRequest: (req) => this.rpc.handle(req),
        // Nothing sent now would arrive; the hub ends its side when the node goes offline.
        onDisconnected: () => this.rpc.stopAll('disconnected from the hub'),
        onRefused: () => this.joinAgainAfterRefusal(),
        // The overlay's peer table and relay, into the peer book (only with the overlay on: the link subscribes to what has a handler).
        ...(this.serviceBook
          ? {
              onService: (ns: string, name: string, payload: Buffer) => this.serviceBook!.onServiceMessage(ns, name, payload),
              onEndpoint: (ns: string, svc: string, pod: string, payload: Buffer) => this.serviceBook!.onEndpointMessage(ns, svc, pod, payload),
              onCatalog: (payload: Buffer) => this.serviceBook!.onCatalogMessage(payload),
              onServiceSession: () => this.serviceBook!.onConnected(),
            }
          : {}),
        ...(this.overlay?.on && this.config.peerTable !== false ? { onPeer: (node: string, payload: Buffer) => this.overlay!.book.onPeerMessage(node, payload), onRelay: (payload: Buffer) => this.overlay!.book.onRelayMessage(payload) } : {}),
      },
      this.log,
      this.config.heartbeatSeconds,
    );
    this.link.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.joiner.stop();
    for (const t of this.timers) clearInterval(t);
    this.metrics?.stop();
    this.overlay?.stop();
    this.serviceBook?.stop();
    // The table stays: virtual IPs keep working while the agent is down.
    await this.proxy?.stop();
    await this.dns?.stop();
    await this.ingress?.stop();
    this.pulls.stop();
    this.engine.stop();
    this.probes.stop();
    await this.reconciling;
    this.updateLocks.stop();
    this.rpc.stopAll('agent stopping');
    this.events.stop();
    await this.link?.stop();
  }

  /**
   * The hub refused the credentials on disk (a copy that is whole but wrong, or credentials
   * replaced by a rejoin elsewhere): with a join token at hand the device joins again, under the
   * hub's rules for a name that has joined before, and switches to the new
   * credentials. Its pods keep running meanwhile. An operator's revocation stays in force: the
   * hub refuses such a rejoin, and says why in this log.
   */
  private joinAgainAfterRefusal(): void {
    if (this.joiningAgain || this.stopped || !this.config.hub || !this.config.token) return;
    this.joiningAgain = true;
    this.log.warn({ node: this.config.name }, 'the hub refused this device\'s credentials; joining again with the join token');
    void this.joiner.run(false)
      .then(async (creds) => {
        const refused = this.link;
        this.link = undefined;
        await refused?.stop();
        if (!this.stopped) this.connect(creds);
      })
      .catch((err: Error) => this.log.error({ err: err.message }, 'gave up joining again'))
      .finally(() => {
        this.joiningAgain = false;
      });
  }

  private onDesired(desired: DesiredState): void {
    if (this.desired && JSON.stringify(this.desired) === JSON.stringify(desired)) return;
    this.log.info({ rev: desired.rev, pods: desired.pods.length }, 'new desired set');
    this.desired = desired;
    this.metrics?.setInterval(this.metricsInterval());
    this.ingress?.apply(desired.ingress);
    this.podNames.remember(desired.pods);
    this.reportRefusedPods(desired);
    try {
      this.state.saveDesired(desired);
    } catch (err) {
      // A full disk must not stop convergence; the set is kept in memory.
      this.log.error({ err: (err as Error).message }, 'could not save the desired set to disk');
    }
    this.trigger();
  }

  /** Asks for a reconcile; triggers that arrive during one merge into a single next pass. */
  trigger(): void {
    if (this.stopped) return;
    if (this.reconciling) {
      this.again = true;
      return;
    }
    this.reconciling = this.reconcile()
      .catch((err) => this.log.error({ err }, 'reconcile failed'))
      .finally(() => {
        this.reconciling = undefined;
        if (this.again) {
          this.again = false;
          this.trigger();
        }
      });
  }

  private async reconcile(): Promise<void> {
    if (!(await this.engine.check())) return;
    const target = this.desired;
    if (!target) {
      // As Kubernetes' kubelet removes no pod before it has heard from its sources: with no
      // desired set yet (a first start, or state files lost to a power cut) every container
      // stays as it is until the hub sends one.
      this.log.debug('no desired set yet; containers left as they are');
      this.publishStatus(false);
      return;
    }
    const desired = target.pods;
    const leaveAlone = new Set((target.refusedPods ?? []).map((p) => p.uid));
    const config = this.configurator.prepare(target);
    const network = await this.networkPass(target);
    // The DNS server on the pod gateway, once the overlay has a pod CIDR (answers come from the service book, restored from disk).
    await this.dns?.sync(this.overlay?.on ? target.network?.podCIDR : undefined, !network.waiting);
    // Pulls that end during this reconcile join it at the next pass (pullPolicy Always is then satisfied, not pulled again).
    const pulledThisPass = this.pulls.takePulled();
    let containers: RuntimeContainer[] = [];
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      if (pass > 0) for (const image of this.pulls.takePulled()) pulledThisPass.add(image);
      containers = await this.runtime.listContainers({ [LABEL_NODE]: this.config.name });
      this.seenContainers = containers;
      // Network policy for the sandboxes running now: a new pod's sandbox is made a pass before its
      // app containers, so its policy is in force before any of them runs.
      if (this.policy) await this.policy.sync(target.policies, podIPs(containers));
      const images = await this.presentImages(desired);
      const now = Date.now();
      this.noteRunning(containers, now);
      const planWith = (updateLocked: ReadonlySet<string>) =>
        planPods({ containers, images }, desired, {
          pauseImage: this.config.pauseImage,
          leaveAlone,
          podNetwork: this.podNetwork,
          ...(network.waiting ? { networkNotReady: network.waiting } : {}),
          now,
          backoff: this.restartBackoff.view,
          pullBackoff: this.pullBackoff.view,
          pulledThisPass,
          pulling: this.pulls.pulling,
          resolvedEnv: config.resolvedEnv,
          blocked: new Set(config.waiting.keys()),
          updateLocked,
          failures: this.stepFailures.view,
        });
      // Update locks defer only the replacement of running containers for a spec change: they
      // are read when the plan has one, and the plan is made again if a lock holds.
      let plan = planWith(NO_PODS);
      const updateLocked = this.updateLocks.scanChanging(desired, plan.specChanged);
      if (updateLocked.size > 0) plan = planWith(updateLocked);
      this.updateLocks.observe(plan, desired);
      this.planWaiting = plan.waiting;
      const steps = plan.steps;
      if (steps.length === 0) break;
      let failed = false;
      for (const step of steps) {
        if (this.stopped) return;
        if (!(await this.runStep(step, pulledThisPass))) failed = true;
      }
      // A failed step is retried by the next trigger (engine event, back-off wake-up or the resync
      // timer), not in a tight loop. One refused by its pod's spec is in back-off and is not planned
      // again: the next pass goes on with every other pod.
      if (failed) break;
    }
    this.observedRev = target.rev;
    this.configurator.cleanup(desired, containers);
    this.updateLocks.finish(desired);
    this.updateWaiting(desired, containers);
    if (!this.stopped) this.probes.sync(desired, containers);
    this.publishStatus(false, containers);
    this.scheduleBackoffWakeup();
    if (!this.stopped) await this.collectImages(desired);
    this.log.debug({ rev: target.rev, pods: desired.length, containers: containers.length }, 'reconciled');
  }

  /**
   * The pod network, before the pods (docs/ARCHITECTURE.md, 'The pod network'): the overlay's
   * pass from the desired set's `network` (kept on disk, so it is rebuilt with the hub gone).
   * Without the overlay, the local bridge of --pod-network.
   */
  private async networkPass(target: DesiredState): Promise<OverlayPass> {
    if (!this.overlay?.active) return {};
    const containers = await this.runtime.listContainers({ [LABEL_NODE]: this.config.name });
    const result = await this.overlay.pass(target.network, containers, this.engine.info);
    if (this.proxy && this.serviceBook) {
      this.proxy.setNode(this.proxyNode());
      // In the background: new pods' bridge ports get hairpin mode without holding up the pods.
      void this.proxy.hairpin();
    }
    // While the overlay is not ready no sandbox is made (the planner's networkNotReady).
    this.podNetwork = this.overlay.on ? (result.podNetwork ?? this.podNetwork) : this.config.podNetwork;
    return result;
  }

  /** The host of the hub's MQTT URL: where the relay is when it announces no endpoint of its own. */
  private relayHost(): string | undefined {
    try {
      const hub = this.hubUrl ?? this.config.hub;
      return hub ? new URL(hub).hostname : undefined;
    } catch {
      return undefined;
    }
  }

  private async runStep(step: Step, pulled: Set<string>): Promise<boolean> {
    // The built-in pause image is imported from the agent itself, at once; every other image is
    // pulled in the background.
    if (step.action === 'pull' && step.image !== PAUSE_IMAGE) {
      this.pulls.add(step);
      return true;
    }
    try {
      if (step.action === 'pull' && step.image === PAUSE_IMAGE && !(await this.runtime.hasImage(PAUSE_IMAGE))) {
        // The default pause image ships inside the agent: no registry is needed to run a pod.
        const tar = pauseImageTar(process.arch);
        if (!tar) throw new Error(`no built-in pause image for ${process.arch}; pass --pause-image`);
        const [repo, tag] = PAUSE_IMAGE.split(':');
        await this.runtime.importImage(tar, repo!, tag!, PAUSE_IMAGE_CHANGES);
      } else await this.executor.run(step);
      if (step.action === 'pull') {
        pulled.add(step.image);
        this.pullBackoff.pulled(step.image);
      }
      if (step.action === 'createContainer' && step.restartCount > 0) this.restartBackoff.restarted(backoffKey(step.pod.uid, step.container.name), Date.now());
      if (step.action === 'createContainer') this.stepFailures.succeeded(failureKey(step.pod.uid, step.container.name));
      if (step.action === 'createInfra') this.stepFailures.succeeded(failureKey(step.pod.uid));
      if (step.action === 'start') this.stepFailures.succeeded(failureKey(step.pod.uid, step.container.labels[LABEL_CONTAINER] === INFRA_CONTAINER ? undefined : step.container.labels[LABEL_CONTAINER]));
      return true;
    } catch (err) {
      const message = (err as Error).message;
      if (step.action === 'pull') {
        this.pullBackoff.failed(step.pod.uid, step.image, message, Date.now());
        this.onPodEvent({ podUid: step.pod.uid, type: 'Warning', reason: 'Failed', message: `Failed to pull image "${step.image}": ${message}` });
        return true;
      }
      if (err instanceof StepError && step.action !== 'remove') return this.stepFailed(step, err);
      this.log.error({ action: step.action, err: message }, 'step failed');
      return false;
    }
  }

  /**
   * One pod's spec refused by the engine: that container (or the pod's sandbox) alone waits, in
   * back-off, with the kubelet's reason and event. A container the engine made but could not
   * start is left as it is: the planner restarts it as a crashed attempt (StartError).
   */
  private stepFailed(step: Exclude<Step, { action: 'remove' | 'pull' }>, err: StepError): true {
    const now = Date.now();
    const sandbox = step.action === 'createInfra' || (step.action === 'start' && step.container.labels[LABEL_CONTAINER] === INFRA_CONTAINER);
    const container = step.action === 'createContainer' ? step.container.name : step.action === 'start' && !sandbox ? (step.container.labels[LABEL_CONTAINER] ?? '') : undefined;
    this.log.warn({ pod: step.pod.name, namespace: step.pod.namespace, container, action: step.action, reason: err.reason, err: err.message }, 'pod step failed');
    if (err.reason === 'RunContainerError') {
      if (step.action === 'createContainer' && step.restartCount > 0) this.restartBackoff.restarted(backoffKey(step.pod.uid, step.container.name), now);
    } else {
      const hash = step.action === 'start' ? (step.container.labels[LABEL_SPEC_HASH] ?? '') : step.hash;
      this.stepFailures.failed(failureKey(step.pod.uid, container), hash, err.reason, err.message, now);
    }
    // The kubelet's events: Failed ("Error: …") for a container, FailedCreatePodSandBox for the sandbox.
    this.onPodEvent({ podUid: step.pod.uid, ...(container ? { container } : {}), type: 'Warning', reason: sandbox ? 'FailedCreatePodSandBox' : 'Failed', message: sandbox ? `Failed to create pod sandbox: ${err.message}` : `Error: ${err.message}` });
    return true;
  }

  private async presentImages(desired: DesiredState['pods']): Promise<Set<string>> {
    const wanted = new Set([this.config.pauseImage, ...desired.flatMap((p) => p.spec.containers.map((c) => c.image))]);
    const present = new Set<string>();
    for (const image of wanted) if (await this.runtime.hasImage(image)) present.add(image);
    // A failed pull that no pod waits for any more is nothing to wait for.
    this.pullBackoff.keepOnly(desired);
    this.stepFailures.keepOnly(desired);
    return present;
  }

  /**
   * Under DiskPressure, removes unused images (see ImageCollector). It runs within a reconcile,
   * so no pull or create races it.
   */
  private async collectImages(desired: DesiredState['pods']): Promise<void> {
    await this.imageGc.collect(new Set([this.config.pauseImage, ...desired.flatMap((p) => p.spec.containers.map((c) => c.image))]));
  }

  private noteRunning(containers: RuntimeContainer[], now: number): void {
    for (const c of containers) {
      if (c.state === 'running' && c.startedAt) this.restartBackoff.running(backoffKey(c.labels[LABEL_POD_UID] ?? '', c.labels[LABEL_CONTAINER] ?? ''), Date.parse(c.startedAt), now);
    }
    const live = new Set((this.desired?.pods ?? []).map((p) => p.uid));
    this.restartBackoff.forget((key) => live.has(key.split('/')[0]!));
  }

  /** What the engine cannot say: pulls that failed, containers waiting out a crash-loop back-off. */
  private updateWaiting(desired: DesiredState['pods'], containers: RuntimeContainer[]): void {
    this.waiting.clear();
    const now = Date.now();
    for (const pod of desired) {
      for (const c of pod.spec.containers) {
        const key = backoffKey(pod.uid, c.name);
        const [current] = newestFirst(containers.filter((x) => x.labels[LABEL_POD_UID] === pod.uid && x.labels[LABEL_CONTAINER] === c.name));
        const running = current?.state === 'running';
        // A running container of an older image still waits for the new one (download-then-kill).
        if (running && current.image === c.image) continue;
        const config = this.configurator.waiting.get(key);
        if (config && !running) {
          this.waiting.set(key, config);
          continue;
        }
        // What no retry can fix (InvalidImageName, ErrImageNeverPull). A container still running
        // here runs an older image: the new one is what it waits for.
        const unfixable = this.planWaiting.get(key);
        if (unfixable) {
          this.waiting.set(key, unfixable);
          continue;
        }
        const pull = this.pullBackoff.get(pod.uid, c.image);
        const refused = this.stepFailures.waiting(key);
        if (pull) {
          // As Kubernetes: ErrImagePull for the attempt that just failed, ImagePullBackOff while waiting to retry.
          const backingOff = pull.until > now && now - pull.failedAt >= PULL_STATUS_FOLLOW_UP_MS;
          this.waiting.set(key, backingOff ? { reason: 'ImagePullBackOff', message: `Back-off pulling image "${c.image}": ${pull.message}` } : { reason: 'ErrImagePull', message: `Failed to pull image "${c.image}": ${pull.message}` });
        } else if (refused) {
          // The engine refused to create it (CreateContainerError): it waits out its back-off.
          this.waiting.set(key, refused);
        } else if (current && startFailed(current) && this.restartBackoff.waitingMs(key, now) === 0) {
          // The attempt that could not start, before its restart: the kubelet's RunContainerError.
          this.waiting.set(key, { reason: 'RunContainerError', message: current.error ?? 'the engine could not start the container' });
        } else if (!running && this.restartBackoff.waitingMs(key, now) > 0) {
          this.waiting.set(key, { reason: 'CrashLoopBackOff', message: `back-off ${Math.round(this.restartBackoff.periodMs(key) / 1000)}s restarting failed container=${c.name} pod=${pod.name}` });
          // The kubelet's BackOff event, once per back-off period rather than on every reconcile that sees the wait.
          const until = this.restartBackoff.view.get(key)?.until;
          if (until !== undefined && this.announcedBackoff.get(key) !== until) {
            this.announcedBackoff.set(key, until);
            this.onPodEvent({ podUid: pod.uid, container: c.name, type: 'Warning', reason: 'BackOff', message: `Back-off restarting failed container ${c.name} in pod ${pod.name}_${pod.namespace}(${pod.uid})` });
          }
        }
      }
      const pausePull = this.pullBackoff.get(pod.uid, this.config.pauseImage);
      const sandbox = this.planWaiting.get(`${pod.uid}/`) ?? this.stepFailures.waiting(`${pod.uid}/`);
      if (pausePull) this.waiting.set(`${pod.uid}/`, { reason: 'ErrImagePull', message: `pause image: ${pausePull.message}` });
      else if (sandbox) this.waiting.set(`${pod.uid}/`, sandbox);
    }
    for (const key of this.announcedBackoff.keys()) if (!this.restartBackoff.view.has(key)) this.announcedBackoff.delete(key);
  }

  /** Reconciles again when the earliest back-off ends, so a restart happens on time. */
  private scheduleBackoffWakeup(): void {
    const now = Date.now();
    let soonest = Infinity;
    for (const { until } of this.restartBackoff.view.values()) if (until > now) soonest = Math.min(soonest, until - now);
    for (const { until } of this.pullBackoff.values()) if (until > now) soonest = Math.min(soonest, until - now);
    for (const { until } of this.stepFailures.values()) if (until > now) soonest = Math.min(soonest, until - now);
    // Once after each failed pull, so the status shows the back-off that follows it.
    if ([...this.pullBackoff.values()].some((p) => p.until > now && now - p.failedAt < PULL_STATUS_FOLLOW_UP_MS)) soonest = Math.min(soonest, PULL_STATUS_FOLLOW_UP_MS);
    if (soonest !== Infinity) {
      const t = setTimeout(() => this.trigger(), soonest + 50);
      t.unref();
    }
  }

  private onPodEvent(e: PodEvent): void {
    this.log.info({ pod: e.podUid, container: e.container, reason: e.reason }, e.message);
    // Kubernetes shows no events about a pod's sandbox, our infra container.
    if (e.container === INFRA_CONTAINER) return;
    const pod = this.podNames.lookup(e.podUid);
    if (pod) this.events.add(devicePodEvent(e, pod, new Date()));
  }

  /**
   * Pods of the set that this agent cannot read: each is left as it is and named in a Warning
   * event (InvalidPodSpec) with the fields at fault, once per desired set that carries it.
   */
  private reportRefusedPods(desired: DesiredState): void {
    for (const pod of desired.refusedPods ?? []) {
      this.log.warn({ pod: pod.uid, name: pod.name, namespace: pod.namespace, errors: pod.error }, 'a pod of the desired set cannot be read; its containers are left as they are');
      if (pod.uid) this.events.add(devicePodEvent({ podUid: pod.uid, type: 'Warning', reason: 'InvalidPodSpec', message: `this device cannot read the pod's spec, so it leaves the pod as it is: ${pod.error}` }, pod, new Date()));
    }
  }

  private onNodeEvent(e: NodeEvent): void {
    this.events.add(deviceNodeEvent(e, this.config.name, new Date()));
  }

  /** Publishes the node's status when it changed, or always when `force` (connect, periodic resync). */
  private publishStatus(force: boolean, containers?: RuntimeContainer[]): void {
    if (!this.link?.connected) return;
    const base = this.nodeReporter.report(this.engine.info, this.engine.error, this.config.maxPods, [this.config.stateDir, this.engine.info?.dataRoot]);
    const network = this.overlay?.report();
    const node = network ? { ...base, network } : base;
    // The periodic check with nothing new (the node report last sent, no reconcile since): nothing to compare.
    if (!force && !containers && node === this.lastSentNode) return;
    const pods = containers ? podStatuses(this.desired?.pods ?? [], containers, this.waiting, (uid, name, id) => this.probes.ready(uid, name, id), this.updateLocks.view) : this.lastPods;
    this.lastPods = pods;
    // Cut to the hub's bounds (a long engine error, a long termination message): the hub drops a report over them whole.
    const report: StatusReport = fitStatusReport({
      v: PROTOCOL_VERSION,
      ts: new Date().toISOString(),
      observedRev: this.observedRev,
      node,
      pods,
    });
    // The overlay's byte counters and handshake times move all the time: they go with the
    // periodic full resync, and alone never make a report differ.
    const json = JSON.stringify({ ...report, ts: undefined, node: { ...report.node, network: steadyNetworkReport(report.node.network) } });
    if (!force && json === this.lastStatusJson) {
      this.lastSentNode = node;
      return;
    }
    this.lastSentNode = undefined;
    if (this.link.publishStatus(report)) {
      this.lastStatusJson = json;
      this.lastSentNode = node;
      this.lastStatusAt = Date.now();
    }
  }

  private readonly nodeReporter = new NodeReporter();
  private readonly overlay: Overlay | undefined;
  /** Network policy for the device's own pods (docs/ARCHITECTURE.md, 'Network policy'); undefined without the overlay. */
  private readonly policy: PolicyEnforcer | undefined;
  /** The fleet's Services and endpoints as this device last heard them (undefined without the overlay, or with services off). */
  readonly serviceBook: ServiceBook | undefined;
  /** The device's DNS server and pods' resolver settings (with the service book). */
  private readonly dns: ClusterDns | undefined;
  /** What the DNS server names: the book's Services, each once the proxy has synced it. */
  private readonly dnsView: AnsweredServices | undefined;
  /** The ingress proxy, serving while this device is an ingress device (with the service book only). */
  private readonly ingress: IngressProxy | undefined;
  /** Who hears of a change in the service book: the service proxy, the DNS server, the ingress. */
  private readonly serviceListeners: ((keys: ReadonlySet<string>) => void)[] = [];

  /** Runs `fn` with the keys (namespace/name) of Services that changed, after each burst of messages. */
  onServices(fn: (keys: ReadonlySet<string>) => void): void {
    this.serviceListeners.push(fn);
  }

  private onServicesChanged(keys: ReadonlySet<string>): void {
    for (const fn of this.serviceListeners) {
      try {
        fn(keys);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'a service listener failed');
      }
    }
  }
  private readonly proxy: ServiceProxy | undefined;

  /** The service proxy from the book restored from disk (virtual IPs work with the hub gone); with services off, its table goes. */
  private startProxy(): void {
    if (!this.proxy) return;
    if (!this.serviceBook) {
      void this.proxy.remove().catch((err: Error) => this.log.warn({ err: err.message }, 'could not remove the service table'));
      return;
    }
    this.proxy.start();
    this.proxy.setNode(this.proxyNode());
  }

  /** This node's facts for the service proxy, from the desired set's network section. */
  private proxyNode(): ProxyNode {
    const network = this.desired?.network as (DesiredState['network'] & { site?: string }) | undefined;
    return { name: this.config.name, ...(network?.site ? { site: network.site } : {}), ...(network ? { podCIDR: network.podCIDR, clusterCIDR: network.clusterCIDR } : {}) };
  }

  /** The engine network pods join now: the overlay's (undefined while it is not ready) or --pod-network. */
  private podNetwork: string;
  /** The MQTT URL of the connection in use (the saved credentials' or the join's). */
  private hubUrl: string | undefined;
  /** The node report of the status last sent (or found unchanged), while the pods in it are lastPods. */
  private lastSentNode: NodeReport | undefined;
  private lastPods: StatusReport['pods'] = [];
  private metrics?: MetricsCollector;
  /** The containers of the last reconcile: what the metrics collector reads stats of. */
  private seenContainers: readonly RuntimeContainer[] = [];

  /** The device's own 0 (no metrics) wins; else the hub's setting for this node, else the flag's. */
  private metricsInterval(): number {
    if (this.config.metricsIntervalSeconds === 0) return 0;
    return this.desired?.metrics?.intervalSeconds ?? this.config.metricsIntervalSeconds ?? DEFAULT_METRICS_INTERVAL_SECONDS;
  }
}

/** Each pod's IP by uid, from its running sandbox. */
function podIPs(containers: readonly RuntimeContainer[]): Map<string, string> {
  const ips = new Map<string, string>();
  for (const c of containers) {
    const uid = c.labels[LABEL_POD_UID];
    if (uid && c.podIP && c.state === 'running' && c.labels[LABEL_CONTAINER] === INFRA_CONTAINER) ips.set(uid, c.podIP);
  }
  return ips;
}
