import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import { selectorFromMap } from '../../shared/labels/selector.js';
import { encodePayload } from '../../shared/protocol/messages.js';
import type { CatalogAnnouncement, EndpointAnnouncement, ServiceAnnouncement } from '../../shared/protocol/services.js';
import type { Topics } from '../../shared/protocol/topics.js';
import { SERVICE_NAME_LABEL, type EndpointSliceFields, type ServiceSpec } from '../../shared/resources/service.js';
import type { MessageBus } from '../broker/bus.js';
import { WorkQueue } from '../controllers/queue.js';
import { nextGeneration } from '../network/peers.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';
import { ServiceMessageTable, type ServiceMessageRow } from './tables.js';

export interface ServicePublisherOptions {
  db: Database;
  store: ObjectStore;
  bus: MessageBus;
  topics: Topics;
  log: Logger;
  /**
   * The broker keeps retained messages over a hub restart (an external broker): the publisher
   * then reads what it retains under network/services and network/endpoints once at start, and
   * clears what belongs to no Service or endpoint it knows.
   */
  retainedOutlivesHub?: boolean;
}

/** The work queue's key of the catalog's message (no Service key is empty). */
const CATALOG = '';

type ServiceContent = Omit<ServiceAnnouncement, 'generation'>;
type EndpointContent = Omit<EndpointAnnouncement, 'generation'>;

/**
 * Publishes the Services to the devices (docs/PROTOCOL.md, 'Services'), retained at QoS 1: one
 * message per Service on `network/services/{ns}/{name}`, one per endpoint (a pod in the
 * Service's EndpointSlices, which the endpoints controller keeps) on
 * `network/endpoints/{ns}/{service}/{pod}`, and the counts of both on `network/catalog`. A
 * message is published again only when its content changes, with a higher generation; a
 * Service or endpoint gone gets an empty retained payload, which clears its topic. One endpoint
 * becoming ready costs each device that one message; one coming or going, that and the catalog's.
 *
 * The last message of each is kept in a table, as the peers' are (hub/network/peers.ts): a
 * restarted hub republishes each with the generation devices already have, and clears what it
 * published for Services deleted while it was down.
 */
export class ServicePublisher {
  readonly queue: WorkQueue;
  private readonly table: ServiceMessageTable;
  private readonly rows = new Map<string, ServiceMessageRow>();
  /** The pods of each Service (ns/name) that have a row. */
  private readonly podsOf = new Map<string, Set<string>>();
  /** Ids published (or cleared) since this hub started. */
  private readonly published = new Set<string>();
  /** Ids found retained by the broker with no row (an external broker keeps them over a hub restart). */
  private readonly stale = new Set<string>();
  private catalogSent: string | undefined;
  /** How many rows are Services' and endpoints' (the catalog's counts). */
  private serviceRows = 0;
  private endpointRows = 0;
  private unwatch: (() => void)[] = [];

  constructor(private readonly opts: ServicePublisherOptions) {
    this.table = new ServiceMessageTable(opts.db);
    this.queue = new WorkQueue('services', (key) => (key === CATALOG ? this.publishCatalog() : this.reconcile(key)), opts.log);
  }

