import type { Logger } from 'pino';
import * as z from 'zod';
import { parseIPv4 } from '../../shared/net/cidr.js';
import { decodePayload } from '../../shared/protocol/messages.js';
import { catalogAnnouncementSchema, endpointAnnouncementSchema, serviceAnnouncementSchema, type CatalogAnnouncement, type EndpointAnnouncement, type ServiceAnnouncement } from '../../shared/protocol/services.js';
import { fieldErrorsFromZod, formatFieldErrors } from '../../shared/resources/fields.js';
import { StateFiles } from '../state/files.js';
import { Debounce } from './peers.js';

/** The cache of the service book in the state directory (and its `.bak`, as every state file). */
export const SERVICES_FILE = 'services.json';

const cacheSchema = z.object({
  v: z.literal(1),
  services: z.array(z.unknown()),
  /** [namespace, service, pod, announcement]; each checked alone (cacheEndpointSchema), so one damaged entry costs only itself. */
  endpoints: z.array(z.unknown()),
});

const cacheName = z.string().min(1).max(253);
const cacheEndpointSchema = z.tuple([cacheName, cacheName, cacheName, z.unknown()]);

/** `namespace/name` */
export type ServiceKey = string;

export function serviceKey(namespace: string, name: string): ServiceKey {
  return `${namespace}/${name}`;
}

export interface ServiceBookOptions {
  stateDir: string;
  log: Logger;
  /**
   * Services changed: their keys (a Service, or one of its endpoints, came, went or changed).
   * Debounced; the keys of one burst come in one call (a restore from disk is one such burst).
   */
  onChange: (changed: ReadonlySet<ServiceKey>) => void;
  /** Quiet time before onChange, and the longest a change waits for it while messages keep coming. */
  changeDelayMs?: number;
  changeMaxDelayMs?: number;
  writeDelayMs?: number;
  writeMaxDelayMs?: number;
  writeMinIntervalMs?: number;
}

/**
 * The device's copy of the fleet's Services and their endpoints (docs/PROTOCOL.md, 'Services'):
 * what the service proxy, the DNS server, the pods' environment and the ingress read. It is
 * kept on disk, so that an agent restarted while the hub is away still answers and routes.
 *
 * Messages are checked here, at the edge: a bad one is logged with the field and ignored, and
 * never removes what is known. Only an empty retained payload (the hub deleted the Service or
 * the endpoint), or the catalog's count after a reconnect (see onConnected), removes an entry.
 * An endpoint is never removed because the hub is unreachable.
 */
export class ServiceBook {
  private readonly svc = new Map<ServiceKey, ServiceAnnouncement>();
  private readonly eps = new Map<ServiceKey, Map<string, EndpointAnnouncement>>();
  private readonly files: StateFiles;
  private readonly write: Debounce;
  private readonly change: Debounce;
  private pending = new Set<ServiceKey>();
  /** What has been seen since the last connect, while a reconnect's sweep is open. */
  private seen?: { services: Set<ServiceKey>; endpoints: Set<string> };
  private catalog?: CatalogAnnouncement;

  constructor(private readonly opts: ServiceBookOptions) {
    this.files = new StateFiles(opts.stateDir);
    this.write = new Debounce(() => this.save(), opts.writeDelayMs ?? 1_000, opts.writeMaxDelayMs ?? 5_000, opts.writeMinIntervalMs ?? 10_000);
    this.change = new Debounce(
      () => {
        const keys = this.pending;
        this.pending = new Set();
        opts.onChange(keys);
      },
      opts.changeDelayMs ?? 20,
      opts.changeMaxDelayMs ?? 200,
    );
  }

  services(): ReadonlyMap<ServiceKey, ServiceAnnouncement> {
    return this.svc;
  }

  service(namespace: string, name: string): ServiceAnnouncement | undefined {
    return this.svc.get(serviceKey(namespace, name));
  }

