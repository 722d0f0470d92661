import dnsPacket, { type Packet, type RecordType } from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { answerQuery, DNS_TTL_SECONDS, type ServiceLookup } from '../../agent/services/dns/answer.js';
import type { EndpointAnnouncement, ServiceAnnouncement } from '../../shared/protocol/services.js';

// The DNS server's answers for the cluster's names, through the wire format both ways: a query
// is encoded and decoded as a pod's resolver would send it, and so is the answer.

function service(o: Partial<ServiceAnnouncement> & { name: string }): ServiceAnnouncement {
  return { v: 1, namespace: 'default', uid: `uid-${o.name}`, type: 'ClusterIP', clusterIP: '10.43.0.10', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }], generation: 1, ...o };
}

function endpoint(o: Partial<EndpointAnnouncement> & { ip: string }): EndpointAnnouncement {
  return { v: 1, node: 'dev-a', ready: true, ports: { http: 8080 }, generation: 1, ...o };
}

function book(services: ServiceAnnouncement[], endpoints: Record<string, Record<string, EndpointAnnouncement>> = {}): ServiceLookup {
  const svc = new Map(services.map((s) => [`${s.namespace}/${s.name}`, s]));
  return {
    services: () => svc,
    service: (ns, name) => svc.get(`${ns}/${name}`),
    endpoints: (ns, name) => new Map(Object.entries(endpoints[`${ns}/${name}`] ?? {})),
  };
}

type Decoded = Packet & { rcode?: string; flag_aa?: boolean; flag_rd?: boolean };

function ask(lookup: ServiceLookup, name: string, type: RecordType = 'A'): Decoded {
  const wire = dnsPacket.encode({ id: 4242, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] });
  const outcome = answerQuery(dnsPacket.decode(wire), lookup);
  if (outcome.kind !== 'answer') throw new Error(`expected an answer, got ${outcome.kind}`);
  return dnsPacket.decode(dnsPacket.encode(outcome.response)) as Decoded;
}

const data = (p: Packet, type: string) => (p.answers ?? []).filter((a) => a.type === type).map((a) => (a as { data: unknown }).data);

const store = service({ name: 'store', clusterIP: '10.43.0.20', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'web' }, { name: 'metrics', protocol: 'UDP', port: 9000, targetPort: 9000 }] });
const db = service({ name: 'db', clusterIP: 'None', ports: [{ name: 'pg', protocol: 'TCP', port: 5432, targetPort: 5432 }] });
const dbEndpoints = {
  'default/db': {
    'db-0': endpoint({ ip: '10.42.1.5', hostname: 'db-0', ports: { pg: 5432 } }),
    'db-1': endpoint({ ip: '10.42.2.7', hostname: 'db-1', ports: { pg: 5433 } }),
    'db-2': endpoint({ ip: '10.42.3.9', hostname: 'db-2', ready: false, ports: { pg: 5432 } }),
  },
};
const lookup = book([store, db, service({ name: 'cache', namespace: 'team-a', clusterIP: '10.43.0.30' })], dbEndpoints);

