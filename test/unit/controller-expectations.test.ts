import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DaemonSetController } from '../../hub/controllers/daemonset.js';
import { ControllerExpectations, EXPECTATIONS_TIMEOUT_MS } from '../../hub/controllers/expectations.js';
import { JobController, MAX_PODS_PER_PASS } from '../../hub/controllers/job.js';
import { ReplacementBackoff } from '../../hub/controllers/replacement-backoff.js';
import { ReplicaSetController } from '../../hub/controllers/replicaset.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import type { ReplicaSetSpec } from '../../shared/resources/deployment.js';
import type { PodPhase, PodSpec } from '../../shared/resources/pod.js';
import { createNode, daemonSetObject, eventsAbout, testHub, type TestHub } from './builders.js';

// Controller expectations (Kubernetes' controller_utils ControllerExpectations) and the back-off
// before replacing pods that keep finishing: the two guards that keep a controller from making
// pods again and again.

const IMAGE = 'flotilla-test/busybox:1';
const START = Date.parse('2025-01-01T12:00:00Z');

describe('ControllerExpectations', () => {
  it('holds a key until every creation and deletion is observed, and lets it go after the timeout', () => {
    let now = START;
    const e = new ControllerExpectations(() => now);
    expect(e.satisfied('ns/a')).toBe(true);
    e.expect('ns/a', 2, 1);
    expect(e.satisfied('ns/a')).toBe(false);
    e.creationObserved('ns/a');
    e.deletionObserved('ns/a');
    expect(e.satisfied('ns/a')).toBe(false);
    expect(e.pending('ns/a')).toEqual({ adds: 1, deletes: 0 });
    e.creationObserved('ns/a');
    expect(e.satisfied('ns/a')).toBe(true);
    expect(e.pending('ns/a')).toBeUndefined();

    e.expect('ns/b', 1, 0);
    now += EXPECTATIONS_TIMEOUT_MS;
    expect(e.satisfied('ns/b')).toBe(false);
    now += 1;
    expect(e.satisfied('ns/b')).toBe(true);
  });

  it('forgets a key, or every key', () => {
    const e = new ControllerExpectations(() => START);
    e.expect('a', 1, 0);
    e.expect('b', 0, 1);
    e.forget('a');
    expect(e.satisfied('a')).toBe(true);
    expect(e.satisfied('b')).toBe(false);
    e.forgetAll();
    expect(e.satisfied('b')).toBe(true);
  });
});

describe('ReplacementBackoff', () => {
  it('lets the first replacement through, then waits 10 s doubling to 5 min, and starts again after a quiet spell', () => {
    const b = new ReplacementBackoff();
    expect(b.waitMs('k', START)).toBe(0);
    b.failed('k', START);
    expect(b.waitMs('k', START)).toBe(0);
    b.failed('k', START);
    expect(b.waitMs('k', START)).toBe(10_000);
    expect(b.waitMs('k', START + 4_000)).toBe(6_000);
    b.failed('k', START + 10_000);
    expect(b.waitMs('k', START + 10_000)).toBe(20_000);
    for (let i = 0; i < 10; i++) b.failed('k', START + 20_000);
    expect(b.waitMs('k', START + 20_000)).toBe(300_000);
    expect(b.announce('k', 1)).toBe(true);
    expect(b.announce('k', 1)).toBe(false);
    // Ten minutes without a failure: the count starts again.
    b.failed('k', START + 20_000 + 600_001);
    expect(b.failures('k')).toBe(1);
    expect(b.waitMs('k', START + 20_000 + 600_001)).toBe(0);
  });
});

