import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StatusIngest } from '../../hub/dispatch/status.js';
import { EventRecorder } from '../../hub/events/recorder.js';
import { PROTOCOL_VERSION, type PodStatusReport, type StatusReport } from '../../shared/protocol/messages.js';
import { Topics } from '../../shared/protocol/topics.js';
import type { NodeStatus } from '../../shared/resources/node.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import { createNode, idleBus, podObject, testHub, type TestHub } from './builders.js';

// The hub's side of the status channel, and what it skips: a report it has already applied is
// not read or written again while nobody else has written the pod or node since.

const topics = new Topics();

let hub: TestHub;
let ingest: StatusIngest;
let webUid: string;

beforeEach(async () => {
  hub = testHub();
  ingest = new StatusIngest(hub.store, idleBus, topics, new EventRecorder(hub.store, 'flotilla-hub', hub.log), hub.log);
  await ingest.start();
  createNode(hub.store, { name: 'edge-1' });
  webUid = hub.store.create(podObject({ name: 'web', nodeName: 'edge-1' })).metadata.uid;
});
afterEach(() => {
  ingest.stop();
  hub.db.close();
});

function podReport(fields: Partial<PodStatusReport> = {}): PodStatusReport {
  return {
    uid: webUid,
    name: 'web',
    namespace: 'default',
    phase: 'Running',
    containerStatuses: [{ name: 'app', image: 'app:1', imageID: 'sha256:1', ready: true, restartCount: 0, state: { running: { startedAt: '2025-01-01T00:00:00Z' } } }],
    ...fields,
  } as PodStatusReport;
}

function report(pods: PodStatusReport[], observedRev = 1): StatusReport {
  return {
    v: PROTOCOL_VERSION,
    ts: new Date().toISOString(),
    observedRev,
    node: { info: { hostname: 'edge-1', operatingSystem: 'linux', kernelVersion: '6', architecture: 'amd64', agentVersion: '0.1.0' }, capacity: { cpu: '4', memory: '1000Ki', pods: '110' }, engineReady: true, conditions: [] },
    pods,
  } as StatusReport;
}

function send(r: StatusReport): void {
  ingest.onStatus(topics.node('edge-1', 'status'), Buffer.from(JSON.stringify(r)));
}

function rv(kind: 'Pod' | 'Node', name: string): string {
  return hub.store.get(kind, kind === 'Pod' ? 'default' : '', name)!.metadata.resourceVersion;
}

describe('StatusIngest', () => {
  it('writes a pod status once, and skips the same report again without a write', () => {
    send(report([podReport()]));
    const pod = hub.store.get('Pod', 'default', 'web')!;
    expect((pod.status as PodStatus).phase).toBe('Running');
    expect((pod.status as PodStatus).conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    const before = hub.store.currentResourceVersion();
    send(report([podReport()]));
    expect(ingest.unchangedPodReports).toBe(1);
    expect(hub.store.currentResourceVersion()).toBe(before);
  });

  it('writes the node, not the pods, when only the desired-set revision moved', () => {
    send(report([podReport()], 1));
    const podRv = rv('Pod', 'web');
    send(report([podReport()], 2));
    expect((hub.store.get('Node', '', 'edge-1')!.status as NodeStatus).observedRevision).toBe(2);
    expect(rv('Pod', 'web')).toBe(podRv);
  });

  it('applies the same report again once someone else wrote the pod', () => {
    send(report([podReport()]));
    // Another writer (the API, a controller) replaces the status.
    hub.store.updateStatus('Pod', 'default', 'web', { phase: 'Pending' });
    send(report([podReport()]));
    expect(ingest.unchangedPodReports).toBe(0);
    expect((hub.store.get('Pod', 'default', 'web')!.status as PodStatus).phase).toBe('Running');
  });

  it('sets Ready again on the next report after the node was marked unknown by another writer', () => {
    send(report([podReport()]));
    hub.store.mutate('Node', '', 'edge-1', (cur) => {
      const status = cur.status as NodeStatus;
      return { ...cur, status: { ...status, conditions: (status.conditions ?? []).map((c) => (c.type === 'Ready' ? { ...c, status: 'Unknown' as const } : c)) } };
    });
    send(report([podReport()]));
    const ready = (hub.store.get('Node', '', 'edge-1')!.status as NodeStatus).conditions?.find((c) => c.type === 'Ready');
    expect(ready?.status).toBe('True');
  });

  it('forgets what it applied when a transaction rolls back', () => {
    expect(() =>
      hub.store.transaction(() => {
        send(report([podReport()]));
        throw new Error('the disk is full');
      }),
    ).toThrow('the disk is full');
    expect(hub.store.get('Pod', 'default', 'web')!.status).toBeUndefined();
    send(report([podReport()]));
    expect(ingest.unchangedPodReports).toBe(0);
    expect((hub.store.get('Pod', 'default', 'web')!.status as PodStatus).phase).toBe('Running');
  });

  it('does not let a report for another incarnation of the pod be remembered', () => {
    send(report([podReport({ uid: 'someone-else' })]));
    expect(hub.store.get('Pod', 'default', 'web')!.status).toBeUndefined();
    send(report([podReport()]));
    expect((hub.store.get('Pod', 'default', 'web')!.status as PodStatus).phase).toBe('Running');
  });
});
