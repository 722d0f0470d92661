import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { describe as describeObject } from '../../hub/cli/describe.js';
import { NodeLifecycleController } from '../../hub/controllers/nodelifecycle.js';
import { NodeHeartbeats } from '../../hub/dispatch/heartbeats.js';
import type { StoredObject } from '../../hub/store/types.js';
import { nodeCondition, TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE, type NodeSpec, type NodeStatus } from '../../shared/resources/node.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import type { Toleration } from '../../shared/resources/scheduling.js';
import { createNode, eventsAbout, podObject, testHub, type TestHub } from './builders.js';

const GRACE_S = 40;
const EVICTION_S = 300;
const T0 = Date.parse('2025-01-01T12:00:00Z');
const NODE = 'edge-1';

let hub: TestHub;
let clock: number;
let heartbeats: NodeHeartbeats;
let controller: NodeLifecycleController;

function newController(): NodeLifecycleController {
  return new NodeLifecycleController({ store: hub.store, events: hub.events, log: hub.log }, { nodeGraceSeconds: GRACE_S, evictionTimeoutSeconds: EVICTION_S, now: () => clock, lastHeardAt: (n) => heartbeats.lastHeardAt(n) });
}

beforeEach(() => {
  // The store stamps creationTimestamp from Date: it follows the controller's clock here.
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(T0);
  hub = testHub();
  clock = T0;
  heartbeats = new NodeHeartbeats(() => clock);
  controller = newController();
});
afterEach(() => {
  controller.stop();
  hub.db.close();
  vi.useRealTimers();
});

function advance(seconds: number): void {
  clock += seconds * 1000;
  vi.setSystemTime(clock);
}

/** A node that reported Ready at `heartbeatAt` (default now). */
function readyNode(name = NODE, heartbeatAt = clock): StoredObject {
  const node = createNode(hub.store, { name });
  hub.store.updateStatus('Node', '', name, { conditions: [{ type: 'Ready', status: 'True', reason: 'AgentReady' }], lastHeartbeatTime: new Date(heartbeatAt).toISOString() });
  return node;
}

function setReady(status: 'True' | 'False' | 'Unknown', name = NODE): void {
  hub.store.mutate('Node', '', name, (cur) => ({ ...cur, status: { ...(cur.status as NodeStatus), conditions: [{ type: 'Ready', status, reason: status === 'Unknown' ? 'NodeStatusUnknown' : 'Test' }], lastHeartbeatTime: new Date(clock).toISOString() } }));
}

function node(name = NODE): StoredObject {
  return hub.store.get('Node', '', name)!;
}

function ready(name = NODE) {
  return nodeCondition(node(name).status as NodeStatus, 'Ready');
}

function taints(name = NODE) {
  return (node(name).spec as NodeSpec).taints ?? [];
}

interface RunningPodOptions {
  name: string;
  owner?: 'ReplicaSet' | 'DaemonSet' | 'Job';
  tolerations?: Toleration[];
  phase?: PodStatus['phase'];
  nodeName?: string;
}

/** A pod bound to the node, Running and Ready unless `phase` says otherwise. */
function runningPod(o: RunningPodOptions): StoredObject {
  const base = podObject({ name: o.name, nodeName: o.nodeName ?? NODE });
  const pod = hub.store.create({
    ...base,
    metadata: { ...base.metadata, ...(o.owner ? { ownerReferences: [{ apiVersion: 'flotilla/v1', kind: o.owner, name: `${o.name}-owner`, uid: `uid-${o.name}-owner`, controller: true }] } : {}) },
    spec: { ...(base.spec as object), ...(o.tolerations ? { tolerations: o.tolerations } : {}) },
  });
  const phase = o.phase ?? 'Running';
  hub.store.updateStatus('Pod', 'default', o.name, { phase, conditions: [{ type: 'PodScheduled', status: 'True' }, { type: 'Ready', status: phase === 'Running' ? 'True' : 'False' }] } satisfies PodStatus);
  return pod;
}

function pod(name: string): StoredObject | undefined {
  return hub.store.get('Pod', 'default', name);
}

function podReady(name: string) {
  return (pod(name)!.status as PodStatus).conditions?.find((c) => c.type === 'Ready');
}

