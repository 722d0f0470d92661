import { describe, expect, it } from 'vitest';
import { assessDevice, toleratedFailures, waveVerdict, type DeviceAssessment, type GateContext } from '../../hub/controllers/waves/gate.js';
import { planRelease, waveUnavailable } from '../../hub/controllers/waves/release.js';
import type { WavePod } from '../../hub/controllers/waves/view.js';
import { validateManifest } from '../../shared/resources/validate.js';
import { wavesStrategy } from '../../shared/resources/waves.js';
import { planWaves } from '../../shared/rollout/plan.js';

const NOW = Date.parse('2025-01-01T12:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();

function manifest(updateStrategy: unknown): unknown {
  return {
    apiVersion: 'flotilla/v1',
    kind: 'DaemonSet',
    metadata: { name: 'reader' },
    spec: { selector: { matchLabels: { app: 'reader' } }, template: { metadata: { labels: { app: 'reader' } }, spec: { containers: [{ name: 'app', image: 'reader:1' }] } }, updateStrategy },
  };
}

function errorsOf(updateStrategy: unknown): string[] {
  return validateManifest(manifest(updateStrategy)).errors.map((e) => `${e.path}: ${e.message}`);
}

describe('validateManifest of the Waves fields', () => {
  it('accepts a full Waves strategy', () => {
    expect(errorsOf({ type: 'Waves', waves: [{ selector: 'channel=canary' }, { percent: 10, pause: '10m' }, { exponential: { start: 2, factor: 2 } }], maxUnavailable: '10%', order: 'stop-first', healthGate: { minReadySeconds: 60, maxFailedPercent: 5 }, onFailure: 'pause', offlineNodes: 'skip', maxPerMinute: 100, updateLockMaxAge: '30m' })).toEqual([]);
  });

  it('names the field of each bad value', () => {
    expect(errorsOf({ type: 'Waves', waves: [{ selector: 'channel=canary' }, { percent: 101 }] })).toEqual(['spec.updateStrategy.waves[1].percent: must be at most 100']);
    expect(errorsOf({ type: 'Waves' })).toEqual(['spec.updateStrategy.waves: is required with type Waves']);
    expect(errorsOf({ type: 'Waves', waves: [{}] })).toEqual([expect.stringContaining('spec.updateStrategy.waves[0]: a wave needs one of')]);
    expect(errorsOf({ type: 'Waves', waves: [{ percent: 10, count: 2 }] })).toEqual(['spec.updateStrategy.waves[0].count: set percent or count, not both']);
    expect(errorsOf({ type: 'Waves', waves: [{ percent: 10, pause: 'soon' }] })[0]).toMatch(/^spec\.updateStrategy\.waves\[0\]\.pause/);
    expect(errorsOf({ type: 'Waves', waves: [{ count: 1 }], healthGate: { maxFailedPercent: -1 } })).toEqual(['spec.updateStrategy.healthGate.maxFailedPercent: must be greater than or equal to 0']);
    expect(errorsOf({ type: 'Waves', waves: [{ count: 1 }], onFailure: 'panic' })[0]).toMatch(/^spec\.updateStrategy\.onFailure/);
    expect(errorsOf({ type: 'RollingUpdate', waves: [{ count: 1 }] })).toEqual(['spec.updateStrategy.waves: only with type Waves']);
    expect(errorsOf({ type: 'Waves', waves: [{ selector: 'a in (' }] })[0]).toMatch(/^spec\.updateStrategy\.waves\[0\]\.selector/);
  });
});

describe('planWaves', () => {
  const targets = Array.from({ length: 20 }, (_, i) => ({ name: `n${i}`, uid: `uid-${i}`, labels: (i < 2 ? { channel: 'canary' } : {}) as Record<string, string> }));

  it('puts every target in exactly one wave, canaries first, the same way every time', () => {
    const waves = planWaves([{ selector: 'channel=canary' }, { percent: 10 }, { count: 5 }], targets);
    expect(waves.map((w) => [w.name, w.nodes.length])).toEqual([['wave-1', 2], ['wave-2', 2], ['wave-3', 5], ['rest', 11]]);
    expect([...waves[0]!.nodes].sort()).toEqual(['n0', 'n1']);
    expect(waves.flatMap((w) => w.nodes).sort()).toEqual(targets.map((t) => t.name).sort());
    expect(planWaves([{ selector: 'channel=canary' }, { percent: 10 }, { count: 5 }], [...targets].reverse())).toEqual(waves);
  });

  it('grows exponential waves by the factor until none remain', () => {
    expect(planWaves([{ exponential: { start: 1, factor: 3 } }], targets).map((w) => w.nodes.length)).toEqual([1, 3, 9, 7]);
  });
});

const strategy = wavesStrategy({ waves: [{ percent: 100 }], maxUnavailable: 2, healthGate: { minReadySeconds: 10, progressDeadlineSeconds: 60 }, updateLockMaxAge: '1m' });
const gate: GateContext = { toHash: 'new', toImages: { app: 'reader:2' }, strategy, now: NOW, waveBase: NOW - 5_000 };

function pod(o: Partial<WavePod> = {}): WavePod {
  return { namespace: 'default', name: 'p', ownerUid: 'u', node: 'n', hash: 'new', ready: true, readySince: iso(NOW - 20_000), running: true, images: { app: 'reader:2' }, releasedAt: iso(NOW - 30_000), ...o };
}

const online = { uid: 'x', labels: {}, ready: true };
const assess = (p: WavePod | undefined, extra: Partial<Parameters<typeof assessDevice>[0]> = {}, ctx = gate) => assessDevice({ node: 'n', nodeInfo: online, pod: p, recordedFailure: false, recordedSkip: false, ...extra }, ctx);

describe('assessDevice', () => {
  it('is ready when its updated pod has been Ready for minReadySeconds', () => {
    expect(assess(pod()).state).toBe('ready');
    expect(assess(pod({ readySince: iso(NOW - 4_000) }))).toMatchObject({ state: 'updating', nextAt: NOW + 6_000 });
  });

  it('is pending before its release, and offline when its node is not Ready', () => {
    expect(assess(pod({ hash: 'old' })).state).toBe('pending');
    expect(assess(pod({ hash: 'old' }), { nodeInfo: { ...online, ready: false } }).state).toBe('offline');
    expect(assess(pod({ hash: 'old' }), { pendingReleaseAt: NOW }).released).toBe(true);
  });

  it('does not trust a status of the old spec (old images, or an older desired revision)', () => {
    expect(assess(pod({ images: { app: 'reader:1' } })).state).toBe('updating');
    expect(assess(pod(), { nodeInfo: { ...online, desiredRevision: 5, observedRevision: 4 } }).state).toBe('updating');
    expect(assess(pod(), { nodeInfo: { ...online, desiredRevision: 5, observedRevision: 5 } }).state).not.toBe('updating');
  });

  it('fails on CrashLoopBackOff at once, and on no Ready pod past the progress deadline', () => {
    expect(assess(pod({ ready: false, running: false, failure: { reason: 'CrashLoopBackOff' } })).failure?.reason).toBe('CrashLoopBackOff');
    expect(assess(pod({ ready: false, releasedAt: iso(NOW - 61_000) })).failure?.reason).toBe('ReadinessFailed');
    expect(assess(pod({ ready: false, releasedAt: iso(NOW - 59_000) })).state).toBe('updating');
  });

  it('waits on an update lock, and asks for its override after updateLockMaxAge', () => {
    const lockedSince = iso(NOW - 30_000);
    expect(assess(pod({ lockedSince }))).toMatchObject({ state: 'locked', nextAt: NOW + 30_000 });
    expect(assess(pod({ lockedSince: iso(NOW - 61_000) }))).toMatchObject({ state: 'locked', overrideLock: iso(NOW - 61_000) });
    expect(assess(pod({ lockedSince, overriddenAt: lockedSince })).state).toBe('ready');
  });
});

const device = (node: string, a: Partial<DeviceAssessment>) => ({ node, a: { state: 'pending', released: false, updated: false, podReady: false, lockedNow: false, ...a } as DeviceAssessment });

describe('waveVerdict and planRelease', () => {
  it('passes when every counted device is ready, fails past the tolerance or the deadline', () => {
    expect(waveVerdict([device('a', { state: 'ready' }), device('b', { state: 'failed' })], 1, 1, strategy, NOW, NOW).kind).toBe('passed');
    expect(waveVerdict([device('a', { state: 'ready' }), device('b', { state: 'failed' })], 1, 0, strategy, NOW, NOW)).toMatchObject({ kind: 'failed', reason: 'TooManyFailures' });
    expect(waveVerdict([device('a', { state: 'updating' })], 0, 0, strategy, NOW, NOW - 61_000)).toMatchObject({ kind: 'failed', reason: 'ProgressDeadlineExceeded' });
    expect(waveVerdict([device('a', { state: 'updating', nextAt: NOW + 1_000 })], 0, 0, strategy, NOW, NOW)).toEqual({ kind: 'open', nextAt: NOW + 1_000 });
  });

  it('tolerates maxFailed or maxFailedPercent of the released devices, whichever allows more', () => {
    const s = wavesStrategy({ waves: [{ count: 1 }], healthGate: { maxFailed: 2, maxFailedPercent: 10 } });
    expect(toleratedFailures(s, 10)).toBe(2);
    expect(toleratedFailures(s, 50)).toBe(5);
  });

  it('releases up to maxUnavailable updating devices, in order, within maxPerMinute', () => {
    expect(waveUnavailable(strategy, 10)).toBe(2);
    const devices = [device('a', { state: 'updating', released: true }), device('b', {}), device('c', {}), device('d', {})];
    expect(planRelease(devices, strategy, [], NOW).nodes).toEqual(['b']);
    const limited = { ...strategy, maxUnavailable: '100%', maxPerMinute: 2 };
    expect(planRelease(devices, limited, [NOW - 10_000], NOW)).toEqual({ nodes: ['b'], nextAt: NOW + 50_000 });
    expect(planRelease(devices, limited, [NOW - 70_000], NOW).nodes).toEqual(['b', 'c']);
  });
});
