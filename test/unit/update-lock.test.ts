import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { PodEvent } from '../../agent/reconcile/execute.js';
import { UPDATE_ORDER_ANNOTATION, planPods } from '../../agent/reconcile/plan.js';
import { podStatuses } from '../../agent/reconcile/status.js';
import { DEFERRED_LOCK_POLL_MS, UpdateLocks, lockDecision } from '../../agent/reconcile/update-lock.js';
import { updateLockBind, updateLockDir } from '../../agent/volumes/layout.js';
import { podStatusReportSchema, type DesiredPod } from '../../shared/protocol/messages.js';
import {
  UPDATE_LOCK_FILE,
  UPDATE_LOCK_MOUNT_PATH,
  UPDATE_LOCK_OVERRIDE_ANNOTATION,
  UPDATE_LOCKED_CONDITION,
} from '../../shared/protocol/update-lock.js';
import { PAUSE_IMAGE, actualState, container, desiredPod, expectSteps, infraContainer, onlyStep, planContext, removedIds, runtimeContainer } from './builders.js';

const v1 = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' })] });
const v2 = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:2' })] });
const annotated = (pod: DesiredPod, annotations: Record<string, string>): DesiredPod => ({ ...pod, annotations: { ...pod.annotations, ...annotations } });
const locked = planContext({ updateLocked: new Set([v2.uid]) });

describe('planPods: a held update lock defers the replacement of running containers', () => {
  it('leaves the old container running and pulls the new image ahead (download-then-kill)', () => {
    const old = runtimeContainer({ pod: v1, container: 'app' });
    const plan = planPods(actualState({ containers: [infraContainer({ pod: v2 }), old], images: [PAUSE_IMAGE, 'img:1'] }), [v2], locked);
    expectSteps(plan.steps, ['pull']);
    expect(onlyStep(plan.steps, 'pull').image).toBe('img:2');
    expect(plan.deferred).toEqual(new Set([`${v2.uid}/app`]));
    expect(plan.specChanged).toEqual(new Set([v2.uid]));
  });

  it('does nothing once the new image is here, until the lock goes; then replaces', () => {
    const old = runtimeContainer({ pod: v1, container: 'app' });
    const actual = actualState({ containers: [infraContainer({ pod: v2 }), old], images: [PAUSE_IMAGE, 'img:1', 'img:2'] });
    expect(planPods(actual, [v2], locked).steps).toEqual([]);
    const free = planPods(actual, [v2], planContext());
    expectSteps(free.steps, ['remove', 'createContainer']);
    expect(removedIds(free.steps)).toEqual([old.id]);
    expect(free.deferred.size).toBe(0);
    expect(free.specChanged).toEqual(new Set([v2.uid]));
  });

  it('neither kills nor pulls under kill-then-download', () => {
    const pod = annotated(v2, { [UPDATE_ORDER_ANNOTATION]: 'kill-then-download' });
    const old = runtimeContainer({ pod: v1, container: 'app' });
    const plan = planPods(actualState({ containers: [infraContainer({ pod }), old], images: [PAUSE_IMAGE, 'img:1'] }), [pod], locked);
    expect(plan.steps).toEqual([]);
    expect(plan.deferred).toEqual(new Set([`${v2.uid}/app`]));
  });

  it('defers a change of command as well as of image', () => {
    const changed = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1', command: ['sleep', '9'] })] });
    const old = runtimeContainer({ pod: v1, container: 'app' });
    const plan = planPods(actualState({ containers: [infraContainer({ pod: changed }), old], images: [PAUSE_IMAGE, 'img:1'] }), [changed], locked);
    expect(plan.steps).toEqual([]);
    expect(plan.deferred).toEqual(new Set([`${changed.uid}/app`]));
  });

  it('keeps a running container that the new spec drops', () => {
    const two = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:2' }), container({ name: 'side', image: 'img:2' })] });
    const side = runtimeContainer({ pod: two, container: 'side' });
    const app = runtimeContainer({ pod: v2, container: 'app' });
    const actual = actualState({ containers: [infraContainer({ pod: v2 }), app, side], images: [PAUSE_IMAGE, 'img:2'] });
    const plan = planPods(actual, [v2], locked);
    expect(plan.steps).toEqual([]);
    expect(plan.deferred).toEqual(new Set([`${v2.uid}/side`]));
    expect(removedIds(planPods(actual, [v2], planContext()).steps)).toEqual([side.id]);
  });

  it('keeps a running sandbox whose spec changed, and checks the apps against it', () => {
    const withPort = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:2', ports: [{ containerPort: 80, hostPort: 8080 }] })] });
    const infra = infraContainer({ pod: v2 });
    const app = runtimeContainer({ pod: v2, container: 'app' });
    const actual = actualState({ containers: [infra, app], images: [PAUSE_IMAGE, 'img:2'] });
    const plan = planPods(actual, [withPort], planContext({ updateLocked: new Set([withPort.uid]) }));
    expect(plan.steps).toEqual([]);
    expect(plan.deferred).toEqual(new Set([`${withPort.uid}/`, `${withPort.uid}/app`]));
    // Without the lock, the sandbox and its app are made again.
    expect(removedIds(planPods(actual, [withPort], planContext()).steps)).toEqual([infra.id, app.id]);
  });
});

