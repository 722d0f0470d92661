import type { Answer, Packet, Question } from 'dns-packet';
import { parseIPv4 } from '../../../shared/net/cidr.js';
import type { EndpointAnnouncement, ServiceAnnouncement } from '../../../shared/protocol/services.js';

/**
 * The DNS server's answers for the cluster's names (docs/ARCHITECTURE.md, 'DNS'), from the
 * device's service book, without I/O. Kubernetes' DNS specification for Services
 * (kubernetes/dns, docs/specification.md) as CoreDNS's kubernetes plugin serves it:
 *  - `NAME.NS.svc.DOMAIN`: A, the virtual IP; a headless Service (clusterIP None): its ready
 *    endpoints' addresses (every endpoint with publishNotReadyAddresses);
 *  - `HOST.NAME.NS.svc.DOMAIN`: a headless Service's endpoint by its hostname (a pod's
 *    spec.hostname under a Service named by its spec.subdomain) or by its dashed address;
 *  - `_PORT._PROTO.NAME.NS.svc.DOMAIN`: SRV for a named port, to the Service's name, or to each
 *    endpoint's name under a headless Service, with their A records as additionals;
 *  - `A-B-C-D.NS.pod.DOMAIN`: A, the address in the name (CoreDNS's `pods insecure`);
 *  - another type of a name that exists (AAAA: the pod network is IPv4): NOERROR, no answer;
 *    a name under the domain that does not exist: NXDOMAIN. Both with the zone's SOA, so a
 *    resolver caches the absence for as long as an answer, no longer.
 * Everything outside the cluster domain is the forwarder's.
 */

/** Kubernetes' cluster domain (the team's choice; no flag changes it). */
export const CLUSTER_DOMAIN = 'cluster.local';

/** Every answer's TTL: short, so a Service's change reaches clients within seconds, as CoreDNS's default 5 s. */
export const DNS_TTL_SECONDS = 5;

/** What the answers read: the agent's ServiceBook (agent/network/services.ts) has this shape. */
export interface ServiceLookup {
  services(): ReadonlyMap<string, ServiceAnnouncement>;
  service(namespace: string, name: string): ServiceAnnouncement | undefined;
  endpoints(namespace: string, name: string): ReadonlyMap<string, EndpointAnnouncement>;
}

export type Outcome = { kind: 'answer'; response: Packet } | { kind: 'forward' } | { kind: 'drop'; why: string };

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = keyof typeof RCODE;

const AA = 1 << 10;
const RD = 1 << 8;
const RA = 1 << 7;
const OPCODE_MASK = 0xf << 11;

/** What one query gets: an answer of ours, the forwarder, or nothing (not a query at all). */
export function answerQuery(query: Packet, book: ServiceLookup, domain = CLUSTER_DOMAIN): Outcome {
  if (query.type !== 'query') return { kind: 'drop', why: 'not a query' };
  const questions = query.questions ?? [];
  // RFC 1035 allows several questions; no server answers more than one (RFC 9619).
  if (questions.length !== 1) return { kind: 'answer', response: reply(query, 'FORMERR', []) };
  if (((query.flags ?? 0) & OPCODE_MASK) !== 0) return { kind: 'answer', response: reply(query, 'NOTIMP', []) };
  const q = questions[0]!;
  const name = q.name.toLowerCase().replace(/\.$/, '');
  if (name !== domain && !name.endsWith(`.${domain}`)) return { kind: 'forward' };
  if ((q.class ?? 'IN') !== 'IN' && q.class !== 'ANY') return { kind: 'answer', response: reply(query, 'REFUSED', []) };
  const found = lookup(name.slice(0, Math.max(0, name.length - domain.length - 1)), book, domain);
  if (!found) return { kind: 'answer', response: reply(query, 'NXDOMAIN', [], [soa(domain)]) };
  const any = (q.type as string) === 'ANY';
  const wanted = found.records.filter((r) => r.type === q.type || any);
  if (wanted.length === 0) return { kind: 'answer', response: reply(query, 'NOERROR', [], [soa(domain)]) };
  const additionals = q.type === 'SRV' ? found.additionals : [];
  return { kind: 'answer', response: reply(query, 'NOERROR', wanted.map((r) => ({ ...r, name: q.name.replace(/\.$/, '') })), [], additionals) };
}

