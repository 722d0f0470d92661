import { afterAll, beforeAll, expect, it } from 'vitest';
import { join } from 'node:path';
import { PAUSE_IMAGE } from '../agent/runtime/pause/image.js';
import { startDockerd, type TestDockerd } from '../test/harness/dockerd.js';
import { buildTestImages, TEST_IMAGE } from '../test/harness/images.js';
import { startAgent, stopAll, tempDir, waitFor, type RunningHub } from '../test/harness/processes.js';
import { hubApi, startBenchHub } from './hollow/setup.js';
import { median, round, writeResult } from './results.js';

// Apply → pod running (docs/ARCHITECTURE.md, 'Performance targets': ≤ 1.3 × the floor, aim ≤ 1.1 ×), image present:
// `flotilla apply` of 10 pods until the hub shows all 10 Running (API, scheduler, dispatch,
// MQTT, agent, engine, status back), against the floor of making the same containers directly
// over the Docker API in the same run — per pod an infra container on the pod network and an
// app container joined to its network namespace, created and started one after the other as
// the agent does. The median of several rounds of each, interleaved.

const NODE = 'bench';
const PODS = 10;
const ROUNDS = Number(process.env.FLOTILLA_BENCH_APPLY_ROUNDS ?? 4);
const POD_NETWORK = 'flotilla';

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('apply');

interface PodJson {
  status?: { phase?: string; containerStatuses?: { state?: { running?: unknown } }[] };
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'apply' });
  await buildTestImages(dockerd.docker);
  hub = await startBenchHub(join(dirs.path, 'hub'));
  startAgent({ hub, name: NODE, stateDir: join(dirs.path, 'state'), dockerHost: dockerd.dockerHost, env: { FLOTILLA_LOG_LEVEL: 'info' } });
  await waitFor('the node to be Ready', async () => {
    const node = await hubApi<{ status?: { conditions?: { type: string; status: string }[] } }>(hub, 'GET', `/api/v1/nodes/${NODE}`).catch(() => undefined);
    return node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
  }, 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  dirs.remove();
});

function pod(i: number): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: `app-${i}`, namespace: 'default' }, spec: { nodeName: NODE, terminationGracePeriodSeconds: 0, containers: [{ name: 'main', image: TEST_IMAGE, command: ['sleep', '86400'] }] } };
}

async function runningPods(): Promise<number> {
  const { items } = await hubApi<{ items: PodJson[] }>(hub, 'GET', '/api/v1/namespaces/default/pods');
  return items.filter((p) => p.status?.phase === 'Running' && p.status.containerStatuses?.every((c) => c.state?.running)).length;
}

async function engineContainers(labels: string[]): Promise<number> {
  return (await dockerd.docker.listContainers({ all: true, filters: { label: labels } })).length;
}

/** Seconds from the apply to the hub showing every pod Running; then the pods are deleted and their containers waited out. */
async function throughFlotilla(): Promise<number> {
  const started = performance.now();
  await hubApi(hub, 'POST', '/api/v1/apply', { items: Array.from({ length: PODS }, (_, i) => pod(i)) });
  await waitFor('every pod Running', async () => (await runningPods()) === PODS, 120_000, 20);
  const seconds = (performance.now() - started) / 1000;
  for (let i = 0; i < PODS; i++) await hubApi(hub, 'DELETE', `/api/v1/namespaces/default/pods/app-${i}`);
  await waitFor('the pods’ containers removed', async () => (await engineContainers([`flotilla.node=${NODE}`])) === 0, 120_000, 100);
  return seconds;
}

/** Seconds to make and start the same containers straight over the Docker API; then they are removed. */
async function directly(round: number): Promise<number> {
  const docker = dockerd.docker;
  const started = performance.now();
  for (let i = 0; i < PODS; i++) {
    const labels = { 'bench.floor': String(round) };
    const infra = await docker.createContainer({ name: `floor-${round}-${i}-pod`, Image: PAUSE_IMAGE, Labels: labels, HostConfig: { NetworkMode: POD_NETWORK, RestartPolicy: { Name: 'no' } } });
    await infra.start();
    const app = await docker.createContainer({ name: `floor-${round}-${i}-main`, Image: TEST_IMAGE, Cmd: ['sleep', '86400'], Labels: labels, HostConfig: { NetworkMode: `container:${infra.id}`, RestartPolicy: { Name: 'no' } } });
    await app.start();
  }
  const seconds = (performance.now() - started) / 1000;
  for (const c of await docker.listContainers({ all: true, filters: { label: [`bench.floor=${round}`] } })) await docker.getContainer(c.Id).remove({ force: true });
  return seconds;
}

it(`apply → ${PODS} pods running, against the same containers made over the Docker API`, async () => {
  // A first round pulls nothing but warms every path up (the agent imports its pause image, the pod network exists).
  await throughFlotilla();
  const flotilla: number[] = [];
  const floor: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    floor.push(await directly(r));
    flotilla.push(await throughFlotilla());
  }
  const ratio = median(flotilla) / median(floor);
  console.log('apply → running (s):', flotilla.map((s) => round(s, 3)), 'floor (s):', floor.map((s) => round(s, 3)), 'ratio:', round(ratio, 2));
  writeResult({
    benchmark: 'apply-to-running',
    parameters: { pods: PODS, rounds: ROUNDS, imagePresent: true, engine: 'dockerd (test harness)', flotilla: 'POST /api/v1/apply until GET pods shows every pod Running (polled every 20 ms)', floor: 'dockerode: per pod, create+start an infra container on the pod network, then create+start the app container in its network namespace; pods one after the other' },
    figures: { flotillaSeconds: flotilla.map((s) => round(s, 3)), medianSeconds: round(median(flotilla), 3) },
    floor: { directSeconds: floor.map((s) => round(s, 3)), medianSeconds: round(median(floor), 3) },
    ratios: { flotillaOverFloor: round(ratio, 2) },
    targets: { applyToRunning: { what: 'apply → pod running (image present) vs the same containers made directly over the Docker API', measured: round(ratio, 2), unit: '× floor', must: 1.3, aim: 1.1, better: 'lower' } },
  });
  expect(median(floor)).toBeGreaterThan(0);
});
