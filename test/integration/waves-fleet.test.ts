import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { cli, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';
import { allOn, applyManifest, dsPods, events, fleetAgent, nodeReady, recordCreates, rollout, versionsByNode, waitForPhase, wavesDaemonSet, wavesStarted } from '../harness/waves.js';

// Waves rollouts while the fleet moves: devices that go offline and come back, a device that
// joins mid-rollout, a device that vetoes its update with an update lock, and a hub killed with
// kill -9 in the middle of a wave. Four real agents share the test dockerd; w1 is the canary.

const NODES = ['w1', 'w2', 'w3', 'w4'];
const HUB_ARGS = ['--node-grace', '8s'];

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('waves-fleet');
const agents: Record<string, ManagedProcess> = {};

const labelsOf = (n: string): Record<string, string> => (n === 'w1' ? { fleet: 'waves', channel: 'canary' } : { fleet: 'waves' });
const startDevice = (n: string) => (agents[n] = fleetAgent(hub, dockerd, dirs.path, n, labelsOf(n)));

async function stopDevice(n: string): Promise<void> {
  await agents[n]!.stop(5_000);
  await waitFor(`${n} not Ready`, () => !nodeReady(hub, n), 60_000, 500);
}

/** Applies v1 of a Waves DaemonSet and waits until every one of `nodes` runs it. */
async function startOnV1(name: string, strategy: string, nodes = NODES): Promise<void> {
  applyManifest(hub, wavesDaemonSet({ name, image: TEST_IMAGE, version: '1', strategy }));
  await waitFor(`${name} v1 on ${nodes.join(', ')}`, () => allOn(hub, name, nodes, '1'), 90_000, 500);
}

const canaryThenRest = (extra: string) => `    waves:
      - selector: "channel=canary"
      - percent: 100
    maxUnavailable: 100%
    healthGate: {minReadySeconds: 2, progressDeadlineSeconds: 60}
${extra}`;

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'waves-fleet' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub'), extraArgs: HUB_ARGS });
  for (const n of NODES) startDevice(n);
  await waitFor('four nodes Ready', () => NODES.every((n) => nodeReady(hub, n)), 60_000, 500);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('Waves rollouts while devices come and go', () => {
  it('offlineNodes: skip finishes without an offline device, which converges when it returns', async () => {
    await startOnV1('skipper', canaryThenRest('    offlineNodes: skip'));
    await stopDevice('w4');
    applyManifest(hub, wavesDaemonSet({ name: 'skipper', image: TEST_IMAGE, version: '2', strategy: canaryThenRest('    offlineNodes: skip') }));
    const done = await waitForPhase(hub, 'skipper', 2, ['Succeeded'], 120_000);
    expect(allOn(hub, 'skipper', ['w1', 'w2', 'w3'], '2')).toBe(true);
    expect(done.status?.skippedNodes?.map((s) => s.node)).toEqual(['w4']);
    expect(done.status?.failedNodes).toEqual([]);

    startDevice('w4');
    await waitFor('w4 back and on version 2', () => allOn(hub, 'skipper', ['w4'], '2'), 90_000, 500);
  });

  it('offlineNodes: wait holds the wave for an offline device until it returns', async () => {
    await startOnV1('waiter', canaryThenRest('    offlineNodes: wait'));
    await stopDevice('w3');
    applyManifest(hub, wavesDaemonSet({ name: 'waiter', image: TEST_IMAGE, version: '2', strategy: canaryThenRest('    offlineNodes: wait') }));
    await waitFor('w1, w2 and w4 on version 2', () => allOn(hub, 'waiter', ['w1', 'w2', 'w4'], '2'), 90_000, 500);
    // The last wave cannot pass while w3 is away, and is not failed either while the deadline holds.
    await new Promise((r) => setTimeout(r, 5_000));
    const held = rollout(hub, 'waiter', 2)!;
    expect(held.status?.phase).toBe('Progressing');
    expect(held.status?.waves[1]?.waiting).toBeGreaterThanOrEqual(1);

    startDevice('w3');
    const done = await waitForPhase(hub, 'waiter', 2, ['Succeeded'], 120_000);
    expect(allOn(hub, 'waiter', NODES, '2')).toBe(true);
    expect(done.status?.failedNodes).toEqual([]);
    expect(done.status?.skippedNodes ?? []).toEqual([]);
  });

  it('lets an update lock defer one device, then overrides it after updateLockMaxAge', async () => {
    const strategy = canaryThenRest('    updateLockMaxAge: 15s');
    await startOnV1('locker', strategy);
    // The app on w2 takes the lock, as an app in the middle of something it must not lose would.
    const [app] = await dockerd.docker.listContainers({ filters: { label: ['flotilla.node=w2', 'flotilla.container=app', `flotilla.pod=${dsPods(hub, 'locker').find((p) => p.spec.nodeName === 'w2')!.metadata.name}`] } });
    const exec = await dockerd.docker.getContainer(app!.Id).exec({ Cmd: ['touch', '/run/flotilla/update.lock'], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({});
    await new Promise<void>((resolve, reject) => stream.on('end', resolve).on('error', reject).resume());
    expect((await exec.inspect()).ExitCode).toBe(0);
    const lockedAt = Date.now();

    applyManifest(hub, wavesDaemonSet({ name: 'locker', image: TEST_IMAGE, version: '2', strategy }));
    await waitFor('w1, w3 and w4 updated', () => allOn(hub, 'locker', ['w1', 'w3', 'w4'], '2'), 90_000, 500);
    const held = await waitFor('w2 reported locked', () => dsPods(hub, 'locker').find((p) => p.spec.nodeName === 'w2' && p.status?.conditions?.some((c) => c.type === 'UpdateLocked' && c.status === 'True')), 30_000, 500);
    expect(held.status?.conditions?.find((c) => c.type === 'UpdateLocked')?.reason).toBe('UpdateLockHeld');
    // Still the old container, still running.
    expect((await dockerd.docker.getContainer(app!.Id).inspect()).State.Running).toBe(true);
    expect(rollout(hub, 'locker', 2)?.status?.phase).toBe('Progressing');

    await waitForPhase(hub, 'locker', 2, ['Succeeded'], 120_000);
    expect(allOn(hub, 'locker', NODES, '2')).toBe(true);
    const override = events(hub, 'DaemonSet', 'locker').find((e) => e.reason === 'UpdateLockOverridden');
    expect(override?.type).toBe('Warning');
    expect(Date.parse(override!.firstTimestamp ?? override!.lastTimestamp!)).toBeGreaterThanOrEqual(lockedAt + 14_000);
  });

  it('goes on where it was after the hub is killed with kill -9 mid-wave: nothing updated twice, no gate skipped', async () => {
    const strategy = `    waves:
      - selector: "channel=canary"
      - count: 1
        pause: 6s
      - percent: 100
    maxUnavailable: 100%
    healthGate: {minReadySeconds: 4, progressDeadlineSeconds: 90}`;
    await startOnV1('survivor', strategy);
    const creates = await recordCreates(dockerd.docker);
    const changedAt = Date.now();
    applyManifest(hub, wavesDaemonSet({ name: 'survivor', image: TEST_IMAGE, version: '2', strategy }));
    // Killed while the second wave's device is updated but its gate has not passed yet.
    await waitFor('the second wave released', () => (rollout(hub, 'survivor', 2)?.status?.waves[1]?.released ?? 0) >= 1, 90_000, 200);
    hub.process.child.kill('SIGKILL');
    await waitFor('the hub gone', () => hub.process.exitCode !== undefined || hub.process.child.signalCode !== null, 10_000);
    hub = await startHub({ dataDir: hub.dataDir, apiPort: hub.apiPort, mqttPort: hub.mqttPort, extraArgs: HUB_ARGS });

    const done = await waitForPhase(hub, 'survivor', 2, ['Succeeded'], 150_000);
    creates.stop();
    expect(allOn(hub, 'survivor', NODES, '2')).toBe(true);
    // One new app container per device: no device updated twice.
    const appCreates = creates.created.filter((c) => c.container === 'app' && c.at >= changedAt - 1_000 && c.pod.startsWith('survivor'));
    for (const n of NODES) expect(appCreates.filter((c) => c.node === n), n).toHaveLength(1);
    // The waves went in order, and the third began only after the second's gate and pause.
    expect(wavesStarted(hub, 'survivor', 2)).toEqual(done.spec.waves.map((w) => w.name));
    const second = done.status!.waves[1]!;
    const third = done.status!.waves[2]!;
    expect(Date.parse(third.startedAt!)).toBeGreaterThanOrEqual(Date.parse(second.finishedAt!) + 6_000 - 500);
    const thirdNodes = done.spec.waves[2]!.nodes;
    const secondNode = done.spec.waves[1]!.nodes[0]!;
    const secondCreated = appCreates.find((c) => c.node === secondNode)!.at;
    for (const n of thirdNodes) expect(appCreates.find((c) => c.node === n)!.at, n).toBeGreaterThan(secondCreated + 4_000);
  });

  it('gives a device that joins mid-rollout the revision its wave has reached', async () => {
    const strategy = `    waves:
      - selector: "channel=canary"
        pause: {}
      - percent: 100
    maxUnavailable: 100%
    healthGate: {minReadySeconds: 2, progressDeadlineSeconds: 60}`;
    await startOnV1('joiner', strategy);
    applyManifest(hub, wavesDaemonSet({ name: 'joiner', image: TEST_IMAGE, version: '2', strategy }));
    await waitForPhase(hub, 'joiner', 2, ['Paused'], 90_000);

    // w5 joins while the canary wave is done and the rest wait: it falls in a wave not yet started.
    startDevice('w5');
    await waitFor('w5 Ready', () => nodeReady(hub, 'w5'), 60_000, 500);
    await waitFor('w5 running the old version', () => allOn(hub, 'joiner', ['w5'], '1'), 90_000, 500);
    expect(versionsByNode(hub, 'joiner')).toEqual({ w1: '2', w2: '1', w3: '1', w4: '1', w5: '1' });

    expect(cli(hub, ['rollout', 'resume', 'daemonset/joiner']).code).toBe(0);
    await waitForPhase(hub, 'joiner', 2, ['Succeeded'], 120_000);
    expect(allOn(hub, 'joiner', [...NODES, 'w5'], '2')).toBe(true);

    await agents.w5!.stop(5_000);
    expect(cli(hub, ['delete', 'node', 'w5']).code).toBe(0);
  });
});
