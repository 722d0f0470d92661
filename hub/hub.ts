import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import { Topics } from '../shared/protocol/topics.js';
import { DEFAULT_NAMESPACE, NAMESPACE_NAME_LABEL } from '../shared/resources/namespace.js';
import { EvictionRoutes } from './api/eviction.js';
import { PodLogRoutes } from './api/logs.js';
import { MetricsRoutes } from './api/metrics.js';
import { ApiServer } from './api/server.js';
import { ResourceService } from './api/resources.js';
import { RolloutRoutes } from './api/rollout.js';
import { TokenRoutes } from './api/tokens.js';
import { Credentials } from './auth/credentials.js';
import type { MessageBus } from './broker/bus.js';
import { startMessageBus } from './broker/start.js';
import { EmbeddedBroker } from './broker/embedded.js';
import { JoinService } from './broker/join.js';
import type { HubConfig } from './config.js';
import { Relay } from './network/relay.js';
import { DaemonSetController } from './controllers/daemonset.js';
import { JobController } from './controllers/job.js';
import { CronJobController } from './controllers/cronjob.js';
import { EndpointsController } from './controllers/endpoints.js';
import { DeploymentController } from './controllers/deployment.js';
import { ReplicaSetController } from './controllers/replicaset.js';
import { NodeLifecycleController } from './controllers/nodelifecycle.js';
import { WavesController } from './controllers/waves/controller.js';
import { DeploymentWavesController } from './controllers/waves/deployment.js';
import { Dispatcher } from './dispatch/desired.js';
import { IngressDispatch, IngressStatusWriter } from './services/ingress.js';
import { PolicyCompiler } from './services/policy.js';
import { DeviceEventIngest } from './dispatch/events.js';
import { NodeHeartbeats } from './dispatch/heartbeats.js';
import { RpcClient } from './dispatch/rpc.js';
import { StatusIngest } from './dispatch/status.js';
import { EventRecorder } from './events/recorder.js';
import { HubSelfMetrics } from './metrics/self.js';
import { MetricsService } from './metrics/service.js';
import { startPodNetwork } from './network/start.js';
import { startServices } from './services/start.js';
import { Scheduler } from './scheduler/scheduler.js';
import { holdExclusiveLock } from './store/db.js';
import { openHubDatabase } from './store/schema.js';
import { DiskGuard } from './store/disk.js';
import { brokerStartError, HubStartError, inDataDir, listenError, OpenedParts, untilStopping } from './startup.js';
import { aesGcmCodec, loadOrCreateKey, SECRET_KEY_FILE } from './store/encryption.js';
import { ObjectStore } from './store/objects.js';

export const ADMIN_TOKEN_FILE = 'admin.token';
/** Held by the running hub: a second hub on the same data directory refuses to start. */
export const DATA_DIR_LOCK_FILE = 'hub.lock';
export const JOIN_TOKEN_FILE = 'join.token';

/** A running hub: every part, assembled in one place, and an orderly stop. */
export class Hub {
  private constructor(
    readonly config: HubConfig,
    readonly db: Database,
    readonly store: ObjectStore,
    readonly broker: MessageBus,
    readonly api: ApiServer,
    readonly apiPort: number,
    private readonly opened: OpenedParts,
    private readonly log: Logger,
  ) {}

  /**
   * Opens the store, the broker and the API, starts the controllers, and returns the running
   * hub. When a step fails, or `stopping` is aborted (SIGTERM during start-up), what was opened
   * is closed again, the last first, before the error is thrown: a hub never runs half started,
   * with its MQTT port taking logins and no API (a HubStartError names the flag at fault).
   */
  static async start(config: HubConfig, log: Logger, stopping?: AbortSignal): Promise<Hub> {
    const opened = new OpenedParts();
    try {
      return await Hub.assemble(config, log, opened, stopping);
    } catch (err) {
      await opened.closeAll(log);
      throw err;
    }
  }

