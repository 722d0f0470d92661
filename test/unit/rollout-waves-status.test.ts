import { afterEach, describe, expect, it } from 'vitest';
import { CliError } from '../../hub/cli/errors.js';
import { rolloutCommand } from '../../hub/cli/rollout.js';
import { chooseRecord } from '../../hub/cli/rollout-waves.js';
import { headerLine, liveBlock, plainLines, progressBar } from '../../hub/cli/rollout-waves-render.js';
import { LiveBlock, PlainPrinter, statusView } from '../../hub/cli/rollout-waves-status.js';
import type { RolloutPhase } from '../../shared/resources/rollout.js';
import { daemonSet, DS_PATH, fakeHub, NOW, record, ROLLOUTS_PATH, wave, type Routes } from './rollout-waves-builders.js';

const ESC = '\x1b';

/** Revision 3 (busybox 2 after 1) in its second wave: the canary passed, 3 of 10 updated. */
function midRollout(phase: RolloutPhase = 'Progressing', extra: Parameters<typeof record>[4] = {}) {
  return record(3, { from: 'busybox:1', to: 'busybox:2' }, phase, [wave('canary', 'Passed', { total: 1, released: 1, updated: 1, ready: 1 }), wave('early', phase === 'Paused' ? 'Paused' : 'Progressing', { total: 10, released: 4, updated: 3, ready: 2, waiting: 7 }), wave('fleet', 'Pending', { total: 29, waiting: 29 })], extra);
}

describe('rollout status display', () => {
  it('draws a bar in proportion to the updated devices', () => {
    expect(progressBar(0, 10, 10)).toBe('░░░░░░░░░░');
    expect(progressBar(3, 10, 10)).toBe('███░░░░░░░');
    expect(progressBar(10, 10, 10)).toBe('██████████');
    expect(progressBar(0, 0, 4)).toBe('████');
  });

  it('on a terminal shows a header, then a line per wave with its bar, counts and phase', () => {
    const lines = liveBlock('sensor', midRollout(), NOW);
    expect(lines[0]).toBe('daemonset/sensor  revision 2 → 3  Progressing  wave 2/3');
    expect(lines).toHaveLength(4);
    expect(lines[1]).toMatch(/^ {2}canary +█{20} +1\/1 +ready 1 +failed 0 +waiting 0 +Passed$/);
    expect(lines[2]).toMatch(/^ {2}early +█{6}░{14} +3\/10 +ready 2 +failed 0 +waiting 7 +Progressing$/);
    expect(lines[3]).toMatch(/^ {2}fleet +░{20} +0\/29 +ready 0 +failed 0 +waiting 29 +Pending$/);
  });

  it('says until when a timed pause lasts, and that an open pause waits for resume', () => {
    const timed = midRollout('Paused', { pauseUntil: '2025-01-01T12:38:00Z', message: 'after wave canary' });
    expect(headerLine('sensor', timed, NOW)).toBe('daemonset/sensor  revision 2 → 3  Paused  wave 2/3  until 2025-01-01T12:38:00Z (8m left): after wave canary');
    expect(headerLine('sensor', timed)).toBe('daemonset/sensor  revision 2 → 3  Paused  wave 2/3  until 2025-01-01T12:38:00Z: after wave canary');
    expect(headerLine('sensor', midRollout('Paused'), NOW)).toContain('Paused  wave 2/3  until resumed');
  });

  it('lists the first failed devices with their reasons under the waves', () => {
    const failedNodes = Array.from({ length: 7 }, (_, i) => ({ node: `pi-${i}`, wave: 'early', reason: 'CrashLoopBackOff', message: 'exit 1', at: '2025-01-01T12:20:00Z' }));
    const lines = liveBlock('sensor', midRollout('RollingBack', { failedNodes }), NOW);
    expect(lines).toContain('    pi-0 (wave early): CrashLoopBackOff: exit 1');
    expect(lines.filter((l) => l.includes('CrashLoopBackOff'))).toHaveLength(5);
    expect(lines.at(-1)).toBe('    … and 2 more (flotilla rollout history daemonset/sensor --revision 3)');
  });

  it('redraws the block in place on a terminal, cutting lines to its width', () => {
    const written: string[] = [];
    const block = new LiveBlock((t) => written.push(t), () => 30);
    block.show([], ['header', 'a'.repeat(40), 'b']);
    block.show([], ['header 2', 'c']);
    block.show([], ['header 2', 'c']);
    expect(written).toHaveLength(2);
    expect(written[0]).toBe(`header\n${'a'.repeat(28)}…\nb`);
    // Up over the three lines drawn, clear to the end of the screen, draw again.
    expect(written[1]).toBe(`${ESC}[3A${ESC}[Jheader 2\nc`);
  });

  it('elsewhere prints plain lines, each one only when it changes, without escape codes', () => {
    const written: string[] = [];
    const printer = new PlainPrinter((t) => written.push(t));
    printer.show(plainLines('sensor', midRollout()));
    expect(written).toEqual([
      'daemonset/sensor  revision 2 → 3  Progressing  wave 2/3',
      'daemonset/sensor revision 3 wave 1/3 canary: 1/1 updated, ready 1, failed 0, waiting 0: Passed',
      'daemonset/sensor revision 3 wave 2/3 early: 3/10 updated, ready 2, failed 0, waiting 7: Progressing',
      'daemonset/sensor revision 3 wave 3/3 fleet: 0/29 updated, ready 0, failed 0, waiting 29: Pending',
    ]);
    const next = midRollout();
    next.status!.waves[1] = wave('early', 'Progressing', { total: 10, updated: 5, ready: 5, waiting: 5 });
    next.status!.failedNodes = [{ node: 'pi-9', wave: 'early', reason: 'ImagePullBackOff', at: '2025-01-01T12:20:00Z' }];
    written.length = 0;
    printer.show(plainLines('sensor', next));
    expect(written).toEqual(['daemonset/sensor revision 3 wave 2/3 early: 5/10 updated, ready 5, failed 0, waiting 5: Progressing', 'daemonset/sensor revision 3: device pi-9 (wave early): ImagePullBackOff']);
  });
});

