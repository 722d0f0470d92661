import { formatCidr, formatIPv4, overlaps, parseCidr, parseIPv4, size, type Cidr } from '../../shared/net/cidr.js';
import type { FieldError } from '../../shared/resources/fields.js';
import { DEFAULT_AFFINITY_SECONDS, type ServiceSpec } from '../../shared/resources/service.js';
import { HubError } from '../api/errors.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';

export const DEFAULT_SERVICE_CIDR = '10.43.0.0/16';
export const DEFAULT_NODE_PORT_RANGE = '30000-32767';

export interface ServiceNetworkSettings {
  serviceCIDR: Cidr;
  nodePorts: { min: number; max: number };
}

/**
 * Checks the hub's --service-cidr and --service-node-port-range (and that the service CIDR and
 * --cluster-cidr do not overlap: a virtual IP must never be a pod's address); the error names
 * the flag.
 */
export function parseServiceNetworkSettings(serviceCIDR: string, nodePortRange: string, clusterCIDR: string): ServiceNetworkSettings | { flag: string; error: string } {
  const parsed = parseCidr(serviceCIDR);
  if ('error' in parsed) return { flag: '--service-cidr', error: `--service-cidr: ${parsed.error} (an IPv4 network such as ${DEFAULT_SERVICE_CIDR})` };
  if (parsed.bits > 30) return { flag: '--service-cidr', error: `--service-cidr: ${serviceCIDR} is too small (a /30 or larger: it holds every Service's virtual IP)` };
  const cluster = parseCidr(clusterCIDR);
  if (!('error' in cluster) && overlaps(parsed, cluster)) return { flag: '--service-cidr', error: `--service-cidr: ${serviceCIDR} overlaps the cluster CIDR ${clusterCIDR} (--cluster-cidr): virtual IPs and pod addresses must not mix` };
  const m = /^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$/.exec(nodePortRange);
  const min = m ? Number(m[1]) : NaN;
  const max = m ? Number(m[2]) : NaN;
  if (!m || min < 1 || max > 65535 || min > max) return { flag: '--service-node-port-range', error: `--service-node-port-range: '${nodePortRange}' is not a port range (FIRST-LAST within 1-65535, such as ${DEFAULT_NODE_PORT_RANGE})` };
  return { serviceCIDR: parsed, nodePorts: { min, max } };
}

type Key = string;