  private static async assemble(config: HubConfig, log: Logger, opened: OpenedParts, stopping: AbortSignal | undefined): Promise<Hub> {
    if (!config.brokerUrl && config.apiPort !== 0 && config.apiPort === config.mqttPort) {
      throw new HubStartError('--api-port', `--api-port and --mqtt-port are both ${config.apiPort}: the API and the MQTT broker need a port each`);
    }
    const dataDir = resolve(config.dataDir);
    const { db, secretKey, release } = openDataDir(dataDir);
    opened.add('data directory lock', release);
    opened.add('store', () => {
      db.close();
    });
    // A full disk must not lock the store: deletes keep working (see store/disk.ts).
    const disk = new DiskGuard(db, dataDir, log.child({ part: 'disk' }));
    inDataDir(dataDir, () => disk.start());
    opened.add('disk guard', () => disk.stop());
    stopping?.throwIfAborted();
    // A watcher's failure is logged, never allowed to take the hub down.
    // Secrets are sealed before they reach the database file (docs/ARCHITECTURE.md, 'Security': encrypted at rest).
    const secretCodec = aesGcmCodec(secretKey);
    const store = new ObjectStore(db, {
      onWatchError: (err) => log.error({ err }, 'watch handler failed'),
      atRest: (kind) => (kind === 'Secret' ? secretCodec : undefined),
    });
    const credentials = new Credentials(db);
    inDataDir(dataDir, () => {
      if (!store.get('Namespace', '', DEFAULT_NAMESPACE)) {
        store.create({ apiVersion: 'flotilla/v1', kind: 'Namespace', metadata: { name: DEFAULT_NAMESPACE, labels: { [NAMESPACE_NAME_LABEL]: DEFAULT_NAMESPACE } }, spec: {} });
      }
      ensureTokenFile(credentials, join(dataDir, ADMIN_TOKEN_FILE), 'admin', log);
      ensureTokenFile(credentials, join(dataDir, JOIN_TOKEN_FILE), 'join', log);
    });

    const topics = new Topics(config.topicPrefix);
    // Every packet a device sends is its heartbeat (status, events, or a keepalive ping when idle).
    const heartbeats = new NodeHeartbeats();
    // The embedded aedes, or an external broker the hub joins as a client (--broker).
    const started = startMessageBus({ config, dataDir, joinTokenFile: join(dataDir, JOIN_TOKEN_FILE), credentials, topics, log: log.child({ part: 'broker' }), onDeviceActivity: (node) => heartbeats.heard(node) });
    const { bus: broker, url: mqttUrl, accounts } = await untilStopping(started.catch((err: unknown) => {
      throw brokerStartError(config, err);
    }), stopping, (late) => late.bus.close());
    opened.add('broker', () => broker.close());
    // What devices send together (status, presence, events, joins) is written in one commit.
    if (broker instanceof EmbeddedBroker) broker.deliverInBatches((run) => store.transaction(run));
    // Counts every MQTT message both ways: set up before anything subscribes.
    const selfMetrics = new HubSelfMetrics(db, broker, disk);
    selfMetrics.instrumentBus();
    const events = new EventRecorder(store, 'flotilla-hub', log);

    const ingest = new StatusIngest(store, broker, topics, events, log.child({ part: 'status' }));
    opened.add('status', () => ingest.stop());
    await ingest.start();
    // Events devices report are the agents' own, as the kubelet's are in Kubernetes.
    const deviceEvents = new DeviceEventIngest(store, broker, topics, new EventRecorder(store, 'flotilla-agent', log), log.child({ part: 'events' }));
    await deviceEvents.start();
    const rpc = new RpcClient(store, broker, topics, log.child({ part: 'rpc' }));
    opened.add('rpc', () => rpc.stop());
    await rpc.start();
    // The WireGuard relay between devices. Its interface outlives the hub on purpose (network/relay.ts); the
    // peer publisher reads relay.observedEndpoint(node) and refreshes a node on relay.onObservedChange.
    const relay = await Relay.start({ config, dataDir, store, bus: broker, topics, log: log.child({ part: 'relay' }) });
    opened.add('relay', () => relay.stop());
    selfMetrics.addFamilies(() => relay.families());
    stopping?.throwIfAborted();
    const join_ = new JoinService(store, credentials, broker, topics, events, log.child({ part: 'join' }), accounts);
    await join_.start();
    stopping?.throwIfAborted();
    // The pod network: each node's pod CIDR and the overlay's peer table (a deleted node's block is released, its peer cleared).
    const podNetwork = await startPodNetwork({ config, db, store, bus: broker, topics, events, log: log.child({ part: 'network' }), opened }, { observedEndpoint: (node) => relay.observedEndpoint(node) });
    // A NAT's UDP mapping seen by the relay moved: that node's peer message is built again.
    opened.add('relay observed endpoints', relay.onObservedChange((node) => podNetwork.peers.refresh(node)));
    selfMetrics.addFamilies(podNetwork.families);
    selfMetrics.instrumentController('ipam', podNetwork.ipam);
    // Network policy compiled per node, before the first desired sets: a node whose compiled policy changed is dispatched again.
    // (The dispatcher's own start enqueues every node, so what the first compile finds needs no call.)
    let redispatch = (_nodes: readonly string[]): void => {};
    const policyCompiler = new PolicyCompiler(store, log.child({ part: 'policy' }), (nodes) => redispatch(nodes));
    policyCompiler.start();
    opened.add('policy', () => policyCompiler.stop());
    const dispatcher = new Dispatcher(db, store, broker, topics, log.child({ part: 'dispatch' }), { clusterCIDR: config.clusterCIDR, serviceCIDR: config.serviceCIDR, podCIDROf: podNetwork.podCIDROf }, new IngressDispatch(store, log.child({ part: 'ingress' })), policyCompiler);
    redispatch = (nodes) => {
      for (const node of nodes) dispatcher.queue.add(node);
    };
    dispatcher.start();
    // Each Ingress's status.loadBalancer.ingress: the ingress devices' addresses.
    const ingressStatus = new IngressStatusWriter(store, log.child({ part: 'ingress' }), events);
    ingressStatus.start();
    opened.add('ingress status', () => ingressStatus.stop());
    opened.add('dispatch', () => dispatcher.stop());
    // Waves rollouts decide which revision each node of a Waves DaemonSet runs; the DaemonSet controller writes the pods.
    const waves = new WavesController({ store, events, log: log.child({ part: 'waves' }) }, { onRevisionsChanged: (key) => daemonSets.queue.add(key) });
    const daemonSets = new DaemonSetController(store, events, log.child({ part: 'daemonset' }), waves.revisionsFor);
    waves.start();
    opened.add('waves', () => waves.stop());
    daemonSets.start();
    opened.add('daemonset', () => daemonSets.stop());
    const scheduler = new Scheduler(store, events, log.child({ part: 'scheduler' }));
    scheduler.start();
    opened.add('scheduler', () => scheduler.stop());
    const jobs = new JobController({ store, events, log: log.child({ part: 'job' }) });
    jobs.start();
    opened.add('job', () => jobs.stop());
    const cronJobs = new CronJobController({ store, events, log: log.child({ part: 'cronjob' }) });
    cronJobs.start();
    opened.add('cronjob', () => cronJobs.stop());
    const nodeLifecycle = new NodeLifecycleController(
      { store, events, log: log.child({ part: 'nodelifecycle' }) },
      { nodeGraceSeconds: config.nodeGraceSeconds, evictionTimeoutSeconds: config.evictionTimeoutSeconds, lastHeardAt: (node) => heartbeats.lastHeardAt(node) },
    );
    nodeLifecycle.start();
    opened.add('nodelifecycle', () => nodeLifecycle.stop());
    const endpoints = new EndpointsController({ store, events, log: log.child({ part: 'endpoints' }) });
    endpoints.start();
    opened.add('endpoints', () => endpoints.stop());
    // Services: virtual IPs and NodePorts allocated on the API's write path, and published to the devices with their endpoints.
    const services = await startServices({ config, db, store, bus: broker, topics, log: log.child({ part: 'services' }), opened });
    selfMetrics.addFamilies(services.families);
    // Waves rollouts of Deployments decide how many pods each wave releases; the Deployment controller sizes the ReplicaSets.
    const deploymentWaves = new DeploymentWavesController({ store, events, log: log.child({ part: 'deployment-waves' }) }, { onScaleChanged: (key) => deployments.queue.add(key) });
    const deployments = new DeploymentController({ store, events, log: log.child({ part: 'deployment' }) }, { wavesScale: deploymentWaves.wavesScale });
    deploymentWaves.start();
    opened.add('deployment-waves', () => deploymentWaves.stop());
    deployments.start();
    opened.add('deployment', () => deployments.stop());
    const replicaSets = new ReplicaSetController({ store, events, log: log.child({ part: 'replicaset' }) });
    replicaSets.start();
    opened.add('replicaset', () => replicaSets.stop());
    for (const [name, controller] of Object.entries({ daemonset: daemonSets, scheduler, job: jobs, cronjob: cronJobs, nodelifecycle: nodeLifecycle, endpoints, deployment: deployments, replicaset: replicaSets, waves, 'deployment-waves': deploymentWaves })) selfMetrics.instrumentController(name, controller);
    selfMetrics.instrumentDispatcher(dispatcher);
    selfMetrics.countInvalidMessages(() => ingest.dropped);
    selfMetrics.countInvalidMessages(() => deviceEvents.invalid);
    selfMetrics.countInvalidMessages(() => rpc.invalid);
    selfMetrics.countInvalidMessages(() => join_.invalid);
    const metrics = new MetricsService({
      db,
      store,
      retention: { raw: config.metricsRawRetentionSeconds * 1000, '1m': config.metricsMinuteRetentionSeconds * 1000, '1h': config.metricsHourRetentionSeconds * 1000 },
      self: selfMetrics,
      log: log.child({ part: 'metrics' }),
    });
    opened.add('metrics', () => metrics.stop());
    await metrics.start(broker, topics);
    // A deleted node loses its credentials and its connection; the name may join again.
    const unwatchNodes = store.watch({ kind: 'Node' }, (e) => {
      if (e.type !== 'DELETED') return;
      heartbeats.forget(e.object.metadata.name);
      credentials.forgetNode(e.object.metadata.name);
      broker.disconnectNode(e.object.metadata.name);
    });
    opened.add('node watch', unwatchNodes);

    const resources = new ResourceService(store, log.child({ part: 'api' }), services.admission);
    const tokens = new TokenRoutes(credentials, (node) => broker.disconnectNode(node), accounts);
    const api = new ApiServer(
      { host: config.listen, port: config.apiPort, bodyLimit: config.bodyLimitBytes, disk, authorize: (token) => credentials.verifyToken('admin', token) !== undefined || false },
      store,
      resources,
      tokens,
      log.child({ part: 'api' }),
      new PodLogRoutes(store, rpc, log.child({ part: 'logs' })),
      new EvictionRoutes(store, events, log.child({ part: 'eviction' })),
      new MetricsRoutes(metrics, store),
      new RolloutRoutes(store, waves, deploymentWaves),
    );
    selfMetrics.countSlowWatches(() => api.slowWatchesClosed);
    stopping?.throwIfAborted();
    const apiPort = await api.listen().catch((err: unknown) => {
      throw listenError('--api-port', 'the HTTP API', config.listen, config.apiPort, err);
    });
    opened.add('api', () => api.close());
    stopping?.throwIfAborted();
    log.info({ dataDir, api: `http://${config.listen}:${apiPort}`, mqtt: mqttUrl }, 'hub started');
    return new Hub(config, db, store, broker, api, apiPort, opened, log);
  }

