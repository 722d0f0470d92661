import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HubError } from '../../hub/api/errors.js';
import { loadHubConfig } from '../../hub/config.js';
import { ResourceService } from '../../hub/api/resources.js';
import type { MessageBus } from '../../hub/broker/bus.js';
import { parseServiceNetworkSettings, ServiceAllocator } from '../../hub/services/allocator.js';
import { ServicePublisher } from '../../hub/services/publisher.js';
import { decodePayload } from '../../shared/protocol/messages.js';
import { catalogAnnouncementSchema, endpointAnnouncementSchema, serviceAnnouncementSchema } from '../../shared/protocol/services.js';
import { Topics } from '../../shared/protocol/topics.js';
import { SERVICE_NAME_LABEL, type ServiceSpec } from '../../shared/resources/service.js';
import { validateManifest } from '../../shared/resources/validate.js';
import type { StoredObject } from '../../hub/store/types.js';
import { testHub, type TestHub } from './builders.js';

type Fields = Record<string, unknown>;

function service(name: string, spec: Fields = {}): Fields {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }], ...spec } };
}

function errorsOf(doc: Fields): string[] {
  return validateManifest(doc).errors.map((e) => `${e.path}: ${e.message}`);
}

describe('Service spec validation', () => {
  it('refuses LoadBalancer and ExternalName with the way to go, and unknown types', () => {
    expect(errorsOf(service('a', { type: 'LoadBalancer' }))).toEqual([expect.stringMatching(/^spec\.type: Unsupported value: 'LoadBalancer': .*external load-balancer allocator.*use type NodePort/)]);
    expect(errorsOf(service('a', { type: 'ExternalName' }))).toEqual([expect.stringMatching(/^spec\.type: Unsupported value: 'ExternalName'/)]);
    expect(errorsOf(service('a', { type: 'Nodeport' }))).toEqual(["spec.type: Unsupported value: 'Nodeport': supported values: 'ClusterIP', 'NodePort'"]);
    expect(errorsOf(service('a', { type: 'NodePort' }))).toEqual([]);
  });

  it('names the field of each cross-field rule, as Kubernetes does', () => {
    expect(errorsOf(service('a', { ports: [{ port: 80, nodePort: 30080 }] }))).toEqual(["spec.ports[0].nodePort: Forbidden: may not be used when 'type' is 'ClusterIP'"]);
    expect(errorsOf(service('a', { externalTrafficPolicy: 'Local' }))).toEqual(["spec.externalTrafficPolicy: Invalid value: 'Local': may only be set when 'type' is 'NodePort'"]);
    expect(errorsOf(service('a', { type: 'NodePort', clusterIP: 'None' }))).toEqual(["spec.clusterIP: Invalid value: 'None': may not be set to 'None' for NodePort services"]);
    expect(errorsOf(service('a', { sessionAffinityConfig: { clientIP: { timeoutSeconds: 5 } } }))).toEqual(["spec.sessionAffinityConfig: Forbidden: must not be set when 'sessionAffinity' is None"]);
    expect(errorsOf(service('a', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } } }))).toEqual(['spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be greater than 0 and less than or equal to 86400']);
    expect(errorsOf(service('a', { clusterIP: '10.43.0.300' }))).toEqual(["spec.clusterIP: must be a valid IPv4 address or 'None'"]);
    expect(errorsOf(service('a', { clusterIP: '10.43.0.5', clusterIPs: ['10.43.0.6'] }))).toEqual(["spec.clusterIPs[0]: Invalid value: '10.43.0.6': must match spec.clusterIP ('10.43.0.5')"]);
    expect(errorsOf(service('a', { internalTrafficPolicy: 'Nearby' }))).toEqual(["spec.internalTrafficPolicy: Unsupported value: 'Nearby': supported values: 'Cluster', 'Local'"]);
    expect(errorsOf(service('a', { trafficDistribution: 'Anywhere' }))).toEqual(["spec.trafficDistribution: Unsupported value: 'Anywhere': supported values: 'PreferClose'"]);
  });

  it('takes every supported field without a warning', () => {
    const r = validateManifest(
      service('a', {
        type: 'NodePort',
        clusterIP: '10.43.0.9',
        clusterIPs: ['10.43.0.9'],
        ports: [{ name: 'http', port: 80, targetPort: 'http', nodePort: 30080, protocol: 'TCP' }],
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
        internalTrafficPolicy: 'Local',
        externalTrafficPolicy: 'Local',
        trafficDistribution: 'PreferClose',
        publishNotReadyAddresses: true,
      }),
    );
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
  });
});

