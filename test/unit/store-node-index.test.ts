import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseSelector } from '../../shared/labels/selector.js';
import { openDatabase, type Database } from '../../hub/store/db.js';
import { migrations } from '../../hub/store/migrations.js';
import { ObjectStore } from '../../hub/store/objects.js';
import { sameJson } from '../../hub/store/shape.js';
import type { NewObject } from '../../hub/store/types.js';

// Pods by node (Kubernetes' field selector spec.nodeName), from the store's index; and the
// key-order-blind equality the store uses to skip writes that change nothing.

function pod(name: string, node: string | undefined, opts: { namespace?: string; labels?: Record<string, string> } = {}): NewObject {
  return {
    apiVersion: 'flotilla/v1',
    kind: 'Pod',
    metadata: { name, namespace: opts.namespace ?? 'default', ...(opts.labels ? { labels: opts.labels } : {}) },
    spec: { ...(node ? { nodeName: node } : {}), containers: [{ name: 'app', image: 'nginx:1.27' }] },
  };
}

function bind(store: ObjectStore, name: string, node: string | undefined): void {
  store.mutate('Pod', 'default', name, (cur) => ({ ...cur, spec: { ...(cur.spec as object), nodeName: node } }));
}

let db: Database;
let store: ObjectStore;

beforeEach(() => {
  db = openDatabase(':memory:', migrations);
  store = new ObjectStore(db);
});
afterEach(() => db.close());

function onNode(node: string, opts: Parameters<ObjectStore['list']>[1] = {}): string[] {
  return store.list('Pod', { ...opts, nodeName: node }).items.map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
}

describe('listing pods by node', () => {
  it('gives the pods bound to the node, in namespace and name order, with namespace, selector and filter applied', () => {
    store.create(pod('b', 'edge-1', { labels: { app: 'web' } }));
    store.create(pod('a', 'edge-1'));
    store.create(pod('c', 'edge-2'));
    store.create(pod('z', 'edge-1', { namespace: 'alpha', labels: { app: 'web' } }));
    store.create(pod('unbound', undefined));
    expect(onNode('edge-1')).toEqual(['alpha/z', 'default/a', 'default/b']);
    expect(onNode('edge-1', { namespace: 'default' })).toEqual(['default/a', 'default/b']);
    expect(onNode('edge-1', { selector: parseSelector('app=web') })).toEqual(['alpha/z', 'default/b']);
    expect(onNode('edge-1', { filter: (p) => p.metadata.name !== 'a' })).toEqual(['alpha/z', 'default/b']);
    expect(onNode('nowhere')).toEqual([]);
  });

  it('follows binding, moving to another node, unbinding and deletion', () => {
    store.create(pod('a', undefined));
    expect(onNode('edge-1')).toEqual([]);
    bind(store, 'a', 'edge-1');
    expect(onNode('edge-1')).toEqual(['default/a']);
    bind(store, 'a', 'edge-2');
    expect(onNode('edge-1')).toEqual([]);
    expect(onNode('edge-2')).toEqual(['default/a']);
    bind(store, 'a', undefined);
    expect(onNode('edge-2')).toEqual([]);
    bind(store, 'a', 'edge-3');
    store.delete('Pod', 'default', 'a');
    expect(onNode('edge-3')).toEqual([]);
  });

  it('undoes what a rolled-back transaction did, and only that, nested or not', () => {
    store.create(pod('a', 'edge-1'));
    expect(onNode('edge-1')).toEqual(['default/a']);
    expect(() =>
      store.transaction(() => {
        bind(store, 'a', 'edge-2');
        store.create(pod('b', 'edge-2'));
        store.delete('Pod', 'default', 'a');
        throw new Error('changed my mind');
      }),
    ).toThrow('changed my mind');
    expect(onNode('edge-1')).toEqual(['default/a']);
    expect(onNode('edge-2')).toEqual([]);

    store.transaction(() => {
      store.create(pod('c', 'edge-1'));
      try {
        store.transaction(() => {
          bind(store, 'c', 'edge-2');
          throw new Error('inner only');
        });
      } catch {
        // The outer transaction goes on.
      }
    });
    expect(onNode('edge-1')).toEqual(['default/a', 'default/c']);
    expect(onNode('edge-2')).toEqual([]);
  });

  it('is right when first asked inside a transaction that is then rolled back', () => {
    store.create(pod('a', 'edge-1'));
    expect(() =>
      store.transaction(() => {
        store.create(pod('b', 'edge-1'));
        expect(onNode('edge-1')).toEqual(['default/a', 'default/b']);
        throw new Error('rolled back');
      }),
    ).toThrow('rolled back');
    expect(onNode('edge-1')).toEqual(['default/a']);
  });

  it('sees pods written before the store was opened', () => {
    store.create(pod('a', 'edge-1'));
    expect(new ObjectStore(db).list('Pod', { nodeName: 'edge-1' }).items.map((p) => p.metadata.name)).toEqual(['a']);
  });

  it('is for pods only', () => {
    expect(() => store.list('Node', { nodeName: 'edge-1' })).toThrow(/only pods/);
  });
});