describe('planPods: what a lock never blocks', () => {
  it('a first start', () => {
    const first = planPods(actualState({ images: [PAUSE_IMAGE, 'img:2'] }), [v2], locked);
    expectSteps(first.steps, ['createInfra']);
    const second = planPods(actualState({ containers: [infraContainer({ pod: v2 })], images: [PAUSE_IMAGE, 'img:2'] }), [v2], locked);
    expectSteps(second.steps, ['createContainer']);
    expect(second.deferred.size + second.specChanged.size).toBe(0);
  });

  it('the removal of a pod that is no longer desired', () => {
    const infra = infraContainer({ pod: v2 });
    const app = runtimeContainer({ pod: v2, container: 'app' });
    const plan = planPods(actualState({ containers: [infra, app], images: [PAUSE_IMAGE, 'img:2'] }), [], locked);
    expect(removedIds(plan.steps).sort()).toEqual([infra.id, app.id].sort());
  });

  it('the restart of a crashed container, of the same spec or of the new one', () => {
    const crashed = runtimeContainer({ pod: v2, container: 'app', state: 'exited', exitCode: 1 });
    const restart = planPods(actualState({ containers: [infraContainer({ pod: v2 }), crashed], images: [PAUSE_IMAGE, 'img:2'] }), [v2], locked);
    expect(onlyStep(restart.steps, 'createContainer').restartCount).toBe(1);
    const crashedOld = runtimeContainer({ pod: v1, container: 'app', state: 'exited', exitCode: 1 });
    const replaced = planPods(actualState({ containers: [infraContainer({ pod: v2 }), crashedOld], images: [PAUSE_IMAGE, 'img:1', 'img:2'] }), [v2], locked);
    expectSteps(replaced.steps, ['remove', 'createContainer']);
    expect(replaced.deferred.size).toBe(0);
  });

  it('a sandbox that died', () => {
    const dead = infraContainer({ pod: v1, state: 'exited' });
    const app = runtimeContainer({ pod: v1, container: 'app' });
    const plan = planPods(actualState({ containers: [dead, app], images: [PAUSE_IMAGE, 'img:2'] }), [v2], locked);
    expect(removedIds(plan.steps).sort()).toEqual([dead.id, app.id].sort());
    expect(plan.steps.some((s) => s.action === 'createInfra')).toBe(true);
  });
});

