import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePayload } from '../../shared/protocol/messages.js';
import { catalogAnnouncementSchema, endpointAnnouncementSchema, serviceAnnouncementSchema, type CatalogAnnouncement, type EndpointAnnouncement, type ServiceAnnouncement } from '../../shared/protocol/services.js';
import { HUB_USERNAME, Topics } from '../../shared/protocol/topics.js';
import { closeFakeDevices, FakeDevice, type FakePod } from '../harness/fake-device.js';
import { startMosquitto, type TestMosquitto } from '../harness/mosquitto.js';
import { cli, getJson, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// The hub's side of Services against a real hub process: virtual IPs and NodePorts allocated on
// the API's path, and the retained messages a device reads (a Service, each endpoint, the
// catalog) as pods come, scale and go, over a hub restart, and through an external Mosquitto.
// MQTT clients with device credentials stand in for devices and report the pods' addresses
// (test/harness/fake-device.ts).

const topics = new Topics();
const dirs = tempDir('svchub');

type PodJson = { metadata: { name: string; uid: string; labels?: Record<string, string> }; spec: { nodeName?: string } };

/** What a device has read: the latest message of each topic. */
class Reader {
  private static last = new Map<string, Reader>();

  constructor(readonly device: FakeDevice) {}

  /** Connects as `name` (a device that only reads: one connection per client id, so the last reader of a name is closed first). */
  static async open(url: string, name: string): Promise<Reader> {
    const previous = Reader.last.get(name);
    if (previous?.device.client.connected) await previous.device.close();
    const device = await FakeDevice.connect(url, name);
    for (const t of [topics.allServices(), topics.allEndpoints(), topics.catalog()]) await device.client.subscribeAsync(t, { qos: 1 });
    const reader = new Reader(device);
    Reader.last.set(name, reader);
    return reader;
  }

  private latest(topic: string): Buffer | undefined {
    return this.device.messages.filter((m) => m.topic === topic).at(-1)?.payload;
  }

  service(name: string): ServiceAnnouncement | 'cleared' | undefined {
    const p = this.latest(topics.service('default', name));
    if (!p) return undefined;
    if (p.length === 0) return 'cleared';
    const d = decodePayload(serviceAnnouncementSchema, p);
    if (!d.ok) throw new Error(`invalid service message: ${JSON.stringify(d.errors)}`);
    return d.value;
  }

  endpoint(service: string, pod: string): EndpointAnnouncement | 'cleared' | undefined {
    const p = this.latest(topics.endpoint('default', service, pod));
    if (!p) return undefined;
    if (p.length === 0) return 'cleared';
    const d = decodePayload(endpointAnnouncementSchema, p);
    if (!d.ok) throw new Error(`invalid endpoint message: ${JSON.stringify(d.errors)}`);
    return d.value;
  }

  catalog(): CatalogAnnouncement | undefined {
    const p = this.latest(topics.catalog());
    const d = p && decodePayload(catalogAnnouncementSchema, p);
    return d && d.ok ? d.value : undefined;
  }

  /** Each topic's generation, as last read. */
  generations(): Map<string, number> {
    const out = new Map<string, number>();
    for (const m of this.device.messages) if (m.payload.length && m.topic !== topics.catalog()) out.set(m.topic, (JSON.parse(m.payload.toString()) as { generation: number }).generation);
    return out;
  }
}

const MANIFEST = `
apiVersion: apps/v1
kind: Deployment
metadata: { name: store }
spec:
  replicas: 2
  selector: { matchLabels: { app: store } }
  template:
    metadata: { labels: { app: store } }
    spec:
      containers:
        - name: app
          image: flotilla-test/store:1
          ports: [{ name: http, containerPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: store }
spec:
  selector: { app: store }
  ports: [{ name: http, port: 80, targetPort: http }]
  trafficDistribution: PreferClose
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  type: NodePort
  selector: { app: store }
  ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }]
  externalTrafficPolicy: Local
`;

afterAll(async () => {
  await closeFakeDevices();
  await stopAll();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('Services on the hub (embedded broker)', () => {
  const dataDir = join(dirs.path, 'hub');
  let hub: RunningHub;
  const devices = new Map<string, FakeDevice>();
  const addresses = new Map<string, string>();
  /** What each device reports, again every second (its heartbeat: the hub's --node-grace is short here, so that a device gone turns its pods not ready soon). */
  const reported = new Map<string, FakePod[]>();
  let heartbeat: NodeJS.Timeout | undefined;

  /** Every device reports the store pods bound to it, ready, each at an address of its own. */
  async function reportPods(): Promise<PodJson[]> {
    const pods = getJson<{ items: PodJson[] }>(hub, ['pods']).items.filter((p) => p.metadata.labels?.app === 'store');
    for (const [name, device] of devices) {
      const mine: FakePod[] = pods
        .filter((p) => p.spec.nodeName === name)
        .map((p) => {
          if (!addresses.has(p.metadata.name)) addresses.set(p.metadata.name, `10.42.${name === 'svc-a' ? 1 : 2}.${addresses.size + 10}`);
          return { uid: p.metadata.uid, name: p.metadata.name, podIP: addresses.get(p.metadata.name)!, ready: true, containers: ['app'] };
        });
      reported.set(name, mine);
      await device.report(undefined, mine);
    }
    return pods;
  }

  async function bound(count: number): Promise<PodJson[]> {
    return waitFor(`${count} store pods bound`, () => {
      const pods = getJson<{ items: PodJson[] }>(hub, ['pods']).items.filter((p) => p.metadata.labels?.app === 'store');
      return pods.length === count && pods.every((p) => p.spec.nodeName) ? pods : undefined;
    });
  }

  beforeAll(async () => {
    hub = await startHub({ dataDir, extraArgs: ['--node-grace', '8s'] });
    for (const name of ['svc-a', 'svc-b']) {
      const device = await FakeDevice.join(hub.mqttUrl, hub.joinToken, name);
      await device.report(undefined);
      devices.set(name, device);
    }
    heartbeat = setInterval(() => {
      for (const [name, device] of devices) if (device.client.connected) void device.report(undefined, reported.get(name) ?? []).catch(() => {});
    }, 1_000);
    // A device that only reads the Services (it never reports, so no pod is placed on it).
    await FakeDevice.join(hub.mqttUrl, hub.joinToken, 'svc-reader').then((d) => d.close());
    const labelled = cli(hub, ['label', 'node', 'svc-b', 'topology.kubernetes.io/zone=north']);
    expect(labelled.code, labelled.stderr).toBe(0);
    await waitFor('both nodes Ready', () => ['svc-a', 'svc-b'].every((n) => getJson<{ status?: { conditions?: { type: string; status: string }[] } }>(hub, ['node', n]).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')));
  });

  afterAll(() => clearInterval(heartbeat));

  it('refuses a LoadBalancer, and a requested address or NodePort that is taken or out of range, naming the field', () => {
    const lb = cli(hub, ['apply', '-f', '-'], { input: 'apiVersion: v1\nkind: Service\nmetadata: { name: lb }\nspec: { type: LoadBalancer, ports: [{ port: 80 }] }\n' });
    expect(lb.code).not.toBe(0);
    expect(lb.stderr).toMatch(/spec\.type: Unsupported value: 'LoadBalancer'.*use type NodePort/);
    const out = cli(hub, ['apply', '-f', '-'], { input: 'apiVersion: v1\nkind: Service\nmetadata: { name: far }\nspec: { type: NodePort, ports: [{ port: 80, nodePort: 40000 }] }\n' });
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain('spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767');
  });

  it('publishes a Service, its endpoints and the catalog, retained, for a device to read', async () => {
    const applied = cli(hub, ['apply', '-f', '-'], { input: MANIFEST });
    expect(applied.code, applied.stderr).toBe(0);
    const pods = await bound(2);
    await reportPods();
    const svc = getJson<{ spec: { clusterIP: string; clusterIPs: string[]; ports: { nodePort?: number }[] } }>(hub, ['svc', 'store']);
    expect(svc.spec.clusterIP).toMatch(/^10\.43\.\d+\.\d+$/);
    expect(svc.spec.clusterIPs).toEqual([svc.spec.clusterIP]);
    expect(getJson<{ spec: { ports: { nodePort?: number }[] } }>(hub, ['svc', 'web']).spec.ports[0]!.nodePort).toBe(30080);
    // A taken address is refused.
    const taken = cli(hub, ['apply', '-f', '-'], { input: `apiVersion: v1\nkind: Service\nmetadata: { name: copy }\nspec: { clusterIP: ${svc.spec.clusterIP}, ports: [{ port: 80 }] }\n` });
    expect(taken.stderr).toContain(`spec.clusterIP: Invalid value: '${svc.spec.clusterIP}': provided IP is already allocated`);

    const reader = await Reader.open(hub.mqttUrl, 'svc-reader');
    await waitFor('the catalog of 2 Services and 4 endpoints', () => reader.catalog()?.endpoints === 4 && reader.catalog()?.services === 2);
    expect(reader.service('store')).toMatchObject({ v: 1, name: 'store', namespace: 'default', type: 'ClusterIP', clusterIP: svc.spec.clusterIP, ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'http' }], trafficDistribution: 'PreferClose' });
    expect(reader.service('web')).toMatchObject({ type: 'NodePort', ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }], externalTrafficPolicy: 'Local' });
    for (const pod of pods) {
      const e = reader.endpoint('store', pod.metadata.name);
      expect(e).toMatchObject({ v: 1, ip: addresses.get(pod.metadata.name), node: pod.spec.nodeName, ready: true, ports: { http: 8080 } });
      expect((e as EndpointAnnouncement).site).toBe(pod.spec.nodeName === 'svc-b' ? 'north' : undefined);
      expect(reader.endpoint('web', pod.metadata.name)).toMatchObject({ ports: { '': 8080 } });
    }
  });

  it('costs a device one endpoint message and the catalog when the Deployment scales', async () => {
    const reader = await Reader.open(hub.mqttUrl, 'svc-reader');
    await waitFor('the retained catalog', () => reader.catalog()?.endpoints === 4);
    const before = reader.device.messages.length;
    const existing = new Set(getJson<{ items: PodJson[] }>(hub, ['pods']).items.filter((p) => p.metadata.labels?.app === 'store').map((p) => p.metadata.name));
    const scaled = cli(hub, ['scale', 'deployment/store', '--replicas', '3']);
    expect(scaled.code, scaled.stderr).toBe(0);
    const pods = await bound(3);
    await reportPods();
    // The pod the scale made (its endpoint message may already be in: the hub is quick).
    const added = pods.find((p) => !existing.has(p.metadata.name))!;
    expect(added).toBeDefined();
    await waitFor('the new endpoint and the catalog', () => reader.catalog()?.endpoints === 6 && reader.endpoint('store', added.metadata.name));
    const got = reader.device.messages.slice(before);
    // The new pod is an endpoint of both Services: its two messages, and the catalog (once, or once per Service).
    expect(got.filter((m) => m.topic !== topics.catalog()).map((m) => m.topic).sort()).toEqual([topics.endpoint('default', 'store', added.metadata.name), topics.endpoint('default', 'web', added.metadata.name)]);
    const catalogs = got.filter((m) => m.topic === topics.catalog());
    expect(catalogs.length).toBeGreaterThanOrEqual(1);
    expect(catalogs.length).toBeLessThanOrEqual(2);
    const one = [got.find((m) => m.topic === topics.endpoint('default', 'store', added.metadata.name))!, catalogs[0]!];
    const bytes = one.reduce((n, m) => n + 2 + 2 + Buffer.byteLength(m.topic) + 2 + m.payload.length, 0);
    console.log(`one endpoint added to a Service: ${bytes} bytes on the wire (its message and the catalog's)`);
    expect(bytes).toBeLessThanOrEqual(300);
  });

  it('shows the Services in get svc, get endpointslices and describe service', () => {
    const svc = cli(hub, ['get', 'svc']);
    expect(svc.code, svc.stderr).toBe(0);
    const [header, ...rows] = svc.stdout.trim().split('\n');
    expect(header).toMatch(/^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE$/);
    expect(rows.find((r) => r.startsWith('store '))).toMatch(/^store\s+ClusterIP\s+10\.43\.\d+\.\d+\s+<none>\s+80\/TCP\s+\d+s$/);
    expect(rows.find((r) => r.startsWith('web '))).toMatch(/^web\s+NodePort\s+10\.43\.\d+\.\d+\s+<none>\s+80:30080\/TCP\s+\d+s$/);
    const slices = cli(hub, ['get', 'endpointslices']);
    expect(slices.code, slices.stderr).toBe(0);
    expect(slices.stdout).toMatch(/^NAME\s+ADDRESSTYPE\s+PORTS\s+ENDPOINTS\s+AGE/);
    expect(slices.stdout).toMatch(/\nstore-[a-z0-9]{5}\s+IPv4\s+8080\s+10\.42\.\d+\.\d+,10\.42\.\d+\.\d+,10\.42\.\d+\.\d+\s/);
    const ep = cli(hub, ['get', 'endpoints', 'store']);
    expect(ep.stdout).toMatch(/^NAME\s+ENDPOINTS\s+AGE\nstore\s+10\.42\.\d+\.\d+:8080,/);
    const described = cli(hub, ['describe', 'service', 'web']);
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/Type:\s+NodePort/);
    expect(described.stdout).toMatch(/IP:\s+10\.43\.\d+\.\d+/);
    expect(described.stdout).toMatch(/NodePort:\s+<unset>\s+30080\/TCP/);
    expect(described.stdout).toMatch(/External Traffic Policy: Local/);
    expect(described.stdout).toMatch(/Endpoint Pods:\n\s+Address\s+Pod\s+Node\s+Ready\n(\s+10\.42\.\d+\.\d+\s+store-\S+\s+svc-[ab]\s+true\n?){3}/);
  });

  it('republishes after a hub restart with the generations devices have', async () => {
    // The devices go first: their nodes turn Unknown and their pods not ready, which is a change
    // (the endpoints are kept, not ready). Then nothing changes over the restart.
    clearInterval(heartbeat);
    for (const device of devices.values()) await device.close();
    const before = await Reader.open(hub.mqttUrl, 'svc-reader');
    const storePods = () => getJson<{ items: PodJson[] }>(hub, ['pods']).items.filter((p) => p.metadata.labels?.app === 'store');
    await waitFor('every endpoint not ready', () => before.catalog()?.endpoints === 6 && storePods().every((p) => (['store', 'web'] as const).every((s) => (before.endpoint(s, p.metadata.name) as EndpointAnnouncement | undefined)?.ready === false)));
    await new Promise((r) => setTimeout(r, 300));
    const generations = before.generations();
    expect(generations.size).toBe(8);
    await hub.process.stop();
    hub = await startHub({ dataDir, extraArgs: ['--node-grace', '8s'] });
    const after = await Reader.open(hub.mqttUrl, 'svc-reader');
    await waitFor('every Service and endpoint again', () => after.catalog()?.endpoints === 6 && after.generations().size === 8);
    expect(after.generations()).toEqual(generations);
  });

  it('clears a deleted Service and its endpoints', async () => {
    const reader = await Reader.open(hub.mqttUrl, 'svc-reader');
    await waitFor('the retained catalog', () => reader.catalog()?.endpoints === 6);
    const pods = getJson<{ items: PodJson[] }>(hub, ['pods']).items.filter((p) => p.metadata.labels?.app === 'store');
    const deleted = cli(hub, ['delete', 'service', 'store']);
    expect(deleted.code, deleted.stderr).toBe(0);
    await waitFor('the catalog without store', () => reader.catalog()?.services === 1 && reader.catalog()?.endpoints === 3);
    expect(reader.service('store')).toBe('cleared');
    for (const pod of pods) expect(reader.endpoint('store', pod.metadata.name)).toBe('cleared');
    // A device connecting now finds nothing retained for it.
    const fresh = await Reader.open(hub.mqttUrl, 'svc-reader');
    await waitFor('the retained catalog', () => fresh.catalog()?.services === 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(fresh.service('store')).toBeUndefined();
    expect(fresh.device.messages.filter((m) => m.topic === topics.service('default', 'store') || m.topic.startsWith(topics.endpoint('default', 'store', '')))).toEqual([]);
  });
});

describe('Services through an external Mosquitto', () => {
  let mosquitto: TestMosquitto;
  let hub: RunningHub;
  const hubDir = join(dirs.path, 'ext-hub');

  beforeAll(async () => {
    mosquitto = await startMosquitto({ dir: join(dirs.path, 'broker'), hubDataDir: hubDir });
    hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url] });
  });

  it('lets a device read the Services, and clears at start what the broker retains for a Service deleted meanwhile', async () => {
    await FakeDevice.join(mosquitto.url, hub.joinToken, 'ext-a').then((d) => d.close());
    const applied = cli(hub, ['apply', '-f', '-'], { input: 'apiVersion: v1\nkind: Service\nmetadata: { name: db }\nspec: { clusterIP: None, selector: { app: db }, ports: [{ port: 5432 }] }\n' });
    expect(applied.code, applied.stderr).toBe(0);
    const reader = await Reader.open(mosquitto.url, 'ext-a');
    await waitFor('the Service and the catalog through Mosquitto', () => reader.service('db') && reader.catalog()?.services === 1);
    expect(reader.service('db')).toMatchObject({ name: 'db', clusterIP: 'None' });
    expect(reader.catalog()).toEqual({ v: 1, services: 1, endpoints: 0 });
    // A device may not write there: Mosquitto drops it.
    await reader.device.client.publishAsync(topics.service('default', 'forged'), Buffer.from('{}'), { qos: 1, retain: true });

    // Left behind at the broker while the hub was down (written with the hub's own account).
    await closeFakeDevices();
    await hub.process.stop();
    const writer = await mqtt.connectAsync(mosquitto.url, { clientId: 'test-ghost-writer', username: HUB_USERNAME, password: readFileSync(join(hubDir, 'broker.password'), 'utf8').trim(), protocolVersion: 4, reconnectPeriod: 0 });
    await writer.publishAsync(topics.service('default', 'ghost'), Buffer.from(JSON.stringify({ v: 1, namespace: 'default', name: 'ghost', uid: 'u', type: 'ClusterIP', clusterIP: '10.43.9.9', ports: [], generation: 1 })), { qos: 1, retain: true });
    await writer.publishAsync(topics.endpoint('default', 'ghost', 'ghost-1'), Buffer.from(JSON.stringify({ v: 1, ip: '10.42.9.9', node: 'ext-a', ready: true, ports: {}, generation: 1 })), { qos: 1, retain: true });
    await writer.endAsync();
    hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url] });
    await waitFor('nothing retained for ghost', async () => {
      const probe = await Reader.open(mosquitto.url, 'ext-a');
      await waitFor('the catalog', () => probe.catalog());
      await new Promise((r) => setTimeout(r, 300));
      const ghost = probe.service('ghost') ?? probe.endpoint('ghost', 'ghost-1');
      const db = probe.service('db');
      const forged = probe.service('forged');
      await probe.device.close();
      return ghost === undefined && db !== undefined && forged === undefined;
    }, 15_000, 500);
  });
});
