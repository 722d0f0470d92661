import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { applyCommand } from '../../hub/cli/commands.js';
import { describe as describeObject } from '../../hub/cli/describe.js';
import { CliError } from '../../hub/cli/errors.js';
import { formatObjects } from '../../hub/cli/print.js';
import { rolloutCommand } from '../../hub/cli/rollout.js';
import { previewText } from '../../hub/cli/rollout-preview.js';
import { recordLines, wavesHistoryTable } from '../../hub/cli/rollout-waves-render.js';
import { wavesUndoTarget } from '../../hub/cli/rollout-waves.js';
import { CONTROL_PATH, daemonSet, DS_PATH, fakeHub, NOW, record, ROLLOUTS_PATH, template, wave, type Routes } from './rollout-waves-builders.js';

/** busybox:1 (revision 1), busybox:2 (revision 2), busybox:3 rolled back (revision 3). */
function history() {
  return [
    record(1, { to: 'busybox:1' }, 'Succeeded', [], { changeCause: 'first' }),
    record(2, { from: 'busybox:1', to: 'busybox:2' }, 'Succeeded', [wave('canary', 'Passed', { total: 1, updated: 1 }), wave('rest', 'Passed', { total: 3, updated: 3 })], { changeCause: 'second' }),
    record(3, { from: 'busybox:2', to: 'busybox:3' }, 'RolledBack', [wave('canary', 'Failed', { total: 1, updated: 1, failed: 1 }), wave('rest', 'Pending', { total: 3 })], {
      changeCause: 'third',
      startedBy: 'ci',
      message: 'wave canary failed its health gate',
      failedNodes: [{ node: 'pi-1', wave: 'canary', reason: 'CrashLoopBackOff', message: 'exited with 1', at: '2025-01-01T12:05:00Z' }],
    }),
  ];
}

describe('rollout undo target', () => {
  it('goes back to the previous revision: its template, its change cause, guarded by resourceVersion', () => {
    const target = wavesUndoTarget(daemonSet('busybox:3'), history(), 0);
    expect(target.revision).toBe(2);
    expect(target.body!.spec.template).toEqual(template('busybox:2'));
    expect(target.body!.metadata.resourceVersion).toBe('41');
    expect(target.body!.metadata.annotations!['kubernetes.io/change-cause']).toBe('second');
    expect(target.body!.spec.updateStrategy).toEqual(daemonSet('busybox:3').spec.updateStrategy);
    expect(target.body!.metadata.annotations!['flotilla.io/rollout-started-by']).toBe('rollout undo');
  });

  it('skips earlier revisions with the template the DaemonSet already has', () => {
    const records = [...history(), record(4, { from: 'busybox:3', to: 'busybox:2' }, 'Succeeded')];
    expect(wavesUndoTarget(daemonSet('busybox:2'), records, 0).revision).toBe(3);
  });

  it('goes to --to-revision, taking revision 1 from its own record', () => {
    const target = wavesUndoTarget(daemonSet('busybox:3'), history(), 1);
    expect(target.body!.spec.template).toEqual(template('busybox:1'));
    expect(target.body!.metadata.annotations!['kubernetes.io/change-cause']).toBe('first');
  });

  it('finds a revision without a record of its own as the previous template of the next one', () => {
    const target = wavesUndoTarget(daemonSet('busybox:3'), history().slice(1), 1);
    expect(target.body!.spec.template).toEqual(template('busybox:1'));
  });

  it('skips the rollback when the template already is that revision', () => {
    expect(wavesUndoTarget(daemonSet('busybox:2'), history(), 2)).toEqual({ revision: 2 });
  });

  it('refuses without history or with an unknown revision', () => {
    expect(() => wavesUndoTarget(daemonSet('busybox:1'), [], 0)).toThrow('no rollout history found for daemonset "sensor"');
    expect(() => wavesUndoTarget(daemonSet('busybox:1'), history().slice(0, 1), 0)).toThrow('no previous revision of daemonset "sensor" to roll back to');
    expect(() => wavesUndoTarget(daemonSet('busybox:3'), history(), 9)).toThrow('unable to find the specified revision 9');
  });
});

