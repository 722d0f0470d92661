import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeviceEventIngest, MAX_DEVICE_EVENTS_PER_SECOND } from '../../hub/dispatch/events.js';
import { EventRecorder } from '../../hub/events/recorder.js';
import { PROTOCOL_VERSION, type DeviceNodeEvent, type DevicePodEvent } from '../../shared/protocol/messages.js';
import { Topics } from '../../shared/protocol/topics.js';
import { createNode, idleBus, podObject, testHub, type TestHub } from './builders.js';

// The hub's side of the events channel: a device's pod events become Events about the Pod,
// from flotilla-agent on that node, and only about pods bound to that very node.

const topics = new Topics();

let hub: TestHub;
let ingest: DeviceEventIngest;
let now: number;
let webUid: string;

interface EventJson {
  reason: string;
  message: string;
  type: string;
  count: number;
  lastTimestamp: string;
  involvedObject: { kind: string; name: string; namespace: string; uid: string };
  source: { component: string; host: string };
}

beforeEach(() => {
  hub = testHub();
  now = Date.parse('2025-01-01T12:00:00Z');
  ingest = new DeviceEventIngest(hub.store, idleBus, topics, new EventRecorder(hub.store, 'flotilla-agent', hub.log), hub.log, () => now);
  createNode(hub.store, { name: 'edge-1' });
  createNode(hub.store, { name: 'edge-2' });
  webUid = hub.store.create(podObject({ name: 'web', nodeName: 'edge-1' })).metadata.uid;
  hub.store.create(podObject({ name: 'other', nodeName: 'edge-2' }));
});
afterEach(() => {
  hub.db.close();
});

function podEvent(fields: Partial<DevicePodEvent> = {}): DevicePodEvent {
  return { podUid: webUid, podName: 'web', namespace: 'default', container: 'app', type: 'Normal', reason: 'Started', message: 'Started container app', ts: new Date(now - 5_000).toISOString(), ...fields };
}

function nodeEvent(fields: Partial<DeviceNodeEvent> = {}): DeviceNodeEvent {
  return { kind: 'Node', node: 'edge-1', type: 'Warning', reason: 'FreeDiskSpaceFailed', message: 'Failed to garbage collect required amount of images. Attempted to free 500 bytes, but only found 200 bytes eligible to free.', ts: new Date(now - 1_000).toISOString(), ...fields };
}

function publish(node: string, events: unknown[], extra: Record<string, unknown> = {}): void {
  ingest.onEvents(topics.node(node, 'events'), Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, events, ...extra })));
}

function recorded(): EventJson[] {
  return hub.store.list('Event').items as unknown as EventJson[];
}

