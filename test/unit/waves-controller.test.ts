import { afterEach, describe, expect, it } from 'vitest';
import { RELEASED_AT_ANNOTATION } from '../../hub/controllers/waves/view.js';
import { UPDATE_ORDER_ANNOTATION } from '../../hub/controllers/waves/controller.js';
import type { RolloutSpec } from '../../shared/resources/rollout.js';
import { eventsAbout } from './builders.js';
import { advanceBy, applyReader, BAD, close, fleet, GOOD, imageOn, images, KEY, NEXT, podOf, reasons, record, statusOf, step, type Fleet } from './waves-fixture.js';

const NODES = [{ name: 'canary-1', labels: { channel: 'canary' } }, ...['a', 'b', 'c', 'd', 'e', 'f'].map((n) => ({ name: `edge-${n}` }))];
const STRATEGY = { waves: [{ selector: 'channel=canary' }, { percent: 50 }], maxUnavailable: 2, healthGate: { minReadySeconds: 10, progressDeadlineSeconds: 120 } };

let f: Fleet;
afterEach(() => close(f));

/** A fleet running revision 1 (GOOD) everywhere, then revision 2 applied. */
function started(strategy: Record<string, unknown> = STRATEGY, next = NEXT, nodes = NODES): Fleet {
  f = fleet(nodes);
  applyReader(f, GOOD, strategy);
  step(f);
  applyReader(f, next, strategy, { 'kubernetes.io/change-cause': 'reader 2' });
  step(f);
  return f;
}

function waveNodes(f: Fleet, revision: number): string[][] {
  return (record(f, revision).spec as RolloutSpec).waves.map((w) => w.nodes);
}