/** A response to `query` with `rcode`: the question echoed, authoritative, recursion available (we forward). */
export function reply(query: Packet, rcode: Rcode, answers: Answer[], authorities: Answer[] = [], additionals: Answer[] = []): Packet {
  return {
    id: query.id ?? 0,
    type: 'response',
    flags: (rcode === 'NOERROR' || rcode === 'NXDOMAIN' ? AA : 0) | ((query.flags ?? 0) & RD) | RA | RCODE[rcode],
    questions: query.questions ?? [],
    answers,
    authorities,
    additionals,
  };
}

/** The record types a name has; `name` is relative to the cluster domain, lower case. */
type Record = { type: 'A'; ttl: number; data: string } | { type: 'SRV'; ttl: number; data: { priority: number; weight: number; port: number; target: string } };

interface Found {
  records: Record[];
  /** The A records of SRV targets. */
  additionals: Answer[];
}

function lookup(relative: string, book: ServiceLookup, domain: string): Found | undefined {
  const labels = relative === '' ? [] : relative.split('.');
  const exists: Found = { records: [], additionals: [] };
  if (labels.length === 0) return exists;
  const zone = labels[labels.length - 1]!;
  if (zone === 'pod') return podRecord(labels.slice(0, -1));
  if (zone !== 'svc') return undefined;
  const rest = labels.slice(0, -1);
  if (rest.length === 0) return exists;
  const ns = rest[rest.length - 1]!;
  if (rest.length === 1) return namespaceHasServices(book, ns) ? exists : undefined;
  const svcName = rest[rest.length - 2]!;
  const svc = book.service(ns, svcName);
  if (!svc) return undefined;
  const fqdn = `${svcName}.${ns}.svc.${domain}`;
  const before = rest.slice(0, -2);
  if (before.length === 0) return serviceRecords(svc, book, fqdn);
  if (before.length === 1) return svc.clusterIP === 'None' ? endpointRecord(svc, book, before[0]!) : undefined;
  if (before.length === 2 && before[0]!.startsWith('_') && before[1]!.startsWith('_')) return srvRecords(svc, book, fqdn, before[0]!.slice(1), before[1]!.slice(1));
  return undefined;
}

/** A Service's own name: the virtual IP, or a headless Service's endpoints. */
function serviceRecords(svc: ServiceAnnouncement, book: ServiceLookup, fqdn: string): Found {
  const records: Record[] = addresses(svc, book).map((ip) => ({ type: 'A', ttl: DNS_TTL_SECONDS, data: ip }));
  // SRV of the name itself: every named port, as CoreDNS answers it.
  const srv = svc.ports.filter((p) => p.name).flatMap((p) => (srvRecords(svc, book, fqdn, p.name!, p.protocol.toLowerCase())?.records ?? []).filter((r) => r.type === 'SRV'));
  return { records: [...records, ...srv], additionals: svc.ports.some((p) => p.name) ? srvAdditionals(svc, book, fqdn) : [] };
}

/** A headless Service's endpoint by its hostname, or by its address with dashes (CoreDNS's name for an endpoint without one). */
function endpointRecord(svc: ServiceAnnouncement, book: ServiceLookup, label: string): Found | undefined {
  for (const [, e] of publishedEndpoints(svc, book)) {
    if (endpointLabel(e) === label || dashed(e.ip) === label) return { records: [{ type: 'A', ttl: DNS_TTL_SECONDS, data: e.ip }], additionals: [] };
  }
  return undefined;
}

