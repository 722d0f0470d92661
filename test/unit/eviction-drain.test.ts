import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EvictionRoutes } from '../../hub/api/eviction.js';
import { ResourceService } from '../../hub/api/resources.js';
import { ApiServer } from '../../hub/api/server.js';
import { TokenRoutes } from '../../hub/api/tokens.js';
import { Credentials } from '../../hub/auth/credentials.js';
import { CliError } from '../../hub/cli/errors.js';
import { cordonCommand, drainCommand } from '../../hub/cli/nodes.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import { createNode, podObject, testHub, type TestHub } from './builders.js';

// `flotilla cordon|uncordon|drain` against a real API server in this process.

let hub: TestHub;
let api: ApiServer;
let client: { server: string; token: string };
let out: string[];
let err: string[];

beforeEach(async () => {
  hub = testHub();
  const credentials = new Credentials(hub.db);
  const { token } = credentials.createToken('admin', { description: 'test' });
  api = new ApiServer({ host: '127.0.0.1', port: 0, authorize: (t) => credentials.verifyToken('admin', t) !== undefined }, hub.store, new ResourceService(hub.store, hub.log), new TokenRoutes(credentials, () => {}), hub.log, undefined, new EvictionRoutes(hub.store, hub.events, hub.log));
  client = { server: `http://127.0.0.1:${await api.listen()}`, token };
  out = [];
  err = [];
  createNode(hub.store, { name: 'n1' });
  createNode(hub.store, { name: 'n2' });
});
afterEach(async () => {
  await api.close();
  hub.db.close();
});

const unschedulable = (node: string) => (hub.store.get('Node', '', node)!.spec as { unschedulable?: boolean }).unschedulable;
const exists = (name: string) => hub.store.get('Pod', 'default', name) !== undefined;

function owned(kind: string, obj: StoredObject) {
  return [{ apiVersion: 'flotilla/v1', kind, name: obj.metadata.name, uid: obj.metadata.uid, controller: true }];
}

function pod(name: string, node: string, ownerObj?: StoredObject, extra: Record<string, unknown> = {}): void {
  const base = podObject({ name, nodeName: node });
  hub.store.create({ ...base, metadata: { ...base.metadata, ...(ownerObj ? { ownerReferences: owned(ownerObj.kind, ownerObj) } : {}) }, spec: { ...(base.spec as object), ...extra } });
  hub.store.updateStatus('Pod', 'default', name, { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] } satisfies PodStatus);
}

function webReplicaSet(replicas: number): StoredObject {
  const template = { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'app', image: 'x:1' }] } };
  const dep = hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' }, spec: { replicas, selector: { matchLabels: { app: 'web' } }, template } } as NewObject);
  return hub.store.create({ apiVersion: 'flotilla/v1', kind: 'ReplicaSet', metadata: { name: 'web-1a2b', namespace: 'default', ownerReferences: owned('Deployment', dep) }, spec: { replicas, selector: { matchLabels: { app: 'web' } }, template } } as NewObject);
}

describe('cordon and uncordon', () => {
  it('set and clear spec.unschedulable, and say so', async () => {
    await cordonCommand('n1', true, client, (t) => out.push(t));
    expect(unschedulable('n1')).toBe(true);
    await cordonCommand('n1', true, client, (t) => out.push(t));
    await cordonCommand('n1', false, client, (t) => out.push(t));
    expect(unschedulable('n1')).toBeUndefined();
    expect(out).toEqual(['node/n1 cordoned', 'node/n1 already cordoned', 'node/n1 uncordoned']);
  });

  it('fail with the hub\'s message for a node that does not exist', async () => {
    await expect(cordonCommand('ghost', true, client, () => {})).rejects.toThrow('nodes "ghost" not found');
  });
});

describe('drain', () => {
  it('evicts the pods of controllers, leaves DaemonSet pods and other nodes alone', async () => {
    const ds = hub.store.create({ apiVersion: 'flotilla/v1', kind: 'DaemonSet', metadata: { name: 'agent', namespace: 'default' }, spec: {} } as NewObject);
    const job = hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Job', metadata: { name: 'batch', namespace: 'default' }, spec: {} } as NewObject);
    pod('agent-n1', 'n1', ds);
    pod('batch-1', 'n1', job);
    pod('batch-2', 'n2', job);
    await drainCommand('n1', client, (t) => out.push(t), (t) => err.push(t));
    expect(unschedulable('n1')).toBe(true);
    expect(exists('batch-1')).toBe(false);
    expect(exists('agent-n1')).toBe(true);
    expect(exists('batch-2')).toBe(true);
    expect(out).toEqual(['node/n1 cordoned', 'evicting pod default/batch-1', 'pod/batch-1 evicted', 'node/n1 drained']);
    expect(err).toEqual(['Warning: ignoring DaemonSet-managed Pods: default/agent-n1']);
  });

  it('refuses bare pods without --force and pods with emptyDir without --delete-emptydir-data, evicting nothing, but leaves the node cordoned', async () => {
    pod('bare', 'n1');
    const job = hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Job', metadata: { name: 'batch', namespace: 'default' }, spec: {} } as NewObject);
    pod('scratch', 'n1', job, { volumes: [{ name: 'tmp', emptyDir: {} }] });
    const failure = await drainCommand('n1', client, () => {}, () => {}).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(CliError);
    expect((failure as CliError).details).toEqual([
      'cannot delete Pods that declare no controller (use --force to override): default/bare',
      'cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch',
    ]);
    expect(exists('bare') && exists('scratch')).toBe(true);
    expect(unschedulable('n1')).toBe(true);

    await drainCommand('n1', { ...client, force: true, deleteEmptydirData: true }, (t) => out.push(t), (t) => err.push(t));
    expect(exists('bare') || exists('scratch')).toBe(false);
    expect(err).toEqual(['Warning: deleting Pods that declare no controller: default/bare', 'Warning: deleting Pods with local storage: default/scratch']);
  });

  it("waits for a Deployment's replacement to be available before evicting the next of its pods", async () => {
    const rs = webReplicaSet(2);
    pod('web-a', 'n1', rs);
    pod('web-b', 'n1', rs);
    let replacements = 0;
    // Each wait between retries: the ReplicaSet's replacement comes up Ready on the other node.
    const sleep = async () => {
      replacements++;
      pod(`web-new-${replacements}`, 'n2', rs);
    };
    await drainCommand('n1', client, (t) => out.push(t), (t) => err.push(t), sleep);
    expect(exists('web-a') || exists('web-b')).toBe(false);
    expect(replacements).toBe(1);
    expect(out.filter((l) => l.startsWith('pod/')).sort()).toEqual(['pod/web-a evicted', 'pod/web-b evicted']);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(/^error when evicting pods\/"web-[ab]" -n "default" \(will retry after 2s\): Cannot evict pod as it would violate the disruption budget of Deployment\/web: 1 available, at least 1 must stay available/);
  });

  it('gives up after --timeout while the budget does not allow an eviction', async () => {
    const rs = webReplicaSet(2);
    pod('web-a', 'n1', rs);
    pod('web-b', 'n1', rs);
    const failure = await drainCommand('n1', { ...client, timeout: '1s' }, () => {}, () => {}, () => new Promise((r) => setTimeout(r, 300))).catch((e: unknown) => e);
    expect((failure as Error).message).toMatch(/^drain did not complete within 1s: pod default\/web-[ab] could not be evicted/);
    expect(Number(exists('web-a')) + Number(exists('web-b'))).toBe(1);
  });
});
