import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { cli, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';
import { allOn, applyManifest, events, fleetAgent, nodeReady, nodesInOutput, recordCreates, rollout, versionsByNode, waitForPhase, wavesDaemonSet, wavesStarted } from '../harness/waves.js';

// Waves rollouts (docs/ARCHITECTURE.md, 'Waves rollouts') on four real agents sharing the test dockerd: w1 is the
// canary (channel=canary). What each device ran is read from the engine's own event stream.

const NODES = ['w1', 'w2', 'w3', 'w4'];
const BAD_IMAGE = 'flotilla-test/busybox:bad';

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('waves');
const agents: Record<string, ManagedProcess> = {};

const threeWaves = (minReadySeconds = 2) => `    waves:
      - selector: "channel=canary"
      - count: 1
      - percent: 100
    maxUnavailable: 1
    healthGate: {minReadySeconds: ${minReadySeconds}, progressDeadlineSeconds: 60}
    onFailure: rollback`;

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'waves' });
  await buildTestImages(dockerd.docker);
  // The bad version: the same bytes under a tag of its own, so that a container made from it is recognisable.
  await dockerd.docker.getImage(TEST_IMAGE).tag({ repo: 'flotilla-test/busybox', tag: 'bad' });
  hub = await startHub({ dataDir: join(dirs.path, 'hub'), extraArgs: ['--node-grace', '8s'] });
  for (const n of NODES) agents[n] = fleetAgent(hub, dockerd, dirs.path, n, n === 'w1' ? { fleet: 'waves', channel: 'canary' } : { fleet: 'waves' });
  await waitFor('four nodes Ready', () => NODES.every((n) => nodeReady(hub, n)), 60_000, 500);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a Waves DaemonSet on four real devices', () => {
  it('previews its waves, then updates wave by wave in that order, the canary first', async () => {
    applyManifest(hub, wavesDaemonSet({ name: 'good', image: TEST_IMAGE, version: '1', strategy: threeWaves() }));
    await waitFor('every device on version 1', () => allOn(hub, 'good', NODES, '1'), 90_000, 500);
    expect(rollout(hub, 'good', 1)?.status?.phase).toBe('Succeeded');

    const v2 = wavesDaemonSet({ name: 'good', image: TEST_IMAGE, version: '2', strategy: threeWaves() });
    const dry = applyManifest(hub, v2, ['--dry-run']);
    const previewed = nodesInOutput(dry.stdout, NODES);
    expect(previewed, dry.stdout).toHaveLength(3);
    expect(previewed[0]).toEqual(['w1']);
    expect(previewed[1]).toHaveLength(1);
    expect(versionsByNode(hub, 'good')).toEqual({ w1: '1', w2: '1', w3: '1', w4: '1' });

    const creates = await recordCreates(dockerd.docker);
    const changedAt = Date.now();
    applyManifest(hub, v2);
    const record = await waitForPhase(hub, 'good', 2, ['Succeeded'], 150_000);
    creates.stop();
    const status = cli(hub, ['rollout', 'status', 'daemonset/good', '--timeout', '20s']);
    expect(status.code, `${status.stdout}\n${status.stderr}`).toBe(0);
    expect(status.stdout).toContain('successfully rolled out');
    expect(allOn(hub, 'good', NODES, '2')).toBe(true);

    // The waves the rollout used are the ones the dry run listed.
    expect(record.spec.waves.map((w) => [...w.nodes].sort())).toEqual(previewed.map((w) => [...w].sort()));
    expect(wavesStarted(hub, 'good', 2)).toEqual(record.spec.waves.map((w) => w.name));
    for (const e of ['RolloutStarted', 'WaveGatePassed', 'RolloutSucceeded']) expect(events(hub, 'DaemonSet', 'good').map((x) => x.reason)).toContain(e);

    // Each wave's devices made their new containers only after the previous wave's had.
    const appCreates = creates.created.filter((c) => c.container === 'app' && c.at >= changedAt - 1_000);
    const firstAt = (nodes: string[]) => Math.min(...appCreates.filter((c) => nodes.includes(c.node)).map((c) => c.at));
    const lastAt = (nodes: string[]) => Math.max(...appCreates.filter((c) => nodes.includes(c.node)).map((c) => c.at));
    const waves = record.spec.waves.map((w) => w.nodes).filter((n) => n.length > 0);
    for (const n of NODES) expect(appCreates.filter((c) => c.node === n), n).toHaveLength(1);
    for (let i = 1; i < waves.length; i++) expect(firstAt(waves[i]!), `wave ${i + 1} after wave ${i}`).toBeGreaterThan(lastAt(waves[i - 1]!));
  });

  it('fails the canary gate with a version that exits 1, rolls back by itself, and no other device ever runs it', async () => {
    const creates = await recordCreates(dockerd.docker);
    applyManifest(hub, wavesDaemonSet({ name: 'good', image: BAD_IMAGE, version: '3', script: 'echo version 3; exit 1', strategy: threeWaves(8) }));
    const record = await waitForPhase(hub, 'good', 3, ['RolledBack'], 150_000);
    await waitFor('every device back on version 2', () => allOn(hub, 'good', NODES, '2'), 90_000, 500);
    creates.stop();

    expect(record.status?.failedNodes.map((f) => f.node)).toEqual(['w1']);
    expect(['CrashLoopBackOff', 'ReadinessFailed', 'ProgressDeadlineExceeded']).toContain(record.status?.failedNodes[0]?.reason);
    const bad = creates.created.filter((c) => c.image === BAD_IMAGE);
    expect(bad.length).toBeGreaterThan(0);
    expect(new Set(bad.map((c) => c.node))).toEqual(new Set(['w1']));
    const reasons = events(hub, 'DaemonSet', 'good').map((e) => e.reason);
    expect(reasons).toContain('WaveGateFailed');
    expect(reasons).toContain('RolloutRolledBack');

    // A pipeline can act on it: status fails, and history tells the story.
    const status = cli(hub, ['rollout', 'status', 'daemonset/good', '--timeout', '10s']);
    expect(status.code).not.toBe(0);
    const history = cli(hub, ['rollout', 'history', 'daemonset/good']);
    expect(history.code, history.stderr).toBe(0);
    expect(history.stdout).toMatch(/\n\s*1\s.*Succeeded/);
    expect(history.stdout).toMatch(/\n\s*2\s.*Succeeded/);
    expect(history.stdout).toMatch(/\n\s*3\s.*RolledBack/);

    // `rollout undo` writes revision 2's template back: the devices run it already, so nothing is replaced.
    const quiet = await recordCreates(dockerd.docker);
    const undo = cli(hub, ['rollout', 'undo', 'daemonset/good']);
    expect(undo.code, undo.stderr).toBe(0);
    const settled = await waitFor('rollout status to succeed after the undo', () => {
      const r = cli(hub, ['rollout', 'status', 'daemonset/good', '--timeout', '10s']);
      return r.code === 0 ? r : undefined;
    }, 60_000, 1_000);
    quiet.stop();
    expect(settled.stdout).toContain('successfully rolled out');
    expect(allOn(hub, 'good', NODES, '2')).toBe(true);
    expect(quiet.created.filter((c) => c.container === 'app')).toEqual([]);
  });

  it('pauses after the canary wave until resumed', async () => {
    const strategy = `    waves:
      - selector: "channel=canary"
        pause: {}
      - percent: 100
    maxUnavailable: 2
    healthGate: {minReadySeconds: 1, progressDeadlineSeconds: 60}`;
    applyManifest(hub, wavesDaemonSet({ name: 'held', image: TEST_IMAGE, version: '1', strategy }));
    await waitFor('every device on version 1', () => allOn(hub, 'held', NODES, '1'), 90_000, 500);
    applyManifest(hub, wavesDaemonSet({ name: 'held', image: TEST_IMAGE, version: '2', strategy }));
    const paused = await waitForPhase(hub, 'held', 2, ['Paused'], 90_000);
    expect(paused.status?.waves[0]?.phase).toBe('Passed');
    expect(allOn(hub, 'held', ['w1'], '2')).toBe(true);
    // Paused means paused: nothing more moves while it is.
    await new Promise((r) => setTimeout(r, 4_000));
    expect(rollout(hub, 'held', 2)?.status?.phase).toBe('Paused');
    expect(versionsByNode(hub, 'held')).toMatchObject({ w2: '1', w3: '1', w4: '1' });

    const resumed = cli(hub, ['rollout', 'resume', 'daemonset/held']);
    expect(resumed.code, resumed.stderr).toBe(0);
    await waitForPhase(hub, 'held', 2, ['Succeeded'], 90_000);
    expect(allOn(hub, 'held', NODES, '2')).toBe(true);
    expect(events(hub, 'DaemonSet', 'held').map((e) => e.reason)).toEqual(expect.arrayContaining(['RolloutPaused', 'RolloutResumed']));
  });
});