  /** A Service's endpoints by pod name (empty when none is known). */
  endpoints(namespace: string, name: string): ReadonlyMap<string, EndpointAnnouncement> {
    return this.eps.get(serviceKey(namespace, name)) ?? new Map();
  }

  /** Reads the cache; a damaged file or entry is logged and left out. */
  restore(): void {
    const cache = this.files.read(SERVICES_FILE, cacheSchema, (message) => this.opts.log.warn(`service cache: ${message}`));
    if (!cache) return;
    for (const [i, raw] of cache.services.entries()) {
      const s = checkService(raw);
      if (!s.ok) {
        this.opts.log.warn({ entry: i, errors: s.errors }, 'service cache: damaged entry left out');
        continue;
      }
      const key = serviceKey(s.value.namespace, s.value.name);
      const known = this.svc.get(key);
      if (known && known.generation >= s.value.generation) continue;
      this.svc.set(key, s.value);
      this.pending.add(key);
    }
    for (const [i, entry] of cache.endpoints.entries()) {
      const tuple = cacheEndpointSchema.safeParse(entry);
      if (!tuple.success) {
        this.opts.log.warn({ entry: i, errors: formatFieldErrors(fieldErrorsFromZod(tuple.error).slice(0, 5)) }, 'service cache: damaged endpoint left out');
        continue;
      }
      const [ns, name, pod, raw] = tuple.data;
      const e = checkEndpoint(raw);
      if (!e.ok) {
        this.opts.log.warn({ entry: i, errors: e.errors }, 'service cache: damaged endpoint left out');
        continue;
      }
      const key = serviceKey(ns, name);
      const map = this.eps.get(key) ?? new Map<string, EndpointAnnouncement>();
      const known = map.get(pod);
      if (known && known.generation >= e.value.generation) continue;
      map.set(pod, e.value);
      this.eps.set(key, map);
      this.pending.add(key);
    }
    this.opts.log.info({ services: this.svc.size, endpoints: this.countEndpoints() }, 'service book restored from disk');
    if (this.pending.size) this.change.poke();
  }

  /**
   * The link (re)connected: the broker sends every retained message again. Entries cached from
   * before are kept until the catalog says how many there are; once that many have been seen
   * again, the rest were deleted while the device was away.
   */
  onConnected(): void {
    this.seen = { services: new Set(), endpoints: new Set() };
    this.catalog = undefined;
  }

  onServiceMessage(namespace: string, name: string, payload: Buffer): void {
    const key = serviceKey(namespace, name);
    if (payload.length === 0) {
      this.seen?.services.delete(key);
      if (this.svc.delete(key)) {
        this.opts.log.info({ service: key }, 'service removed');
        this.changed(key);
      }
      this.sweep();
      return;
    }
    const s = checkService(payload);
    if (!s.ok || s.value.namespace !== namespace || s.value.name !== name) {
      this.opts.log.warn({ service: key, errors: s.ok ? 'namespace/name: not the topic\'s' : s.errors }, 'malformed service message ignored; keeping what is known of the service');
      return;
    }
    this.seen?.services.add(key);
    const known = this.svc.get(key);
    if (!known || s.value.generation >= known.generation) {
      this.svc.set(key, s.value);
      if (!known || JSON.stringify({ ...known, generation: 0 }) !== JSON.stringify({ ...s.value, generation: 0 })) this.changed(key);
      else if (known.generation !== s.value.generation) this.write.poke();
    }
    this.sweep();
  }

