import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { cli, getJson, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';
import { applyManifest, events, fleetAgent, isReady, nodeReady, recordCreates, rollouts, type DsPodJson, type RolloutJson } from '../harness/waves.js';

// A Deployment with strategy type Waves (docs/ARCHITECTURE.md, 'Waves rollouts') on two real agents sharing the
// test dockerd: its waves count pods (the scheduler places them), the new ReplicaSet grows wave
// by wave behind each wave's health gate, and a bad version rolls back by itself.

const NODES = ['dw1', 'dw2'];
const REPLICAS = 4;
const BAD_IMAGE = 'flotilla-test/busybox:dbad';

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('waves-deploy');

function manifest(version: string, o: { image?: string; script?: string } = {}): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: ${REPLICAS}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {fleet: dwaves}
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: ${o.image ?? TEST_IMAGE}
          command: ["sh", "-c", ${JSON.stringify(o.script ?? `echo version ${version}; exec sleep 3600`)}]
          env: [{name: VERSION, value: "${version}"}]
  strategy:
    type: Waves
    waves: [{count: 1}, {percent: 100}]
    maxUnavailable: 2
    healthGate: {minReadySeconds: 3, progressDeadlineSeconds: 60}
    onFailure: rollback
`;
}

const record = (revision: number): RolloutJson | undefined => rollouts(hub).find((r) => r.metadata.name === `deployment.web.${revision}`);
const pods = (): DsPodJson[] => getJson<{ items: DsPodJson[] }>(hub, ['pods', '-l', 'app=web']).items;
const versionOf = (p: DsPodJson) => p.spec.containers[0]?.env?.find((e) => e.name === 'VERSION')?.value;
/** Exactly REPLICAS pods, all of `version`, Ready. */
const allOn = (version: string) => {
  const now = pods();
  return now.length === REPLICAS && now.every((p) => versionOf(p) === version && isReady(p));
};

async function phase(revision: number, phases: string[]): Promise<RolloutJson> {
  return waitFor(`rollout deployment.web.${revision} to reach ${phases.join(' or ')}`, () => {
    const r = record(revision);
    return r?.status && phases.includes(r.status.phase) ? r : undefined;
  }, 90_000, 500);
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'waves-deploy' });
  await buildTestImages(dockerd.docker);
  // The bad version: the same bytes under a tag of its own, so that a container made from it is recognisable.
  await dockerd.docker.getImage(TEST_IMAGE).tag({ repo: 'flotilla-test/busybox', tag: 'dbad' });
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  for (const n of NODES) fleetAgent(hub, dockerd, dirs.path, n, { fleet: 'dwaves' });
  await waitFor('two nodes Ready', () => NODES.every((n) => nodeReady(hub, n)), 60_000, 500);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a Waves Deployment of four pods on two real devices', () => {
  it('rolls a new version out wave by wave: the pods of wave 2 are made only after wave 1 passed its gate', async () => {
    applyManifest(hub, manifest('1'));
    await waitFor('four pods on version 1, Ready', () => allOn('1'), 90_000, 500);
    expect(record(1)?.status?.phase).toBe('Succeeded');

    const dry = cli(hub, ['apply', '-f', '-', '--dry-run'], { input: manifest('2') });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/wave-1\s+1\b/);
    expect(dry.stdout).toMatch(/wave-2\s+3\b/);

    applyManifest(hub, manifest('2'));
    const done = await phase(2, ['Succeeded']);
    await waitFor('four pods on version 2, Ready', () => allOn('2'), 60_000, 500);
    const status = cli(hub, ['rollout', 'status', 'deployment/web', '--timeout', '20s']);
    expect(status.code, `${status.stdout}\n${status.stderr}`).toBe(0);
    expect(status.stdout).toContain('successfully rolled out');

    expect(done.status?.waves.map((w) => [w.name, w.total, w.ready])).toEqual([['wave-1', 1, 1], ['wave-2', 3, 3]]);
    // When wave 1's gate passed (the hub's clock), against when each new pod was made (the same clock).
    const gate = events(hub, 'Rollout', 'deployment.web.2').find((e) => e.reason === 'WaveGatePassed' && e.message.includes('wave-1'));
    expect(gate).toBeDefined();
    const gateAt = Date.parse(gate!.firstTimestamp ?? gate!.lastTimestamp ?? gate!.metadata.creationTimestamp!);
    const made = pods().map((p) => Date.parse((p.metadata as { creationTimestamp?: string }).creationTimestamp ?? '')).sort((a, b) => a - b);
    expect(made).toHaveLength(REPLICAS);
    expect(made.filter((t) => t < gateAt)).toHaveLength(1);
    expect(made.filter((t) => t >= gateAt)).toHaveLength(3);
    for (const e of ['RolloutStarted', 'WaveStarted', 'WaveGatePassed', 'RolloutSucceeded']) expect(events(hub, 'Deployment', 'web').map((x) => x.reason)).toContain(e);
  });

  it('fails the first gate with a version that exits 1, rolls back by itself, and only the first wave ever ran it', async () => {
    const creates = await recordCreates(dockerd.docker);
    applyManifest(hub, manifest('3', { image: BAD_IMAGE, script: 'echo version 3; exit 1' }));
    const rolledBack = await phase(3, ['RolledBack']);
    await waitFor('four pods back on version 2, Ready', () => allOn('2'), 60_000, 500);
    creates.stop();

    expect(rolledBack.status?.failedNodes).toHaveLength(1);
    expect(['CrashLoopBackOff', 'ReadinessFailed', 'ProgressDeadlineExceeded']).toContain(rolledBack.status?.failedNodes[0]?.reason);
    // Containers of the bad image were made (restarts), all for one pod: the first wave's only pod.
    const bad = creates.created.filter((c) => c.image === BAD_IMAGE);
    expect(bad.length).toBeGreaterThan(0);
    expect([...new Set(bad.map((c) => c.pod))]).toEqual([rolledBack.status?.failedNodes[0]?.node]);
    const reasons = events(hub, 'Deployment', 'web').map((e) => e.reason);
    for (const e of ['WaveGateFailed', 'RolloutRolledBack']) expect(reasons).toContain(e);

    // A pipeline can act on it: status fails; history lists the three revisions.
    const status = cli(hub, ['rollout', 'status', 'deployment/web', '--timeout', '10s']);
    expect(status.code).not.toBe(0);
    const history = cli(hub, ['rollout', 'history', 'deployment/web']);
    expect(history.code, history.stderr).toBe(0);
    expect(history.stdout).toMatch(/\n\s*3\s.*RolledBack/);
    const described = cli(hub, ['describe', 'deployment', 'web']);
    expect(described.stdout).toContain('deployment.web.3');
    expect(described.stdout).toContain('Failed Pods');

    // `rollout undo` writes revision 2's template back: the pods run it already, so none is replaced.
    const quiet = await recordCreates(dockerd.docker);
    const undo = cli(hub, ['rollout', 'undo', 'deployment/web']);
    expect(undo.code, undo.stderr).toBe(0);
    const settled = await waitFor('rollout status to succeed after the undo', () => {
      const r = cli(hub, ['rollout', 'status', 'deployment/web', '--timeout', '10s']);
      return r.code === 0 ? r : undefined;
    }, 30_000, 1_000);
    quiet.stop();
    expect(settled.stdout).toContain('successfully rolled out');
    expect(allOn('2')).toBe(true);
    expect(quiet.created.filter((c) => c.container === 'app')).toEqual([]);
  });
});