describe('lockDecision: the override annotation', () => {
  const at = Date.parse('2025-03-01T10:00:00.250Z');
  it('is free without a lock file, held with one', () => {
    expect(lockDecision(v2, undefined)).toEqual({ state: 'free' });
    expect(lockDecision(v2, at)).toEqual({ state: 'held', lockedAt: at });
  });

  it('lifts a lock written at or before the override time, and not a newer one', () => {
    expect(lockDecision(annotated(v2, { [UPDATE_LOCK_OVERRIDE_ANNOTATION]: '2025-03-01T10:00:00.250Z' }), at).state).toBe('overridden');
    expect(lockDecision(annotated(v2, { [UPDATE_LOCK_OVERRIDE_ANNOTATION]: '2025-03-01T11:00:01+01:00' }), at).state).toBe('overridden');
    expect(lockDecision(annotated(v2, { [UPDATE_LOCK_OVERRIDE_ANNOTATION]: '2025-03-01T10:00:00.249Z' }), at).state).toBe('held');
  });

  it('compares a sub-millisecond mtime as the millisecond the condition shows', () => {
    expect(lockDecision(annotated(v2, { [UPDATE_LOCK_OVERRIDE_ANNOTATION]: '2025-03-01T10:00:00.250Z' }), at + 0.987).state).toBe('overridden');
  });

  it('keeps the lock when the override is not an ISO 8601 time', () => {
    for (const bad of ['yesterday', '2025-03-01', 'Sat Mar 01 2025 10:00:00', '2025-03-01T10:00:00']) {
      expect(lockDecision(annotated(v2, { [UPDATE_LOCK_OVERRIDE_ANNOTATION]: bad }), at)).toEqual({ state: 'held', lockedAt: at, invalidOverride: bad });
    }
  });
});