  /** Stops the API first (no new writes), then the controllers, the broker and the store, in the reverse order of start. */
  async stop(): Promise<void> {
    await this.opened.closeAll(this.log);
    this.log.info('hub stopped');
  }
}

/**
 * Makes the data directory (mode 0700), takes its lock (two hubs on one store would both run
 * every controller and fight over each object), and opens what it holds: the store and the
 * Secrets' key. `release` gives the lock back.
 */
function openDataDir(dataDir: string): { db: Database; secretKey: Buffer; release: () => void } {
  const release = inDataDir(dataDir, () => {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    return holdExclusiveLock(join(dataDir, DATA_DIR_LOCK_FILE));
  });
  if (!release) throw new HubStartError('--data-dir', `another hub is running on the data directory ${dataDir} (--data-dir): stop it first, or give this hub a data directory of its own`);
  try {
    return inDataDir(dataDir, () => {
      const db = openHubDatabase(join(dataDir, 'flotilla.db'));
      try {
        return { db, secretKey: loadOrCreateKey(join(dataDir, SECRET_KEY_FILE)), release };
      } catch (err) {
        db.close();
        throw err;
      }
    });
  } catch (err) {
    release();
    throw err;
  }
}

/** Reads a token file, or on first start issues the token and writes it (mode 0600). */
function ensureTokenFile(credentials: Credentials, file: string, kind: 'admin' | 'join', log: Logger): string {
  if (existsSync(file)) {
    const token = readFileSync(file, 'utf8').trim();
    if (credentials.verifyToken(kind, token)) return token;
    // A revoked join token stays revoked; only a lost admin token is re-issued (the recovery path).
    if (kind === 'join') {
      log.warn({ file }, 'join token file holds no valid token (revoked?); create one with `flotilla token create`');
      return token;
    }
    log.warn({ file }, 'admin token file does not match a valid token; issuing a new one');
  }
  const { token } = credentials.createToken(kind, { description: kind === 'admin' ? 'admin token (CLI and API)' : 'default join token' });
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  log.info({ file }, `${kind} token written`);
  return token;
}