describe('node health', () => {
  it('leaves a node that was heard from alone, and looks again when its grace period would end', () => {
    readyNode();
    advance(20);
    setReady('True');
    advance(10);
    const result = controller.reconcile(NODE);
    expect(ready()?.status).toBe('True');
    expect(taints()).toEqual([]);
    expect(result).toEqual({ requeueAfterMs: (GRACE_S - 10) * 1000 });
  });

  it('turns Ready Unknown after the grace period of silence, taints the node unreachable and marks its pods NotReady', () => {
    readyNode();
    runningPod({ name: 'web-1', owner: 'ReplicaSet' });
    advance(GRACE_S - 1);
    controller.reconcile(NODE);
    expect(ready()?.status).toBe('True');

    advance(1);
    const result = controller.reconcile(NODE);
    expect(ready()).toMatchObject({ status: 'Unknown', reason: 'NodeStatusUnknown', message: 'Agent stopped posting node status.' });
    expect(taints()).toEqual([{ key: TAINT_NODE_UNREACHABLE, effect: 'NoExecute', timeAdded: new Date(clock).toISOString() }]);
    expect(eventsAbout(hub.store, 'Node', NODE)).toContain(`Warning NodeNotReady: Node ${NODE} status is now: NodeStatusUnknown (Agent stopped posting node status.)`);
    expect(describeObject(node() as Parameters<typeof describeObject>[0], [])).toContain(`Taints:           ${TAINT_NODE_UNREACHABLE}:NoExecute`);
    // The pod keeps its phase; only its Ready condition says the node is gone.
    expect((pod('web-1')!.status as PodStatus).phase).toBe('Running');
    expect(podReady('web-1')).toMatchObject({ status: 'False', reason: 'NodeNotReady' });
    expect(eventsAbout(hub.store, 'Pod', 'web-1')).toContain('Warning NodeNotReady: Node is not ready');
    // Next look: when the pod's toleration of the taint runs out.
    expect(result).toEqual({ requeueAfterMs: EVICTION_S * 1000 });
  });

  it('gives a node that just joined its grace period from its creation, untainted until then', () => {
    advance(3_600);
    createNode(hub.store, { name: 'newcomer' });
    hub.store.updateStatus('Node', '', 'newcomer', undefined);
    expect(controller.reconcile('newcomer')).toEqual({ requeueAfterMs: GRACE_S * 1000 });
    expect(taints('newcomer')).toEqual([]);
    advance(GRACE_S);
    controller.reconcile('newcomer');
    expect(ready('newcomer')?.status).toBe('Unknown');
    expect(taints('newcomer').map((t) => t.key)).toEqual([TAINT_NODE_UNREACHABLE]);
  });

  it('counts MQTT keepalive pings as heartbeats, however old the last status report', () => {
    readyNode(NODE, T0 - 3_600_000);
    heartbeats.heard(NODE);
    advance(GRACE_S - 5);
    expect(controller.reconcile(NODE)).toEqual({ requeueAfterMs: 5_000 });
    expect(ready()?.status).toBe('True');
    advance(5);
    controller.reconcile(NODE);
    expect(ready()?.status).toBe('Unknown');
  });

  it('taints a node whose Ready is False not-ready, and removes the taint (and only it) when it is Ready again', () => {
    readyNode();
    hub.store.mutate('Node', '', NODE, (cur) => ({ ...cur, spec: { taints: [{ key: 'dedicated', value: 'camera', effect: 'NoSchedule' }] } }));
    setReady('False');
    controller.reconcile(NODE);
    expect(taints().map((t) => t.key)).toEqual(['dedicated', TAINT_NODE_NOT_READY]);

    setReady('Unknown');
    controller.reconcile(NODE);
    expect(taints().map((t) => t.key)).toEqual(['dedicated', TAINT_NODE_UNREACHABLE]);

    setReady('True');
    controller.reconcile(NODE);
    expect(taints()).toEqual([{ key: 'dedicated', value: 'camera', effect: 'NoSchedule' }]);
    expect(eventsAbout(hub.store, 'Node', NODE)).toContain('Normal TaintRemoved: Node is Ready again; removed its NoExecute readiness taint');
  });
});