describe('DeviceEventIngest', () => {
  it('records a device\'s events about its own pod, from flotilla-agent on that node, at the device\'s time', () => {
    publish('edge-1', [podEvent({ reason: 'Pulling', message: 'Pulling image "x"', container: undefined }), podEvent()]);
    const events = recorded();
    expect(events.map((e) => e.reason).sort()).toEqual(['Pulling', 'Started']);
    const started = events.find((e) => e.reason === 'Started')!;
    expect(started.involvedObject).toEqual({ kind: 'Pod', name: 'web', namespace: 'default', uid: webUid });
    expect(started.source).toEqual({ component: 'flotilla-agent', host: 'edge-1' });
    expect(started.type).toBe('Normal');
    expect(started.lastTimestamp).toBe(new Date(now - 5_000).toISOString());
  });

  it('counts a repeated event on one Event object, as Kubernetes does', () => {
    publish('edge-1', [podEvent({ type: 'Warning', reason: 'BackOff', message: 'Back-off restarting failed container app' })]);
    publish('edge-1', [podEvent({ type: 'Warning', reason: 'BackOff', message: 'Back-off restarting failed container app' })]);
    expect(recorded().map((e) => [e.reason, e.count])).toEqual([['BackOff', 2]]);
  });

  it('ignores events about a pod bound to another node, of another uid, or unknown', () => {
    const otherUid = hub.store.get('Pod', 'default', 'other')!.metadata.uid;
    publish('edge-1', [podEvent({ podUid: otherUid, podName: 'other', reason: 'Killing' })]);
    publish('edge-2', [podEvent({ reason: 'Killing' })]);
    publish('edge-1', [podEvent({ podUid: 'an-older-incarnation' })]);
    publish('edge-1', [podEvent({ podName: 'nope' })]);
    expect(recorded()).toEqual([]);
    expect(ingest.ignored).toBe(4);
  });

  it('drops a malformed batch whole and keeps serving', () => {
    publish('edge-1', [podEvent(), podEvent({ type: 'Fatal' as 'Normal' })]);
    ingest.onEvents(topics.node('edge-1', 'events'), Buffer.from('not json'));
    expect(recorded()).toEqual([]);
    expect(ingest.dropped).toBe(2);
    publish('edge-1', [podEvent()]);
    expect(recorded()).toHaveLength(1);
  });

  it('takes the hub\'s time for a device clock that is far off', () => {
    publish('edge-1', [podEvent({ ts: '1970-01-01T00:00:05.000Z' })]);
    publish('edge-1', [podEvent({ reason: 'Created', message: 'Created container app', ts: new Date(now + 3_600_000).toISOString() })]);
    expect(recorded().map((e) => e.lastTimestamp)).toEqual([new Date(now).toISOString(), new Date(now).toISOString()]);
  });

  it('records at most MAX_DEVICE_EVENTS_PER_SECOND events of one node per second', () => {
    const burst = Array.from({ length: 100 }, (_, i) => podEvent({ message: `event ${i}` }));
    for (let i = 0; i < 3; i++) publish('edge-1', burst.map((e) => ({ ...e, message: `${e.message}/${i}` })));
    expect(recorded()).toHaveLength(MAX_DEVICE_EVENTS_PER_SECOND);
    now += 1_000;
    publish('edge-1', [podEvent({ message: 'next second' })]);
    expect(recorded()).toHaveLength(MAX_DEVICE_EVENTS_PER_SECOND + 1);
  });

  it('records a device\'s event about its own node as an Event about the Node', () => {
    publish('edge-1', [nodeEvent(), podEvent({ kind: 'Pod' })]);
    const events = recorded();
    expect(events.map((e) => e.reason).sort()).toEqual(['FreeDiskSpaceFailed', 'Started']);
    const gc = events.find((e) => e.reason === 'FreeDiskSpaceFailed')!;
    expect(gc.involvedObject).toMatchObject({ kind: 'Node', name: 'edge-1' });
    expect(gc.involvedObject.uid).toBe(hub.store.get('Node', '', 'edge-1')!.metadata.uid);
    expect(gc).toMatchObject({ type: 'Warning', source: { component: 'flotilla-agent', host: 'edge-1' }, lastTimestamp: new Date(now - 1_000).toISOString() });
  });

  it('refuses a device\'s event about another node, known or not, and keeps its other events', () => {
    publish('edge-1', [nodeEvent({ node: 'edge-2' }), nodeEvent({ node: 'ghost' }), podEvent()]);
    expect(recorded().map((e) => e.involvedObject.kind)).toEqual(['Pod']);
    expect(ingest.ignored).toBe(2);
  });

  it('drops a batch with a node event that lacks its node, naming no Event', () => {
    publish('edge-1', [{ ...nodeEvent(), node: undefined }]);
    publish('edge-1', [{ ...nodeEvent(), kind: 'Device' }]);
    expect(recorded()).toEqual([]);
    expect(ingest.dropped).toBe(2);
  });

  it('ignores events of a node the hub does not know', () => {
    publish('ghost', [podEvent()]);
    expect(recorded()).toEqual([]);
  });
});