  async start(): Promise<void> {
    for (const row of this.table.rows()) this.remember(row);
    const { store, bus, topics } = this.opts;
    if (this.opts.retainedOutlivesHub) {
      const found = (id: string, key: string, payload: Buffer) => {
        if (payload.length === 0 || this.rows.has(id)) return;
        this.stale.add(id);
        this.queue.add(key);
      };
      await bus.subscribe(topics.allServices(), (topic, payload) => {
        const s = topics.parseServiceTopic(topic);
        if (s) found(`s/${s.namespace}/${s.name}`, `${s.namespace}/${s.name}`, payload);
      });
      await bus.subscribe(topics.allEndpoints(), (topic, payload) => {
        const e = topics.parseEndpointTopic(topic);
        if (e) found(`e/${e.namespace}/${e.service}/${e.pod}`, `${e.namespace}/${e.service}`, payload);
      });
    }
    const services = store.list('Service');
    const slices = store.list('EndpointSlice');
    this.unwatch.push(
      store.watch({ kind: 'Service', fromResourceVersion: services.resourceVersion }, (e) => this.queue.add(serviceKey(e.object))),
      store.watch({ kind: 'EndpointSlice', fromResourceVersion: slices.resourceVersion }, (e) => {
        const service = e.object.metadata.labels?.[SERVICE_NAME_LABEL];
        if (service) this.queue.add(`${e.object.metadata.namespace ?? 'default'}/${service}`);
      }),
    );
    for (const svc of services.items) this.queue.add(serviceKey(svc));
    // Services with rows: those deleted while the hub was down are cleared.
    for (const row of this.rows.values()) this.queue.add(serviceKeyOfId(row.id));
    this.queue.add(CATALOG);
  }

  stop(): void {
    for (const u of this.unwatch) u();
    this.unwatch = [];
    this.queue.stop();
  }

  /** How many Services and endpoints the devices are told of now. */
  counts(): CatalogAnnouncement {
    return { v: 1, services: this.serviceRows, endpoints: this.endpointRows };
  }

  async reconcile(key: string): Promise<void> {
    const slash = key.indexOf('/');
    const namespace = key.slice(0, slash);
    const name = key.slice(slash + 1);
    const svc = this.opts.store.get('Service', namespace, name);
    const service = svc ? serviceContent(svc) : undefined;
    const endpoints = new Map<string, EndpointContent>();
    if (service) {
      const slices = this.opts.store.list('EndpointSlice', { namespace, selector: selectorFromMap({ [SERVICE_NAME_LABEL]: name }) }).items;
      for (const slice of slices) for (const [pod, content] of endpointContents(slice)) endpoints.set(pod, content);
    }
    const before = this.counts();
    // Endpoints before their Service's clearing, and after its message: a device never holds an endpoint of no Service for long.
    if (service) await this.put(`s/${key}`, this.opts.topics.service(namespace, name), service);
    const pods = new Set([...(this.podsOf.get(key) ?? []), ...endpoints.keys(), ...[...this.stale].filter((id) => id.startsWith(`e/${key}/`)).map((id) => id.slice(`e/${key}/`.length))]);
    for (const pod of pods) await this.put(`e/${key}/${pod}`, this.opts.topics.endpoint(namespace, name, pod), endpoints.get(pod));
    if (!service) await this.put(`s/${key}`, this.opts.topics.service(namespace, name), undefined);
    const after = this.counts();
    if (after.services !== before.services || after.endpoints !== before.endpoints) this.queue.add(CATALOG);
  }

  /** Publishes one message when its content changed (or it was not published since start); clears it when it is gone. */
  private async put(id: string, topic: string, content: ServiceContent | EndpointContent | undefined): Promise<void> {
    const { bus, log } = this.opts;
    const previous = this.rows.get(id);
    if (!content) {
      if (previous || this.stale.has(id)) {
        // An empty retained payload clears the topic [MQTT-3.3.1-10]: devices drop the Service or endpoint.
        this.table.delete(id);
        this.forget(id);
        this.stale.delete(id);
        await bus.publish(topic, Buffer.alloc(0), { qos: 1, retain: true });
        log.debug({ id }, 'service message cleared');
      }
      return;
    }
    const text = JSON.stringify(content);
    this.stale.delete(id);
    if (previous?.message === text && this.published.has(id)) return;
    const generation = previous?.message === text ? previous.generation : nextGeneration(previous?.generation);
    const row: ServiceMessageRow = { id, generation, message: text };
    this.table.write(row);
    this.remember(row);
    this.published.delete(id);
    await bus.publish(topic, encodePayload({ ...content, generation }), { qos: 1, retain: true });
    this.published.add(id);
  }

