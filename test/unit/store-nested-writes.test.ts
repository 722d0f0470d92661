import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../hub/store/db.js';
import { StoreError } from '../../hub/store/errors.js';
import { ObjectStore } from '../../hub/store/objects.js';
import type { NewObject, StoredObject, WatchEvent } from '../../hub/store/types.js';

// A write inside a transaction runs without a savepoint of its own: a failure before its first
// statement leaves nothing behind, a failure after it rolls the whole transaction back.

function pod(name: string): NewObject {
  return { apiVersion: 'flotilla/v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'nginx:1.27' }] } };
}

function secret(name: string): NewObject {
  return { apiVersion: 'flotilla/v1', kind: 'Secret', metadata: { name, namespace: 'default' }, data: { key: 'dmFsdWU=' } };
}

const names = (items: StoredObject[]) => items.map((o) => o.metadata.name).sort();

describe('ObjectStore writes inside a transaction', () => {
  let db: Database;
  let store: ObjectStore;
  let events: WatchEvent[];
  /** Secrets named "broken-…" fail while being sealed: after the write's first statement. */
  const sealing = { seal: (json: string) => (json.includes('"broken-') ? fail() : json), open: (stored: string) => stored };
  function fail(): never {
    throw new Error('disk said no');
  }

  beforeEach(() => {
    db = openDatabase(':memory:');
    store = new ObjectStore(db, { atRest: (kind) => (kind === 'Secret' ? sealing : undefined) });
    events = [];
    store.watch({ kind: 'Pod' }, (e) => events.push(e));
  });
  afterEach(() => db.close());

  it('lets the caller catch a failed check and commit the rest', () => {
    store.create(pod('a'));
    store.transaction(() => {
      store.create(pod('b'));
      expect(() => store.create(pod('a'))).toThrow(StoreError);
      expect(() => store.delete('Pod', 'default', 'missing')).toThrow(StoreError);
      expect(() => store.update({ ...store.get('Pod', 'default', 'a')!, metadata: { name: 'a', namespace: 'default', resourceVersion: '999' } })).toThrow(StoreError);
      store.create(pod('c'));
    });
    expect(names(store.list('Pod').items)).toEqual(['a', 'b', 'c']);
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED a', 'ADDED b', 'ADDED c']);
    expect(store.currentResourceVersion()).toBe('3');
  });

  it('commits nothing of a transaction in which a write failed halfway, even when the caller caught it', () => {
    expect(() =>
      store.transaction(() => {
        store.create(pod('a'));
        expect(() => store.create(secret('broken-1'))).toThrow('disk said no');
        store.create(pod('b'));
      }),
    ).toThrow(/failed halfway/);
    expect(store.list('Pod').items).toEqual([]);
    expect(store.list('Secret').items).toEqual([]);
    expect(events).toEqual([]);
    expect(store.currentResourceVersion()).toBe('0');
    // The store goes on as before.
    store.create(pod('c'));
    expect(names(store.list('Pod').items)).toEqual(['c']);
  });

  it('undoes a half write with the nested transaction that rolled back around it, and commits the rest', () => {
    store.transaction(() => {
      store.create(pod('a'));
      try {
        store.transaction(() => {
          store.create(pod('b'));
          store.create(secret('broken-2'));
        });
      } catch (err) {
        expect((err as Error).message).toBe('disk said no');
      }
      store.create(pod('c'));
    });
    expect(names(store.list('Pod').items)).toEqual(['a', 'c']);
    expect(store.list('Secret').items).toEqual([]);
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED a', 'ADDED c']);
  });
});