describe('rollout history', () => {
  it('has a row per revision: when, by whom, outcome, waves passed, failed devices, change cause', () => {
    expect(wavesHistoryTable(history(), NOW).split('\n')).toEqual([
      'REVISION   STARTED   BY      PHASE        WAVES   FAILED   CHANGE-CAUSE',
      '1          30m       admin   Succeeded    -       0        first',
      '2          30m       admin   Succeeded    2/2     0        second',
      '3          30m       ci      RolledBack   0/2     1        third',
    ]);
  });

  it('shows one record in full: templates, every wave, failed devices with reasons', () => {
    const text = recordLines(history()[2]!).join('\n');
    expect(text).toContain('Revision:         3 (from 2)');
    expect(text).toContain('Phase:            RolledBack');
    expect(text).toContain('Message:          wave canary failed its health gate');
    expect(text).toMatch(/Pod Template:\n {2}Containers:\n {3}reader:\n {4}Image: +busybox:3/);
    expect(text).toMatch(/Previous Template:\n {2}Containers:\n {3}reader:\n {4}Image: +busybox:2/);
    expect(text).toMatch(/ {2}canary +1 +Failed +1 +0 +1 +0/);
    expect(text).toMatch(/ {2}rest +3 +Pending/);
    expect(text).toMatch(/ {2}pi-1 +canary +CrashLoopBackOff +2025-01-01T12:05:00Z +exited with 1/);
  });

  it('get rollouts has the columns NAME, DAEMONSET, REVISION, PHASE, WAVE, UPDATED, FAILED, AGE', () => {
    const rows = formatObjects('Rollout', history() as never[], 'table').split('\n');
    expect(rows[0]).toMatch(/^NAME +DAEMONSET +REVISION +PHASE +WAVE +UPDATED +FAILED +AGE$/);
    expect(rows[1]).toMatch(/^sensor-1 +sensor +1 +Succeeded +- +- +0 +\S+$/);
    expect(rows[2]).toMatch(/^sensor-2 +sensor +2 +Succeeded +2\/2 +4\/4 +0 +\S+$/);
    expect(rows[3]).toMatch(/^sensor-3 +sensor +3 +RolledBack +1\/2 +1\/4 +1 +\S+$/);
  });

  it('describe shows a record, and the current rollout of a DaemonSet in waves', () => {
    const r = history()[2]!;
    const asObj = (o: object) => ({ kind: 'Rollout', ...o }) as never;
    expect(describeObject(asObj(r), [])).toContain('Failed Devices:');
    const ds = { ...daemonSet('busybox:3'), kind: 'DaemonSet' } as never;
    const text = describeObject(ds, [], { rollouts: history() as never[] });
    expect(text).toContain('Update Strategy:  Waves (2 waves, onFailure rollback)');
    expect(text).toContain('Rollout:          sensor-3: revision 2 → 3  RolledBack  wave 1/2: wave canary failed its health gate');
    expect(text).toMatch(/ {2}canary +1\/1 updated {2}ready 0 {2}failed 1 {2}waiting 0 +Failed/);
    expect(text).toContain('    pi-1 (wave canary): CrashLoopBackOff: exited with 1');
  });
});

describe('rollout verbs against the API', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  async function run(routes: Routes, verb: Parameters<typeof rolloutCommand>[0], opts: Record<string, unknown> = {}) {
    const hub = await fakeHub(routes);
    close = hub.close;
    const lines: string[] = [];
    await rolloutCommand(verb, 'daemonset/sensor', undefined, { server: hub.server, token: 't', ...opts }, (t) => lines.push(t));
    return { lines, requests: hub.requests };
  }

  const base = (): Routes => ({ [`GET ${DS_PATH}`]: [200, daemonSet('busybox:3')], [`GET ${ROLLOUTS_PATH}`]: [200, { items: history() }] });

  it.each([
    ['pause', 'paused'],
    ['resume', 'resumed'],
    ['abort', 'aborted'],
  ] as const)('%s posts the action and prints what the hub did', async (action, word) => {
    const answer = record(4, { from: 'busybox:3', to: 'busybox:4' }, 'Paused', [wave('canary', 'Passed', { total: 1 }), wave('rest', 'Paused', { total: 3 })]);
    const { lines, requests } = await run({ ...base(), [`POST ${CONTROL_PATH}`]: [200, answer] }, action);
    expect(requests.at(-1)).toEqual({ method: 'POST', path: CONTROL_PATH, body: { action } });
    expect(lines).toEqual([`daemonset/sensor ${word} (rollout of revision 4, wave 2/2)`]);
  });

  it('a 409 from the hub is an error with its message', async () => {
    const routes = { ...base(), [`POST ${CONTROL_PATH}`]: [409, { code: 'HUB_ERR_CONFLICT', message: 'no rollout of daemonset/sensor is running' }] as [number, unknown] };
    await expect(run(routes, 'pause')).rejects.toThrow(new CliError('cannot pause the rollout of daemonset/sensor: no rollout of daemonset/sensor is running'));
  });

  it('undo writes the previous template back with a PUT', async () => {
    const { lines, requests } = await run({ ...base(), [`PUT ${DS_PATH}`]: (r) => [200, r.body] }, 'undo');
    const put = requests.find((r) => r.method === 'PUT')!;
    expect((put.body as { spec: { template: unknown } }).spec.template).toEqual(template('busybox:2'));
    expect(lines[0]).toMatch(/^daemonset\/sensor rolled back to the template of revision 2/);
  });

  it('undo to the revision the DaemonSet already has writes nothing', async () => {
    const { lines, requests } = await run({ ...base(), [`GET ${DS_PATH}`]: [200, daemonSet('busybox:1')] }, 'undo', { toRevision: '1' });
    expect(requests.some((r) => r.method === 'PUT')).toBe(false);
    expect(lines).toEqual(['daemonset/sensor skipped rollback (current template already matches revision 1)']);
  });

  it('history lists the records of this DaemonSet only', async () => {
    const other = { ...record(7, { to: 'nginx' }, 'Succeeded'), spec: { ...record(7, { to: 'nginx' }, 'Succeeded').spec, target: { kind: 'DaemonSet' as const, name: 'other', uid: 'uid-other' } }, metadata: { name: 'other-7' } };
    const { lines } = await run({ ...base(), [`GET ${ROLLOUTS_PATH}`]: [200, { items: [other, ...history()] }] }, 'history');
    expect(lines[0]).toBe('daemonset/sensor');
    expect(lines[1]!.split('\n').map((l) => l.split(/ +/)[0])).toEqual(['REVISION', '1', '2', '3']);
  });

  it('the verbs of waves are refused for a DaemonSet that rolls out otherwise', async () => {
    await expect(run({ [`GET ${DS_PATH}`]: [200, daemonSet('busybox:1', { waves: false })] }, 'pause')).rejects.toThrow('rollout pause is only available for a daemonset with updateStrategy type Waves; daemonset/sensor has RollingUpdate');
  });

  it('status --dry-run asks the hub for a preview and lists every wave with its devices', async () => {
    const preview = { revision: 4, waves: [{ name: 'canary', nodes: ['pi-1'], pause: 600 }, { name: 'early', nodes: ['pi-3'], pause: 'resume' }, { name: 'fleet', nodes: ['pi-2', 'pi-4'] }] };
    const { lines, requests } = await run({ ...base(), [`POST ${CONTROL_PATH}/preview`]: [200, preview] }, 'status', { dryRun: true });
    expect(requests.at(-1)).toEqual({ method: 'POST', path: `${CONTROL_PATH}/preview`, body: undefined });
    expect(lines[0]!.split('\n')).toEqual([
      'daemonset/sensor: revision 4 would roll out to 4 devices in 3 waves (dry run: nothing changed)',
      '  WAVE     DEVICES   PAUSE AFTER     NODES',
      '  canary   1         10m             pi-1',
      '  early    1         until resumed   pi-3',
      '  fleet    2         -               pi-2, pi-4',
    ]);
  });

  it('a preview that is no rollout in waves says why', () => {
    const text = previewText('sensor', { revision: 3, waves: [{ name: 'canary', nodes: ['pi-1'] }], reason: 'no change: the template is that of revision 3 (Succeeded)' });
    expect(text.split('\n')).toEqual(['daemonset/sensor: revision 3: no change: the template is that of revision 3 (Succeeded)', '  WAVE     DEVICES   PAUSE AFTER   NODES', '  canary   1         -             pi-1']);
  });
});

