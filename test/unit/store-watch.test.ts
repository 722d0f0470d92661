import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseSelector } from '../../shared/labels/selector.js';
import { openDatabase, type Database } from '../../hub/store/db.js';
import { StoreError } from '../../hub/store/errors.js';
import { ObjectStore } from '../../hub/store/objects.js';
import type { NewObject, WatchEvent } from '../../hub/store/types.js';

function pod(name: string, labels?: Record<string, string>, namespace = 'default'): NewObject {
  return { apiVersion: 'flotilla/v1', kind: 'Pod', metadata: { name, namespace, ...(labels ? { labels } : {}) }, spec: { containers: [] } };
}

/** Events as `TYPE name@rv` for compact assertions. */
function recorder() {
  const events: WatchEvent[] = [];
  const seen = () => events.map((e) => `${e.type} ${e.object.metadata.name}@${e.object.metadata.resourceVersion}`);
  return { events, seen, onEvent: (e: WatchEvent) => events.push(e) };
}

describe('ObjectStore watch', () => {
  let db: Database;
  let store: ObjectStore;

  beforeEach(() => {
    db = openDatabase(':memory:');
    store = new ObjectStore(db);
  });
  afterEach(() => db.close());

  it('delivers live events after each write, filtered by kind and namespace', () => {
    const all = recorder();
    const pods = recorder();
    const edge = recorder();
    store.watch({}, all.onEvent);
    store.watch({ kind: 'Pod' }, pods.onEvent);
    store.watch({ kind: 'Pod', namespace: 'edge' }, edge.onEvent);

    store.create(pod('a'));
    expect(pods.seen()).toEqual(['ADDED a@1']); // synchronously, before create() returned
    store.create(pod('b', undefined, 'edge'));
    store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'n1' } });
    store.updateStatus('Pod', 'edge', 'b', { phase: 'Running' });
    store.delete('Pod', 'default', 'a');

    expect(all.seen()).toEqual(['ADDED a@1', 'ADDED b@2', 'ADDED n1@3', 'MODIFIED b@4', 'DELETED a@5']);
    expect(pods.seen()).toEqual(['ADDED a@1', 'ADDED b@2', 'MODIFIED b@4', 'DELETED a@5']);
    expect(edge.seen()).toEqual(['ADDED b@2', 'MODIFIED b@4']);
    expect(edge.events[1]!.object.status).toEqual({ phase: 'Running' });
  });

  it('stops delivering once stopped, and no watcher can change what another sees', () => {
    const a = recorder();
    const stop = store.watch({ kind: 'Pod' }, (e) => {
      // The object is shared by the change's watchers, and frozen.
      expect(() => (e.object.metadata.name = 'tampered')).toThrow(TypeError);
      a.onEvent(e);
    });
    const b = recorder();
    store.watch({ kind: 'Pod' }, b.onEvent);
    store.create(pod('x'));
    stop();
    store.create(pod('y'));
    expect(a.events).toHaveLength(1);
    expect(b.seen()).toEqual(['ADDED x@1', 'ADDED y@2']);
  });

  it('does not emit events for no-op writes', () => {
    store.create(pod('a'));
    store.updateStatus('Pod', 'default', 'a', { phase: 'Running' });
    const w = recorder();
    store.watch({ kind: 'Pod' }, w.onEvent);
    for (let i = 0; i < 5; i++) store.updateStatus('Pod', 'default', 'a', { phase: 'Running' });
    store.mutate('Pod', 'default', 'a', () => undefined);
    expect(w.events).toEqual([]);
  });

  it('delivers a transaction’s events after commit, in order, and none on rollback', () => {
    const w = recorder();
    store.watch({ kind: 'Pod' }, w.onEvent);
    store.transaction(() => {
      store.create(pod('a'));
      store.transaction(() => store.create(pod('b')));
      expect(w.events).toEqual([]); // not yet committed
      store.updateStatus('Pod', 'default', 'a', { phase: 'Pending' });
    });
    expect(w.seen()).toEqual(['ADDED a@1', 'ADDED b@2', 'MODIFIED a@3']);

    expect(() =>
      store.transaction(() => {
        store.create(pod('c'));
        store.delete('Pod', 'default', 'a');
        throw new Error('abort');
      }),
    ).toThrow('abort');
    expect(w.events).toHaveLength(3);

    // A rolled-back inner transaction loses its events; the outer ones still arrive.
    store.transaction(() => {
      store.create(pod('d'));
      try {
        store.transaction(() => {
          store.create(pod('e'));
          throw new Error('inner');
        });
      } catch {
        // expected
      }
    });
    expect(w.seen().slice(3)).toEqual(['ADDED d@4']);
  });

  it('keeps each watcher’s events in order when a handler writes', () => {
    const first = recorder();
    const second = recorder();
    store.watch({ kind: 'Pod' }, (e) => {
      first.onEvent(e);
      if (e.type === 'ADDED' && e.object.metadata.name === 'a') store.updateStatus('Pod', 'default', 'a', { phase: 'Scheduled' });
    });
    store.watch({ kind: 'Pod' }, second.onEvent);
    store.create(pod('a'));
    expect(first.seen()).toEqual(['ADDED a@1', 'MODIFIED a@2']);
    expect(second.seen()).toEqual(['ADDED a@1', 'MODIFIED a@2']);
  });

  it('replays retained changes after a resourceVersion, then continues live', () => {
    store.create(pod('a'));
    const listed = store.list('Pod');
    store.create(pod('b'));
    store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'n1' } });
    store.delete('Pod', 'default', 'a');

    const w = recorder();
    store.watch({ kind: 'Pod', fromResourceVersion: listed.resourceVersion }, w.onEvent);
    // Replay happens synchronously, inside watch().
    expect(w.seen()).toEqual(['ADDED b@2', 'DELETED a@4']);
    store.create(pod('c'));
    expect(w.seen()).toEqual(['ADDED b@2', 'DELETED a@4', 'ADDED c@5']);

    const fromNow = recorder();
    store.watch({ fromResourceVersion: store.currentResourceVersion() }, fromNow.onEvent);
    expect(fromNow.events).toEqual([]);
  });

  it('replays and delivers events without gaps or duplicates when a watch starts inside a handler', () => {
    const late = recorder();
    store.watch({ kind: 'Pod' }, (e) => {
      if (e.object.metadata.name === 'a') store.watch({ kind: 'Pod', fromResourceVersion: '0' }, late.onEvent);
    });
    store.transaction(() => {
      store.create(pod('a'));
      store.create(pod('b'));
    });
    store.create(pod('c'));
    expect(late.seen()).toEqual(['ADDED a@1', 'ADDED b@2', 'ADDED c@3']);
  });

  it('fails with Gone when resuming from a pruned resourceVersion', () => {
    const small = new ObjectStore(db, { changeRetention: 5 });
    for (let i = 0; i < 20; i++) small.create(pod(`p${i}`));
    const retained = db.prepare('SELECT count(*) FROM changes').pluck().get() as number;
    expect(retained).toBeLessThanOrEqual(5);

    let caught: unknown;
    try {
      small.watch({ fromResourceVersion: '3' }, () => {});
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(StoreError);
    expect((caught as StoreError).code).toBe('Gone');
    expect((caught as StoreError).message).toMatch(/^too old resource version: 3 \(\d+\)$/);

    const w = recorder();
    small.watch({ fromResourceVersion: '17' }, w.onEvent);
    expect(w.seen()).toEqual(['ADDED p17@18', 'ADDED p18@19', 'ADDED p19@20']);
  });

  it('prunes in batches and keeps the newest changes', () => {
    const big = new ObjectStore(db, { changeRetention: 100 });
    for (let i = 0; i < 250; i++) big.create(pod(`p${i}`));
    const { n, oldest, newest } = db.prepare('SELECT count(*) AS n, min(rv) AS oldest, max(rv) AS newest FROM changes').get() as Record<string, number>;
    expect(newest).toBe(250);
    expect(n).toBeGreaterThanOrEqual(100);
    expect(n).toBeLessThan(110);
    expect(newest! - oldest! + 1).toBe(n);
    expect(() => big.watch({ fromResourceVersion: String(newest! - 100) }, () => {})).not.toThrow();
  });

  it('rejects a resourceVersion that is malformed or from the future', () => {
    store.create(pod('a'));
    expect(() => store.watch({ fromResourceVersion: 'abc' }, () => {})).toThrow(expect.objectContaining({ code: 'Invalid' }));
    expect(() => store.watch({ fromResourceVersion: '99' }, () => {})).toThrow(expect.objectContaining({ code: 'Gone' }));
  });

  it('turns selector transitions into ADDED and DELETED, live and on replay', () => {
    const sel = parseSelector('app=web');
    const live = recorder();
    store.watch({ kind: 'Pod', selector: sel }, live.onEvent);

    store.create(pod('x', { app: 'db' })); // 1: never matched
    store.mutate('Pod', 'default', 'x', (c) => ({ ...c, metadata: { ...c.metadata, labels: { app: 'web' } } })); // 2: starts matching
    store.updateStatus('Pod', 'default', 'x', { phase: 'Running' }); // 3: still matching
    store.mutate('Pod', 'default', 'x', (c) => ({ ...c, metadata: { ...c.metadata, labels: { app: 'api' } } })); // 4: stops matching
    store.updateStatus('Pod', 'default', 'x', { phase: 'Failed' }); // 5: not matching
    store.create(pod('y', { app: 'web' })); // 6
    store.delete('Pod', 'default', 'y'); // 7
    store.create(pod('z', { app: 'api' })); // 8
    store.delete('Pod', 'default', 'z'); // 9: never matched

    const expected = ['ADDED x@2', 'MODIFIED x@3', 'DELETED x@4', 'ADDED y@6', 'DELETED y@7'];
    expect(live.seen()).toEqual(expected);
    expect(live.events[2]!.object.metadata.labels).toEqual({ app: 'api' });

    const replayed = recorder();
    store.watch({ kind: 'Pod', selector: sel, fromResourceVersion: '0' }, replayed.onEvent);
    expect(replayed.seen()).toEqual(expected);

    const setBased = recorder();
    store.watch({ kind: 'Pod', selector: parseSelector('app notin (web)'), fromResourceVersion: '0' }, setBased.onEvent);
    expect(setBased.seen()).toEqual(['ADDED x@1', 'DELETED x@2', 'ADDED x@4', 'MODIFIED x@5', 'ADDED z@8', 'DELETED z@9']);
  });

  it('reports handler exceptions without stopping delivery to others', () => {
    const errors: unknown[] = [];
    const s = new ObjectStore(db, { onWatchError: (err) => errors.push(err) });
    const w = recorder();
    s.watch({}, () => {
      throw new Error('handler bug');
    });
    s.watch({}, w.onEvent);
    s.create(pod('a'));
    expect(errors).toHaveLength(1);
    expect(w.seen()).toEqual(['ADDED a@1']);
  });
});
