import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseSelector } from '../../shared/labels/selector.js';
import { openDatabase, type Database } from '../../hub/store/db.js';
import { StoreError } from '../../hub/store/errors.js';
import { migrations } from '../../hub/store/migrations.js';
import { ObjectStore } from '../../hub/store/objects.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';

function pod(name: string, opts: { namespace?: string; labels?: Record<string, string>; spec?: unknown } = {}): NewObject {
  return {
    apiVersion: 'flotilla/v1',
    kind: 'Pod',
    metadata: { name, namespace: opts.namespace ?? 'default', ...(opts.labels ? { labels: opts.labels } : {}) },
    spec: opts.spec ?? { containers: [{ name: 'app', image: 'nginx:1.27' }] },
  };
}

function expectStoreError(fn: () => unknown, code: StoreError['code'], message?: string | RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(StoreError);
  expect((caught as StoreError).code).toBe(code);
  if (message !== undefined) expect((caught as StoreError).message).toMatch(message);
}

const names = (items: StoredObject[]) => items.map((o) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`);

describe('ObjectStore CRUD', () => {
  let db: Database;
  let store: ObjectStore;

  beforeEach(() => {
    db = openDatabase(':memory:');
    store = new ObjectStore(db);
  });
  afterEach(() => db.close());

  it('creates an object with store-assigned metadata', () => {
    const created = store.create(pod('web', { labels: { app: 'web' } }));
    expect(created.metadata).toMatchObject({ name: 'web', namespace: 'default', generation: 1, resourceVersion: '1', labels: { app: 'web' } });
    expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Date(created.metadata.creationTimestamp).toISOString()).toBe(created.metadata.creationTimestamp);
    expect(store.get('Pod', 'default', 'web')).toEqual(created);
    expect(store.currentResourceVersion()).toBe('1');
  });

  it('ignores store-owned metadata in the input', () => {
    const input = pod('web');
    input.metadata = { ...input.metadata, uid: 'mine', resourceVersion: '99', generation: 7, creationTimestamp: '2000-01-01T00:00:00Z' };
    const created = store.create(input);
    expect(created.metadata.uid).not.toBe('mine');
    expect(created.metadata.resourceVersion).toBe('1');
    expect(created.metadata.generation).toBe(1);
    expect(created.metadata.creationTimestamp).not.toBe('2000-01-01T00:00:00Z');
  });

  it('does not alias the caller’s input', () => {
    const input = pod('web', { labels: { app: 'web' } });
    const created = store.create(input);
    (input.metadata.labels as Record<string, string>).app = 'changed';
    created.metadata.labels!.app = 'changed too';
    expect(store.get('Pod', 'default', 'web')!.metadata.labels).toEqual({ app: 'web' });
  });

  it('stores cluster-scoped kinds under namespace "" and returns them without one', () => {
    const node = store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'edge-1' }, spec: {} });
    expect(node.metadata).not.toHaveProperty('namespace');
    expect(store.get('Node', '', 'edge-1')).toEqual(node);
    expect(store.get('Node', undefined, 'edge-1')).toEqual(node);
    expect(store.list('Node', { namespace: '' }).items).toHaveLength(1);
  });

  it('keeps other top-level fields (kinds without spec)', () => {
    const ev = store.create({ apiVersion: 'flotilla/v1', kind: 'Event', metadata: { name: 'e1', namespace: 'default' }, reason: 'Scheduled', count: 1 });
    expect(ev).toMatchObject({ reason: 'Scheduled', count: 1 });
    expect(ev).not.toHaveProperty('spec');
    const updated = store.update({ ...ev, count: 2 });
    expect(updated.count).toBe(2);
    expect(updated.metadata.generation).toBe(1);
  });

  it('refuses a duplicate with AlreadyExists', () => {
    store.create(pod('web'));
    expectStoreError(() => store.create(pod('web')), 'AlreadyExists', 'pods "web" already exists');
    // The same name in another namespace, or of another kind, is a different object.
    store.create(pod('web', { namespace: 'other' }));
    store.create({ apiVersion: 'flotilla/v1', kind: 'DaemonSet', metadata: { name: 'web', namespace: 'default' }, spec: {} });
  });

  it('reports missing objects with NotFound', () => {
    expect(store.get('Pod', 'default', 'nope')).toBeUndefined();
    expectStoreError(() => store.update(pod('nope')), 'NotFound', 'pods "nope" not found');
    expectStoreError(() => store.updateStatus('Pod', 'default', 'nope', {}), 'NotFound');
    expectStoreError(() => store.delete('Pod', 'default', 'nope'), 'NotFound', 'pods "nope" not found');
    expectStoreError(() => store.delete('Node', '', 'x'), 'NotFound', 'nodes "x" not found');
    expect(store.mutate('Pod', 'default', 'nope', () => undefined)).toBeUndefined();
  });

  it('rejects malformed objects with Invalid', () => {
    expectStoreError(() => store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: '' } }), 'Invalid');
    expectStoreError(() => store.create({ apiVersion: 'v1', kind: '', metadata: { name: 'a' } }), 'Invalid');
    expectStoreError(() => store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', labels: { a: 1 as unknown as string } } }), 'Invalid');
    expectStoreError(() => store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a' }, spec: { n: 1n } }), 'Invalid');
    expect(store.currentResourceVersion()).toBe('0');
  });

  it('updates with optimistic concurrency', () => {
    const v1 = store.create(pod('web'));
    const v2 = store.update({ ...v1, metadata: { ...v1.metadata, labels: { tier: 'front' } } });
    expect(v2.metadata.resourceVersion).toBe('2');
    expect(v2.metadata.uid).toBe(v1.metadata.uid);
    expect(v2.metadata.creationTimestamp).toBe(v1.metadata.creationTimestamp);
    // v1 is stale now.
    expectStoreError(
      () => store.update({ ...v1, spec: { containers: [] } }),
      'Conflict',
      'Operation cannot be fulfilled on pods "web": the object has been modified; please apply your changes to the latest version and try again',
    );
    expectStoreError(() => store.updateStatus('Pod', 'default', 'web', { phase: 'Running' }, v1.metadata.resourceVersion), 'Conflict');
    expectStoreError(() => store.delete('Pod', 'default', 'web', v1.metadata.resourceVersion), 'Conflict');
    expectStoreError(() => store.update({ ...v2, metadata: { ...v2.metadata, uid: 'someone-else' } }), 'Conflict', /UID in precondition/);
    // Without a resourceVersion the update is unconditional, as in Kubernetes.
    const { resourceVersion: _rv, ...meta } = v1.metadata;
    expect(store.update({ ...v1, metadata: meta }).metadata.resourceVersion).toBe('3');
  });

  it('bumps generation only when spec changes', () => {
    const v1 = store.create(pod('web'));
    const relabelled = store.update({ ...v1, metadata: { ...v1.metadata, labels: { a: 'b' }, annotations: { note: 'x' } } });
    expect(relabelled.metadata.generation).toBe(1);
    const respecced = store.update({ ...relabelled, spec: { containers: [{ name: 'app', image: 'nginx:1.28' }] } });
    expect(respecced.metadata.generation).toBe(2);
    // Key order is not a change.
    const reordered = store.update({ ...respecced, spec: { containers: [{ image: 'nginx:1.28', name: 'app' }] } });
    expect(reordered.metadata.generation).toBe(2);
    expect(reordered.metadata.resourceVersion).toBe(respecced.metadata.resourceVersion);
  });

  it('update never changes status; updateStatus never changes anything else', () => {
    const v1 = store.create(pod('web'));
    const withStatus = store.updateStatus('Pod', 'default', 'web', { phase: 'Running' });
    expect(withStatus.status).toEqual({ phase: 'Running' });
    expect(withStatus.spec).toEqual(v1.spec);
    expect(withStatus.metadata.generation).toBe(1);
    expect(withStatus.metadata.resourceVersion).toBe('2');

    const updated = store.update({ ...withStatus, status: { phase: 'Failed' }, spec: { containers: [] } });
    expect(updated.status).toEqual({ phase: 'Running' });
    expect(updated.spec).toEqual({ containers: [] });

    // Same status again: nothing written.
    expect(store.updateStatus('Pod', 'default', 'web', { phase: 'Running' }).metadata.resourceVersion).toBe(updated.metadata.resourceVersion);
    expect(store.updateStatus('Pod', 'default', 'web', undefined)).not.toHaveProperty('status');
  });

  it('keeps deletionTimestamp once set', () => {
    const v1 = store.create(pod('web'));
    const marked = store.update({ ...v1, metadata: { ...v1.metadata, deletionTimestamp: '2030-01-01T00:00:00.000Z' } });
    expect(marked.metadata.deletionTimestamp).toBe('2030-01-01T00:00:00.000Z');
    const { deletionTimestamp: _dt, ...meta } = marked.metadata;
    expect(store.update({ ...marked, metadata: meta }).metadata.deletionTimestamp).toBe('2030-01-01T00:00:00.000Z');
  });

  it('mutates in one read-modify-write and writes nothing for no-op changes', () => {
    store.create(pod('web'));
    const rv = store.currentResourceVersion();
    expect(store.mutate('Pod', 'default', 'web', () => undefined)!.metadata.resourceVersion).toBe(rv);
    expect(store.mutate('Pod', 'default', 'web', (cur) => cur)!.metadata.resourceVersion).toBe(rv);
    expect(store.mutate('Pod', 'default', 'web', (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: {} } }))!.metadata.resourceVersion).toBe(rv);
    expect(store.currentResourceVersion()).toBe(rv);
    expect(db.prepare('SELECT count(*) FROM changes').pluck().get()).toBe(1);

    const after = store.mutate('Pod', 'default', 'web', (cur) => {
      cur.status = { phase: 'Running' };
      cur.metadata.labels = { app: 'web' };
      return cur;
    })!;
    expect(after.status).toEqual({ phase: 'Running' });
    expect(after.metadata.labels).toEqual({ app: 'web' });
    expect(after.metadata.generation).toBe(1);
    expect(Number(after.metadata.resourceVersion)).toBe(Number(rv) + 1);
    expect(store.list('Pod', { selector: parseSelector('app=web') }).items).toHaveLength(1);

    expectStoreError(() => store.mutate('Pod', 'default', 'web', (cur) => ({ ...cur, metadata: { ...cur.metadata, name: 'other' } })), 'Invalid');
  });

  it('deletes, returning the last state with the deletion’s resourceVersion', () => {
    store.create(pod('web', { labels: { app: 'web' } }));
    const deleted = store.delete('Pod', 'default', 'web');
    expect(deleted.metadata.resourceVersion).toBe('2');
    expect(store.get('Pod', 'default', 'web')).toBeUndefined();
    expect(db.prepare('SELECT count(*) FROM object_labels').pluck().get()).toBe(0);
    // The name is free again, with a new uid.
    expect(store.create(pod('web')).metadata.uid).not.toBe(deleted.metadata.uid);
  });

  it('lists by label with equality and set-based selectors, scoped by namespace, sorted', () => {
    store.create(pod('b', { labels: { app: 'web', env: 'prod' } }));
    store.create(pod('a', { labels: { app: 'web', env: 'dev' } }));
    store.create(pod('c', { labels: { app: 'db', env: 'prod' } }));
    store.create(pod('d'));
    store.create(pod('a', { namespace: 'edge', labels: { app: 'web', env: 'prod', canary: 'true' } }));
    store.create({ apiVersion: 'flotilla/v1', kind: 'DaemonSet', metadata: { name: 'x', namespace: 'default', labels: { app: 'web' } }, spec: {} });

    const list = (sel: string, namespace?: string) => names(store.list('Pod', { selector: parseSelector(sel), ...(namespace !== undefined ? { namespace } : {}) }).items);
    expect(list('')).toEqual(['default/a', 'default/b', 'default/c', 'default/d', 'edge/a']);
    expect(list('app=web')).toEqual(['default/a', 'default/b', 'edge/a']);
    expect(list('app=web,env=prod')).toEqual(['default/b', 'edge/a']);
    expect(list('app=web', 'default')).toEqual(['default/a', 'default/b']);
    expect(list('env in (prod,dev)')).toEqual(['default/a', 'default/b', 'default/c', 'edge/a']);
    expect(list('env notin (prod)')).toEqual(['default/a', 'default/d']);
    expect(list('app=web,!canary')).toEqual(['default/a', 'default/b']);
    expect(list('canary')).toEqual(['edge/a']);
    expect(list('app=web,app=db')).toEqual([]);
    expect(list('app=nothing')).toEqual([]);
    expect(names(store.list('Pod', { namespace: 'edge' }).items)).toEqual(['edge/a']);
    expect(names(store.list('Pod', { filter: (o) => o.metadata.name === 'c' }).items)).toEqual(['default/c']);
    expect(store.list('Pod', { selector: { requirements: [], matchesNothing: true } }).items).toEqual([]);
    expect(store.list('Pod').resourceVersion).toBe('6');

    // Relabelling moves an object between selections.
    store.mutate('Pod', 'default', 'c', (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: { app: 'web' } } }));
    expect(list('app=web', 'default')).toEqual(['default/a', 'default/b', 'default/c']);
    expect(list('app=db')).toEqual([]);
  });

  it('answers key=value requirements from the label index', () => {
    const sql = 'SELECT object FROM objects WHERE kind = ? AND id IN (SELECT object_id FROM object_labels WHERE kind = ? AND key = ? AND value = ?) ORDER BY namespace, name';
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all('Pod', 'Pod', 'app', 'web') as { detail: string }[]).map((r) => r.detail).join('\n');
    expect(plan).toContain('object_labels_by_label');
  });

  it('groups writes in a transaction and rolls them back together', () => {
    expect(() =>
      store.transaction(() => {
        store.create(pod('a'));
        store.create(pod('b'));
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(store.list('Pod').items).toEqual([]);
    expect(store.currentResourceVersion()).toBe('0');

    // A failing nested transaction that the outer one catches undoes only its own writes.
    store.transaction(() => {
      store.create(pod('a'));
      try {
        store.transaction(() => {
          store.create(pod('b'));
          store.create(pod('a')); // AlreadyExists
        });
      } catch (err) {
        expect((err as StoreError).code).toBe('AlreadyExists');
      }
      store.create(pod('c'));
    });
    expect(names(store.list('Pod').items)).toEqual(['default/a', 'default/c']);
    expect(store.currentResourceVersion()).toBe('2');
  });
});

describe('schema migrations', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'flotilla-store-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const userVersion = (db: Database) => db.pragma('user_version', { simple: true }) as number;

  it('brings a fresh database to the latest version and sets the pragmas', () => {
    const db = openDatabase(join(dir, 'hub.db'));
    try {
      expect(userVersion(db)).toBe(migrations.length);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
      expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
      expect(db.pragma('busy_timeout', { simple: true })).toBeGreaterThan(0);
    } finally {
      db.close();
    }
  });

  it('applies nothing twice on reopening', () => {
    const file = join(dir, 'hub.db');
    openDatabase(file).close();
    // Migration 1 creates tables without IF NOT EXISTS: running it again would throw.
    const db = openDatabase(file);
    expect(userVersion(db)).toBe(migrations.length);
    db.close();
  });

  it('refuses a database from a newer hub', () => {
    const file = join(dir, 'hub.db');
    const db = openDatabase(file);
    db.pragma(`user_version = ${migrations.length + 1}`);
    db.close();
    expect(() => openDatabase(file)).toThrow(new RegExp(`schema version ${migrations.length + 1}, newer than the latest this hub knows \\(${migrations.length}\\)`));
  });

  it('upgrades an old database with appended migrations, each atomically', () => {
    const file = join(dir, 'hub.db');
    const old = openDatabase(file);
    new ObjectStore(old).create(pod('web'));
    old.close();

    const extended = [
      ...migrations,
      { version: migrations.length + 1, name: 'tokens', up: 'CREATE TABLE tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL);' },
    ];
    const broken = [...extended, { version: migrations.length + 2, name: 'broken', up: 'CREATE TABLE half (x); SELECT * FROM no_such_table;' }];
    expect(() => openDatabase(file, broken)).toThrow(/schema migration \d+ \('broken'\) failed/);

    // The failed migration left nothing behind, but the one before it committed.
    const db = openDatabase(file, extended);
    try {
      expect(userVersion(db)).toBe(migrations.length + 1);
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all();
      expect(tables).toContain('tokens');
      expect(tables).not.toContain('half');
      expect(new ObjectStore(db).get('Pod', 'default', 'web')).toBeDefined();
    } finally {
      db.close();
    }
  });

  it('rejects a malformed migration list', () => {
    expect(() => openDatabase(':memory:', [{ version: 2, name: 'skips one', up: '' }])).toThrow(/malformed/);
  });

  it('keeps the resourceVersion counter across reopening', () => {
    const file = join(dir, 'hub.db');
    let db = openDatabase(file);
    let store = new ObjectStore(db);
    store.create(pod('a'));
    const b = store.create(pod('b'));
    store.delete('Pod', 'default', 'a');
    db.close();

    db = openDatabase(file);
    store = new ObjectStore(db);
    expect(store.currentResourceVersion()).toBe('3');
    expect(store.get('Pod', 'default', 'b')).toEqual(b);
    expect(store.create(pod('c')).metadata.resourceVersion).toBe('4');
    db.close();
  });
});
