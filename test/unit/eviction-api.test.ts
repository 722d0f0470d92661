import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toHubError } from '../../hub/api/errors.js';
import { BUDGET_REFUSAL, EvictionRoutes } from '../../hub/api/eviction.js';
import { ResourceService } from '../../hub/api/resources.js';
import { ApiServer } from '../../hub/api/server.js';
import { TokenRoutes } from '../../hub/api/tokens.js';
import { Credentials } from '../../hub/auth/credentials.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import { eventsAbout, podObject, testHub, type TestHub } from './builders.js';

const NOW = Date.parse('2025-01-01T12:00:00Z');

let hub: TestHub;
let routes: EvictionRoutes;

beforeEach(() => {
  hub = testHub();
  routes = new EvictionRoutes(hub.store, hub.events, hub.log, () => NOW);
});
afterEach(() => hub.db.close());

function owner(kind: string, obj: StoredObject) {
  return [{ apiVersion: 'flotilla/v1', kind, name: obj.metadata.name, uid: obj.metadata.uid, controller: true }];
}

/** A Deployment with one ReplicaSet; returns the ReplicaSet the pods belong to. */
function deployment(name: string, replicas: number, extra: Record<string, unknown> = {}): StoredObject {
  const template = { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'flotilla-test/busybox:1' }] } };
  const dep = hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Deployment', metadata: { name, namespace: 'default' }, spec: { replicas, selector: { matchLabels: { app: name } }, template, ...extra } } as NewObject);
  return hub.store.create({ apiVersion: 'flotilla/v1', kind: 'ReplicaSet', metadata: { name: `${name}-abc`, namespace: 'default', ownerReferences: owner('Deployment', dep) }, spec: { replicas, selector: { matchLabels: { app: name } }, template } } as NewObject);
}

/** A pod of `ownerObj`, Ready since `readySince` (ms), or not Ready. */
function pod(name: string, ownerObj: StoredObject | undefined, ready: boolean, readySince = NOW - 60_000): StoredObject {
  const base = podObject({ name, nodeName: 'edge-1' });
  hub.store.create({ ...base, metadata: { ...base.metadata, ...(ownerObj ? { ownerReferences: owner(ownerObj.kind, ownerObj) } : {}) } });
  return hub.store.updateStatus('Pod', 'default', name, { phase: 'Running', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: new Date(readySince).toISOString() }] } satisfies PodStatus);
}

function evict(name: string): string {
  try {
    routes.evict('default', name);
    return 'evicted';
  } catch (err) {
    const e = toHubError(err);
    return `${e.httpStatus} ${e.message}`;
  }
}

const exists = (name: string) => hub.store.get('Pod', 'default', name) !== undefined;