describe('rollout status outcome', () => {
  it.each(['Progressing', 'Paused', 'RollingBack', 'Superseded'] as const)('%s: keeps following', (phase) => {
    const view = statusView('sensor', midRollout(phase), NOW);
    expect(view.done).toBeUndefined();
    expect(view.error).toBeUndefined();
  });

  it('Succeeded ends with success', () => {
    expect(statusView('sensor', record(3, { from: 'busybox:1', to: 'busybox:2' }, 'Succeeded'), NOW).done).toBe('daemon set "sensor" successfully rolled out (revision 3)');
  });

  it('RolledBack fails with the message and the failed devices', () => {
    const failedNodes = [{ node: 'pi-1', wave: 'canary', reason: 'CrashLoopBackOff', message: 'exited with 1', at: '2025-01-01T12:20:00Z' }];
    const r = midRollout('RolledBack', { message: 'rolled back: every device is back on revision 2', failedNodes });
    r.status!.waves[1]!.phase = 'Failed';
    const view = statusView('sensor', r, NOW);
    expect(view.error).toBeInstanceOf(CliError);
    expect(view.error!.exitCode).toBe(1);
    expect(view.error!.message).toBe('the rollout of daemon set "sensor" to revision 3 failed the health gate of wave early and was rolled back to revision 2');
    expect(view.error!.details).toEqual(['pi-1 (wave canary): CrashLoopBackOff: exited with 1']);
  });

  it('Aborted fails, saying where it stopped', () => {
    expect(statusView('sensor', midRollout('Aborted'), NOW).error?.message).toBe('the rollout of daemon set "sensor" to revision 3 was aborted at wave 2/3');
  });

  it('a pause after a failed gate (onFailure: pause) fails; a planned pause does not', () => {
    const r = midRollout('Paused', { message: 'wave early failed its health gate' });
    r.status!.waves[1]!.phase = 'Failed';
    expect(statusView('sensor', r, NOW).error?.message).toBe("the rollout of daemon set \"sensor\" to revision 3 failed the health gate of wave early and is paused (onFailure: pause); go on with 'flotilla rollout resume daemonset/sensor', or go back with 'flotilla rollout undo daemonset/sensor'");
    expect(statusView('sensor', midRollout('Paused', { pauseUntil: '2025-01-01T12:38:00Z' }), NOW).error).toBeUndefined();
  });

  it('waits for the hub to observe a new template, and for its rollout to start', () => {
    const records = [record(1, { to: 'busybox:1' }, 'Succeeded')];
    expect(chooseRecord(daemonSet('busybox:2', { generation: 2, observedGeneration: 1 }), records).waiting).toBe('Waiting for daemon set spec update to be observed...');
    expect(chooseRecord(daemonSet('busybox:2', { generation: 2 }), records).waiting).toBe('Waiting for the rollout of daemon set "sensor" to start...');
    expect(chooseRecord(daemonSet('busybox:1'), records).record?.metadata.name).toBe('sensor-1');
    expect(chooseRecord(daemonSet('busybox:1'), []).fallback).toBe(true);
  });
});

