import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { buildTestImages, TEST_IMAGE, TEST_IMAGE_V2 } from '../harness/images.js';
import { BIN, REPO, cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type CliResult, type ManagedProcess, type RunningHub } from '../harness/processes.js';
import { watchObjects } from '../harness/watch.js';

// Deployments end to end: a real hub, two real agents sharing one test dockerd, a Deployment
// of 3 replicas with a readiness probe rolled from one image to the next and back, scaled, and
// stuck past its progress deadline, all through the flotilla CLI.

const REPLICAS = 3;
const MAX_SURGE = 1;
const MAX_UNAVAILABLE = 1;

interface PodJson {
  metadata: { name: string; resourceVersion: string; labels?: Record<string, string> };
  spec: { nodeName?: string; containers: { image: string }[] };
  status?: { phase?: string; conditions?: { type: string; status: string }[] };
}
interface NodeJson {
  status?: { conditions?: { type: string; status: string }[] };
}

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('deploy');
const agents: ManagedProcess[] = [];
const clients = new Set<ChildProcess>();

function manifest(o: { image: string; cause: string; replicas?: number; command?: string; deadline?: number }): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations: {kubernetes.io/change-cause: "${o.cause}"}
spec:
  replicas: ${o.replicas ?? REPLICAS}
  ${o.deadline ? `progressDeadlineSeconds: ${o.deadline}` : ''}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: ${MAX_SURGE}, maxUnavailable: ${MAX_UNAVAILABLE}}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: ${o.image}
        command: ${o.command ?? '["httpd", "-f", "-p", "8080", "-h", "/www"]'}
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
`;
}

function run(args: string[], input?: string): string {
  const r = cli(hub, args, input === undefined ? {} : { input });
  expect(r.code, `flotilla ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** The CLI in the background, for a command that waits (rollout status) while the test watches. */
function cliInBackground(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, env: { ...process.env, FLOTILLA_SERVER: hub.apiUrl, FLOTILLA_TOKEN: hub.adminToken } });
    clients.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => {
      clients.delete(child);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

const isReady = (p: PodJson) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
const webPods = () => getJson<{ items: PodJson[] }>(hub, ['pods', '-l', 'app=web']).items;

/** The web pods, when there are exactly `n`, all Ready and all running `image`. */
function allReadyWith(image: string, n = REPLICAS): PodJson[] | undefined {
  const pods = webPods();
  return pods.length === n && pods.every((p) => isReady(p) && p.spec.containers[0]?.image === image) ? pods : undefined;
}

/** Images of the running app containers of the web pods, as the engine has them. */
async function runningWebImages(): Promise<string[]> {
  const list = await dockerd.docker.listContainers({ filters: { label: ['flotilla.container=web'] } });
  return list.map((c) => c.Image).sort();
}

function nodeReady(name: string): boolean {
  return getJson<NodeJson>(hub, ['node', name]).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'deploy' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  for (const name of ['alpha', 'beta']) agents.push(startAgent({ hub, name, stateDir: join(dirs.path, `state-${name}`), dockerHost: dockerd.dockerHost }));
  await waitFor('both nodes Ready', () => nodeReady('alpha') && nodeReady('beta'), 60_000);
}, 180_000);