  private async publishCatalog(): Promise<void> {
    const counts = this.counts();
    const text = JSON.stringify(counts);
    if (text === this.catalogSent) return;
    this.catalogSent = text;
    await this.opts.bus.publish(this.opts.topics.catalog(), encodePayload(counts), { qos: 1, retain: true });
  }

  private remember(row: ServiceMessageRow): void {
    if (!this.rows.has(row.id)) {
      if (row.id.startsWith('s/')) this.serviceRows++;
      else this.endpointRows++;
    }
    this.rows.set(row.id, row);
    if (row.id.startsWith('e/')) {
      const key = serviceKeyOfId(row.id);
      const pod = row.id.slice(key.length + 3);
      this.podsOf.set(key, (this.podsOf.get(key) ?? new Set()).add(pod));
    }
  }

  private forget(id: string): void {
    if (this.rows.delete(id)) {
      if (id.startsWith('s/')) this.serviceRows--;
      else this.endpointRows--;
    }
    this.published.delete(id);
    if (id.startsWith('e/')) {
      const key = serviceKeyOfId(id);
      const pods = this.podsOf.get(key);
      pods?.delete(id.slice(key.length + 3));
      if (pods?.size === 0) this.podsOf.delete(key);
    }
  }
}

function serviceKey(o: StoredObject): string {
  return `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
}

/** The Service (ns/name) of a row's id: `s/ns/name` or `e/ns/name/pod`. */
function serviceKeyOfId(id: string): string {
  const parts = id.split('/');
  return `${parts[1]}/${parts[2]}`;
}

/** A Service's message (without its generation); undefined until it has a clusterIP. */
export function serviceContent(svc: StoredObject): ServiceContent | undefined {
  const spec = svc.spec as ServiceSpec;
  if (!spec.clusterIP) return undefined;
  const type = spec.type === 'NodePort' ? 'NodePort' : 'ClusterIP';
  return {
    v: 1,
    namespace: svc.metadata.namespace ?? 'default',
    name: svc.metadata.name,
    uid: svc.metadata.uid,
    type,
    clusterIP: spec.clusterIP,
    ports: (spec.ports ?? []).map((p) => ({
      ...(p.name ? { name: p.name } : {}),
      protocol: p.protocol ?? 'TCP',
      port: p.port,
      targetPort: p.targetPort ?? p.port,
      ...(type === 'NodePort' && p.nodePort !== undefined ? { nodePort: p.nodePort } : {}),
    })),
    // Defaults are left out: a device reads their absence as Kubernetes' defaults.
    ...(spec.sessionAffinity === 'ClientIP' ? { sessionAffinity: 'ClientIP' as const, affinitySeconds: spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800 } : {}),
    ...(spec.internalTrafficPolicy === 'Local' ? { internalTrafficPolicy: 'Local' as const } : {}),
    ...(type === 'NodePort' && spec.externalTrafficPolicy === 'Local' ? { externalTrafficPolicy: 'Local' as const } : {}),
    ...(spec.trafficDistribution ? { trafficDistribution: spec.trafficDistribution } : {}),
  };
}

/** The endpoints of one EndpointSlice by pod name (without their generation). */
export function endpointContents(slice: StoredObject): [string, EndpointContent][] {
  const fields = slice as unknown as EndpointSliceFields;
  const ports: Record<string, number> = {};
  for (const p of fields.ports ?? []) if (p.port !== undefined) ports[p.name ?? ''] = p.port;
  const out: [string, EndpointContent][] = [];
  for (const e of fields.endpoints ?? []) {
    const ip = e.addresses[0];
    if (e.targetRef?.kind !== 'Pod' || !ip || !e.nodeName) continue;
    out.push([
      e.targetRef.name,
      {
        v: 1,
        ip,
        node: e.nodeName,
        ...(e.zone ? { site: e.zone } : {}),
        ready: e.conditions?.ready === true,
        ports,
        ...(e.hostname ? { hostname: e.hostname } : {}),
      },
    ]);
  }
  return out;
}