describe('Waves rollout of a DaemonSet', () => {
  it('records the first template as revision 1, Succeeded, on every target at once', () => {
    f = fleet(NODES);
    applyReader(f, GOOD, STRATEGY);
    step(f);
    expect(statusOf(f, 1).phase).toBe('Succeeded');
    expect(Object.values(images(f))).toEqual(Array(NODES.length).fill(GOOD));
    expect(podOf(f, 'edge-a')!.metadata.annotations?.[UPDATE_ORDER_ANNOTATION]).toBe('download-then-kill');
  });

  it('moves a new template wave by wave: canary first, then 50 % of the rest, then the rest, at most maxUnavailable at once', () => {
    started();
    const rec = record(f, 2);
    const spec = rec.spec as RolloutSpec;
    expect(spec).toMatchObject({ revision: 2, fromRevision: 1, startedBy: 'admin', changeCause: 'reader 2' });
    expect(spec.waves.map((w) => [w.name, w.nodes.length])).toEqual([['wave-1', 1], ['wave-2', 3], ['rest', 3]]);
    expect(spec.waves[0]!.nodes).toEqual(['canary-1']);
    expect(reasons(f)).toEqual(expect.arrayContaining(['RolloutStarted', 'WaveStarted']));
    // Only the canary runs the new revision; nobody else was touched.
    expect(imageOn(f, 'canary-1')).toBe(NEXT);
    expect(Object.entries(images(f)).filter(([, img]) => img === NEXT).map(([n]) => n)).toEqual(['canary-1']);
    expect(podOf(f, 'canary-1')!.metadata.annotations?.[RELEASED_AT_ANNOTATION]).toBe(new Date(f.now).toISOString());

    // Ready for 10 s: the canary wave passes and wave-2 starts with at most 2 devices at once.
    advanceBy(f, 10);
    const [, second, rest] = waveNodes(f, 2);
    expect(statusOf(f, 2).waves[0]!.phase).toBe('Passed');
    const updatedSecond = second!.filter((n) => imageOn(f, n) === NEXT);
    expect(updatedSecond.length).toBe(2);
    expect(rest!.every((n) => imageOn(f, n) === GOOD)).toBe(true);

    advanceBy(f, 60);
    expect(statusOf(f, 2).phase).toBe('Succeeded');
    expect(Object.values(images(f))).toEqual(Array(NODES.length).fill(NEXT));
    expect(statusOf(f, 2).waves.map((w) => [w.phase, w.total, w.ready])).toEqual([['Passed', 1, 1], ['Passed', 3, 3], ['Passed', 3, 3]]);
    expect(reasons(f)).toEqual(expect.arrayContaining(['WaveGatePassed', 'RolloutSucceeded']));
  });

  it('fails the canary gate on CrashLoopBackOff, rolls back by itself, and no device outside the canary wave ever gets the bad image', () => {
    f = fleet(NODES);
    f.broken.add(BAD);
    applyReader(f, GOOD, STRATEGY);
    step(f);
    applyReader(f, BAD, STRATEGY);
    const seenBad = new Set<string>();
    for (let i = 0; i < 10; i++) {
      step(f);
      for (const [node, img] of Object.entries(images(f))) if (img === BAD) seenBad.add(node);
      f.now += 5000;
    }
    expect([...seenBad]).toEqual(['canary-1']);
    const status = statusOf(f, 2);
    expect(status.phase).toBe('RolledBack');
    expect(status.failedNodes).toEqual([expect.objectContaining({ node: 'canary-1', wave: 'wave-1', reason: 'CrashLoopBackOff' })]);
    expect(Object.values(images(f))).toEqual(Array(NODES.length).fill(GOOD));
    expect(reasons(f)).toEqual(expect.arrayContaining(['NodeUpdateFailed', 'WaveGateFailed', 'RollingBack', 'RolloutRolledBack']));
    // Pinned at the old revision while the DaemonSet's template is still the bad one.
    advanceBy(f, 60);
    expect(imageOn(f, 'canary-1')).toBe(GOOD);
  });

  it('under onFailure: pause stops with a message; resume accepts the failures so far and goes on', () => {
    f = fleet(NODES);
    f.broken.add(BAD);
    const strategy = { ...STRATEGY, onFailure: 'pause' };
    applyReader(f, GOOD, strategy);
    step(f);
    applyReader(f, BAD, strategy);
    advanceBy(f, 10);
    expect(statusOf(f, 2)).toMatchObject({ phase: 'Paused', message: expect.stringContaining('failed its health gate') });
    expect(imageOn(f, 'canary-1')).toBe(BAD);
    const resumed = f.waves.act('default', 'reader', 'resume');
    expect(resumed.ok).toBe(true);
    expect(statusOf(f, 2)).toMatchObject({ phase: 'Progressing', acceptedFailures: 1 });
    step(f);
    expect(statusOf(f, 2).waves[0]!.phase).toBe('Passed');
  });

  it('pause, resume and abort through act(), with 409 when there is nothing to act on', () => {
    started();
    expect(f.waves.act('default', 'nope', 'pause')).toMatchObject({ ok: false, status: 404 });
    expect(f.waves.act('default', 'reader', 'resume')).toMatchObject({ ok: false, status: 409 });
    expect(f.waves.act('default', 'reader', 'pause')).toMatchObject({ ok: true });
    advanceBy(f, 60);
    expect(statusOf(f, 2).phase).toBe('Paused');
    expect(Object.values(images(f)).filter((i) => i === NEXT)).toHaveLength(1);
    expect(f.waves.act('default', 'reader', 'resume')).toMatchObject({ ok: true });
    advanceBy(f, 15);
    expect(Object.values(images(f)).filter((i) => i === NEXT).length).toBeGreaterThan(1);
    const aborted = f.waves.act('default', 'reader', 'abort');
    expect(aborted).toMatchObject({ ok: true });
    const frozen = images(f);
    advanceBy(f, 120);
    expect(images(f)).toEqual(frozen);
    expect(statusOf(f, 2).phase).toBe('Aborted');
    // The wave it stopped in is marked so, not left "Progressing".
    expect(statusOf(f, 2).waves.map((w) => w.phase)).not.toContain('Progressing');
    expect(statusOf(f, 2).waves.map((w) => w.phase)).toContain('Stopped');
    expect(f.waves.act('default', 'reader', 'abort')).toMatchObject({ ok: false, status: 409 });
    expect(reasons(f)).toEqual(expect.arrayContaining(['RolloutPaused', 'RolloutResumed', 'RolloutAborted']));
  });

  it('waits out a timed pause after a wave (status.pauseUntil), then starts the next wave', () => {
    started({ ...STRATEGY, waves: [{ selector: 'channel=canary', pause: '2m' }, { percent: 100 }] });
    advanceBy(f, 15);
    const status = statusOf(f, 2);
    expect(status.phase).toBe('Paused');
    expect(Date.parse(status.pauseUntil!)).toBeGreaterThan(f.now);
    expect(Object.values(images(f)).filter((i) => i === NEXT)).toHaveLength(1);
    advanceBy(f, 120);
    expect(statusOf(f, 2).phase).not.toBe('Paused');
    advanceBy(f, 60);
    expect(statusOf(f, 2).phase).toBe('Succeeded');
  });

  it('releases at most maxPerMinute devices a minute', () => {
    started({ waves: [{ percent: 100 }], maxUnavailable: '100%', maxPerMinute: 3, healthGate: { minReadySeconds: 0 } });
    expect(Object.values(images(f)).filter((i) => i === NEXT)).toHaveLength(3);
    advanceBy(f, 55);
    expect(Object.values(images(f)).filter((i) => i === NEXT)).toHaveLength(3);
    advanceBy(f, 10);
    expect(Object.values(images(f)).filter((i) => i === NEXT)).toHaveLength(6);
  });

  it('fails a device whose pod is not Ready past the progress deadline, and the wave with it', () => {
    f = fleet(NODES);
    applyReader(f, GOOD, STRATEGY);
    step(f);
    f.silent.add('canary-1');
    applyReader(f, NEXT, STRATEGY);
    advanceBy(f, 125);
    const status = statusOf(f, 2);
    expect(status.failedNodes[0]).toMatchObject({ node: 'canary-1', reason: 'ProgressDeadlineExceeded' });
    expect(status.phase === 'RollingBack' || status.phase === 'RolledBack').toBe(true);
  });

  it('lets a device that joins mid-rollout land on the revision its wave has reached', () => {
    started({ ...STRATEGY, waves: [{ selector: 'channel=canary', pause: {} }, { percent: 100 }] });
    advanceBy(f, 15);
    expect(statusOf(f, 2).phase).toBe('Paused');
    // Joins while wave-2 has not started: the old revision now, the new one when its wave runs.
    f.hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'edge-new', labels: { fleet: 'sensors' } }, spec: {}, status: { conditions: [{ type: 'Ready', status: 'True' }] } });
    step(f);
    expect(imageOn(f, 'edge-new')).toBe(GOOD);
    f.waves.act('default', 'reader', 'resume');
    advanceBy(f, 120);
    expect(statusOf(f, 2).phase).toBe('Succeeded');
    expect(imageOn(f, 'edge-new')).toBe(NEXT);
    expect(eventsAbout(f.hub.store, 'DaemonSet', 'reader').length).toBeGreaterThan(0);
  });

  it('supersedes a running rollout when a newer template is applied', () => {
    started();
    applyReader(f, 'registry.example/reader:3', STRATEGY);
    step(f);
    expect(statusOf(f, 2).phase).toBe('Superseded');
    expect((record(f, 3).spec as RolloutSpec)).toMatchObject({ revision: 3, fromRevision: 1 });
    expect(reasons(f)).toContain('RolloutSuperseded');
    advanceBy(f, 120);
    expect(statusOf(f, 3).phase).toBe('Succeeded');
    expect(new Set(Object.values(images(f)))).toEqual(new Set(['registry.example/reader:3']));
  });

  it('leaves a non-Waves DaemonSet alone: no record, every node updated at once', () => {
    f = fleet(NODES);
    applyReader(f, GOOD, STRATEGY);
    step(f);
    const ds = f.hub.store.get('DaemonSet', 'default', 'reader')!;
    f.hub.store.update({ ...ds, spec: { ...(ds.spec as object), updateStrategy: { type: 'RollingUpdate' }, template: { ...(ds.spec as { template: object }).template, spec: { nodeSelector: { fleet: 'sensors' }, containers: [{ name: 'app', image: NEXT }] } } } });
    f.ds.reconcile(KEY);
    f.waves.reconcile(KEY);
    expect(Object.values(images(f))).toEqual(Array(NODES.length).fill(NEXT));
    expect(f.hub.store.get('Rollout', 'default', 'reader-2')).toBeUndefined();
  });
});
