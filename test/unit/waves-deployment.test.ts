import { afterEach, describe, expect, it } from 'vitest';
import type { RolloutSpec } from '../../shared/resources/rollout.js';
import { validateManifest } from '../../shared/resources/validate.js';
import { planPodWaves } from '../../shared/rollout/plan-pods.js';
import { previewText } from '../../hub/cli/rollout-preview.js';
import type { RolloutRecord } from '../../hub/cli/rollout-waves-render.js';
import { statusView } from '../../hub/cli/rollout-waves-status.js';
import { advanceBy, applyWeb, BAD, build, census, close, reasons, record, rig, sizes, statusOf, step, V1, V2, type Rig } from './waves-deployment-fixture.js';

const STRATEGY = { waves: [{ count: 1 }, { percent: 100 }], maxUnavailable: 2, healthGate: { minReadySeconds: 10, progressDeadlineSeconds: 120 } };

let r: Rig;
afterEach(() => {
  // The pure tests build no rig.
  if (r) close(r);
  r = undefined as unknown as Rig;
});

/** Four pods of V1, then `next` applied. */
function started(strategy: Record<string, unknown> = STRATEGY, next = V2): Rig {
  r = rig();
  applyWeb(r, V1, strategy);
  step(r);
  advanceBy(r, 5);
  applyWeb(r, next, strategy);
  step(r);
  return r;
}

describe('planPodWaves', () => {
  it('counts pods: count, percent of the rest rounded up, exponential, and a rest wave', () => {
    expect(planPodWaves([{ count: 1 }, { percent: 100 }], 4).map((w) => [w.name, w.replicas])).toEqual([['wave-1', 1], ['wave-2', 3]]);
    expect(planPodWaves([{ percent: 10 }, { count: 2, pause: '1m' }], 10).map((w) => [w.name, w.replicas, w.pause])).toEqual([['wave-1', 1, undefined], ['wave-2', 2, 60], ['rest', 7, undefined]]);
    expect(planPodWaves([{ exponential: { start: 1, factor: 2 } }], 10).map((w) => w.replicas)).toEqual([1, 2, 4, 3]);
  });
});

describe('Deployment strategy type Waves: validation', () => {
  const manifest = (strategy: Record<string, unknown>) => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web' },
    spec: { replicas: 4, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: V1 }] } }, strategy },
  });
  it('accepts count, percent and exponential waves', () => {
    expect(validateManifest(manifest({ type: 'Waves', ...STRATEGY })).errors).toEqual([]);
  });
  it('refuses selector waves, naming the field', () => {
    expect(validateManifest(manifest({ type: 'Waves', waves: [{ selector: 'channel=canary' }] })).errors).toEqual([
      { path: 'spec.strategy.waves[0].selector', message: 'selector waves place pods on matching devices, which only a DaemonSet does; use count or percent' },
    ]);
  });
  it('refuses waves fields under another type, and a Waves strategy without waves', () => {
    expect(validateManifest(manifest({ type: 'RollingUpdate', waves: [{ count: 1 }] })).errors.map((e) => e.path)).toEqual(['spec.strategy.waves']);
    expect(validateManifest(manifest({ type: 'Waves' })).errors.map((e) => e.path)).toEqual(['spec.strategy.waves']);
  });
});