afterAll(async () => {
  for (const child of clients) child.kill();
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a Deployment on real agents and a real engine', () => {
  it('runs 3 Ready replicas, and rollout status says it has rolled out', async () => {
    expect(run(['apply', '-f', '-'], manifest({ image: TEST_IMAGE, cause: 'busybox 1' }))).toBe('deployment/web created\n');
    const pods = await waitFor('3 Ready web pods', () => allReadyWith(TEST_IMAGE), 90_000);
    expect(new Set(pods.map((p) => p.spec.nodeName))).toEqual(new Set(['alpha', 'beta']));
    expect(run(['rollout', 'status', 'deployment/web'])).toBe('deployment "web" successfully rolled out\n');
    expect(run(['get', 'deployment', 'web'])).toMatch(/^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\nweb\s+3\/3\s+3\s+3\s/);
  });

  it('rolls to the next image one step at a time: never fewer than replicas - maxUnavailable Ready, never more than replicas + maxSurge pods', async () => {
    const watch = await watchObjects<PodJson>(hub, '/api/v1/namespaces/default/pods');
    const start = getJson<{ items: PodJson[]; metadata: { resourceVersion: string } }>(hub, ['pods', '-l', 'app=web']);
    const before = new Set(start.items.map((p) => p.metadata.name));
    run(['apply', '-f', '-'], manifest({ image: TEST_IMAGE_V2, cause: 'busybox 2' }));
    const status = await cliInBackground(['rollout', 'status', 'deployment/web', '--timeout', '150s']);
    await watch.stop();
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^Waiting for deployment "web" rollout to finish: /);
    expect(status.stdout.trimEnd().split('\n').at(-1)).toBe('deployment "web" successfully rolled out');
    const after = await waitFor('3 Ready pods on the new image', () => allReadyWith(TEST_IMAGE_V2), 30_000);
    expect(after.some((p) => before.has(p.metadata.name))).toBe(false);

    // Every state the hub stored during the rollout, replayed from the watch.
    const current = new Map(start.items.map((p) => [p.metadata.name, p]));
    let minReady = Infinity;
    let maxPods = 0;
    let samples = 0;
    for (const e of watch.events) {
      if (e.object.metadata.labels?.app !== 'web' || Number(e.object.metadata.resourceVersion) <= Number(start.metadata.resourceVersion)) continue;
      if (e.type === 'DELETED') current.delete(e.object.metadata.name);
      else current.set(e.object.metadata.name, e.object);
      const pods = [...current.values()];
      minReady = Math.min(minReady, pods.filter(isReady).length);
      maxPods = Math.max(maxPods, pods.length);
      samples++;
    }
    console.log(`rolling update: ${samples} pod states, fewest Ready ${minReady}, most pods ${maxPods}`);
    expect(samples).toBeGreaterThan(10);
    expect(minReady).toBeGreaterThanOrEqual(REPLICAS - MAX_UNAVAILABLE);
    expect(maxPods).toBeLessThanOrEqual(REPLICAS + MAX_SURGE);
    await waitFor('the engine to run only the new image', async () => (await runningWebImages()).join() === [TEST_IMAGE_V2, TEST_IMAGE_V2, TEST_IMAGE_V2].join(), 60_000);
  });

  it('lists both revisions with their change causes', () => {
    expect(run(['rollout', 'history', 'deployment/web'])).toMatch(/^deployment\/web\nREVISION\s+CHANGE-CAUSE\n1\s+busybox 1\n2\s+busybox 2\n$/);
    const describe = run(['describe', 'deployment', 'web']);
    expect(describe).toMatch(/Replicas:\s+3 desired \| 3 updated \| 3 total \| 3 available \| 0 unavailable/);
    expect(describe).toMatch(/RollingUpdateStrategy:\s+1 max unavailable, 1 max surge/);
    expect(describe).toMatch(/NewReplicaSet:\s+web-\w+ \(3\/3 replicas created\)/);
    expect(describe).toMatch(/ScalingReplicaSet\s+.*Scaled down replica set web-\w+ to 0/);
  });

  it('undo brings the previous template back on every pod', async () => {
    expect(run(['rollout', 'undo', 'deployment/web'])).toBe('deployment/web rolled back\n');
    await waitFor('3 Ready pods on the first image again', () => allReadyWith(TEST_IMAGE), 90_000);
    expect(run(['rollout', 'status', 'deployment/web', '--timeout', '60s'])).toMatch(/deployment "web" successfully rolled out\n$/);
    expect(run(['rollout', 'history', 'deployment/web'])).toMatch(/REVISION\s+CHANGE-CAUSE\n2\s+busybox 2\n3\s+busybox 1\n$/);
    await waitFor('the engine to run only the first image', async () => (await runningWebImages()).join() === [TEST_IMAGE, TEST_IMAGE, TEST_IMAGE].join(), 60_000);
  });

  it('scale to 1 removes the other pods and their containers', async () => {
    expect(run(['scale', 'deployment/web', '--replicas', '1'])).toBe('deployment/web scaled\n');
    await waitFor('one web pod left', () => allReadyWith(TEST_IMAGE, 1), 30_000);
    await waitFor('one web container left', async () => (await runningWebImages()).length === 1, 60_000);
    expect(run(['rollout', 'status', 'deployment/web', '--watch=false'])).toBe('deployment "web" successfully rolled out\n');
  });

  it('rollout status fails once a rollout is past its progress deadline', async () => {
    run(['apply', '-f', '-'], manifest({ image: TEST_IMAGE_V2, cause: 'broken', replicas: 1, command: '["sh", "-c", "exit 1"]', deadline: 5 }));
    const status = await cliInBackground(['rollout', 'status', 'deployment/web', '--timeout', '90s']);
    expect(status.code).toBe(1);
    expect(status.stderr).toBe('error: deployment "web" exceeded its progress deadline\n');
    expect(run(['describe', 'deployment', 'web'])).toMatch(/Warning\s+ProgressDeadlineExceeded\s+.*has timed out progressing/);
  });

  it('takes its ReplicaSets, pods and containers with it when deleted', async () => {
    expect(run(['delete', 'deployment', 'web'])).toBe('deployment/web deleted\n');
    await waitFor('no ReplicaSets and no pods', () => getJson<{ items: unknown[] }>(hub, ['replicasets']).items.length === 0 && webPods().length === 0, 30_000);
    await waitFor('no web containers', async () => (await dockerd.docker.listContainers({ all: true, filters: { label: ['flotilla.container=web'] } })).length === 0, 60_000);
  });
});