describe('apply --dry-run of a DaemonSet in waves', () => {
  let close: (() => Promise<void>) | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await close?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
    close = undefined;
  });

  async function dryRun(storedImage: string, appliedImage: string, action = storedImage === appliedImage ? 'unchanged' : 'configured') {
    const manifest = { ...daemonSet(appliedImage), status: undefined };
    delete manifest.status;
    dir = mkdtempSync(join(tmpdir(), 'waves-apply-'));
    const file = join(dir, 'sensor.yaml');
    writeFileSync(file, stringify({ apiVersion: manifest.apiVersion, kind: manifest.kind, metadata: { name: 'sensor' }, spec: manifest.spec }));
    const preview = { revision: 4, waves: [{ name: 'canary', nodes: ['pi-1'] }, { name: 'fleet', nodes: ['pi-2'] }] };
    const hub = await fakeHub({
      'POST /api/v1/apply?dryRun=All': [200, { results: [{ kind: 'DaemonSet', name: 'sensor', namespace: 'default', action, warnings: [] }] }],
      [`GET ${DS_PATH}`]: [200, daemonSet(storedImage)],
      [`POST ${CONTROL_PATH}/preview`]: [200, preview],
    });
    close = hub.close;
    const lines: string[] = [];
    await applyCommand({ server: hub.server, token: 't', filename: [file], dryRun: true }, (t) => lines.push(t), () => {});
    return { lines, requests: hub.requests };
  }

  it('prints the waves the new template would roll out in, after the usual line', async () => {
    const { lines, requests } = await dryRun('busybox:3', 'busybox:4');
    expect(lines[0]).toBe('daemonset/sensor configured (dry run)');
    expect(lines[1]).toMatch(/^daemonset\/sensor: revision 4 would roll out to 2 devices in 2 waves/);
    const post = requests.find((r) => r.path.endsWith('/rollout/preview'))!;
    expect((post.body as { spec: { template: unknown } }).spec.template).toEqual(template('busybox:4'));
  });

  it('prints no preview when nothing changes', async () => {
    const { lines, requests } = await dryRun('busybox:3', 'busybox:3');
    expect(lines).toEqual(['daemonset/sensor unchanged (dry run)']);
    expect(requests.some((r) => r.path.endsWith('/preview'))).toBe(false);
  });

  it('prints no preview when the change leaves the template as it is (no rollout starts)', async () => {
    const { lines, requests } = await dryRun('busybox:3', 'busybox:3', 'configured');
    expect(lines).toEqual(['daemonset/sensor configured (dry run)']);
    expect(requests.some((r) => r.path === DS_PATH)).toBe(true);
    expect(requests.some((r) => r.path.endsWith('/preview'))).toBe(false);
  });
});