/** `_PORT._PROTO.NAME.NS.svc`: SRV for a named port. */
function srvRecords(svc: ServiceAnnouncement, book: ServiceLookup, fqdn: string, portName: string, proto: string): Found | undefined {
  const port = svc.ports.find((p) => p.name === portName && p.protocol.toLowerCase() === proto);
  if (!port) return undefined;
  if (svc.clusterIP !== 'None') {
    return { records: [{ type: 'SRV', ttl: DNS_TTL_SECONDS, data: { priority: 0, weight: 100, port: port.port, target: fqdn } }, { type: 'A', ttl: DNS_TTL_SECONDS, data: svc.clusterIP }], additionals: [{ type: 'A', name: fqdn, ttl: DNS_TTL_SECONDS, data: svc.clusterIP }] };
  }
  const records: Record[] = [];
  const eps = publishedEndpoints(svc, book).filter(([, e]) => e.ports[portName] !== undefined);
  const weight = eps.length ? Math.max(1, Math.floor(100 / eps.length)) : 100;
  for (const [, e] of eps) records.push({ type: 'SRV', ttl: DNS_TTL_SECONDS, data: { priority: 0, weight, port: e.ports[portName]!, target: `${endpointLabel(e)}.${fqdn}` } });
  for (const [, e] of eps) records.push({ type: 'A', ttl: DNS_TTL_SECONDS, data: e.ip });
  return { records, additionals: eps.map(([, e]) => ({ type: 'A', name: `${endpointLabel(e)}.${fqdn}`, ttl: DNS_TTL_SECONDS, data: e.ip })) };
}

function srvAdditionals(svc: ServiceAnnouncement, book: ServiceLookup, fqdn: string): Answer[] {
  if (svc.clusterIP !== 'None') return [{ type: 'A', name: fqdn, ttl: DNS_TTL_SECONDS, data: svc.clusterIP }];
  return publishedEndpoints(svc, book).map(([, e]) => ({ type: 'A', name: `${endpointLabel(e)}.${fqdn}`, ttl: DNS_TTL_SECONDS, data: e.ip }));
}

/** The addresses a Service's name resolves to. */
function addresses(svc: ServiceAnnouncement, book: ServiceLookup): string[] {
  if (svc.clusterIP !== 'None') return [svc.clusterIP];
  // Sorted: the same set gives the same answer (a resolver's own rotation spreads the load).
  return [...new Set(publishedEndpoints(svc, book).map(([, e]) => e.ip))].sort();
}

/** The endpoints DNS names: the ready ones, or all with publishNotReadyAddresses (Kubernetes' rule for headless Services). */
function publishedEndpoints(svc: ServiceAnnouncement, book: ServiceLookup): [string, EndpointAnnouncement][] {
  const all = [...book.endpoints(svc.namespace, svc.name)];
  const shown = svc.publishNotReadyAddresses ? all : all.filter(([, e]) => e.ready);
  return shown.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** An endpoint's name under its headless Service: its hostname, else its address with dashes. */
function endpointLabel(e: EndpointAnnouncement): string {
  return e.hostname ?? dashed(e.ip);
}

function dashed(ip: string): string {
  return ip.replaceAll('.', '-');
}

/** `A-B-C-D.NS.pod`: the address in the name, for any namespace that has one label. */
function podRecord(labels: string[]): Found | undefined {
  if (labels.length !== 2) return labels.length === 1 ? { records: [], additionals: [] } : undefined;
  const ip = labels[0]!.replaceAll('-', '.');
  if (labels[0]!.split('-').length !== 4 || parseIPv4(ip) === undefined) return undefined;
  return { records: [{ type: 'A', ttl: DNS_TTL_SECONDS, data: ip }], additionals: [] };
}

function namespaceHasServices(book: ServiceLookup, ns: string): boolean {
  for (const s of book.services().values()) if (s.namespace === ns) return true;
  return false;
}

/** The zone's SOA, in negative answers: its minimum is how long a resolver may cache the absence (RFC 2308). */
function soa(domain: string): Answer {
  return { type: 'SOA', name: domain, ttl: DNS_TTL_SECONDS, data: { mname: `ns.dns.${domain}`, rname: `hostmaster.${domain}`, serial: 1, refresh: 7200, retry: 1800, expire: 86400, minimum: DNS_TTL_SECONDS } };
}

/** The question of a packet, for logs. */
export function describeQuestion(q: Question | undefined): string {
  return q ? `${q.name} ${q.type}` : '(none)';
}