describe('eviction', () => {
  function goneUnknown(): void {
    readyNode();
    setReady('Unknown');
    controller.reconcile(NODE);
  }

  it('deletes the pods of controllers once the eviction timeout has passed, not before', () => {
    goneUnknown();
    runningPod({ name: 'web-1', owner: 'ReplicaSet' });
    runningPod({ name: 'batch-1', owner: 'Job' });
    advance(EVICTION_S - 1);
    expect(controller.reconcile(NODE)).toEqual({ requeueAfterMs: 1_000 });
    expect(pod('web-1')).toBeDefined();

    advance(1);
    expect(controller.reconcile(NODE)).toBeUndefined();
    expect(pod('web-1')).toBeUndefined();
    expect(pod('batch-1')).toBeUndefined();
    expect(eventsAbout(hub.store, 'Pod', 'web-1')).toContain('Normal TaintManagerEviction: Marking for deletion Pod default/web-1');
  });

  it('gives each pod its own tolerationSeconds, and never evicts a pod that tolerates the taint without a limit', () => {
    goneUnknown();
    runningPod({ name: 'quick', owner: 'ReplicaSet', tolerations: [{ key: TAINT_NODE_UNREACHABLE, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 10 }] });
    runningPod({ name: 'patient', owner: 'ReplicaSet', tolerations: [{ key: TAINT_NODE_UNREACHABLE, operator: 'Exists', effect: 'NoExecute' }] });
    // A toleration of some other taint leaves the default in force.
    runningPod({ name: 'other', owner: 'ReplicaSet', tolerations: [{ key: TAINT_NODE_NOT_READY, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 1 }] });

    advance(10);
    expect(controller.reconcile(NODE)).toEqual({ requeueAfterMs: (EVICTION_S - 10) * 1000 });
    expect(pod('quick')).toBeUndefined();
    expect(pod('other')).toBeDefined();

    advance(EVICTION_S);
    controller.reconcile(NODE);
    expect(pod('other')).toBeUndefined();
    expect(pod('patient')).toBeDefined();
  });

  it('leaves DaemonSet pods and finished pods on their node', () => {
    goneUnknown();
    runningPod({ name: 'agent-ds', owner: 'DaemonSet' });
    runningPod({ name: 'done', owner: 'Job', phase: 'Succeeded' });
    advance(EVICTION_S * 2);
    expect(controller.reconcile(NODE)).toBeUndefined();
    expect(pod('agent-ds')).toBeDefined();
    expect(podReady('agent-ds')).toMatchObject({ status: 'False', reason: 'NodeNotReady' });
    expect(pod('done')).toBeDefined();
  });

  it('deletes a bare pod too, and says that nothing will recreate it', () => {
    goneUnknown();
    runningPod({ name: 'lonely' });
    advance(EVICTION_S);
    controller.reconcile(NODE);
    expect(pod('lonely')).toBeUndefined();
    expect(eventsAbout(hub.store, 'Pod', 'lonely')).toEqual(expect.arrayContaining([expect.stringMatching(/^Warning TaintManagerEviction: Marking for deletion Pod default\/lonely: it has no controller/)]));
  });

  it('leaves pods on other nodes alone', () => {
    goneUnknown();
    readyNode('edge-2');
    runningPod({ name: 'elsewhere', owner: 'ReplicaSet', nodeName: 'edge-2' });
    advance(EVICTION_S);
    controller.reconcile(NODE);
    expect(pod('elsewhere')).toBeDefined();
    expect(podReady('elsewhere')?.status).toBe('True');
  });

  it('evicts nothing once the node is Ready again before the timeout', () => {
    goneUnknown();
    runningPod({ name: 'web-1', owner: 'ReplicaSet' });
    advance(EVICTION_S - 10);
    controller.reconcile(NODE);
    setReady('True');
    heartbeats.heard(NODE);
    controller.reconcile(NODE);
    advance(20);
    controller.reconcile(NODE);
    expect(pod('web-1')).toBeDefined();
    expect(taints()).toEqual([]);
  });
});

describe('after a hub restart', () => {
  it('gives every node a fresh grace period and every taint a fresh toleration period', () => {
    // Before the restart: one node last heard from an hour ago, one already Unknown and tainted for an hour.
    readyNode('stale', T0 - 3_600_000);
    readyNode('down', T0 - 3_600_000);
    setReady('Unknown', 'down');
    hub.store.mutate('Node', '', 'down', (cur) => ({ ...cur, spec: { taints: [{ key: TAINT_NODE_UNREACHABLE, effect: 'NoExecute', timeAdded: new Date(T0 - 3_600_000).toISOString() }] } }));
    runningPod({ name: 'web-stale', owner: 'ReplicaSet', nodeName: 'stale' });
    runningPod({ name: 'web-down', owner: 'ReplicaSet', nodeName: 'down' });

    controller = newController();
    controller.reconcile('stale');
    controller.reconcile('down');
    expect(ready('stale')?.status).toBe('True');
    expect(pod('web-down')).toBeDefined();

    advance(GRACE_S);
    controller.reconcile('stale');
    expect(ready('stale')?.status).toBe('Unknown');

    advance(EVICTION_S - GRACE_S);
    controller.reconcile('down');
    controller.reconcile('stale');
    expect(pod('web-down')).toBeUndefined();
    // Its taint is younger: added when its fresh grace period ran out.
    expect(pod('web-stale')).toBeDefined();
    advance(GRACE_S);
    controller.reconcile('stale');
    expect(pod('web-stale')).toBeUndefined();
  });
});

describe('triggers', () => {
  it('works every node on start and wakes a NotReady node when a pod is bound to it', async () => {
    readyNode();
    setReady('False');
    controller.start();
    await controller.queue.idle();
    expect(taints().map((t) => t.key)).toEqual([TAINT_NODE_NOT_READY]);

    runningPod({ name: 'late', owner: 'ReplicaSet' });
    await controller.queue.idle();
    expect(podReady('late')).toMatchObject({ status: 'False', reason: 'NodeNotReady' });
  });
});