describe('UpdateLocks: the lock folder, the condition and the events', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  function setup() {
    dir = mkdtempSync(join(tmpdir(), 'update-lock-'));
    const events: PodEvent[] = [];
    const locks = new UpdateLocks(dir, pino({ level: 'silent' }), (e) => events.push(e));
    const lockFile = join(updateLockDir(dir, v2.uid), UPDATE_LOCK_FILE);
    const write = (iso: string) => {
      writeFileSync(lockFile, '');
      utimesSync(lockFile, new Date(iso), new Date(iso));
    };
    return { locks, events, lockFile, write };
  }

  it('makes every pod\'s folder, writable by any user, and finds no lock in it', () => {
    const { locks } = setup();
    expect(locks.scan([v2])).toEqual(new Set());
    expect(statSync(updateLockDir(dir!, v2.uid)).mode & 0o777).toBe(0o777);
  });

  it('reports UpdateLocked with the lock\'s mtime while it defers, once as an event; nothing once it is gone', () => {
    const { locks, events, lockFile, write } = setup();
    locks.scan([v2]);
    write('2025-03-01T10:00:00.250Z');
    for (let pass = 0; pass < 2; pass++) {
      expect(locks.scan([v2])).toEqual(new Set([v2.uid]));
      locks.observe({ specChanged: new Set([v2.uid]), deferred: new Set([`${v2.uid}/app`]) }, [v2]);
      locks.finish([v2]);
    }
    expect(locks.view.conditions.get(v2.uid)).toEqual([
      { type: UPDATE_LOCKED_CONDITION, status: 'True', reason: 'UpdateLockHeld', message: `update deferred by ${UPDATE_LOCK_MOUNT_PATH}/${UPDATE_LOCK_FILE}`, lastTransitionTime: '2025-03-01T10:00:00.250Z' },
    ]);
    expect(events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Normal UpdateLockHeld']);
    rmSync(lockFile);
    expect(locks.scan([v2])).toEqual(new Set());
    locks.observe({ specChanged: new Set([v2.uid]), deferred: new Set() }, [v2]);
    locks.finish([v2]);
    expect(locks.view.conditions.size).toBe(0);
    expect(events).toHaveLength(1);
  });

  it('shows no condition for a lock that defers nothing', () => {
    const { locks, write } = setup();
    locks.scan([v2]);
    write('2025-03-01T10:00:00Z');
    expect(locks.scan([v2])).toEqual(new Set([v2.uid]));
    locks.observe({ specChanged: new Set(), deferred: new Set() }, [v2]);
    locks.finish([v2]);
    expect(locks.view.conditions.size).toBe(0);
  });

  it('records UpdateLockOverridden once when an override lets the update through, and holds a newer lock again', () => {
    const { locks, events, write } = setup();
    const pod = annotated(v2, { [UPDATE_LOCK_OVERRIDE_ANNOTATION]: '2025-03-01T10:00:00.250Z' });
    locks.scan([pod]);
    write('2025-03-01T10:00:00.250Z');
    for (let pass = 0; pass < 2; pass++) {
      expect(locks.scan([pod])).toEqual(new Set());
      locks.observe({ specChanged: new Set([pod.uid]), deferred: new Set() }, [pod]);
      locks.finish([pod]);
    }
    expect(events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Warning UpdateLockOverridden']);
    expect(events[0]!.message).toContain('2025-03-01T10:00:00.250Z');
    expect(locks.view.conditions.size).toBe(0);
    write('2025-03-01T10:05:00Z');
    expect(locks.scan([pod])).toEqual(new Set([pod.uid]));
  });

  it('looks at a deferring lock between reconciles, and asks for one when it goes', () => {
    vi.useFakeTimers();
    try {
      dir = mkdtempSync(join(tmpdir(), 'update-lock-'));
      let asked = 0;
      const locks = new UpdateLocks(dir, pino({ level: 'silent' }), () => {}, () => asked++);
      locks.scan([v2]);
      const lockFile = join(updateLockDir(dir, v2.uid), UPDATE_LOCK_FILE);
      writeFileSync(lockFile, '');
      locks.scan([v2]);
      locks.observe({ specChanged: new Set([v2.uid]), deferred: new Set([`${v2.uid}/app`]) }, [v2]);
      locks.finish([v2]);
      vi.advanceTimersByTime(DEFERRED_LOCK_POLL_MS * 3);
      expect(asked).toBe(0);
      rmSync(lockFile);
      vi.advanceTimersByTime(DEFERRED_LOCK_POLL_MS);
      expect(asked).toBe(1);
      // Once: the reconcile it asked for looks again.
      vi.advanceTimersByTime(DEFERRED_LOCK_POLL_MS * 3);
      expect(asked).toBe(1);
      locks.stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it('warns once about an override that is not a time, and keeps the lock', () => {
    const { locks, events, write } = setup();
    const pod = annotated(v2, { [UPDATE_LOCK_OVERRIDE_ANNOTATION]: 'now please' });
    locks.scan([pod]);
    write('2025-03-01T10:00:00Z');
    for (let pass = 0; pass < 2; pass++) {
      expect(locks.scan([pod])).toEqual(new Set([pod.uid]));
      locks.observe({ specChanged: new Set([pod.uid]), deferred: new Set([`${pod.uid}/app`]) }, [pod]);
      locks.finish([pod]);
    }
    expect(events.map((e) => e.reason)).toEqual(['UpdateLockHeld', 'InvalidUpdateLockOverride']);
    expect(events[1]!.message).toContain(UPDATE_LOCK_OVERRIDE_ANNOTATION);
  });
});

describe('the pod status and the bind of a locked pod', () => {
  it('reports the condition, and the old container serving while it waits for the lock', () => {
    const condition = { type: UPDATE_LOCKED_CONDITION, status: 'True' as const, reason: 'UpdateLockHeld', message: 'update deferred by /run/flotilla/update.lock', lastTransitionTime: '2025-03-01T10:00:00.250Z' };
    const old = runtimeContainer({ pod: v1, container: 'app', startedAt: '2025-01-01T11:00:00Z' });
    const [status] = podStatuses([v2], [infraContainer({ pod: v2, startedAt: '2025-01-01T11:00:00Z' }), old], new Map(), undefined, {
      deferred: new Set([`${v2.uid}/app`]),
      conditions: new Map([[v2.uid, [condition]]]),
    });
    expect(podStatusReportSchema.parse(status).conditions).toEqual([condition]);
    expect(status!.phase).toBe('Running');
    expect(status!.containerStatuses[0]).toMatchObject({ ready: true, state: { waiting: { reason: 'UpdateLocked' } } });
  });

  it('binds the lock folder by its absolute path at /run/flotilla, unless the container mounts something there', () => {
    const bind = updateLockBind('relative-state', v2, v2.spec.containers[0]!);
    const [source, target] = bind!.split(':');
    expect(isAbsolute(source!)).toBe(true);
    expect(source!.endsWith(join('relative-state', 'pods', v2.uid, 'flotilla'))).toBe(true);
    expect(target).toBe(UPDATE_LOCK_MOUNT_PATH);
    const own = container({ name: 'app', image: 'img:2', volumeMounts: [{ name: 'x', mountPath: '/run/flotilla/' }] });
    expect(updateLockBind('/state', v2, own)).toBeUndefined();
  });
});
