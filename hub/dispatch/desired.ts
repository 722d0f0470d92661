import { createHash } from 'node:crypto';
import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import { PROTOCOL_VERSION, encodePayload, type DesiredConfig, type DesiredPod, type DesiredState } from '../../shared/protocol/messages.js';
import { METRICS_INTERVAL_ANNOTATION, parseMetricsInterval } from '../../shared/protocol/metrics.js';
import type { Topics } from '../../shared/protocol/topics.js';
import type { DesiredNetwork } from '../../shared/protocol/network.js';
import type { DesiredPolicies } from '../../shared/protocol/policy.js';
import type { NodeSpec } from '../../shared/resources/node.js';
import type { PodSpec } from '../../shared/resources/pod.js';
import { referencedConfig } from '../../shared/resources/volumes.js';
import type { MessageBus } from '../broker/bus.js';
import { WorkQueue } from '../controllers/queue.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import { nodeSite } from '../controllers/endpoints-build.js';
import { isIngressNode, type IngressDispatch } from '../services/ingress.js';

export const DISPATCH_MIGRATION = `
CREATE TABLE dispatch (
  node TEXT PRIMARY KEY,
  rev INTEGER NOT NULL,
  hash TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
`;

/**
 * Publishes each node's whole desired set, retained, with a revision that grows whenever the
 * set changes (docs/PROTOCOL.md, 'Payloads'; level-triggered: an agent that missed any number of
 * messages converges from the last one). The revision and a hash of the set are kept in SQLite,
 * so a restarted hub republishes the same revision for an unchanged set.
 */
export class Dispatcher {
  readonly queue: WorkQueue;
  private readonly published = new Set<string>();
  /** What of each node's own object is part of what it is sent: its metrics interval and its pod CIDR. */
  private readonly nodeInputs = new Map<string, string>();
  private readonly podFingerprints = new Map<string, { fingerprint: string; node: string | undefined }>();
  private unwatch: (() => void)[] = [];
  private readonly getRow;
  private readonly putRow;
  private readonly deleteRow;

  constructor(
    db: Database,
    private readonly store: ObjectStore,
    private readonly bus: MessageBus,
    private readonly topics: Topics,
    private readonly log: Logger,
    /**
     * The pod network's cluster CIDR, sent with each node's pod CIDR (absent: no network part),
     * and the IPAM's record of a node's pod CIDR, which stands over spec.podCIDR: a podCIDR
     * cleared by hand (an apply of the Node without it) must not make the device tear its
     * network down before the IPAM puts it back.
     */
    private readonly network?: { clusterCIDR: string; serviceCIDR?: string; podCIDROf?: (node: string) => string | undefined },
    /** The Ingresses and their certificates, for ingress devices only (hub/services/ingress.ts). */
    private readonly ingress?: IngressDispatch,
    /** Each node's compiled network policy (hub/services/policy.ts), absent where none selects its pods. */
    private readonly policies?: { forNode(node: string): DesiredPolicies | undefined; pendingFor?(node: string): boolean },
  ) {
    this.getRow = db.prepare<[string], { rev: number; hash: string }>('SELECT rev, hash FROM dispatch WHERE node = ?');
    this.putRow = db.prepare('INSERT INTO dispatch (node, rev, hash, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(node) DO UPDATE SET rev = excluded.rev, hash = excluded.hash, updated_at = excluded.updated_at');
    this.deleteRow = db.prepare('DELETE FROM dispatch WHERE node = ?');
    // A batch of nodes in one commit: a fleet-wide change touches every node's desired set.
    this.queue = new WorkQueue('dispatch', (node) => this.sync(node), log, (run) => store.transaction(run));
  }

