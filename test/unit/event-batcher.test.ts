import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EventBatcher, PodDirectory, devicePodEvent, type EventBatchingOptions } from '../../agent/link/events.js';
import { MAX_EVENT_MESSAGE_LENGTH, type DevicePodEvent, type EventBatch } from '../../shared/protocol/messages.js';

// The agent's side of the events channel: batches at most once a second, bounded in size, and a
// bounded buffer while the hub is away, whose overflow is dropped and counted.

const log = pino({ level: 'silent' });
const OPTS: EventBatchingOptions = { flushIntervalMs: 1_000, maxBatch: 3, maxBuffered: 5 };

function event(n: number): DevicePodEvent {
  return { podUid: 'uid-1', podName: 'web', namespace: 'default', container: 'app', type: 'Normal', reason: 'Started', message: `event ${n}`, ts: new Date(0).toISOString() };
}

/** A link that is up or down, and what it was given. */
function fakeLink() {
  const link = { up: true, batches: [] as EventBatch[] };
  const publish = (batch: EventBatch) => {
    if (!link.up) return false;
    link.batches.push(batch);
    return true;
  };
  return { link, publish };
}

const messages = (batches: EventBatch[]) => batches.map((b) => b.events.map((e) => e.message));

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('EventBatcher', () => {
  it('sends the first event at once and gathers what follows within the second into one batch', () => {
    const { link, publish } = fakeLink();
    const batcher = new EventBatcher(publish, OPTS, log);
    batcher.add(event(1));
    vi.advanceTimersByTime(0);
    batcher.add(event(2));
    batcher.add(event(3));
    vi.advanceTimersByTime(999);
    expect(messages(link.batches)).toEqual([['event 1']]);
    vi.advanceTimersByTime(1);
    expect(messages(link.batches)).toEqual([['event 1'], ['event 2', 'event 3']]);
  });

  it('cuts a burst into batches of maxBatch, one per interval', () => {
    const { link, publish } = fakeLink();
    const batcher = new EventBatcher(publish, { ...OPTS, maxBuffered: 100 }, log);
    for (let i = 1; i <= 7; i++) batcher.add(event(i));
    vi.advanceTimersByTime(0);
    expect(link.batches).toHaveLength(1);
    vi.advanceTimersByTime(1_000);
    expect(link.batches).toHaveLength(2);
    vi.advanceTimersByTime(1_000);
    expect(messages(link.batches)).toEqual([['event 1', 'event 2', 'event 3'], ['event 4', 'event 5', 'event 6'], ['event 7']]);
  });

  it('keeps events while the hub is away, drops the oldest past the bound, and reports the count', () => {
    const { link, publish } = fakeLink();
    link.up = false;
    const batcher = new EventBatcher(publish, OPTS, log);
    for (let i = 1; i <= 8; i++) batcher.add(event(i));
    vi.advanceTimersByTime(10_000);
    expect(link.batches).toEqual([]);
    expect(batcher.buffered).toBe(5);
    link.up = true;
    batcher.kick();
    vi.advanceTimersByTime(0);
    expect(link.batches[0]!.dropped).toBe(3);
    expect(messages(link.batches)).toEqual([['event 4', 'event 5', 'event 6']]);
    vi.advanceTimersByTime(1_000);
    expect(link.batches[1]!.dropped).toBeUndefined();
    expect(messages(link.batches)[1]).toEqual(['event 7', 'event 8']);
    expect(batcher.buffered).toBe(0);
  });

  it('sends what it holds on a clean stop, and schedules nothing after', () => {
    const { link, publish } = fakeLink();
    const batcher = new EventBatcher(publish, OPTS, log);
    batcher.add(event(1));
    vi.advanceTimersByTime(0);
    batcher.add(event(2));
    batcher.stop();
    expect(messages(link.batches)).toEqual([['event 1'], ['event 2']]);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('PodDirectory', () => {
  it('names the pods of the desired set, and a pod that left it for a while after', () => {
    let now = 0;
    const pods = new PodDirectory(() => now);
    pods.remember([{ uid: 'u1', name: 'web', namespace: 'default' }, { uid: 'u2', name: 'db', namespace: 'data' }]);
    pods.remember([{ uid: 'u1', name: 'web', namespace: 'default' }]);
    // Its containers are being stopped now: the Killing event must still name it.
    expect(pods.lookup('u2')).toEqual({ name: 'db', namespace: 'data' });
    now += 11 * 60_000;
    pods.remember([{ uid: 'u1', name: 'web', namespace: 'default' }]);
    expect(pods.lookup('u2')).toBeUndefined();
    expect(pods.lookup('u1')).toEqual({ name: 'web', namespace: 'default' });
  });
});

describe('devicePodEvent', () => {
  it('puts the pod\'s name to an executor event and cuts an overlong message', () => {
    const e = devicePodEvent({ podUid: 'u1', container: 'app', type: 'Warning', reason: 'Failed', message: 'x'.repeat(5_000) }, { name: 'web', namespace: 'default' }, new Date('2025-01-01T00:00:00Z'));
    expect(e).toMatchObject({ podUid: 'u1', podName: 'web', namespace: 'default', container: 'app', type: 'Warning', reason: 'Failed', ts: '2025-01-01T00:00:00.000Z' });
    expect(e.message).toHaveLength(MAX_EVENT_MESSAGE_LENGTH);
    expect(e.message.endsWith('…')).toBe(true);
  });

  it('leaves out the container of a pod-level event', () => {
    expect(devicePodEvent({ podUid: 'u1', type: 'Normal', reason: 'Pulling', message: 'Pulling image "x"' }, { name: 'web', namespace: 'default' }, new Date())).not.toHaveProperty('container');
  });
});
