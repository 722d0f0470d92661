import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WorkQueue } from '../../hub/controllers/queue.js';
import { testHub, type TestHub } from './builders.js';

// A work queue given a wrap (the dispatcher's: a store transaction) works each batch of keys in
// one transaction and each key in a nested one: the batch commits once, and a key that fails
// has its own writes undone and is retried, while the others' writes stand.

let hub: TestHub;
beforeEach(() => {
  hub = testHub();
});
afterEach(() => hub.db.close());

function configMap(name: string, value: string) {
  return { apiVersion: 'flotilla/v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { value } };
}

describe('WorkQueue with a batch wrap', () => {
  it('works the keys of a batch inside one outer transaction', async () => {
    const commits: number[] = [];
    const seen: string[] = [];
    hub.store.watch({ kind: 'ConfigMap' }, (e) => seen.push(e.object.metadata.name));
    let outer = 0;
    const queue = new WorkQueue('test', (key) => {
      hub.store.create(configMap(key, 'v'));
      // Inside the batch nothing has been delivered yet: the events wait for the outer commit.
      commits.push(seen.length);
    }, hub.log, (run) => {
      outer++;
      hub.store.transaction(run);
    });
    for (const key of ['a', 'b', 'c']) queue.add(key);
    await queue.idle();
    expect(hub.store.list('ConfigMap').items.map((o) => o.metadata.name)).toEqual(['a', 'b', 'c']);
    expect(commits).toEqual([0, 0, 0]);
    expect(seen).toEqual(['a', 'b', 'c']);
    // One outer call, and one nested per key.
    expect(outer).toBe(4);
    queue.stop();
  });

  it("undoes a failing key's writes alone and retries it", async () => {
    let failOnce = true;
    const queue = new WorkQueue('test', (key) => {
      hub.store.create(configMap(`${key}-first`, 'v'));
      if (key === 'b' && failOnce) {
        failOnce = false;
        throw new Error('b fails once');
      }
      hub.store.create(configMap(`${key}-second`, 'v'));
    }, hub.log, (run) => hub.store.transaction(run));
    for (const key of ['a', 'b', 'c']) queue.add(key);
    await queue.idle();
    // The retry comes after a back-off of 5 ms.
    await new Promise((r) => setTimeout(r, 50));
    await queue.idle();
    expect(hub.store.list('ConfigMap').items.map((o) => o.metadata.name)).toEqual(['a-first', 'a-second', 'b-first', 'b-second', 'c-first', 'c-second']);
    queue.stop();
  });

  it('awaits what a reconcile leaves pending, and retries a rejection', async () => {
    const done: string[] = [];
    let rejectOnce = true;
    const queue = new WorkQueue('test', async (key) => {
      hub.store.create(configMap(`${key}-${done.length}`, 'v'));
      await new Promise((r) => setTimeout(r, 5));
      if (key === 'x' && rejectOnce) {
        rejectOnce = false;
        throw new Error('x rejects once');
      }
      done.push(key);
    }, hub.log, (run) => hub.store.transaction(run));
    queue.add('x');
    queue.add('y');
    await queue.idle();
    await new Promise((r) => setTimeout(r, 50));
    await queue.idle();
    expect(done.sort()).toEqual(['x', 'y']);
    queue.stop();
  });
});

describe('WorkQueue.addWithin', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  /** A queue whose passes are noted in milliseconds from now. */
  function timedQueue(): { queue: WorkQueue; passes: number[] } {
    const passes: number[] = [];
    const started = Date.now();
    return { queue: new WorkQueue('test', () => void passes.push(Date.now() - started), hub.log), passes };
  }

  it('makes one pass per period for a stream of triggers, where addAfter would wait for the stream to stop', async () => {
    const { queue, passes } = timedQueue();
    // A trigger every 10 ms for 250 ms, each asking for a pass within 100 ms.
    for (let t = 0; t < 250; t += 10) {
      queue.addWithin('ds', 100);
      await vi.advanceTimersByTimeAsync(10);
    }
    await vi.advanceTimersByTimeAsync(150);
    expect(passes).toEqual([101, 211, 321]);
    queue.stop();
  });

  it('keeps a sooner timer, and is shortened to its period when a later one is set', async () => {
    const { queue, passes } = timedQueue();
    queue.addAfter('ds', 5_000);
    queue.addWithin('ds', 50);
    queue.addWithin('ds', 80);
    await vi.advanceTimersByTimeAsync(6_000);
    expect(passes).toEqual([51]);
    queue.stop();
  });
});