describe('Waves rollout of a Deployment', () => {
  it('records the first template as revision 1, Succeeded, every pod at once', () => {
    r = rig();
    applyWeb(r, V1, STRATEGY);
    step(r);
    expect(statusOf(r, 1).phase).toBe('Succeeded');
    expect(census(r)).toEqual({ [V1]: 4 });
    expect((record(r, 1).spec as RolloutSpec).target.kind).toBe('Deployment');
  });

  it('moves pods wave by wave: one new pod first, the others only after its gate, within maxUnavailable', () => {
    started();
    const spec = record(r, 2).spec as RolloutSpec;
    expect(spec).toMatchObject({ revision: 2, fromRevision: 1 });
    expect(spec.waves.map((w) => [w.name, w.replicas])).toEqual([['wave-1', 1], ['wave-2', 3]]);
    expect(reasons(r)).toEqual(expect.arrayContaining(['RolloutStarted', 'WaveStarted']));
    // Wave 1: one new pod; the old ReplicaSet gives one up only once it is available (start-first).
    expect(census(r)[V2]).toBe(1);
    let maxNew = 0;
    let maxPods = 0;
    advanceBy(r, 5, 5, () => {
      maxNew = Math.max(maxNew, census(r)[V2] ?? 0);
    });
    expect(maxNew).toBe(1);
    expect(sizes(r)).toEqual({ [V1]: 3, [V2]: 1 });
    // The gate (Ready for 10 s) passes; wave 2 releases at most maxUnavailable (2) pods at once.
    advanceBy(r, 5, 5, () => {
      maxNew = Math.max(maxNew, census(r)[V2] ?? 0);
    });
    expect(statusOf(r, 2).waves[0]!.phase).toBe('Passed');
    expect(census(r)[V2]).toBe(3);
    advanceBy(r, 60, 5, () => {
      maxPods = Math.max(maxPods, Object.values(census(r)).reduce((a, b) => a + b, 0));
    });
    expect(statusOf(r, 2).phase).toBe('Succeeded');
    expect(census(r)).toEqual({ [V2]: 4 });
    expect(maxPods).toBeLessThanOrEqual(6);
    expect(statusOf(r, 2).waves.map((w) => [w.phase, w.total, w.released, w.ready])).toEqual([['Passed', 1, 1, 1], ['Passed', 3, 3, 3]]);
    expect(reasons(r)).toEqual(expect.arrayContaining(['WaveGatePassed', 'RolloutSucceeded']));
  });

  it('fails the first gate on CrashLoopBackOff, rolls back by itself, and stays pinned at the old template', () => {
    r = rig();
    r.broken.add(BAD);
    applyWeb(r, V1, STRATEGY);
    step(r);
    applyWeb(r, BAD, STRATEGY);
    advanceBy(r, 60);
    const status = statusOf(r, 2);
    expect(status.phase).toBe('RolledBack');
    expect(status.failedNodes).toHaveLength(1);
    expect(status.failedNodes[0]).toMatchObject({ wave: 'wave-1', reason: 'CrashLoopBackOff' });
    expect(status.failedNodes[0]!.node).toBe([...r.seen.get(BAD)!][0]);
    // Only the first wave's one pod was ever created from the bad template.
    expect(r.seen.get(BAD)!.size).toBe(1);
    expect(census(r)).toEqual({ [V1]: 4 });
    expect(sizes(r)).toEqual({ [V1]: 4, [BAD]: 0 });
    expect(reasons(r)).toEqual(expect.arrayContaining(['PodUpdateFailed', 'WaveGateFailed', 'RollingBack', 'RolloutRolledBack']));
    advanceBy(r, 60);
    expect(sizes(r)).toEqual({ [V1]: 4, [BAD]: 0 });
    // Applying the old template again (what `rollout undo` does) is a revision with nothing to roll.
    applyWeb(r, V1, STRATEGY);
    step(r);
    expect(statusOf(r, 3).phase).toBe('Succeeded');
    expect(census(r)).toEqual({ [V1]: 4 });
  });

  it('under onFailure: pause, a failed gate stops the rollout where it is', () => {
    r = rig();
    r.broken.add(BAD);
    const strategy = { ...STRATEGY, onFailure: 'pause' };
    applyWeb(r, V1, strategy);
    step(r);
    applyWeb(r, BAD, strategy);
    advanceBy(r, 30);
    expect(statusOf(r, 2).phase).toBe('Paused');
    expect(census(r)).toEqual({ [V1]: 4, [BAD]: 1 });
    expect(r.waves.act('default', 'web', 'abort').ok).toBe(true);
    expect(statusOf(r, 2).phase).toBe('Aborted');
    advanceBy(r, 30);
    expect(r.seen.get(BAD)!.size).toBe(1);
  });

  it('pauses after a wave until resumed, and rollout pause holds releases mid-wave', () => {
    started({ ...STRATEGY, waves: [{ count: 1, pause: {} }, { percent: 100 }] });
    advanceBy(r, 20);
    expect(statusOf(r, 2).phase).toBe('Paused');
    expect(reasons(r)).toContain('RolloutPaused');
    advanceBy(r, 60);
    expect(census(r)[V2]).toBe(1);
    const resumed = r.waves.act('default', 'web', 'resume');
    expect(resumed.ok).toBe(true);
    step(r);
    expect(statusOf(r, 2).waves[1]!.phase).toBe('Progressing');
    expect(census(r)[V2]).toBe(3);
    expect(r.waves.act('default', 'web', 'pause').ok).toBe(true);
    advanceBy(r, 60);
    expect(statusOf(r, 2).waves[1]!.released).toBe(2);
    expect(r.waves.act('default', 'web', 'resume').ok).toBe(true);
    advanceBy(r, 60);
    expect(statusOf(r, 2).phase).toBe('Succeeded');
    expect(census(r)).toEqual({ [V2]: 4 });
    expect(r.waves.act('default', 'web', 'resume')).toMatchObject({ ok: false, status: 409 });
  });

  it('a timed pause after a wave ends by itself', () => {
    started({ ...STRATEGY, waves: [{ count: 1, pause: '30s' }, { percent: 100 }] });
    advanceBy(r, 15);
    expect(statusOf(r, 2)).toMatchObject({ phase: 'Paused', pauseUntil: expect.any(String) });
    expect(census(r)[V2]).toBe(1);
    advanceBy(r, 30);
    expect(statusOf(r, 2).phase).not.toBe('Paused');
    expect(census(r)[V2]).toBeGreaterThan(1);
    expect(reasons(r)).toEqual(expect.arrayContaining(['RolloutPaused', 'RolloutResumed']));
  });

  it('a wave open past its progress deadline fails (pods that never become Ready)', () => {
    r = rig();
    r.silent.add('registry.example/web:slow');
    const strategy = { ...STRATEGY, healthGate: { minReadySeconds: 10, progressDeadlineSeconds: 30 } };
    applyWeb(r, V1, strategy);
    step(r);
    applyWeb(r, 'registry.example/web:slow', strategy);
    advanceBy(r, 25);
    expect(statusOf(r, 2).phase).toBe('Progressing');
    advanceBy(r, 20);
    const status = statusOf(r, 2);
    expect(status.phase).toBe('RolledBack');
    expect(status.failedNodes.map((f) => f.reason)).toEqual(['ProgressDeadlineExceeded']);
    expect(census(r)).toEqual({ [V1]: 4 });
  });

  it('a hub restarted mid-wave goes on from the record: no pod released twice, no gate skipped', () => {
    started();
    advanceBy(r, 15);
    expect(statusOf(r, 2).waves[0]!.phase).toBe('Passed');
    const before = statusOf(r, 2);
    r.waves.stop();
    r.deployments.stop();
    r.replicaSets.stop();
    build(r);
    step(r);
    // The new controllers read where the rollout stands from the record and the ReplicaSets.
    expect(statusOf(r, 2).waves[1]!.released).toBe(before.waves[1]!.released);
    expect(statusOf(r, 2).waves[0]!.phase).toBe('Passed');
    advanceBy(r, 60);
    expect(statusOf(r, 2).phase).toBe('Succeeded');
    expect(r.seen.get(V2)!.size).toBe(4);
    expect(census(r)).toEqual({ [V2]: 4 });
  });

  it('a newer template mid-rollout supersedes the running one', () => {
    started();
    advanceBy(r, 5);
    applyWeb(r, 'registry.example/web:3', STRATEGY);
    step(r);
    expect(statusOf(r, 2).phase).toBe('Superseded');
    expect(statusOf(r, 3).phase).toBe('Progressing');
    expect((record(r, 3).spec as RolloutSpec).fromRevision).toBe(1);
    advanceBy(r, 120);
    expect(statusOf(r, 3).phase).toBe('Succeeded');
    expect(census(r)).toEqual({ 'registry.example/web:3': 4 });
    expect(reasons(r)).toContain('RolloutSuperseded');
  });

  it('a Deployment deleted and made again under the same name starts its records afresh', () => {
    started();
    r.hub.store.delete('Deployment', 'default', 'web');
    applyWeb(r, V2, STRATEGY);
    step(r);
    expect(statusOf(r, 1).phase).toBe('Succeeded');
    expect((record(r, 1).spec as RolloutSpec).toTemplate.spec.containers[0]!.image).toBe(V2);
    expect(r.hub.store.get('Rollout', 'default', 'deployment.web.2')).toBeUndefined();
  });

  it('maxPerMinute limits the pods released per minute', () => {
    started({ ...STRATEGY, waves: [{ percent: 100 }], maxUnavailable: 4, maxPerMinute: 2 });
    advanceBy(r, 30);
    expect(statusOf(r, 2).waves[0]!.released).toBe(2);
    advanceBy(r, 60);
    expect(statusOf(r, 2).waves[0]!.released).toBe(4);
  });
});

describe('the command line on a Waves Deployment', () => {
  it('names the deployment and its pods in status and preview', () => {
    started();
    advanceBy(r, 60);
    const view = statusView('web', record(r, 2) as unknown as RolloutRecord, Date.now());
    expect(view.done).toBe('deployment "web" successfully rolled out (revision 2)');
    expect(view.plain[0]!.text).toMatch(/^deployment\/web {2}revision 1 → 2 {2}Succeeded/);
    expect(previewText('web', { revision: 3, waves: planPodWaves(STRATEGY.waves, 4) }, 'deployment')).toMatch(/^deployment\/web: revision 3 would roll out to 4 pods in 2 waves.*\n.*WAVE +PODS +PAUSE AFTER\n +wave-1 +1 +-\n +wave-2 +3 +-$/);
  });
});