  onEndpointMessage(namespace: string, service: string, pod: string, payload: Buffer): void {
    const key = serviceKey(namespace, service);
    const id = `${key}/${pod}`;
    const map = this.eps.get(key);
    if (payload.length === 0) {
      this.seen?.endpoints.delete(id);
      if (map?.delete(pod)) {
        if (map.size === 0) this.eps.delete(key);
        this.changed(key);
      }
      this.sweep();
      return;
    }
    const e = checkEndpoint(payload);
    if (!e.ok) {
      this.opts.log.warn({ endpoint: id, errors: e.errors }, 'malformed endpoint message ignored; keeping what is known of the endpoint');
      return;
    }
    this.seen?.endpoints.add(id);
    const known = map?.get(pod);
    if (!known || e.value.generation >= known.generation) {
      const next = map ?? new Map<string, EndpointAnnouncement>();
      next.set(pod, e.value);
      this.eps.set(key, next);
      if (!known || JSON.stringify({ ...known, generation: 0 }) !== JSON.stringify({ ...e.value, generation: 0 })) this.changed(key);
      else if (known.generation !== e.value.generation) this.write.poke();
    }
    this.sweep();
  }

  onCatalogMessage(payload: Buffer): void {
    if (payload.length === 0) return;
    const c = decodePayload(catalogAnnouncementSchema, payload);
    if (!c.ok) {
      this.opts.log.warn({ errors: formatFieldErrors(c.errors) }, 'malformed catalog message ignored');
      return;
    }
    this.catalog = c.value;
    this.sweep();
  }

  stop(): void {
    this.change.cancel();
    this.write.flush();
  }

  flush(): void {
    this.write.flush();
  }

  /** Drops what was cached and not seen again, once everything the catalog counts has been seen since the connect. */
  private sweep(): void {
    const seen = this.seen;
    const catalog = this.catalog;
    if (!seen || !catalog) return;
    if (seen.services.size < catalog.services || seen.endpoints.size < catalog.endpoints) return;
    this.seen = undefined;
    for (const key of [...this.svc.keys()]) {
      if (seen.services.has(key)) continue;
      this.svc.delete(key);
      this.opts.log.info({ service: key }, 'service removed (deleted while this device was away)');
      this.changed(key);
    }
    for (const [key, map] of [...this.eps]) {
      for (const pod of [...map.keys()]) {
        if (seen.endpoints.has(`${key}/${pod}`)) continue;
        map.delete(pod);
        this.changed(key);
      }
      if (map.size === 0) this.eps.delete(key);
    }
  }

  private countEndpoints(): number {
    let n = 0;
    for (const map of this.eps.values()) n += map.size;
    return n;
  }

  private changed(key: ServiceKey): void {
    this.pending.add(key);
    this.change.poke();
    this.write.poke();
  }

  private save(): void {
    const endpoints: [string, string, string, EndpointAnnouncement][] = [];
    for (const [key, map] of this.eps) {
      const slash = key.indexOf('/');
      for (const [pod, e] of map) endpoints.push([key.slice(0, slash), key.slice(slash + 1), pod, e]);
    }
    try {
      this.files.write(SERVICES_FILE, { v: 1, services: [...this.svc.values()], endpoints });
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'could not write the service cache');
    }
  }
}

type Checked<T> = { ok: true; value: T } | { ok: false; errors: string };

function check<T>(schema: z.ZodType<T>, input: Buffer | unknown): Checked<T> {
  if (Buffer.isBuffer(input)) {
    const d = decodePayload(schema, input);
    return d.ok ? { ok: true, value: d.value } : { ok: false, errors: formatFieldErrors(d.errors) };
  }
  const parsed = schema.safeParse(input);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, errors: formatFieldErrors(fieldErrorsFromZod(parsed.error).slice(0, 5)) };
}

function checkService(input: Buffer | unknown): Checked<ServiceAnnouncement> {
  const s = check(serviceAnnouncementSchema, input);
  if (!s.ok) return s;
  if (s.value.clusterIP !== 'None' && parseIPv4(s.value.clusterIP) === undefined) return { ok: false, errors: `clusterIP: ${s.value.clusterIP} is not an IPv4 address or None` };
  return s;
}

function checkEndpoint(input: Buffer | unknown): Checked<EndpointAnnouncement> {
  const e = check(endpointAnnouncementSchema, input);
  if (!e.ok) return e;
  if (parseIPv4(e.value.ip) === undefined) return { ok: false, errors: `ip: ${e.value.ip} is not an IPv4 address` };
  return e;
}