describe('the cluster\'s names', () => {
  it('answers a Service\'s FQDN with its virtual IP, authoritative, with a short TTL and the question echoed', () => {
    const r = ask(lookup, 'store.default.svc.cluster.local');
    expect(r.rcode).toBe('NOERROR');
    expect(r.id).toBe(4242);
    expect(r.flag_aa).toBe(true);
    expect(r.flag_rd).toBe(true);
    expect(data(r, 'A')).toEqual(['10.43.0.20']);
    expect(r.answers![0]!.name).toBe('store.default.svc.cluster.local');
    expect((r.answers![0] as { ttl: number }).ttl).toBe(DNS_TTL_SECONDS);
  });

  it('matches names without regard to case, and with a trailing dot', () => {
    expect(data(ask(lookup, 'Store.DEFAULT.svc.Cluster.Local.'), 'A')).toEqual(['10.43.0.20']);
  });

  it('answers a Service of another namespace only under its own namespace', () => {
    expect(data(ask(lookup, 'cache.team-a.svc.cluster.local'), 'A')).toEqual(['10.43.0.30']);
    expect(ask(lookup, 'cache.default.svc.cluster.local').rcode).toBe('NXDOMAIN');
  });

  it('answers a headless Service with its ready endpoints\' addresses, sorted', () => {
    expect(data(ask(lookup, 'db.default.svc.cluster.local'), 'A')).toEqual(['10.42.1.5', '10.42.2.7']);
  });

  it('answers with every endpoint when the Service publishes not-ready addresses', () => {
    const all = book([{ ...db, publishNotReadyAddresses: true }], dbEndpoints);
    expect(data(ask(all, 'db.default.svc.cluster.local'), 'A')).toEqual(['10.42.1.5', '10.42.2.7', '10.42.3.9']);
  });

  it('answers a pod\'s hostname under its headless Service (hostname and subdomain), and its dashed address', () => {
    expect(data(ask(lookup, 'db-1.db.default.svc.cluster.local'), 'A')).toEqual(['10.42.2.7']);
    expect(data(ask(lookup, '10-42-1-5.db.default.svc.cluster.local'), 'A')).toEqual(['10.42.1.5']);
    // Not ready: no name.
    expect(ask(lookup, 'db-2.db.default.svc.cluster.local').rcode).toBe('NXDOMAIN');
    // A ClusterIP Service has no endpoint names.
    expect(ask(lookup, 'x.store.default.svc.cluster.local').rcode).toBe('NXDOMAIN');
  });

  it('answers SRV for a named port: the Service\'s name and port, with its address as additional', () => {
    const r = ask(lookup, '_http._tcp.store.default.svc.cluster.local', 'SRV');
    expect(r.rcode).toBe('NOERROR');
    expect(data(r, 'SRV')).toEqual([{ priority: 0, weight: 100, port: 80, target: 'store.default.svc.cluster.local' }]);
    expect(r.additionals!.map((a) => [a.name, (a as { data: unknown }).data])).toEqual([['store.default.svc.cluster.local', '10.43.0.20']]);
    expect(data(ask(lookup, '_metrics._udp.store.default.svc.cluster.local', 'SRV'), 'SRV')).toEqual([{ priority: 0, weight: 100, port: 9000, target: 'store.default.svc.cluster.local' }]);
    // The protocol is part of the name.
    expect(ask(lookup, '_metrics._tcp.store.default.svc.cluster.local', 'SRV').rcode).toBe('NXDOMAIN');
  });

  it('answers SRV under a headless Service with each ready pod\'s name and its own port', () => {
    const r = ask(lookup, '_pg._tcp.db.default.svc.cluster.local', 'SRV');
    expect(data(r, 'SRV')).toEqual([
      { priority: 0, weight: 50, port: 5432, target: 'db-0.db.default.svc.cluster.local' },
      { priority: 0, weight: 50, port: 5433, target: 'db-1.db.default.svc.cluster.local' },
    ]);
    expect(r.additionals!.map((a) => (a as { data: unknown }).data)).toEqual(['10.42.1.5', '10.42.2.7']);
  });

  it('answers NXDOMAIN for an unknown name in the cluster domain, with the zone\'s SOA for negative caching', () => {
    for (const name of ['nope.default.svc.cluster.local', 'store.nope.svc.cluster.local', 'a.b.c.d.e.svc.cluster.local', 'foo.cluster.local', 'example.com.default.svc.cluster.local']) {
      const r = ask(lookup, name);
      expect(r.rcode, name).toBe('NXDOMAIN');
      expect(r.answers, name).toEqual([]);
      expect(r.authorities![0]!.type).toBe('SOA');
      expect((r.authorities![0] as { data: { minimum: number } }).data.minimum).toBe(DNS_TTL_SECONDS);
    }
  });

  it('answers NOERROR without records for another type of a name that exists (AAAA), and for the zones themselves', () => {
    for (const [name, type] of [['store.default.svc.cluster.local', 'AAAA'], ['store.default.svc.cluster.local', 'TXT'], ['db.default.svc.cluster.local', 'AAAA'], ['default.svc.cluster.local', 'A'], ['svc.cluster.local', 'A'], ['cluster.local', 'A']] as const) {
      const r = ask(lookup, name, type);
      expect(r.rcode, `${name} ${type}`).toBe('NOERROR');
      expect(r.answers, `${name} ${type}`).toEqual([]);
    }
  });

  it('answers a pod\'s dashed address under NS.pod', () => {
    expect(data(ask(lookup, '10-42-1-77.default.pod.cluster.local'), 'A')).toEqual(['10.42.1.77']);
    expect(ask(lookup, '10-42-1.default.pod.cluster.local').rcode).toBe('NXDOMAIN');
    expect(ask(lookup, '999-1-1-1.default.pod.cluster.local').rcode).toBe('NXDOMAIN');
  });

  it('leaves names outside the cluster domain to the forwarder', () => {
    for (const name of ['example.com', 'cluster.local.example.com', 'localcluster.local']) {
      const outcome = answerQuery(dnsPacket.decode(dnsPacket.encode({ id: 1, type: 'query', questions: [{ name, type: 'A' }] })), lookup);
      expect(outcome.kind, name).toBe('forward');
    }
  });

  it('refuses what is not one plain query: a response is dropped, two questions are FORMERR, another opcode NOTIMP', () => {
    expect(answerQuery({ id: 1, type: 'response', questions: [{ name: 'store.default.svc.cluster.local', type: 'A' }] }, lookup).kind).toBe('drop');
    const two = answerQuery({ id: 2, type: 'query', questions: [{ name: 'a.cluster.local', type: 'A' }, { name: 'b.cluster.local', type: 'A' }] }, lookup);
    expect(two.kind === 'answer' && (dnsPacket.decode(dnsPacket.encode(two.response)) as Decoded).rcode).toBe('FORMERR');
    const update = answerQuery({ id: 3, type: 'query', flags: 5 << 11, questions: [{ name: 'store.default.svc.cluster.local', type: 'A' }] }, lookup);
    expect(update.kind === 'answer' && (dnsPacket.decode(dnsPacket.encode(update.response)) as Decoded).rcode).toBe('NOTIMP');
  });

  it('answers from the book as it is now: a Service gone is NXDOMAIN at once', () => {
    const services = [store];
    const live: ServiceLookup = { services: () => new Map(services.map((s) => [`${s.namespace}/${s.name}`, s])), service: (ns, n) => services.find((s) => s.namespace === ns && s.name === n), endpoints: () => new Map() };
    expect(data(ask(live, 'store.default.svc.cluster.local'), 'A')).toEqual(['10.43.0.20']);
    services.pop();
    expect(ask(live, 'store.default.svc.cluster.local').rcode).toBe('NXDOMAIN');
  });
});
