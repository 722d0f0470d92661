import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';
import { watchObjects, type WatchEvent } from '../harness/watch.js';

// Jobs and CronJobs end to end: a real hub, one real agent, the test dockerd.

interface Condition {
  type: string;
  status: string;
  reason?: string;
}
interface JobJson {
  metadata: { name: string; uid: string; annotations?: Record<string, string> };
  status?: { active?: number; succeeded?: number; failed?: number; conditions?: Condition[] };
}
interface PodJson {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { nodeName?: string };
  status?: { phase?: string };
}

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('jobs');

function apply(manifest: string): void {
  const r = cli(hub, ['apply', '-f', '-'], { input: manifest });
  expect(r.code, r.stderr).toBe(0);
}

function job(name: string): JobJson {
  return getJson<JobJson>(hub, ['job', name]);
}

function jobs(): JobJson[] {
  return getJson<{ items: JobJson[] }>(hub, ['jobs']).items;
}

function podsOf(jobName: string): PodJson[] {
  return getJson<{ items: PodJson[] }>(hub, ['pods', '-l', `job-name=${jobName}`]).items;
}

function finished(j: JobJson): Condition | undefined {
  return j.status?.conditions?.find((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');
}

function jobManifest(name: string, command: string, extra = ''): string {
  return `apiVersion: batch/v1
kind: Job
metadata: {name: ${name}}
spec:
${extra}  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: ${TEST_IMAGE}
          command: ["sh", "-c", "${command}"]
`;
}

function cronJobManifest(name: string, schedule: string, command: string, policy: string): string {
  return `apiVersion: batch/v1
kind: CronJob
metadata: {name: ${name}}
spec:
  schedule: "${schedule}"
  concurrencyPolicy: ${policy}
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
            - name: main
              image: ${TEST_IMAGE}
              command: ["sh", "-c", "${command}"]
`;
}

/** The most Jobs of `owner` that were unfinished at the same time, replaying every watch event. */
function mostActiveAtOnce(events: WatchEvent<JobJson & { metadata: { ownerReferences?: { name: string }[] } }>[], owner: string): number {
  const active = new Set<string>();
  let most = 0;
  for (const e of events) {
    if (!e.object.metadata.ownerReferences?.some((o) => o.name === owner)) continue;
    if (e.type === 'DELETED' || finished(e.object)) active.delete(e.object.metadata.name);
    else active.add(e.object.metadata.name);
    most = Math.max(most, active.size);
  }
  return most;
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'jobs' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  startAgent({ hub, name: 'worker', stateDir: join(dirs.path, 'state-worker'), dockerHost: dockerd.dockerHost });
  await waitFor('the node Ready', () => getJson<{ status?: { conditions?: Condition[] } }>(hub, ['node', 'worker']).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'), 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('Jobs on a real agent', () => {
  it('completes a Job whose pod exits 0, and keeps the pod with its logs', async () => {
    apply(jobManifest('hello', 'echo hello from a job'));
    const done = await waitFor('the Job to finish', () => finished(job('hello')) && job('hello'), 60_000, 250);
    expect(finished(done)).toMatchObject({ type: 'Complete', status: 'True' });
    expect(done.status).toMatchObject({ succeeded: 1, failed: 0, active: 0 });
    const pods = podsOf('hello');
    expect(pods.map((p) => [p.status?.phase, p.spec.nodeName])).toEqual([['Succeeded', 'worker']]);
    const logs = cli(hub, ['logs', pods[0]!.metadata.name]);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toContain('hello from a job');
    const described = cli(hub, ['describe', 'job', 'hello']).stdout;
    expect(described).toMatch(/Pods Statuses:\s+0 Active \/ 1 Succeeded \/ 0 Failed/);
    expect(described).toContain('Job completed');
    expect(cli(hub, ['get', 'jobs']).stdout).toMatch(/hello\s+Complete\s+1\/1/);
    // Deleting the Job takes its pod, and the device removes the containers.
    expect(cli(hub, ['delete', 'job', 'hello']).code).toBe(0);
    await waitFor('the pod gone', () => podsOf('hello').length === 0, 30_000);
  });

  it('fails a Job with BackoffLimitExceeded after backoffLimit + 1 failed pods', async () => {
    apply(jobManifest('broken', 'exit 1', '  backoffLimit: 1\n'));
    const failed = await waitFor('the Job to fail', () => finished(job('broken')) && job('broken'), 60_000, 500);
    expect(finished(failed)).toMatchObject({ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded' });
    expect(failed.status).toMatchObject({ failed: 2, succeeded: 0, active: 0 });
    expect(podsOf('broken').map((p) => p.status?.phase)).toEqual(['Failed', 'Failed']);
    expect(cli(hub, ['describe', 'job', 'broken']).stdout).toContain('BackoffLimitExceeded');
  });
});

describe('CronJobs on a real agent', () => {
  it('fires a schedule with seconds, one Job per fire time, names increasing', async () => {
    apply(cronJobManifest('tick', '*/5 * * * * *', 'true', 'Allow'));
    const made = await waitFor('two Jobs', () => {
      const mine = jobs().filter((j) => j.metadata.name.startsWith('tick-'));
      return mine.length >= 2 && mine;
    }, 30_000, 500);
    const stamps = made.map((j) => Number(j.metadata.name.slice('tick-'.length))).sort((a, b) => a - b);
    // Seconds since the epoch, on the fives, one per fire time.
    expect(stamps.every((s) => s % 5 === 0)).toBe(true);
    expect(new Set(stamps).size).toBe(stamps.length);
    for (const j of made) expect(Date.parse(j.metadata.annotations?.['batch.kubernetes.io/cronjob-scheduled-timestamp'] ?? '')).toBe(Number(j.metadata.name.slice('tick-'.length)) * 1000);
    expect(cli(hub, ['delete', 'cronjob', 'tick']).code).toBe(0);
    await waitFor('its Jobs and pods gone', () => !jobs().some((j) => j.metadata.name.startsWith('tick-')) && getJson<{ items: PodJson[] }>(hub, ['pods']).items.every((p) => !p.metadata.labels?.['job-name']?.startsWith('tick-')), 30_000, 500);
  });

  it('with concurrencyPolicy Forbid never runs two Jobs at once', async () => {
    // Every state each Job passed through, not samples: a second Job active for an instant shows.
    const watch = await watchObjects<JobJson & { metadata: { ownerReferences?: { name: string }[] } }>(hub, '/api/v1/namespaces/default/jobs');
    const seen = () => new Set(watch.events.filter((e) => e.object.metadata.ownerReferences?.some((o) => o.name === 'slow')).map((e) => e.object.metadata.name));
    try {
      // Each Job sleeps longer than the 5 s period: runs are held back, and the latest held-back
      // one starts when the running Job finishes.
      apply(cronJobManifest('slow', '*/5 * * * * *', 'sleep 8', 'Forbid'));
      await waitFor('three Jobs, one after the other', () => seen().size >= 3, 60_000, 250);
    } finally {
      await watch.stop();
    }
    expect(mostActiveAtOnce(watch.events, 'slow')).toBe(1);
    const described = cli(hub, ['describe', 'cronjob', 'slow']).stdout;
    expect(described).toMatch(/Concurrency Policy:\s+Forbid/);
    expect(described).toContain('because prior execution is running and concurrency policy is Forbid');
    expect(cli(hub, ['delete', 'cronjob', 'slow']).code).toBe(0);
  });
});