describe('service network flags', () => {
  it('checks the service CIDR, its overlap with the cluster CIDR, and the NodePort range, naming the flag', () => {
    expect(parseServiceNetworkSettings('10.43.0.0/16', '30000-32767', '10.42.0.0/16')).toEqual({ serviceCIDR: { base: 0x0a2b0000, bits: 16 }, nodePorts: { min: 30000, max: 32767 } });
    expect(parseServiceNetworkSettings('10.42.0.0/20', '30000-32767', '10.42.0.0/16')).toMatchObject({ flag: '--service-cidr', error: expect.stringContaining('overlaps the cluster CIDR 10.42.0.0/16') });
    expect(parseServiceNetworkSettings('10.43.0.1/16', '30000-32767', '10.42.0.0/16')).toMatchObject({ flag: '--service-cidr' });
    expect(parseServiceNetworkSettings('10.43.0.0/16', '32767-30000', '10.42.0.0/16')).toMatchObject({ flag: '--service-node-port-range' });
    expect(parseServiceNetworkSettings('10.43.0.0/16', '30000', '10.42.0.0/16')).toMatchObject({ flag: '--service-node-port-range' });
    // The hub refuses to start on them.
    expect(() => loadHubConfig({ dataDir: '/nowhere', clusterCIDR: '10.0.0.0/10' })).toThrow(/--service-cidr: 10\.43\.0\.0\/16 overlaps the cluster CIDR 10\.0\.0\.0\/10/);
    expect(loadHubConfig({ dataDir: '/nowhere', clusterCIDR: '10.0.0.0/10', serviceCIDR: '10.96.0.0/12' }).serviceCIDR).toBe('10.96.0.0/12');
  });
});

