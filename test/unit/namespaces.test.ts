import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ResourceService } from '../../hub/api/resources.js';
import { ApiServer } from '../../hub/api/server.js';
import { TokenRoutes } from '../../hub/api/tokens.js';
import { Credentials } from '../../hub/auth/credentials.js';
import { getCommand } from '../../hub/cli/commands.js';
import { allKinds } from '../../shared/resources/kinds.js';
import { testHub, type TestHub } from './builders.js';

// Every namespaced kind, Kubernetes' way: `get -n NS` shows that namespace only, `get -A` all of
// them with a NAMESPACE column, and deleting a Namespace deletes what is in it.

const POD_SPEC = { containers: [{ name: 'app', image: 'flotilla-test/busybox:1' }] };
const TEMPLATE = { metadata: { labels: { app: 'x' } }, spec: POD_SPEC };
const JOB_TEMPLATE = { metadata: { labels: { app: 'x' } }, spec: { ...POD_SPEC, restartPolicy: 'Never' } };

/** A minimal valid manifest of each namespaced kind a user may write. */
const MANIFESTS: Record<string, (ns: string) => Record<string, unknown>> = {
  Pod: (ns) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x', namespace: ns }, spec: POD_SPEC }),
  DaemonSet: (ns) => ({ apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'x', namespace: ns }, spec: { selector: { matchLabels: { app: 'x' } }, template: TEMPLATE } }),
  Deployment: (ns) => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x', namespace: ns }, spec: { replicas: 1, selector: { matchLabels: { app: 'x' } }, template: TEMPLATE } }),
  ReplicaSet: (ns) => ({ apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'x', namespace: ns }, spec: { replicas: 1, selector: { matchLabels: { app: 'x' } }, template: TEMPLATE } }),
  Job: (ns) => ({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'x', namespace: ns }, spec: { template: JOB_TEMPLATE } }),
  CronJob: (ns) => ({ apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'x', namespace: ns }, spec: { schedule: '*/5 * * * *', jobTemplate: { spec: { template: JOB_TEMPLATE } } } }),
  Service: (ns) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'x', namespace: ns }, spec: { selector: { app: 'x' }, ports: [{ port: 80 }] } }),
  Ingress: (ns) => ({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'x', namespace: ns }, spec: { defaultBackend: { service: { name: 'x', port: { number: 80 } } } } }),
  ConfigMap: (ns) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: ns }, data: { a: '1' } }),
  Secret: (ns) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x', namespace: ns }, stringData: { a: '1' } }),
  NetworkPolicy: (ns) => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'x', namespace: ns }, spec: { podSelector: {} } }),
  Event: (ns) => ({ apiVersion: 'v1', kind: 'Event', metadata: { name: 'x', namespace: ns }, involvedObject: { kind: 'Pod', name: 'x', namespace: ns }, reason: 'Test', message: 'm', type: 'Normal' }),
};

const NAMESPACED = allKinds().filter((k) => k.namespaced);

let hub: TestHub;
let resources: ResourceService;

/** One object named `x` of every namespaced kind in `ns` (Endpoints, EndpointSlices and Rollouts are the hub's own to write). */
function fill(ns: string): void {
  resources.apply([{ source: 'ns', value: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } } }, ...Object.values(MANIFESTS).map((m, i) => ({ source: `doc ${i}`, value: m(ns) }))]);
  hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Endpoints', metadata: { name: 'x', namespace: ns }, subsets: [] });
  hub.store.create({ apiVersion: 'flotilla/v1', kind: 'EndpointSlice', metadata: { name: 'x', namespace: ns }, addressType: 'IPv4', endpoints: [] });
  hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Rollout', metadata: { name: 'x', namespace: ns }, spec: { target: { kind: 'DaemonSet', name: 'x', uid: 'u' }, revision: 1, fromRevision: 0, waves: [] } });
}

beforeEach(() => {
  hub = testHub();
  resources = new ResourceService(hub.store, hub.log);
  hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Namespace', metadata: { name: 'default' }, spec: {} });
});
afterEach(() => hub.db.close());

it('covers every namespaced kind', () => {
  expect(NAMESPACED.map((k) => k.kind).sort()).toEqual([...Object.keys(MANIFESTS), 'Endpoints', 'EndpointSlice', 'Rollout'].sort());
});

describe('deleting a Namespace', () => {
  it('deletes the objects of every kind in it, and nothing in other namespaces', () => {
    fill('team-a');
    fill('team-b');
    resources.delete('namespaces', undefined, 'team-a');
    for (const kind of NAMESPACED) {
      expect(hub.store.list(kind.kind, { namespace: 'team-a' }).items, kind.kind).toEqual([]);
      expect(hub.store.get(kind.kind, 'team-b', 'x'), kind.kind).toBeDefined();
    }
    expect(hub.store.get('Namespace', '', 'team-a')).toBeUndefined();
  });
});

describe('flotilla get -n / -A', () => {
  let api: ApiServer;
  let client: { server: string; token: string };

  beforeEach(async () => {
    const credentials = new Credentials(hub.db);
    const { token } = credentials.createToken('admin', { description: 'test' });
    api = new ApiServer({ host: '127.0.0.1', port: 0, authorize: (t) => credentials.verifyToken('admin', t) !== undefined }, hub.store, resources, new TokenRoutes(credentials, () => {}), hub.log);
    client = { server: `http://127.0.0.1:${await api.listen()}`, token };
    fill('team-a');
    fill('team-b');
  });
  afterEach(() => api.close());

  async function get(kind: string, opts: { namespace?: string; allNamespaces?: boolean; output?: string }): Promise<string> {
    const lines: string[] = [];
    await getCommand(kind, [], { ...client, ...opts }, (text) => lines.push(text));
    return lines.join('\n');
  }

  for (const kind of NAMESPACED) {
    it(`shows ${kind.plural} of one namespace with -n, and of all with -A`, async () => {
      const one = JSON.parse(await get(kind.plural, { namespace: 'team-a', output: 'json' })) as { items: { metadata: { namespace: string } }[] };
      expect(one.items.map((o) => o.metadata.namespace)).toEqual(['team-a']);
      expect(await get(kind.plural, { namespace: 'nowhere' })).toBe('No resources found in nowhere namespace.');

      const all = JSON.parse(await get(kind.plural, { allNamespaces: true, output: 'json' })) as { items: { metadata: { namespace: string } }[] };
      expect(all.items.map((o) => o.metadata.namespace)).toEqual(['team-a', 'team-b']);
      const table = (await get(kind.plural, { allNamespaces: true })).split('\n');
      expect(table[0]).toMatch(/^NAMESPACE\s+/);
      expect(table.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['team-a', 'team-b']);
    });
  }
});
