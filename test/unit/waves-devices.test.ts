import { afterEach, describe, expect, it } from 'vitest';
import { UPDATE_LOCK_OVERRIDE_ANNOTATION, UPDATE_LOCKED_CONDITION } from '../../shared/protocol/update-lock.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import { RolloutRoutes } from '../../hub/api/rollout.js';
import { setNodeReady } from './builders.js';
import { advanceBy, applyReader, build, close, fleet, GOOD, imageOn, images, NEXT, podOf, reasons, record, statusOf, step, type Fleet } from './waves-fixture.js';
import type { RolloutSpec } from '../../shared/resources/rollout.js';

const NODES = [{ name: 'canary-1', labels: { channel: 'canary' } }, { name: 'edge-a' }, { name: 'edge-b' }, { name: 'edge-c' }];
const GATE = { minReadySeconds: 10, progressDeadlineSeconds: 60 };

let f: Fleet;
afterEach(() => close(f));

function rollout(strategy: Record<string, unknown>, before?: (f: Fleet) => void): void {
  f = fleet(NODES);
  applyReader(f, GOOD, strategy);
  step(f);
  before?.(f);
  applyReader(f, NEXT, strategy);
  step(f);
}

describe('Waves rollout: devices offline, locked, and a restarted hub', () => {
  it('offlineNodes: wait holds the wave for an offline device up to the deadline, then counts it failed', () => {
    rollout({ waves: [{ percent: 100 }], maxUnavailable: '100%', healthGate: { ...GATE, maxFailed: 1 } }, (f) => setNodeReady(f.hub.store, 'edge-b', false));
    advanceBy(f, 30);
    expect(statusOf(f, 2)).toMatchObject({ phase: 'Progressing', waves: [expect.objectContaining({ waiting: 1 })] });
    expect(imageOn(f, 'edge-b')).toBe(GOOD);
    advanceBy(f, 40);
    const status = statusOf(f, 2);
    expect(status.failedNodes).toEqual([expect.objectContaining({ node: 'edge-b', reason: 'Offline' })]);
    expect(status.phase).toBe('Succeeded');
  });

  it('offlineNodes: skip leaves an offline device out, and it converges when it returns', () => {
    rollout({ waves: [{ percent: 100 }], maxUnavailable: '100%', offlineNodes: 'skip', healthGate: GATE }, (f) => setNodeReady(f.hub.store, 'edge-b', false));
    advanceBy(f, 15);
    expect(statusOf(f, 2)).toMatchObject({ phase: 'Succeeded', skippedNodes: [expect.objectContaining({ node: 'edge-b', reason: 'Offline' })] });
    // Its pod has the new revision; the device gets it when it connects again.
    setNodeReady(f.hub.store, 'edge-b', true);
    step(f);
    expect(imageOn(f, 'edge-b')).toBe(NEXT);
  });

  it('an update lock defers a device (waiting, not failed) and is overridden after updateLockMaxAge', () => {
    rollout({ waves: [{ selector: 'channel=canary' }], healthGate: GATE, updateLockMaxAge: '2m' });
    const lockedSince = new Date(f.now).toISOString();
    // The agent keeps the old containers and reports the lock.
    f.silent.add('canary-1');
    const pod = podOf(f, 'canary-1')!;
    const status: PodStatus = {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: lockedSince }, { type: UPDATE_LOCKED_CONDITION, status: 'True', reason: 'UpdateLockHeld', lastTransitionTime: lockedSince }],
      containerStatuses: [{ name: 'app', image: NEXT, ready: true, restartCount: 0, state: { running: {} } }],
    };
    f.hub.store.updateStatus('Pod', 'default', pod.metadata.name, status);
    advanceBy(f, 100);
    expect(statusOf(f, 2)).toMatchObject({ phase: 'Progressing', failedNodes: [] });
    expect(statusOf(f, 2).waves[0]).toMatchObject({ waiting: 1, failed: 0, ready: 0 });
    expect(podOf(f, 'canary-1')!.metadata.annotations?.[UPDATE_LOCK_OVERRIDE_ANNOTATION]).toBeUndefined();
    advanceBy(f, 25);
    expect(podOf(f, 'canary-1')!.metadata.annotations?.[UPDATE_LOCK_OVERRIDE_ANNOTATION]).toBe(lockedSince);
    expect(reasons(f)).toContain('UpdateLockOverridden');
    // The agent proceeds: the new containers run and are Ready.
    f.silent.delete('canary-1');
    f.hub.store.updateStatus('Pod', 'default', pod.metadata.name, { phase: 'Running' });
    advanceBy(f, 15);
    expect(statusOf(f, 2).waves[0]).toMatchObject({ phase: 'Passed', ready: 1 });
    advanceBy(f, 60);
    expect(statusOf(f, 2).phase).toBe('Succeeded');
  });

  it('a hub restarted mid-wave goes on from the record and the pods: nothing released twice, no gate skipped', () => {
    rollout({ waves: [{ selector: 'channel=canary' }, { percent: 100 }], maxUnavailable: 1, healthGate: GATE });
    advanceBy(f, 15);
    const [, second] = (record(f, 2).spec as RolloutSpec).waves.map((w) => w.nodes);
    const releasedBefore = second!.filter((n) => imageOn(f, n) === NEXT);
    expect(releasedBefore).toHaveLength(1);
    const releasedAt = podOf(f, releasedBefore[0]!)!.metadata.annotations!['flotilla.io/rollout-released-at'];
    const rv = podOf(f, releasedBefore[0]!)!.metadata.resourceVersion;
    // Throw the controllers away and build new ones on the same database.
    f.waves.stop();
    f.ds.stop();
    build(f);
    f.waves.reconcile('default/reader');
    f.ds.reconcile('default/reader');
    // The released device was not written again, and no second one was released while it is not Ready for 10 s.
    expect(podOf(f, releasedBefore[0]!)!.metadata.resourceVersion).toBe(rv);
    expect(podOf(f, releasedBefore[0]!)!.metadata.annotations!['flotilla.io/rollout-released-at']).toBe(releasedAt);
    expect(second!.filter((n) => imageOn(f, n) === NEXT)).toEqual(releasedBefore);
    expect(statusOf(f, 2).waves[1]!.phase).toBe('Progressing');
    advanceBy(f, 120);
    expect(statusOf(f, 2).phase).toBe('Succeeded');
    expect(Object.values(images(f))).toEqual(Array(NODES.length).fill(NEXT));
  });

  it('the preview plans the same waves the rollout then uses', () => {
    f = fleet(NODES);
    const strategy = { waves: [{ selector: 'channel=canary' }, { count: 2 }] };
    applyReader(f, GOOD, strategy);
    step(f);
    const routes = new RolloutRoutes(f.hub.store, f.waves);
    expect(routes.preview('default', 'reader')).toMatchObject({ revision: 1, reason: expect.stringContaining('no change') });
    const ds = f.hub.store.get('DaemonSet', 'default', 'reader')!;
    const manifest = { apiVersion: 'flotilla/v1', kind: 'DaemonSet', metadata: { name: 'reader', namespace: 'default' }, spec: { ...(ds.spec as object), template: { metadata: { labels: { app: 'reader' } }, spec: { nodeSelector: { fleet: 'sensors' }, containers: [{ name: 'app', image: NEXT }] } } } };
    const preview = routes.preview('default', 'reader', manifest);
    expect(preview.revision).toBe(2);
    applyReader(f, NEXT, strategy);
    step(f);
    expect((record(f, 2).spec as RolloutSpec).waves).toEqual(preview.waves);
    expect(preview.waves.map((w) => w.nodes.length)).toEqual([1, 2, 1]);
    expect(() => routes.preview('default', 'nope')).toThrow(/not found/);
  });
});