describe('allocation on the API path', () => {
  let hub: TestHub;
  let allocator: ServiceAllocator;
  let api: ResourceService;
  const settings = (cidr = '10.43.0.0/16', range = '30000-30002') => {
    const s = parseServiceNetworkSettings(cidr, range, '10.42.0.0/16');
    if ('error' in s) throw new Error(s.error);
    return s;
  };
  const open = (cidr?: string, range?: string) => {
    allocator?.stop();
    allocator = new ServiceAllocator(hub.store, settings(cidr, range));
    allocator.start();
    api = new ResourceService(hub.store, hub.log, { Service: (n, e) => allocator.admit(n, e) });
  };
  const create = (doc: Fields, dryRun = false) => api.create('services', 'default', { source: 'input', value: doc }, { dryRun }).object;
  const spec = (o: StoredObject) => o.spec as ServiceSpec;
  const refused = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(HubError);
      expect((err as HubError).code).toBe('HUB_ERR_INVALID');
      return (err as HubError).message;
    }
    throw new Error('expected a refusal');
  };

  beforeEach(() => {
    hub = testHub();
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Namespace', metadata: { name: 'default' }, spec: {} });
    open();
  });
  afterEach(() => {
    allocator.stop();
    hub.db.close();
  });

  it('gives each Service the next address of the service CIDR, with Kubernetes defaults', () => {
    const a = create(service('a'));
    const b = create(service('b'));
    expect(spec(a)).toMatchObject({ type: 'ClusterIP', clusterIP: '10.43.0.1', clusterIPs: ['10.43.0.1'], sessionAffinity: 'None', internalTrafficPolicy: 'Cluster' });
    expect(spec(b).clusterIP).toBe('10.43.0.2');
    expect(spec(create(service('h', { clusterIP: 'None' }))).clusterIP).toBe('None');
    expect(spec(create(service('c', { sessionAffinity: 'ClientIP' }))).sessionAffinityConfig).toEqual({ clientIP: { timeoutSeconds: 10800 } });
  });

  it('takes a requested address only when it is free and in range', () => {
    create(service('a', { clusterIP: '10.43.7.7' }));
    expect(refused(() => create(service('b', { clusterIP: '10.43.7.7' })))).toContain("spec.clusterIP: Invalid value: '10.43.7.7': provided IP is already allocated");
    expect(refused(() => create(service('b', { clusterIP: '10.44.0.1' })))).toContain('spec.clusterIP: Invalid value: \'10.44.0.1\': provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16');
    // Deleted, the address is free again.
    api.delete('services', 'default', 'a');
    expect(spec(create(service('b', { clusterIP: '10.43.7.7' }))).clusterIP).toBe('10.43.7.7');
  });

  it('keeps clusterIP on an update that omits it, and refuses to change it', () => {
    create(service('a'));
    const applied = api.apply([{ source: 'input', value: service('a', { ports: [{ port: 81, targetPort: 8080 }] }) }]);
    expect(applied[0]!.action).toBe('configured');
    expect(spec(api.get('services', 'default', 'a')).clusterIP).toBe('10.43.0.1');
    expect(api.apply([{ source: 'input', value: service('a', { ports: [{ port: 81, targetPort: 8080 }] }) }])[0]!.action).toBe('unchanged');
    expect(refused(() => api.replace('services', 'default', 'a', { source: 'input', value: service('a', { clusterIP: '10.43.0.9' }) }))).toContain("spec.clusterIP: Invalid value: '10.43.0.9': field is immutable");
  });

  it('allocates NodePorts in the range, checks requested ones, and gives them back on a switch to ClusterIP', () => {
    const a = create(service('a', { type: 'NodePort' }));
    expect(spec(a).ports![0]!.nodePort).toBe(30000);
    expect(spec(a).externalTrafficPolicy).toBe('Cluster');
    expect(refused(() => create(service('b', { type: 'NodePort', ports: [{ port: 80, nodePort: 30000 }] })))).toContain('spec.ports[0].nodePort: Invalid value: 30000: provided port is already allocated');
    expect(refused(() => create(service('b', { type: 'NodePort', ports: [{ port: 80, nodePort: 31000 }] })))).toContain('spec.ports[0].nodePort: Invalid value: 31000: provided port is not in the valid range. The range of valid ports is 30000-30002');
    // Back to ClusterIP: the port is released and the next NodePort Service may ask for it.
    api.apply([{ source: 'input', value: service('a') }]);
    expect(spec(api.get('services', 'default', 'a')).ports![0]!.nodePort).toBeUndefined();
    expect(spec(create(service('b', { type: 'NodePort', ports: [{ port: 80, nodePort: 30000 }] }))).ports![0]!.nodePort).toBe(30000);
    // ClusterIP → NodePort allocates.
    api.apply([{ source: 'input', value: service('a', { type: 'NodePort' }) }]);
    expect(spec(api.get('services', 'default', 'a')).ports![0]!.nodePort).toBe(30001);
  });

  it('holds nothing for a dry run or a refused batch, and rebuilds what is stored at start', () => {
    expect(spec(create(service('a'), true)).clusterIP).toBe('10.43.0.1');
    // The dry run's address is not held: the real write may take it again (the cursor has moved on).
    create(service('x', { clusterIP: '10.43.0.1' }));
    expect(() => api.apply([{ source: 'input', value: service('b', { clusterIP: '10.43.0.50' }) }, { source: 'input', value: service('c', { clusterIP: '10.43.0.1' }) }])).toThrow(/already allocated/);
    expect(spec(create(service('d', { clusterIP: '10.43.0.50' }))).clusterIP).toBe('10.43.0.50');
    open();
    expect(refused(() => create(service('e', { clusterIP: '10.43.0.50' })))).toContain('already allocated');
    expect(allocator.counts().ips.allocated).toBe(2);
  });

  it('says when the range is full', () => {
    open('10.43.0.0/30', '30000-30000');
    create(service('a'));
    create(service('b'));
    expect(refused(() => create(service('c')))).toContain('range is full');
    api.delete('services', 'default', 'b');
    expect(spec(create(service('n', { type: 'NodePort' }))).ports![0]!.nodePort).toBe(30000);
    expect(refused(() => create(service('m', { type: 'NodePort', clusterIP: 'None' })))).toContain("may not be set to 'None'");
    api.delete('services', 'default', 'a');
    expect(refused(() => create(service('m', { type: 'NodePort' })))).toContain('failed to allocate a nodePort: range is full');
  });
});

class RecordingBus implements MessageBus {
  readonly published: { topic: string; payload: Buffer }[] = [];
  async publish(topic: string, payload: Buffer): Promise<void> {
    this.published.push({ topic, payload });
  }
  async subscribe(): Promise<void> {}
  disconnectNode(): void {}
  connectedClients(): number {
    return 0;
  }
  async close(): Promise<void> {}
  to(topic: string) {
    return this.published.filter((p) => p.topic === topic);
  }
}