describe('eviction within a Deployment\'s budget', () => {
  it('keeps replicas - maxUnavailable (25 % rounded down by default) available, and lets another go once a replacement is', () => {
    const rs = deployment('web', 4);
    for (const n of ['web-1', 'web-2', 'web-3', 'web-4']) pod(n, rs, true);
    expect(evict('web-1')).toBe('evicted');
    expect(exists('web-1')).toBe(false);
    expect(evict('web-2')).toBe(`429 ${BUDGET_REFUSAL} the disruption budget of Deployment/web: 3 available, at least 3 must stay available (maxUnavailable 1)`);
    expect(exists('web-2')).toBe(true);

    pod('web-5', rs, true);
    expect(evict('web-2')).toBe('evicted');
    expect(eventsAbout(hub.store, 'Pod', 'web-1')).toEqual(['Normal Evicted: Evicted from node edge-1 by the eviction API']);
  });

  it('takes maxUnavailable from the rolling-update strategy', () => {
    const rs = deployment('web', 4, { strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '50%' } } });
    for (const n of ['web-1', 'web-2', 'web-3', 'web-4']) pod(n, rs, true);
    expect(evict('web-1')).toBe('evicted');
    expect(evict('web-2')).toBe('evicted');
    expect(evict('web-3')).toMatch(/^429 /);
  });

  it('lets one pod of a small Deployment go at a time, though 25 % of 2 rounds down to 0', () => {
    const rs = deployment('web', 2);
    pod('web-1', rs, true);
    pod('web-2', rs, true);
    expect(evict('web-1')).toBe('evicted');
    expect(evict('web-2')).toMatch(/^429 .*1 available, at least 1 must stay available/);
  });

  it('always lets a pod that is not available go, and counts a pod Ready for less than minReadySeconds as not available', () => {
    const rs = deployment('web', 2, { minReadySeconds: 30 });
    pod('web-1', rs, true);
    pod('web-2', rs, true, NOW - 10_000);
    pod('web-3', rs, false);
    expect(evict('web-3')).toBe('evicted');
    expect(evict('web-2')).toBe('evicted');
    expect(evict('web-1')).toMatch(/^429 .*1 available/);
  });

  it('puts no budget on Jobs, bare ReplicaSets and bare pods', () => {
    const job = hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Job', metadata: { name: 'batch', namespace: 'default' }, spec: { template: { spec: { containers: [{ name: 'c', image: 'x:1' }] } } } } as NewObject);
    pod('batch-1', job, true);
    const rs = hub.store.create({ apiVersion: 'flotilla/v1', kind: 'ReplicaSet', metadata: { name: 'alone', namespace: 'default' }, spec: { replicas: 1, selector: { matchLabels: { app: 'a' } }, template: { metadata: { labels: { app: 'a' } }, spec: { containers: [{ name: 'c', image: 'x:1' }] } } } } as NewObject);
    pod('alone-1', rs, true);
    pod('bare', undefined, true);
    expect([evict('batch-1'), evict('alone-1'), evict('bare')]).toEqual(['evicted', 'evicted', 'evicted']);
  });

  it('answers 404 for a pod that is not there', () => {
    expect(evict('ghost')).toBe('404 pods "ghost" not found');
  });
});

describe('POST /api/v1/namespaces/{ns}/pods/{name}/eviction', () => {
  let api: ApiServer;
  let base: string;
  let headers: Record<string, string>;

  beforeEach(async () => {
    const credentials = new Credentials(hub.db);
    const { token } = credentials.createToken('admin', { description: 'test' });
    api = new ApiServer({ host: '127.0.0.1', port: 0, authorize: (t) => credentials.verifyToken('admin', t) !== undefined }, hub.store, new ResourceService(hub.store, hub.log), new TokenRoutes(credentials, () => {}), hub.log, undefined, routes);
    base = `http://127.0.0.1:${await api.listen()}/api/v1/namespaces/default/pods`;
    headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  });
  afterEach(() => api.close());

  it('answers 201 when the pod is evicted and 429 while the budget does not allow it', async () => {
    const rs = deployment('web', 2);
    pod('web-1', rs, true);
    pod('web-2', rs, true);
    const first = await fetch(`${base}/web-1/eviction`, { method: 'POST', headers, body: JSON.stringify({ apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'web-1', namespace: 'default' } }) });
    expect(first.status).toBe(201);
    expect(await first.json()).toMatchObject({ kind: 'Status', status: 'Success' });
    const second = await fetch(`${base}/web-2/eviction`, { method: 'POST', headers });
    expect(second.status).toBe(429);
    expect(await second.json()).toMatchObject({ code: 'HUB_ERR_TOO_MANY_REQUESTS', message: expect.stringContaining(BUDGET_REFUSAL) });
  });

  it('refuses another method, a body that is not an Eviction, and a name that does not match', async () => {
    pod('bare', undefined, true);
    expect((await fetch(`${base}/bare/eviction`, { headers })).status).toBe(405);
    const wrongKind = await fetch(`${base}/bare/eviction`, { method: 'POST', headers, body: JSON.stringify({ kind: 'Pod' }) });
    expect(wrongKind.status).toBe(400);
    expect(((await wrongKind.json()) as { message: string }).message).toBe("kind: must be Eviction, not 'Pod'");
    const wrongName = await fetch(`${base}/bare/eviction`, { method: 'POST', headers, body: JSON.stringify({ kind: 'Eviction', metadata: { name: 'other' } }) });
    expect(wrongName.status).toBe(400);
    expect((await fetch(`${base}/bare/eviction`, { method: 'POST', headers, body: '{not json' })).status).toBe(400);
    expect(exists('bare')).toBe(true);
  });
});