describe('a pod’s binding and an object’s existence, without reading the object', () => {
  it('gives the uid and node of a pod as they change, and nothing for a missing one', () => {
    const created = store.create(pod('web', 'edge-1'));
    expect(store.podBinding('default', 'web')).toEqual({ uid: created.metadata.uid, nodeName: 'edge-1' });
    bind(store, 'web', 'edge-2');
    expect(store.podBinding('default', 'web')?.nodeName).toBe('edge-2');
    bind(store, 'web', undefined);
    expect(store.podBinding('default', 'web')).toEqual({ uid: created.metadata.uid, nodeName: undefined });
    expect(store.podBinding('default', 'gone')).toBeUndefined();
    expect(store.podBinding('other', 'web')).toBeUndefined();
  });

  it('sees a binding rolled back as never made', () => {
    store.create(pod('web', 'edge-1'));
    expect(store.podBinding('default', 'web')?.nodeName).toBe('edge-1');
    expect(() =>
      store.transaction(() => {
        bind(store, 'web', 'edge-2');
        expect(store.podBinding('default', 'web')?.nodeName).toBe('edge-2');
        throw new Error('undone');
      }),
    ).toThrow('undone');
    expect(store.podBinding('default', 'web')?.nodeName).toBe('edge-1');
  });

  it('answers whether an object exists', () => {
    store.create(pod('web', 'edge-1'));
    expect(store.has('Pod', 'default', 'web')).toBe(true);
    expect(store.has('Pod', 'default', 'api')).toBe(false);
    store.delete('Pod', 'default', 'web');
    expect(store.has('Pod', 'default', 'web')).toBe(false);
  });
});

describe('the store’s version counter', () => {
  it('gives back the versions of a rolled-back transaction', () => {
    store.create(pod('a', undefined));
    const before = store.currentResourceVersion();
    expect(() =>
      store.transaction(() => {
        store.create(pod('b', undefined));
        throw new Error('no');
      }),
    ).toThrow('no');
    expect(store.currentResourceVersion()).toBe(before);
    expect(store.create(pod('c', undefined)).metadata.resourceVersion).toBe(String(Number(before) + 1));
  });
});

describe('sameJson', () => {
  it('compares JSON values whatever the order of object keys', () => {
    expect(sameJson({ a: 1, b: { c: [1, { d: 'x' }] } }, { b: { c: [1, { d: 'x' }] }, a: 1 })).toBe(true);
    expect(sameJson({ a: 1, b: undefined }, { a: 1 })).toBe(true);
    expect(sameJson({ a: 1 }, { a: 1, b: 2 })).toBe(false);
    expect(sameJson({ a: [1, 2] }, { a: [2, 1] })).toBe(false);
    expect(sameJson([1], { 0: 1 })).toBe(false);
    expect(sameJson(null, {})).toBe(false);
    expect(sameJson('1', 1)).toBe(false);
  });

  it('lets the store skip a write that only reorders keys', () => {
    const created = store.create(pod('a', 'edge-1'));
    const reordered = store.mutate('Pod', 'default', 'a', (cur) => ({ spec: cur.spec, metadata: cur.metadata, kind: cur.kind, apiVersion: cur.apiVersion }));
    expect(reordered?.metadata.resourceVersion).toBe(created.metadata.resourceVersion);
  });
});