describe('ServicePublisher', () => {
  const topics = new Topics();
  let hub: TestHub;
  let bus: RecordingBus;
  let publisher: ServicePublisher;
  const start = async () => {
    publisher = new ServicePublisher({ db: hub.db, store: hub.store, bus, topics, log: hub.log });
    await publisher.start();
    await publisher.queue.idle();
  };
  const settle = () => publisher.queue.idle();
  const svc = (name: string, spec: Partial<ServiceSpec> = {}) =>
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { type: 'ClusterIP', clusterIP: '10.43.0.10', ports: [{ name: 'http', port: 80, targetPort: 'web' }], ...spec } });
  const slice = (service: string, pods: { name: string; ip: string; node: string; ready: boolean; zone?: string; hostname?: string }[]) => {
    const body = {
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: pods.map((p) => ({ addresses: [p.ip], conditions: { ready: p.ready, serving: p.ready, terminating: false }, nodeName: p.node, ...(p.zone ? { zone: p.zone } : {}), ...(p.hostname ? { hostname: p.hostname } : {}), targetRef: { kind: 'Pod', name: p.name, namespace: 'default' } })),
    };
    const name = `${service}-abcde`;
    if (hub.store.get('EndpointSlice', 'default', name)) hub.store.mutate('EndpointSlice', 'default', name, (cur) => ({ ...cur, ...body }));
    else hub.store.create({ apiVersion: 'flotilla/v1', kind: 'EndpointSlice', metadata: { name, namespace: 'default', labels: { [SERVICE_NAME_LABEL]: service } }, ...body });
  };
  const last = (topic: string) => bus.to(topic).at(-1)?.payload;
  const endpoint = (pod: string) => {
    const p = last(topics.endpoint('default', 'store', pod));
    if (!p) return undefined;
    if (p.length === 0) return 'cleared' as const;
    const d = decodePayload(endpointAnnouncementSchema, p);
    if (!d.ok) throw new Error('invalid endpoint message');
    return d.value;
  };
  const catalog = () => {
    const d = decodePayload(catalogAnnouncementSchema, last(topics.catalog())!);
    if (!d.ok) throw new Error('invalid catalog');
    return d.value;
  };

  beforeEach(() => {
    hub = testHub();
    bus = new RecordingBus();
  });
  afterEach(() => {
    publisher.stop();
    hub.db.close();
  });

  it('publishes a Service, its endpoints and the catalog; again only on change, with a higher generation; clears on delete', async () => {
    await start();
    svc('store', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }, trafficDistribution: 'PreferClose' });
    slice('store', [
      { name: 'store-1', ip: '10.42.1.5', node: 'b', ready: true, zone: 'north' },
      { name: 'store-2', ip: '10.42.2.5', node: 'c', ready: false },
    ]);
    await settle();
    const s = decodePayload(serviceAnnouncementSchema, last(topics.service('default', 'store'))!);
    expect(s.ok && s.value).toMatchObject({ v: 1, namespace: 'default', name: 'store', type: 'ClusterIP', clusterIP: '10.43.0.10', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'web' }], sessionAffinity: 'ClientIP', affinitySeconds: 60, trafficDistribution: 'PreferClose' });
    expect(endpoint('store-1')).toMatchObject({ v: 1, ip: '10.42.1.5', node: 'b', site: 'north', ready: true, ports: { http: 8080 } });
    expect(endpoint('store-2')).toMatchObject({ ip: '10.42.2.5', node: 'c', ready: false });
    expect(catalog()).toEqual({ v: 1, services: 1, endpoints: 2 });
    const before = bus.published.length;
    const generation = (endpoint('store-2') as { generation: number }).generation;

    // store-2 becomes ready: that endpoint's message alone, with a higher generation.
    slice('store', [
      { name: 'store-1', ip: '10.42.1.5', node: 'b', ready: true, zone: 'north' },
      { name: 'store-2', ip: '10.42.2.5', node: 'c', ready: true },
    ]);
    await settle();
    expect(bus.published.slice(before).map((p) => p.topic)).toEqual([topics.endpoint('default', 'store', 'store-2')]);
    expect((endpoint('store-2') as { generation: number }).generation).toBeGreaterThan(generation);

    // store-1 goes: its topic cleared, then the catalog.
    const mark = bus.published.length;
    slice('store', [{ name: 'store-2', ip: '10.42.2.5', node: 'c', ready: true }]);
    await settle();
    expect(bus.published.slice(mark).map((p) => p.topic)).toEqual([topics.endpoint('default', 'store', 'store-1'), topics.catalog()]);
    expect(endpoint('store-1')).toBe('cleared');
    expect(catalog()).toEqual({ v: 1, services: 1, endpoints: 1 });

    // The Service deleted: its endpoints cleared, then it, then the catalog.
    hub.store.delete('Service', 'default', 'store');
    await settle();
    expect(endpoint('store-2')).toBe('cleared');
    expect(last(topics.service('default', 'store'))!.length).toBe(0);
    expect(catalog()).toEqual({ v: 1, services: 0, endpoints: 0 });
  });

  it('announces a headless Service\'s hostname and a NodePort', async () => {
    await start();
    svc('store', { clusterIP: 'None' });
    svc('web', { type: 'NodePort', clusterIP: '10.43.0.11', ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }], externalTrafficPolicy: 'Local' });
    slice('store', [{ name: 'db-0', ip: '10.42.1.7', node: 'b', ready: true, hostname: 'db-0' }]);
    await settle();
    expect(endpoint('db-0')).toMatchObject({ hostname: 'db-0' });
    const w = decodePayload(serviceAnnouncementSchema, last(topics.service('default', 'web'))!);
    expect(w.ok && w.value).toMatchObject({ type: 'NodePort', ports: [{ port: 80, targetPort: 8080, nodePort: 30080, protocol: 'TCP' }], externalTrafficPolicy: 'Local' });
    const h = decodePayload(serviceAnnouncementSchema, last(topics.service('default', 'store'))!);
    expect(h.ok && h.value.clusterIP).toBe('None');
  });

  it('republishes after a restart with the generations devices have, and clears what was deleted meanwhile', async () => {
    await start();
    svc('store');
    svc('old', { clusterIP: '10.43.0.12' });
    slice('store', [{ name: 'store-1', ip: '10.42.1.5', node: 'b', ready: true }]);
    await settle();
    const generations = new Map(bus.published.filter((p) => p.payload.length && p.topic !== topics.catalog()).map((p) => [p.topic, (JSON.parse(p.payload.toString()) as { generation: number }).generation]));
    publisher.stop();
    hub.store.delete('Service', 'default', 'old');
    bus = new RecordingBus();
    await start();
    expect(last(topics.service('default', 'old'))!.length).toBe(0);
    for (const topic of [topics.service('default', 'store'), topics.endpoint('default', 'store', 'store-1')]) {
      expect((JSON.parse(last(topic)!.toString()) as { generation: number }).generation).toBe(generations.get(topic));
    }
    expect(catalog()).toEqual({ v: 1, services: 1, endpoints: 1 });
    // The catalog comes after the messages it counts.
    expect(bus.published.at(-1)!.topic).toBe(topics.catalog());
  });

  it('keeps one endpoint change within 300 bytes on the wire, the catalog included', async () => {
    await start();
    svc('store');
    slice('store', Array.from({ length: 10 }, (_, i) => ({ name: `store-7d9f8b6c5-x2x${i}z`, ip: `10.42.${i}.5`, node: `device-${String(i).padStart(4, '0')}`, ready: true, zone: 'site-north-1' })));
    await settle();
    const mark = bus.published.length;
    slice('store', Array.from({ length: 11 }, (_, i) => ({ name: `store-7d9f8b6c5-x2x${i}z`, ip: `10.42.${i}.5`, node: `device-${String(i).padStart(4, '0')}`, ready: true, zone: 'site-north-1' })));
    await settle();
    const sent = bus.published.slice(mark);
    expect(sent.map((p) => p.topic)).toEqual([topics.endpoint('default', 'store', 'store-7d9f8b6c5-x2x10z'), topics.catalog()]);
    // MQTT 3.1.1 PUBLISH at QoS 1: fixed header (2) + topic length (2) + topic + packet id (2) + payload.
    const bytes = sent.reduce((n, p) => n + 2 + 2 + Buffer.byteLength(p.topic) + 2 + p.payload.length, 0);
    expect(bytes).toBeLessThanOrEqual(300);
  });
});