describe('rollout status daemonset/NAME against the API', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  /** The hub answers the DaemonSet and its records; each GET of a record moves it to the next of `phases`. */
  async function follow(phases: RolloutPhase[], tty: boolean): Promise<{ lines: string[]; error?: unknown }> {
    let reads = 0;
    const current = () => midRollout(phases[Math.min(reads, phases.length - 1)]);
    const routes: Routes = {
      [`GET ${DS_PATH}`]: [200, daemonSet('busybox:2', { generation: 3 })],
      [`GET ${ROLLOUTS_PATH}`]: () => [200, { items: [current(), record(2, { from: 'busybox:0', to: 'busybox:1' }, 'Succeeded')] }],
      [`GET ${ROLLOUTS_PATH}/sensor-3`]: () => (reads++, [200, current()]),
    };
    const hub = await fakeHub(routes);
    close = hub.close;
    const lines: string[] = [];
    try {
      await rolloutCommand('status', 'daemonset/sensor', undefined, { server: hub.server, token: 't', tty, pollMs: 5 }, (t) => lines.push(t));
      return { lines };
    } catch (error) {
      return { lines, error };
    }
  }

  it('follows the newest record to success, in plain lines when not on a terminal', async () => {
    const { lines, error } = await follow(['Progressing', 'Paused', 'Progressing', 'Succeeded'], false);
    expect(error).toBeUndefined();
    expect(lines.join('\n')).not.toContain(ESC);
    expect(lines[0]).toBe('daemonset/sensor  revision 2 → 3  Progressing  wave 2/3');
    expect(lines).toContain('daemonset/sensor  revision 2 → 3  Paused  wave 2/3  until resumed');
    expect(lines.at(-1)).toBe('daemon set "sensor" successfully rolled out (revision 3)');
  });

  it('on a terminal redraws the block and exits non-zero when the rollout rolled back', async () => {
    const { lines, error } = await follow(['Progressing', 'RollingBack', 'RolledBack'], true);
    expect(error).toBeInstanceOf(CliError);
    expect((error as CliError).message).toBe('the rollout of daemon set "sensor" to revision 3 failed and was rolled back to revision 2');
    expect(lines[0]).not.toContain(ESC);
    expect(lines[1]!.startsWith(`${ESC}[4A${ESC}[J`)).toBe(true);
    expect(lines.at(-1)).toContain('RolledBack');
  });

  it('with --watch=false prints where it stands once and succeeds while in progress', async () => {
    const hub = await fakeHub({ [`GET ${DS_PATH}`]: [200, daemonSet('busybox:2', { generation: 3 })], [`GET ${ROLLOUTS_PATH}`]: [200, { items: [midRollout()] }] });
    close = hub.close;
    const lines: string[] = [];
    await rolloutCommand('status', 'daemonset/sensor', undefined, { server: hub.server, token: 't', tty: false, watch: false }, (t) => lines.push(t));
    expect(lines).toHaveLength(4);
  });

  it('follows a newer rollout that superseded the one it watched', async () => {
    let step = 0;
    const r3 = () => (step === 0 ? midRollout() : midRollout('Superseded'));
    const r4 = record(4, { from: 'busybox:2', to: 'busybox:3' }, 'Succeeded');
    const hub = await fakeHub({
      [`GET ${DS_PATH}`]: () => [200, step === 0 ? daemonSet('busybox:2', { generation: 3 }) : daemonSet('busybox:3', { generation: 4 })],
      // The first listing shows revision 3 under way; by the next look revision 4 has superseded it.
      [`GET ${ROLLOUTS_PATH}`]: () => {
        const items = step === 0 ? [r3()] : [r3(), r4];
        step = 1;
        return [200, { items }];
      },
      [`GET ${ROLLOUTS_PATH}/sensor-3`]: () => [200, r3()],
    });
    close = hub.close;
    const lines: string[] = [];
    await rolloutCommand('status', 'daemonset/sensor', undefined, { server: hub.server, token: 't', tty: false, pollMs: 5 }, (t) => lines.push(t));
    expect(lines[0]).toBe('daemonset/sensor  revision 2 → 3  Progressing  wave 2/3');
    expect(lines.at(-1)).toBe('daemon set "sensor" successfully rolled out (revision 4)');
  });

  it('gives up after --timeout', async () => {
    const hub = await fakeHub({ [`GET ${DS_PATH}`]: [200, daemonSet('busybox:2', { generation: 3 })], [`GET ${ROLLOUTS_PATH}`]: [200, { items: [midRollout()] }], [`GET ${ROLLOUTS_PATH}/sensor-3`]: [200, midRollout()] });
    close = hub.close;
    await expect(rolloutCommand('status', 'daemonset/sensor', undefined, { server: hub.server, token: 't', tty: false, timeout: '1s', pollMs: 200 }, () => {})).rejects.toThrow('timed out waiting for the rollout of daemonset/sensor after 1s');
  });

  it('keeps the RollingUpdate status for a DaemonSet not in waves', async () => {
    const hub = await fakeHub({ [`GET ${DS_PATH}`]: [200, daemonSet('busybox:2', { waves: false })] });
    close = hub.close;
    const lines: string[] = [];
    await rolloutCommand('status', 'daemonset/sensor', undefined, { server: hub.server, token: 't' }, (t) => lines.push(t));
    expect(lines).toEqual(['daemon set "sensor" successfully rolled out']);
    expect(hub.requests.map((r) => r.path)).not.toContain(ROLLOUTS_PATH);
  });
});