  start(): void {
    // List, then watch from the list's version: a pod's first status report changes no desired set.
    const pods = this.store.list('Pod');
    for (const pod of pods.items) this.onPod({ type: 'ADDED', object: pod }, false);
    this.unwatch.push(
      this.store.watch({ kind: 'Pod', fromResourceVersion: pods.resourceVersion }, (e) => this.onPod(e, true)),
      this.store.watch({ kind: 'Node' }, (e) => {
        // Of a node's own changes, only its metrics interval, its pod CIDR, its site and whether it is an ingress device are part of what it is sent.
        const inputs = JSON.stringify([e.object.metadata.annotations?.[METRICS_INTERVAL_ANNOTATION], (e.object.spec as NodeSpec | undefined)?.podCIDR, nodeSite(e.object), isIngressNode(e.object)]);
        const changed = this.nodeInputs.get(e.object.metadata.name) !== inputs;
        if (e.type === 'DELETED') this.nodeInputs.delete(e.object.metadata.name);
        else this.nodeInputs.set(e.object.metadata.name, inputs);
        if (e.type !== 'MODIFIED' || changed) this.queue.add(e.object.metadata.name);
      }),
      // A ConfigMap or Secret is part of the desired set of every node whose pods use it.
      this.store.watch({ kind: 'ConfigMap' }, (e) => this.configChanged('configMaps', e.object)),
      this.store.watch({ kind: 'Secret' }, (e) => this.configChanged('secrets', e.object)),
      // An Ingress, or a Secret one names, changes the sets of the ingress devices only.
      ...(this.ingress?.watch((nodes) => nodes.forEach((n) => this.queue.add(n))) ?? []),
    );
    for (const node of this.store.list('Node').items) this.queue.add(node.metadata.name);
  }

  stop(): void {
    for (const u of this.unwatch) u();
    this.unwatch = [];
    this.queue.stop();
  }

  private onPod(e: WatchEvent, enqueue: boolean): void {
    // Most pod writes are status reports, which change no desired set: only a change of what a
    // node is sent (uid, labels, annotations, spec, binding) or a deletion marks the node dirty.
    const key = `${e.object.metadata.namespace}/${e.object.metadata.name}`;
    const node = (e.object.spec as PodSpec | undefined)?.nodeName;
    const before = this.podFingerprints.get(key);
    if (e.type === 'DELETED') this.podFingerprints.delete(key);
    else {
      const { uid, labels, annotations } = e.object.metadata;
      // A digest rather than the text: tens of thousands of pods are remembered.
      const fingerprint = createHash('sha1').update(JSON.stringify([uid, labels, annotations, e.object.spec])).digest('base64');
      if (fingerprint === before?.fingerprint) return;
      this.podFingerprints.set(key, { fingerprint, node });
    }
    if (!enqueue) return;
    if (node) this.queue.add(node);
    if (before?.node && before.node !== node) this.queue.add(before.node);
  }

  /** The desired set a node should run now, from the store (its pods, by the store's node index). */
  desiredPods(node: string): DesiredPod[] {
    return this.store
      .list('Pod', { nodeName: node, filter: (p) => !p.metadata.deletionTimestamp })
      .items.map((p: StoredObject) => ({
        uid: p.metadata.uid,
        name: p.metadata.name,
        namespace: p.metadata.namespace ?? 'default',
        ...(p.metadata.labels ? { labels: p.metadata.labels } : {}),
        ...(p.metadata.annotations ? { annotations: p.metadata.annotations } : {}),
        spec: p.spec as PodSpec,
      }));
  }

  /**
   * The ConfigMaps and Secrets that the node's pods refer to, and only those: a device never
   * receives a Secret that none of its pods uses (docs/ARCHITECTURE.md, 'Security'). A missing one is left
   * out; the agent reports the pod's CreateContainerConfigError.
   */
  desiredConfigs(pods: readonly DesiredPod[]): { configs: DesiredConfig[]; secrets: DesiredConfig[] } {
    const configMaps = new Set<string>();
    const secrets = new Set<string>();
    for (const pod of pods) {
      const refs = referencedConfig(pod.spec);
      for (const name of refs.configMaps) configMaps.add(`${pod.namespace}/${name}`);
      for (const name of refs.secrets) secrets.add(`${pod.namespace}/${name}`);
    }
    const load = (kind: string, keys: Set<string>): DesiredConfig[] =>
      [...keys].sort().flatMap((key) => {
        const [namespace, name] = key.split('/') as [string, string];
        const obj = this.store.get(kind, namespace, name);
        if (!obj) return [];
        const binaryData = obj.binaryData as Record<string, string> | undefined;
        return [{ namespace, name, data: (obj.data as Record<string, string> | undefined) ?? {}, ...(binaryData ? { binaryData } : {}), resourceVersion: obj.metadata.resourceVersion }];
      });
    return { configs: load('ConfigMap', configMaps), secrets: load('Secret', secrets) };
  }

