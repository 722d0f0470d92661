import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SchedulingQueue } from '../../hub/scheduler/queue.js';
import type { StoredObject } from '../../hub/store/types.js';

function pod(name: string, o: { generation?: number; labels?: Record<string, string>; uid?: string } = {}): StoredObject {
  return {
    apiVersion: 'flotilla/v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', uid: o.uid ?? `uid-${name}`, resourceVersion: '1', generation: o.generation ?? 1, creationTimestamp: '', ...(o.labels ? { labels: o.labels } : {}) },
    spec: { containers: [] },
  };
}

let q: SchedulingQueue;
let wakes = 0;
beforeEach(() => {
  vi.useFakeTimers();
  wakes = 0;
  q = new SchedulingQueue({ initialBackoffMs: 1_000, maxBackoffMs: 10_000, unschedulableFlushMs: 60_000 }, () => wakes++);
});
afterEach(() => {
  q.stop();
  vi.useRealTimers();
});

const keys = (n: number) => q.pop(n).map((e) => e.key);

describe('SchedulingQueue', () => {
  it('hands out pods oldest first, each once', () => {
    for (const n of ['a', 'b', 'c']) q.offer(pod(n), `default/${n}`);
    expect(wakes).toBe(3);
    expect(keys(2)).toEqual(['default/a', 'default/b']);
    q.offer(pod('a'), 'default/a');
    expect(keys(5)).toEqual(['default/c']);
  });

  it('ignores a repeat of the same pod (its own status written back), but takes a changed spec or labels anew', () => {
    q.offer(pod('a'), 'default/a');
    const [entry] = q.pop(1);
    q.unschedulable(entry!);
    q.offer(pod('a'), 'default/a');
    expect(q.activeCount).toBe(0);
    q.offer(pod('a', { labels: { tier: 'web' } }), 'default/a');
    expect(keys(1)).toEqual(['default/a']);
    q.unschedulable(q.get('default/a')!);
    q.offer(pod('a', { generation: 2, labels: { tier: 'web' } }), 'default/a');
    expect(keys(1)).toEqual(['default/a']);
  });

  it('retries an unschedulable pod on a cluster change only after its back-off, doubling to the cap', () => {
    q.offer(pod('a'), 'default/a');
    const backoffs: number[] = [];
    for (let attempt = 0; attempt < 6; attempt++) {
      const [entry] = q.pop(1);
      q.unschedulable(entry!);
      q.moveUnschedulable();
      expect(q.get('default/a')?.state).toBe('backoff');
      const started = Date.now();
      while (q.activeCount === 0) vi.advanceTimersByTime(100);
      backoffs.push(Date.now() - started);
    }
    expect(backoffs).toEqual([1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
  });

  it('leaves an unschedulable pod alone while nothing changes, until the long wait has passed', () => {
    q.offer(pod('a'), 'default/a');
    q.unschedulable(q.pop(1)[0]!);
    vi.advanceTimersByTime(59_000);
    expect(q.activeCount).toBe(0);
    vi.advanceTimersByTime(31_000);
    expect(keys(1)).toEqual(['default/a']);
  });

  it('moves only the pods a change may help: not those that need a change of their own, and by the filter given', () => {
    q.offer(pod('bad'), 'default/bad');
    q.offer(pod('affine'), 'default/affine');
    q.offer(pod('plain'), 'default/plain');
    const [bad, affine, plain] = q.pop(3);
    q.unschedulable(bad!, true);
    affine!.waitsForPods = true;
    q.unschedulable(affine!);
    q.unschedulable(plain!);
    vi.advanceTimersByTime(1_000);
    q.moveUnschedulable((e) => e.waitsForPods);
    expect(keys(5)).toEqual(['default/affine']);
    q.moveUnschedulable();
    expect(keys(5)).toEqual(['default/plain']);
    vi.advanceTimersByTime(600_000);
    expect(q.get('default/bad')?.state).toBe('unschedulable');
  });

  it('tries the newer version of a pod that changed while its attempt ran', () => {
    q.offer(pod('a'), 'default/a');
    const [entry] = q.pop(1);
    q.offer(pod('a', { generation: 2 }), 'default/a');
    expect(q.activeCount).toBe(0);
    q.unschedulable(entry!);
    const [newer] = q.pop(1);
    expect(newer?.pod.metadata.generation).toBe(2);
    expect(newer?.state).toBe('inFlight');
  });

  it('forgets a deleted pod, even one in flight', () => {
    q.offer(pod('a'), 'default/a');
    const [entry] = q.pop(1);
    q.delete('default/a');
    q.unschedulable(entry!);
    q.offer(pod('b'), 'default/b');
    q.delete('default/b');
    expect(keys(5)).toEqual([]);
    expect(q.size).toBe(0);
  });

  it('takes back a pod whose placement was rolled back, after its back-off', () => {
    q.offer(pod('a'), 'default/a');
    const [entry] = q.pop(1);
    q.done(entry!);
    expect(q.size).toBe(0);
    q.rolledBack(entry!);
    expect(q.get('default/a')?.state).toBe('backoff');
    vi.advanceTimersByTime(1_000);
    expect(keys(1)).toEqual(['default/a']);
  });
});
