import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import { Topics } from '../shared/protocol/topics.js';
import { DEFAULT_NAMESPACE } from '../shared/resources/namespace.js';
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
import { DeviceEventIngest } from './dispatch/events.js';
import { NodeHeartbeats } from './dispatch/heartbeats.js';
import { RpcClient } from './dispatch/rpc.js';
import { StatusIngest } from './dispatch/status.js';
import { EventRecorder } from './events/recorder.js';
import { HubSelfMetrics } from './metrics/self.js';
import { MetricsService } from './metrics/service.js';
import { Scheduler } from './scheduler/scheduler.js';
import { openHubDatabase } from './store/schema.js';
import { aesGcmCodec, loadOrCreateKey, SECRET_KEY_FILE } from './store/encryption.js';
import { ObjectStore } from './store/objects.js';

export const ADMIN_TOKEN_FILE = 'admin.token';
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
    private readonly stoppers: (() => void | Promise<void>)[],
    private readonly log: Logger,
  ) {}

  static async start(config: HubConfig, log: Logger): Promise<Hub> {
    const dataDir = resolve(config.dataDir);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const db = openHubDatabase(join(dataDir, 'flotilla.db'));
    // A watcher's failure is logged, never allowed to take the hub down.
    // Secrets are sealed before they reach the database file (docs/ARCHITECTURE.md, 'Security': encrypted at rest).
    const secretCodec = aesGcmCodec(loadOrCreateKey(join(dataDir, SECRET_KEY_FILE)));
    const store = new ObjectStore(db, {
      onWatchError: (err) => log.error({ err }, 'watch handler failed'),
      atRest: (kind) => (kind === 'Secret' ? secretCodec : undefined),
    });
    if (!store.get('Namespace', '', DEFAULT_NAMESPACE)) {
      store.create({ apiVersion: 'flotilla/v1', kind: 'Namespace', metadata: { name: DEFAULT_NAMESPACE }, spec: {} });
    }
    const credentials = new Credentials(db);
    const adminToken = ensureTokenFile(credentials, join(dataDir, ADMIN_TOKEN_FILE), 'admin', log);
    ensureTokenFile(credentials, join(dataDir, JOIN_TOKEN_FILE), 'join', log);

    const topics = new Topics(config.topicPrefix);
    // Every packet a device sends is its heartbeat (status, events, or a keepalive ping when idle).
    const heartbeats = new NodeHeartbeats();
    // The embedded aedes, or an external broker the hub joins as a client (--broker).
    const { bus: broker, url: mqttUrl, accounts } = await startMessageBus({ config, dataDir, joinTokenFile: join(dataDir, JOIN_TOKEN_FILE), credentials, topics, log: log.child({ part: 'broker' }), onDeviceActivity: (node) => heartbeats.heard(node) });
    // What devices send together (status, presence, events, joins) is written in one commit.
    if (broker instanceof EmbeddedBroker) broker.deliverInBatches((run) => store.transaction(run));
    // Counts every MQTT message both ways: set up before anything subscribes.
    const selfMetrics = new HubSelfMetrics(db, broker);
    selfMetrics.instrumentBus();
    const events = new EventRecorder(store, 'flotilla-hub', log);

    const ingest = new StatusIngest(store, broker, topics, events, log.child({ part: 'status' }));
    await ingest.start();
    // Events devices report are the agents' own, as the kubelet's are in Kubernetes.
    const deviceEvents = new DeviceEventIngest(store, broker, topics, new EventRecorder(store, 'flotilla-agent', log), log.child({ part: 'events' }));
    await deviceEvents.start();
    const rpc = new RpcClient(store, broker, topics, log.child({ part: 'rpc' }));
    await rpc.start();
    const join_ = new JoinService(store, credentials, broker, topics, events, log.child({ part: 'join' }), accounts);
    await join_.start();
    const dispatcher = new Dispatcher(db, store, broker, topics, log.child({ part: 'dispatch' }));
    dispatcher.start();
    // Waves rollouts decide which revision each node of a Waves DaemonSet runs; the DaemonSet controller writes the pods.
    const waves = new WavesController({ store, events, log: log.child({ part: 'waves' }) }, { onRevisionsChanged: (key) => daemonSets.queue.add(key) });
    const daemonSets = new DaemonSetController(store, events, log.child({ part: 'daemonset' }), waves.revisionsFor);
    waves.start();
    daemonSets.start();
    const scheduler = new Scheduler(store, events, log.child({ part: 'scheduler' }));
    scheduler.start();
    const jobs = new JobController({ store, events, log: log.child({ part: 'job' }) });
    jobs.start();
    const cronJobs = new CronJobController({ store, events, log: log.child({ part: 'cronjob' }) });
    cronJobs.start();
    const nodeLifecycle = new NodeLifecycleController(
      { store, events, log: log.child({ part: 'nodelifecycle' }) },
      { nodeGraceSeconds: config.nodeGraceSeconds, evictionTimeoutSeconds: config.evictionTimeoutSeconds, lastHeardAt: (node) => heartbeats.lastHeardAt(node) },
    );
    nodeLifecycle.start();
    const endpoints = new EndpointsController({ store, events, log: log.child({ part: 'endpoints' }) });
    endpoints.start();
    // Waves rollouts of Deployments decide how many pods each wave releases; the Deployment controller sizes the ReplicaSets.
    const deploymentWaves = new DeploymentWavesController({ store, events, log: log.child({ part: 'deployment-waves' }) }, { onScaleChanged: (key) => deployments.queue.add(key) });
    const deployments = new DeploymentController({ store, events, log: log.child({ part: 'deployment' }) }, { wavesScale: deploymentWaves.wavesScale });
    deploymentWaves.start();
    deployments.start();
    const replicaSets = new ReplicaSetController({ store, events, log: log.child({ part: 'replicaset' }) });
    replicaSets.start();
    for (const [name, controller] of Object.entries({ daemonset: daemonSets, scheduler, job: jobs, cronjob: cronJobs, nodelifecycle: nodeLifecycle, endpoints, deployment: deployments, replicaset: replicaSets, waves, 'deployment-waves': deploymentWaves })) selfMetrics.instrumentController(name, controller);
    selfMetrics.instrumentDispatcher(dispatcher);
    const metrics = new MetricsService({
      db,
      store,
      retention: { raw: config.metricsRawRetentionSeconds * 1000, '1m': config.metricsMinuteRetentionSeconds * 1000, '1h': config.metricsHourRetentionSeconds * 1000 },
      self: selfMetrics,
      log: log.child({ part: 'metrics' }),
    });
    await metrics.start(broker, topics);
    // A deleted node loses its credentials and its connection; the name may join again.
    const unwatchNodes = store.watch({ kind: 'Node' }, (e) => {
      if (e.type !== 'DELETED') return;
      heartbeats.forget(e.object.metadata.name);
      credentials.forgetNode(e.object.metadata.name);
      broker.disconnectNode(e.object.metadata.name);
    });

    const resources = new ResourceService(store, log.child({ part: 'api' }));
    const tokens = new TokenRoutes(credentials, (node) => broker.disconnectNode(node), accounts);
    const api = new ApiServer(
      { host: config.listen, port: config.apiPort, bodyLimit: config.bodyLimitBytes, authorize: (token) => credentials.verifyToken('admin', token) !== undefined || false },
      store,
      resources,
      tokens,
      log.child({ part: 'api' }),
      new PodLogRoutes(store, rpc, log.child({ part: 'logs' })),
      new EvictionRoutes(store, events, log.child({ part: 'eviction' })),
      new MetricsRoutes(metrics, store),
      new RolloutRoutes(store, waves, deploymentWaves),
    );
    const apiPort = await api.listen();
    void adminToken;
    log.info({ dataDir, api: `http://${config.listen}:${apiPort}`, mqtt: mqttUrl }, 'hub started');
    return new Hub(config, db, store, broker, api, apiPort, [() => metrics.stop(), () => ingest.stop(), () => replicaSets.stop(), () => deployments.stop(), () => deploymentWaves.stop(), () => endpoints.stop(), () => nodeLifecycle.stop(), () => cronJobs.stop(), () => jobs.stop(), () => scheduler.stop(), () => daemonSets.stop(), () => waves.stop(), () => dispatcher.stop(), () => rpc.stop(), unwatchNodes], log);
  }

  async stop(): Promise<void> {
    await this.api.close();
    for (const stop of this.stoppers) await stop();
    await this.broker.close();
    this.db.close();
    this.log.info('hub stopped');
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