  private configChanged(kind: 'configMaps' | 'secrets', obj: StoredObject): void {
    const namespace = obj.metadata.namespace ?? 'default';
    const pods = this.store.list('Pod', { namespace, filter: (p) => Boolean((p.spec as PodSpec).nodeName) && referencedConfig(p.spec as PodSpec)[kind].has(obj.metadata.name) }).items;
    for (const pod of pods) this.queue.add((pod.spec as PodSpec).nodeName!);
  }

  /** The node's metrics interval from its annotation; an invalid one is logged and left out (the agent keeps its own). */
  private metricsSettings(node: StoredObject): DesiredState['metrics'] {
    const text = node.metadata.annotations?.[METRICS_INTERVAL_ANNOTATION];
    if (text === undefined) return undefined;
    const seconds = parseMetricsInterval(text);
    if (typeof seconds === 'number') return { intervalSeconds: seconds };
    this.log.warn({ node: node.metadata.name, annotation: METRICS_INTERVAL_ANNOTATION, problem: seconds }, 'metrics interval annotation ignored');
    return undefined;
  }

  /** The node's pod network, once the IPAM has given it a pod CIDR: a new pod CIDR is a new revision. */
  private networkSettings(node: StoredObject): DesiredNetwork | undefined {
    const podCIDR = this.network?.podCIDROf?.(node.metadata.name) ?? (node.spec as NodeSpec | undefined)?.podCIDR;
    if (!this.network || !podCIDR) return undefined;
    const site = nodeSite(node);
    return { podCIDR, clusterCIDR: this.network.clusterCIDR, ...(this.network.serviceCIDR ? { serviceCIDR: this.network.serviceCIDR } : {}), ...(site ? { site } : {}) };
  }

  revision(node: string): number | undefined {
    return this.getRow.get(node)?.rev;
  }

  async sync(node: string): Promise<void> {
    const topic = this.topics.desired(node);
    const nodeObj = this.store.get('Node', '', node);
    if (!nodeObj) {
      if (this.getRow.get(node)) {
        this.deleteRow.run(node);
        // An empty retained message clears the retained desired set [MQTT-3.3.1-10].
        await this.bus.publish(topic, Buffer.alloc(0), { qos: 1, retain: true });
        this.published.delete(node);
      }
      return;
    }
    // A pod new here may be one a network policy selects: its set waits for that compile (a burst, ~20 ms), which queues the node again.
    if (this.policies?.pendingFor?.(node)) return;
    const pods = this.desiredPods(node);
    const { configs, secrets } = this.desiredConfigs(pods);
    // A set without configuration hashes as before, so an upgraded hub keeps the nodes' revisions.
    const metrics = this.metricsSettings(nodeObj);
    const network = this.networkSettings(nodeObj);
    const ingress = this.ingress?.sectionFor(nodeObj);
    const policies = this.policies?.forNode(node);
    const hashed = configs.length || secrets.length || metrics || network || ingress || policies ? { pods, configs, secrets, ...(metrics ? { metrics } : {}), ...(network ? { network } : {}), ...(ingress ? { ingress } : {}), ...(policies ? { policies } : {}) } : pods;
    const hash = createHash('sha256').update(JSON.stringify(hashed)).digest('hex');
    const row = this.getRow.get(node);
    let rev = row?.rev ?? 0;
    if (!row || row.hash !== hash) {
      rev += 1;
      const next = rev;
      // The revision row and the node's desiredRevision in one commit.
      this.store.transaction(() => {
        this.putRow.run(node, next, hash, new Date().toISOString());
        this.store.mutate('Node', '', node, (cur) => ({ ...cur, status: { ...((cur.status as object | undefined) ?? {}), desiredRevision: next } }));
      });
      this.published.delete(node);
    }
    if (this.published.has(node)) return;
    const message: DesiredState = { v: PROTOCOL_VERSION, rev, pods, configs, secrets, ...(metrics ? { metrics } : {}), ...(network ? { network } : {}), ...(ingress ? { ingress } : {}), ...(policies ? { policies } : {}) };
    // Not awaited: the next node's set need not wait for this one to be handed to the broker
    // (the broker keeps the order of one topic's messages). A failed publish is retried.
    this.published.add(node);
    this.bus.publish(topic, encodePayload(message), { qos: 1, retain: true }).catch((err: unknown) => {
      this.published.delete(node);
      this.log.warn({ node, rev, err: (err as Error).message }, 'desired set not published; will retry');
      this.queue.addAfter(node, 1_000);
    });
    this.log.debug({ node, rev, pods: pods.length }, 'desired set published');
  }
}