describe('controllers with expectations', () => {
  let hub: TestHub;
  let clock: number;
  const stops: (() => void)[] = [];

  beforeEach(() => {
    hub = testHub();
    clock = START;
    createNode(hub.store, { name: 'edge-1' });
    createNode(hub.store, { name: 'edge-2' });
  });
  afterEach(() => {
    for (const stop of stops.splice(0)) stop();
    hub.db.close();
  });

  function replicaSet(replicas: number, template: Partial<PodSpec> = {}): StoredObject {
    const spec: ReplicaSetSpec = {
      replicas,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: IMAGE }], ...template } },
    };
    return hub.store.create({ apiVersion: 'flotilla/v1', kind: 'ReplicaSet', metadata: { name: 'web', namespace: 'default' }, spec } as NewObject);
  }

  function pods(): StoredObject[] {
    return hub.store.list('Pod', { namespace: 'default' }).items;
  }

  function setPhase(name: string, phase: PodPhase): void {
    hub.store.updateStatus('Pod', 'default', name, { phase });
  }

  function rsController(): ReplicaSetController {
    const c = new ReplicaSetController({ store: hub.store, events: hub.events, log: hub.log }, { now: () => clock });
    stops.push(() => c.stop());
    return c;
  }

  it('ReplicaSet: a pass whose pods are not seen yet (an outer transaction still open) makes no more; once seen, the next pass may', () => {
    replicaSet(2);
    const c = rsController();
    hub.store.transaction(() => {
      c.reconcile('default/web');
      expect(pods()).toHaveLength(2);
      // The user deletes one in the same transaction: without expectations the next pass would replace it before its own pods were seen.
      hub.store.delete('Pod', 'default', pods()[0]!.metadata.name);
      c.reconcile('default/web');
      c.reconcile('default/web');
      expect(pods()).toHaveLength(1);
    });
    // Committed: both creations and the deletion were seen; the pass makes the missing pod.
    c.reconcile('default/web');
    expect(pods()).toHaveLength(2);
  });

  it('ReplicaSet: writes rolled back are forgotten, so nothing waits for them', () => {
    replicaSet(2);
    const c = rsController();
    expect(() =>
      hub.store.transaction(() => {
        c.reconcile('default/web');
        throw new Error('something else in the transaction failed');
      }),
    ).toThrow('something else');
    expect(pods()).toHaveLength(0);
    c.reconcile('default/web');
    expect(pods()).toHaveLength(2);
  });

  it('ReplicaSet: replaces a pod that exited at once, then backs off before the next, with one BackOff event per wait', () => {
    replicaSet(1, { restartPolicy: 'Never' });
    const c = rsController();
    c.reconcile('default/web');
    const [first] = pods();
    setPhase(first!.metadata.name, 'Succeeded');
    c.reconcile('default/web');
    const [second] = pods();
    expect(second!.metadata.name).not.toBe(first!.metadata.name);
    setPhase(second!.metadata.name, 'Succeeded');
    const waiting = c.reconcile('default/web');
    expect(pods()).toHaveLength(0);
    expect(waiting?.requeueAfterMs).toBe(10_000);
    clock += 4_000;
    expect(c.reconcile('default/web')?.requeueAfterMs).toBe(6_000);
    expect(pods()).toHaveLength(0);
    expect(eventsAbout(hub.store, 'ReplicaSet', 'web').filter((e) => e.startsWith('Warning BackOff'))).toEqual([
      "Warning BackOff: Back-off 10s before replacing pods that exited: its template's pods do not keep running",
    ]);
    clock += 6_000;
    c.reconcile('default/web');
    expect(pods()).toHaveLength(1);
  });

  it('Job: a pass whose pods are not seen yet makes no more pods', () => {
    hub.store.create({
      apiVersion: 'flotilla/v1',
      kind: 'Job',
      metadata: { name: 'batch', namespace: 'default' },
      spec: { parallelism: 2, completions: 4, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: IMAGE }] } } },
    } as NewObject);
    const c = new JobController({ store: hub.store, events: hub.events, log: hub.log }, { now: () => clock });
    stops.push(() => c.stop());
    hub.store.transaction(() => {
      c.reconcile('default/batch');
      expect(pods()).toHaveLength(2);
      hub.store.delete('Pod', 'default', pods()[0]!.metadata.name);
      c.reconcile('default/batch');
      c.reconcile('default/batch');
      expect(pods()).toHaveLength(1);
    });
    c.reconcile('default/batch');
    expect(pods()).toHaveLength(2);
  });

  it('Job: a huge parallelism is made MAX_PODS_PER_PASS pods at a time, each pass once the last one is seen', () => {
    hub.store.create({
      apiVersion: 'flotilla/v1',
      kind: 'Job',
      metadata: { name: 'wide', namespace: 'default' },
      spec: { parallelism: 1_200, completions: 1_200, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: IMAGE }] } } },
    } as NewObject);
    const c = new JobController({ store: hub.store, events: hub.events, log: hub.log }, { now: () => clock });
    stops.push(() => c.stop());
    c.reconcile('default/wide');
    expect(pods()).toHaveLength(MAX_PODS_PER_PASS);
    expect(c.dueAt('default/wide')).toBe(clock);
    c.reconcile('default/wide');
    c.reconcile('default/wide');
    expect(pods()).toHaveLength(1_200);
    expect(c.dueAt('default/wide')).toBeUndefined();
  });

  it('DaemonSet: a pass whose pods are not seen yet in its view makes no more', () => {
    hub.store.create(daemonSetObject({ name: 'agent' }));
    const c = new DaemonSetController(hub.store, hub.events, hub.log);
    stops.push(() => c.stop());
    hub.store.transaction(() => {
      c.reconcile('default/agent');
      expect(pods()).toHaveLength(2);
      hub.store.delete('Pod', 'default', pods()[0]!.metadata.name);
      // The view has not seen the pods yet (events come at the commit): it would make both again.
      expect(c.reconcile('default/agent')).toEqual({ requeueAfterMs: EXPECTATIONS_TIMEOUT_MS });
      c.reconcile('default/agent');
      expect(pods()).toHaveLength(1);
    });
    c.reconcile('default/agent');
    expect(pods().map((p) => (p.spec as PodSpec).nodeName).sort()).toEqual(['edge-1', 'edge-2']);
  });
});
