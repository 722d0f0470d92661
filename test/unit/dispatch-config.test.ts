import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Dispatcher } from '../../hub/dispatch/desired.js';
import { decodePayload, desiredStateSchema, type DesiredState } from '../../shared/protocol/messages.js';
import { Topics } from '../../shared/protocol/topics.js';
import type { Container } from '../../shared/resources/pod.js';
import { container, createNode, podObject, testHub, type TestHub } from './builders.js';
import { RetainingBus } from '../harness/memory-bus.js';

/** Keeps the retained desired set of each node, as the broker would. */

const topics = new Topics();
let hub: TestHub;
let bus: RetainingBus;
let dispatcher: Dispatcher;

function desiredOf(node: string): DesiredState {
  const result = decodePayload(desiredStateSchema, bus.retained.get(topics.desired(node))!);
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.value;
}

function configMap(name: string, data: Record<string, string>, namespace = 'default') {
  return { apiVersion: 'flotilla/v1', kind: 'ConfigMap', metadata: { name, namespace }, data };
}

function secret(name: string, value: string) {
  return { apiVersion: 'flotilla/v1', kind: 'Secret', metadata: { name, namespace: 'default' }, type: 'Opaque', data: { password: Buffer.from(value).toString('base64') } };
}

const usesBoth: Container = container({
  name: 'app',
  image: 'busybox:1',
  env: [{ name: 'P', valueFrom: { secretKeyRef: { name: 'db-creds', key: 'password' } } }],
  envFrom: [{ configMapRef: { name: 'app-env' } }],
});

beforeEach(() => {
  hub = testHub();
  bus = new RetainingBus();
  dispatcher = new Dispatcher(hub.db, hub.store, bus, topics, hub.log);
  createNode(hub.store, { name: 'alpha' });
  createNode(hub.store, { name: 'beta' });
  hub.store.create(configMap('app-env', { greeting: 'hello' }));
  hub.store.create(configMap('app-files', { 'app.conf': 'v=1' }));
  hub.store.create(configMap('unused', { x: 'y' }));
  hub.store.create(secret('db-creds', 'pw'));
  hub.store.create(secret('other', 'pw2'));
});
afterEach(() => {
  dispatcher.stop();
  hub.db.close();
});

describe('ConfigMaps and Secrets in the desired sets', () => {
  it('sends each node only the ConfigMaps and Secrets its pods use', async () => {
    hub.store.create(podObject({ name: 'consumer', nodeName: 'alpha', containers: [usesBoth] }));
    const files = podObject({ name: 'files', nodeName: 'beta' });
    (files.spec as { volumes: unknown[] }).volumes = [{ name: 'cfg', configMap: { name: 'app-files' } }];
    hub.store.create(files);
    await dispatcher.sync('alpha');
    await dispatcher.sync('beta');
    const alpha = desiredOf('alpha');
    expect(alpha.configs.map((c) => c.name)).toEqual(['app-env']);
    expect(alpha.configs[0]!.data).toEqual({ greeting: 'hello' });
    expect(alpha.secrets.map((s) => `${s.namespace}/${s.name}`)).toEqual(['default/db-creds']);
    expect(alpha.secrets[0]!.data).toEqual({ password: Buffer.from('pw').toString('base64') });
    const beta = desiredOf('beta');
    expect(beta.configs.map((c) => c.name)).toEqual(['app-files']);
    expect(beta.secrets).toEqual([]);
  });

  it('looks the objects up in the pod\'s own namespace, and leaves out missing ones', async () => {
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Namespace', metadata: { name: 'other' }, spec: {} });
    hub.store.create(podObject({ name: 'consumer', namespace: 'other', nodeName: 'alpha', containers: [usesBoth] }));
    await dispatcher.sync('alpha');
    expect(desiredOf('alpha')).toMatchObject({ configs: [], secrets: [] });
  });

  it('republishes, with a new revision, the nodes whose pods use a ConfigMap or Secret that changed, and no other', async () => {
    hub.store.create(podObject({ name: 'consumer', nodeName: 'alpha', containers: [usesBoth] }));
    dispatcher.start();
    await dispatcher.queue.idle();
    const alphaRev = desiredOf('alpha').rev;
    const betaRev = desiredOf('beta').rev;

    hub.store.mutate('ConfigMap', 'default', 'app-env', (cur) => ({ ...cur, data: { greeting: 'bonjour' } }));
    await dispatcher.queue.idle();
    expect(desiredOf('alpha').rev).toBe(alphaRev + 1);
    expect(desiredOf('alpha').configs[0]!.data).toEqual({ greeting: 'bonjour' });

    hub.store.mutate('Secret', 'default', 'db-creds', (cur) => ({ ...cur, data: { password: Buffer.from('new').toString('base64') } }));
    await dispatcher.queue.idle();
    expect(desiredOf('alpha').rev).toBe(alphaRev + 2);

    hub.store.mutate('Secret', 'default', 'other', (cur) => ({ ...cur, data: { password: 'eA==' } }));
    hub.store.delete('ConfigMap', 'default', 'unused');
    await dispatcher.queue.idle();
    expect(desiredOf('alpha').rev).toBe(alphaRev + 2);
    expect(desiredOf('beta').rev).toBe(betaRev);

    hub.store.delete('Secret', 'default', 'db-creds');
    await dispatcher.queue.idle();
    expect(desiredOf('alpha')).toMatchObject({ rev: alphaRev + 3, secrets: [] });
  });
});