function keyOf(o: StoredObject): Key {
  return `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
}

/**
 * The Services' virtual IPs (from --service-cidr) and NodePorts (from --service-node-port-range),
 * allocated on the API's write path as Kubernetes' API server does. `admit` runs inside the
 * write's store transaction: it fills the Service's defaults, checks a requested address or port
 * (free and in range, else a 422 naming the field) or picks one, and records it at once, so two
 * Services of one apply never get the same one. A rolled-back transaction (a dry run, a failed
 * batch) rebuilds the record from the store; so does the hub's start. A Service deleted gives
 * its address and ports back (release, from the Services' watch, and lazily: a holder no longer
 * in the store holds nothing).
 *
 * The next address is taken after the last one given, round the range: an address just released
 * is the last to be given again, so a device that still routes it for a moment misroutes nothing new.
 */
export class ServiceAllocator {
  private readonly ips = new Map<number, Key>();
  private readonly ports = new Map<number, Key>();
  private readonly first: number;
  private readonly count: number;
  private ipCursor = 0;
  private portCursor = 0;
  private unlisten: (() => void)[] = [];

  constructor(
    private readonly store: ObjectStore,
    readonly settings: ServiceNetworkSettings,
  ) {
    // The network's own address and its broadcast address are never given.
    this.first = settings.serviceCIDR.base + 1;
    this.count = size(settings.serviceCIDR) - 2;
  }

  get serviceCIDR(): string {
    return formatCidr(this.settings.serviceCIDR);
  }

  /** Reads every stored Service's allocations, and follows deletes and rollbacks. */
  start(): void {
    this.rebuild();
    this.unlisten.push(
      this.store.onRollback(() => this.rebuild()),
      this.store.watch({ kind: 'Service' }, (e) => {
        if (e.type !== 'DELETED') return;
        // A Service of the same name may have been created in the same commit: it keeps what it holds.
        this.release(keyOf(e.object));
        const now = this.store.get('Service', e.object.metadata.namespace, e.object.metadata.name);
        if (now) this.record(now);
      }),
    );
  }

  stop(): void {
    for (const u of this.unlisten) u();
    this.unlisten = [];
  }

  /** The record, as the store holds it now. */
  rebuild(): void {
    this.ips.clear();
    this.ports.clear();
    for (const svc of this.store.list('Service').items) this.record(svc);
  }

  counts(): { ips: { allocated: number; total: number }; nodePorts: { allocated: number; total: number } } {
    return { ips: { allocated: this.ips.size, total: this.count }, nodePorts: { allocated: this.ports.size, total: this.settings.nodePorts.max - this.settings.nodePorts.min + 1 } };
  }

  /** Frees what a Service held. */
  release(key: Key): void {
    for (const [ip, holder] of this.ips) if (holder === key) this.ips.delete(ip);
    for (const [port, holder] of this.ports) if (holder === key) this.ports.delete(port);
  }

  /**
   * The Service as it is to be stored: defaults filled (type, sessionAffinity, the traffic
   * policies, the affinity timeout), clusterIP kept from `existing` (immutable) or allocated,
   * NodePorts kept, checked or allocated. Throws a HubError (422) naming the field.
   */
  admit(next: StoredObject, existing: StoredObject | undefined): StoredObject {
    const key = keyOf(next);
    const spec = { ...(next.spec as ServiceSpec) };
    const before = existing?.spec as ServiceSpec | undefined;
    spec.type ??= 'ClusterIP';
    spec.sessionAffinity ??= 'None';
    spec.internalTrafficPolicy ??= 'Cluster';
    if (spec.type === 'NodePort') spec.externalTrafficPolicy ??= 'Cluster';
    if (spec.sessionAffinity === 'ClientIP') spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_SECONDS } };
    const errors: FieldError[] = [];

    // spec.clusterIP: immutable once set; an update that omits it keeps it.
    const asked = spec.clusterIP || spec.clusterIPs?.[0] || undefined;
    const held = before?.clusterIP;
    let ip: string | undefined;
    if (held) {
      if (asked !== undefined && asked !== held) errors.push({ path: 'spec.clusterIP', message: `Invalid value: '${asked}': field is immutable` });
      ip = held;
    } else if (asked === 'None') ip = 'None';
    else if (asked !== undefined) {
      const n = parseIPv4(asked)!;
      const problem = this.ipProblem(n, key);
      if (problem) errors.push({ path: 'spec.clusterIP', message: `Invalid value: '${asked}': ${problem}` });
      else ip = asked;
    }
    if (spec.type === 'NodePort' && ip === 'None') errors.push({ path: 'spec.clusterIP', message: "Invalid value: 'None': may not be set to 'None' for NodePort services" });
    // spec.ports[i].nodePort: only with type NodePort (a switch back to ClusterIP gives them back).
    const nodePorts: (number | undefined)[] = [];
    if (spec.type === 'NodePort') {
      const taken = new Set<number>();
      (spec.ports ?? []).forEach((p, i) => {
        if (p.nodePort === undefined) return;
        const mine = before?.ports?.some((q) => q.nodePort === p.nodePort) === true && this.ports.get(p.nodePort) === key;
        const problem = mine || taken.has(p.nodePort) ? undefined : this.portProblem(p.nodePort, key);
        if (problem) errors.push({ path: `spec.ports[${i}].nodePort`, message: `Invalid value: ${p.nodePort}: ${problem}` });
        taken.add(p.nodePort);
        nodePorts[i] = p.nodePort;
      });
    }
    if (errors.length) throw new HubError('HUB_ERR_INVALID', `Service "${next.metadata.name}" is invalid: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, errors);

    if (ip === undefined) ip = this.nextIP(key);
    if (spec.type === 'NodePort') {
      (spec.ports ?? []).forEach((_, i) => {
        nodePorts[i] ??= this.nextPort(key, nodePorts);
      });
    }
    spec.clusterIP = ip;
    spec.clusterIPs = [ip];
    spec.ports = spec.ports?.map((p, i) => {
      const { nodePort: _n, ...rest } = p;
      return nodePorts[i] !== undefined ? { ...rest, nodePort: nodePorts[i] } : rest;
    });
    if (spec.ports === undefined) delete spec.ports;
    const admitted = { ...next, spec };
    // The record follows at once: the holder's previous ports (a switch of type, a changed port) are given back.
    this.release(key);
    this.record(admitted);
    return admitted;
  }

  private record(svc: StoredObject): void {
    const key = keyOf(svc);
    const spec = svc.spec as ServiceSpec;
    const n = spec.clusterIP ? parseIPv4(spec.clusterIP) : undefined;
    if (n !== undefined) this.ips.set(n, key);
    if (spec.type === 'NodePort') for (const p of spec.ports ?? []) if (p.nodePort !== undefined) this.ports.set(p.nodePort, key);
  }

  private ipProblem(n: number, key: Key): string | undefined {
    if (n < this.first || n >= this.first + this.count) return `provided IP is not in the valid range. The range of valid IPs is ${this.serviceCIDR}`;
    const holder = this.ips.get(n);
    if (holder !== undefined && holder !== key && this.holds(holder, 'ip', n)) return 'provided IP is already allocated';
    return undefined;
  }

  private portProblem(port: number, key: Key): string | undefined {
    const { min, max } = this.settings.nodePorts;
    if (port < min || port > max) return `provided port is not in the valid range. The range of valid ports is ${min}-${max}`;
    const holder = this.ports.get(port);
    if (holder !== undefined && holder !== key && this.holds(holder, 'port', port)) return 'provided port is already allocated';
    return undefined;
  }

  /** Whether the stored Service `holder` still holds the address or port (the record may lag a delete). */
  private holds(holder: Key, what: 'ip' | 'port', value: number): boolean {
    const slash = holder.indexOf('/');
    const svc = this.store.get('Service', holder.slice(0, slash), holder.slice(slash + 1));
    const spec = svc?.spec as ServiceSpec | undefined;
    const still = what === 'ip' ? spec?.clusterIP !== undefined && parseIPv4(spec.clusterIP) === value : spec?.type === 'NodePort' && (spec.ports ?? []).some((p) => p.nodePort === value);
    if (!still) (what === 'ip' ? this.ips : this.ports).delete(value);
    return still;
  }

  private nextIP(key: Key): string {
    for (let i = 0; i < this.count; i++) {
      const n = this.first + ((this.ipCursor + i) % this.count);
      const holder = this.ips.get(n);
      if (holder !== undefined && this.holds(holder, 'ip', n)) continue;
      this.ipCursor = (this.ipCursor + i + 1) % this.count;
      this.ips.set(n, key);
      return formatIPv4(n);
    }
    throw new HubError('HUB_ERR_INVALID', `spec.clusterIP: Internal error: failed to allocate a serviceIP: range is full (the service CIDR ${this.serviceCIDR} (--service-cidr) holds ${this.count} addresses, every one allocated)`, [{ path: 'spec.clusterIP', message: `range is full (--service-cidr ${this.serviceCIDR})` }]);
  }

  private nextPort(key: Key, taken: (number | undefined)[]): number {
    const { min, max } = this.settings.nodePorts;
    const total = max - min + 1;
    for (let i = 0; i < total; i++) {
      const port = min + ((this.portCursor + i) % total);
      if (taken.includes(port)) continue;
      const holder = this.ports.get(port);
      if (holder !== undefined && this.holds(holder, 'port', port)) continue;
      this.portCursor = (this.portCursor + i + 1) % total;
      this.ports.set(port, key);
      return port;
    }
    throw new HubError('HUB_ERR_INVALID', `spec.ports: Internal error: failed to allocate a nodePort: range is full (--service-node-port-range ${min}-${max}, every port allocated)`, [{ path: 'spec.ports', message: `range is full (--service-node-port-range ${min}-${max})` }]);
  }
}
