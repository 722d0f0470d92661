import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startDockerd, type TestDockerd } from '../test/harness/dockerd.js';
import { buildTestImages, TEST_IMAGE } from '../test/harness/images.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../test/harness/processes.js';
import { MB, MiB, procStat, round, writeResult } from './results.js';

// Agent footprint at rest (docs/ARCHITECTURE.md, 'Performance targets': ≤ 60 MB RSS with 10 pods, aim ≤ 50 MB), beside
// its floor measured in the same run: a bare Node.js process doing nothing.

const PODS = 10;
const SETTLE_MS = 10_000;
// Two collections at the default 15 s metrics interval.
const WINDOW_MS = 30_000;

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('footprint');

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'footprint' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  dirs.remove();
});

async function atRest(pid: number): Promise<{ rssMiB: number; cpuPercent: number }> {
  const before = procStat(pid);
  const samples: number[] = [];
  const end = Date.now() + WINDOW_MS;
  while (Date.now() < end) {
    samples.push(procStat(pid).rssBytes);
    await new Promise((r) => setTimeout(r, 1_000));
  }
  const after = procStat(pid);
  const cpuSeconds = after.cpuSeconds - before.cpuSeconds;
  const rss = samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;
  return { rssMiB: rss / MiB, cpuPercent: (100 * cpuSeconds) / (WINDOW_MS / 1000) };
}

it(`agent with ${PODS} pods at rest`, async () => {
  const agent: ManagedProcess = startAgent({ hub, name: 'footprint', stateDir: join(dirs.path, 'state'), dockerHost: dockerd.dockerHost, nodeOptions: (process.env.AGENT_NODE_OPTIONS ?? '').split(' ').filter(Boolean), env: { FLOTILLA_LOG_LEVEL: 'info' } });
  await waitFor('the node to be Ready', () => getJson<{ status?: { conditions?: { type: string; status: string }[] } }>(hub, ['node', 'footprint']).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'), 60_000);
  const manifests = Array.from({ length: PODS }, (_, i) => `apiVersion: v1\nkind: Pod\nmetadata: {name: idle-${i}}\nspec:\n  nodeName: footprint\n  terminationGracePeriodSeconds: 1\n  containers:\n    - name: main\n      image: ${TEST_IMAGE}\n      command: ["sleep", "86400"]\n`).join('---\n');
  expect(cli(hub, ['apply', '-f', '-'], { input: manifests }).code).toBe(0);
  await waitFor(`${PODS} pods Running`, () => getJson<{ items: { status?: { phase?: string } }[] }>(hub, ['pods']).items.filter((p) => p.status?.phase === 'Running').length === PODS, 120_000);
  await new Promise((r) => setTimeout(r, SETTLE_MS));

  const floorProc = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1_000));
  const [agentFigures, floor] = await Promise.all([atRest(agent.child.pid!), atRest(floorProc.pid!)]);
  floorProc.kill('SIGKILL');

  // The same agent without metrics collection (--metrics-interval 0): what collection costs.
  await agent.stop();
  const quiet = startAgent({ hub, name: 'footprint', stateDir: join(dirs.path, 'state'), dockerHost: dockerd.dockerHost, extraArgs: ['--metrics-interval', '0'], env: { FLOTILLA_LOG_LEVEL: 'info' } });
  await waitFor('the agent without metrics to report', () => getJson<{ status?: { conditions?: { type: string; status: string }[] } }>(hub, ['node', 'footprint']).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'), 60_000);
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const quietFigures = await atRest(quiet.child.pid!);

  const result = {
    benchmark: 'agent-footprint',
    parameters: { pods: PODS, settleMs: SETTLE_MS, windowMs: WINDOW_MS, engine: 'dockerd (test harness)', metricsIntervalSeconds: 15 },
    figures: {
      agentRssMiB: round(agentFigures.rssMiB),
      agentCpuPercentAtRest: round(agentFigures.cpuPercent, 2),
      withoutMetrics: { agentRssMiB: round(quietFigures.rssMiB), agentCpuPercentAtRest: round(quietFigures.cpuPercent, 2) },
      // Collection of 10 containers' and the node's metrics every 15 s, and sending them.
      metricsCollectionCpuPercent: round(agentFigures.cpuPercent - quietFigures.cpuPercent, 2),
    },
    floor: { bareNodeRssMiB: round(floor.rssMiB), bareNodeCpuPercent: round(floor.cpuPercent, 2) },
    ratios: { rssOverBareNode: round(agentFigures.rssMiB / floor.rssMiB, 2) },
    // The design's "60 MB" read as decimal megabytes.
    targets: { agentRss: { what: 'agent memory, 10 pods, at rest', measured: round((agentFigures.rssMiB * MiB) / MB), unit: 'MB RSS', must: 60, aim: 50, better: 'lower' as const } },
  };
  writeResult(result);
  console.log(JSON.stringify(result.figures), JSON.stringify(result.floor));
  expect(agentFigures.rssMiB).toBeGreaterThan(floor.rssMiB);
});
