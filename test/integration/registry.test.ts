import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, getPod, podRunning, readyCondition, type PodJson } from '../harness/fleet.js';
import { TEST_IMAGE, TEST_IMAGE_V2, buildTestImages } from '../harness/images.js';
import { startRegistry, type TestRegistry } from '../harness/registry.js';
import { watchObjects } from '../harness/watch.js';
import { BIN, REPO, cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// Pulls from a real registry (distribution v2) in the device engine's own network namespace:
// the progress of a slow pull reaches `get events -w` and `describe pod`, a registry that wants
// a password is refused without the pod's imagePullSecrets and served with them, and `:latest`
// is pulled again when the registry's tag has moved.

const NODE = 'edge';
const CREDENTIALS = { username: 'fleet', password: 'pull-S3cret' };
/** The slow front lets through 250 kB/s: the 3 MB layer below takes some 12 s to arrive. */
const SLOW_BYTES_PER_SECOND = 250_000;
const BIG_LAYER_BYTES = 3_000_000;

let dockerd: TestDockerd;
let hub: RunningHub;
let open: TestRegistry;
let locked: TestRegistry;
const dirs = tempDir('registry');

interface EventJson {
  type: string;
  reason: string;
  message: string;
  firstTimestamp: string;
  involvedObject: { kind: string; name: string; uid?: string };
}

function eventsOf(pod: string, uid?: string): EventJson[] {
  return getJson<{ items: EventJson[] }>(hub, ['events'])
    .items.filter((e) => e.involvedObject.kind === 'Pod' && e.involvedObject.name === pod && (!uid || e.involvedObject.uid === uid))
    .sort((a, b) => Date.parse(a.firstTimestamp) - Date.parse(b.firstTimestamp));
}

function pod(name: string, image: string, extra = ''): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 1
${extra}  containers:
    - name: app
      image: ${image}
      command: ["sleep", "3600"]
`;
}

async function imageId(ref: string): Promise<string> {
  return (await dockerd.docker.getImage(ref).inspect()).Id;
}

/** An image of the test image plus a layer of incompressible bytes, made by committing a container. */
async function makeBigImage(ref: string): Promise<void> {
  const c = await dockerd.docker.createContainer({ Image: TEST_IMAGE, Cmd: ['sh', '-c', `head -c ${BIG_LAYER_BYTES} /dev/urandom > /blob`] });
  await c.start();
  expect((await c.wait()) as { StatusCode: number }).toMatchObject({ StatusCode: 0 });
  const [repo, tag] = ref.split(':');
  await c.commit({ repo, tag });
  await c.remove();
}

/** `flotilla get events -w` left running, as a user watching a pod start. */
function watchEvents(): { output: () => string } {
  let out = '';
  const child = spawn(process.execPath, [BIN, 'get', 'events', '-w'], { cwd: REPO, env: { ...process.env, FLOTILLA_SERVER: hub.apiUrl, FLOTILLA_TOKEN: hub.adminToken }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { output: () => out };
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'registry' });
  await buildTestImages(dockerd.docker);
  open = await startRegistry({ dockerd, dir: join(dirs.path, 'open'), slowBytesPerSecond: SLOW_BYTES_PER_SECOND });
  locked = await startRegistry({ dockerd, dir: join(dirs.path, 'locked'), credentials: CREDENTIALS });
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  startAgent({ hub, name: NODE, stateDir: join(dirs.path, 'state'), dockerHost: dockerd.dockerHost });
  await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
});

afterAll(async () => {
  // The registries run in the engine's namespace: they go before it does.
  await stopAll();
  await open?.stop();
  await locked?.stop();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a pull from a registry', () => {
  it('tells its progress, paced, then Pulled and Started, in get events -w, get events and describe pod', async () => {
    await makeBigImage('flotilla-test/big:1');
    await open.push(dockerd.docker, 'flotilla-test/big:1', 'flotilla/big:1');
    // The engine must not hold the new layer, or the pull would only say "Already exists".
    await dockerd.docker.getImage('flotilla-test/big:1').remove();
    const image = `${open.slowHost}/flotilla/big:1`;
    const watch = watchEvents();
    // It lists first, then watches from the list's resourceVersion: nothing after the list is missed.
    await waitFor('the watch to list the events so far', () => watch.output().length > 0, 15_000);
    apply(hub, pod('pulled', image));
    await waitFor('pulled running', () => podRunning(hub, 'pulled'), 90_000);

    const events = await waitFor('Started', () => {
      const e = eventsOf('pulled');
      return e.some((x) => x.reason === 'Started') ? e : undefined;
    }, 15_000);
    const progressPattern = new RegExp(`^Pulling image "${image.replace(/[.]/g, '\\.')}": (\\d+)/(\\d+) layers, ([\\d.]+) of ([\\d.]+) MB downloaded$`);
    const progress = events.filter((e) => e.reason === 'Pulling' && progressPattern.test(e.message));
    expect(progress.length, events.map((e) => e.message).join('\n')).toBeGreaterThanOrEqual(2);
    // The first event says the pull began; progress follows; then Pulled, Created, Started.
    expect(events.map((e) => e.reason).filter((r, i, all) => r !== all[i - 1])).toEqual(['Pulling', 'Pulled', 'Created', 'Started']);
    expect(events[0]!.message).toBe(`Pulling image "${image}"`);
    expect(events.find((e) => e.reason === 'Pulled')!.message).toBe(`Successfully pulled image "${image}"`);
    // Paced: at most one progress event per 5 s of a pull.
    for (let i = 1; i < progress.length; i++) expect(Date.parse(progress[i]!.firstTimestamp) - Date.parse(progress[i - 1]!.firstTimestamp)).toBeGreaterThanOrEqual(4_500);
    // The figures grow, and the total is the layers' size (the new one some 3 MB).
    const figures = progress.map((e) => progressPattern.exec(e.message)!.slice(1).map(Number));
    for (const [done, layers, current, total] of figures) {
      expect(layers).toBe(2);
      expect(done).toBeLessThanOrEqual(layers!);
      expect(current).toBeLessThanOrEqual(total!);
      expect(total, JSON.stringify(figures)).toBeGreaterThanOrEqual(BIG_LAYER_BYTES / 1e6);
    }
    expect(figures.at(-1)![2]).toBeGreaterThan(figures[0]![2]!);

    // What the user watching saw: the progress lines as they came.
    await waitFor('the watch to show Started', () => /Started\s+pod\/pulled/.test(watch.output()), 15_000);
    const watched = watch.output().split('\n').filter((l) => l.includes('pod/pulled'));
    expect(watched.filter((l) => /Pulling\s+pod\/pulled\s+Pulling image ".*": \d+\/2 layers/.test(l)).length).toBe(progress.length);
    expect(watched.some((l) => /Pulled\s+pod\/pulled\s+Successfully pulled image/.test(l))).toBe(true);

    const table = cli(hub, ['get', 'events']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toContain(progress.at(-1)!.message);
    const described = cli(hub, ['describe', 'pod', 'pulled']);
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/Normal\s+Pulled\s+.*flotilla-agent, edge\s+Successfully pulled image/);
    // The latest progress of the pull, not every step of it.
    expect(described.stdout).toContain(progress.at(-1)!.message);
    expect(described.stdout).not.toContain(progress[0]!.message);
    expect(getPod(hub, 'pulled')!.status!.containerStatuses![0]!.image).toBe(image);
  });
});

describe('a registry that wants a password', () => {
  it('refuses a pod without imagePullSecrets: ErrImagePull, then ImagePullBackOff with the registry\'s refusal', async () => {
    const image = await locked.push(dockerd.docker, TEST_IMAGE, 'flotilla/busybox:1');
    // Every status the hub stores, however briefly: ErrImagePull lasts about 2 s.
    const watch = await watchObjects<PodJson>(hub, '/api/v1/namespaces/default/pods');
    onTestFinished(() => watch.stop());
    apply(hub, pod('denied', image));
    const refusal = /no basic auth credentials|unauthorized|authentication required/;
    const waits = () => watch.events.filter((e) => e.object.metadata.name === 'denied').flatMap((e) => e.object.status?.containerStatuses?.[0]?.state.waiting ?? []);
    // As Kubernetes: ErrImagePull for the failed attempt, then ImagePullBackOff while it waits.
    const backoff = await waitFor('ErrImagePull, then ImagePullBackOff', () => {
      const reasons = waits().map((w) => w.reason);
      return reasons.includes('ErrImagePull') && reasons.lastIndexOf('ImagePullBackOff') > reasons.indexOf('ErrImagePull') ? waits().find((w) => w.reason === 'ImagePullBackOff') : undefined;
    }, 30_000);
    expect(waits().find((w) => w.reason === 'ErrImagePull')!.message).toMatch(new RegExp(`^Failed to pull image "${image}": .*(${refusal.source})`));
    expect(backoff.message).toMatch(new RegExp(`^Back-off pulling image "${image}": .*(${refusal.source})`));
    const failed = await waitFor('a Failed event', () => eventsOf('denied').find((e) => e.reason === 'Failed'), 10_000);
    expect(failed).toMatchObject({ type: 'Warning' });
    expect(failed!.message).toMatch(refusal);
    expect(getPod(hub, 'denied')!.status!.phase).toBe('Pending');
    // The registry saw the attempt and said no.
    expect(readFileSync(locked.logPath, 'utf8')).toMatch(/basic authentication challenge/);
  });

  it('pulls with the credentials of a kubernetes.io/dockerconfigjson Secret named in imagePullSecrets', async () => {
    const image = `${locked.host}/flotilla/busybox:1`;
    const auth = Buffer.from(`${CREDENTIALS.username}:${CREDENTIALS.password}`).toString('base64');
    const dockerConfig = JSON.stringify({ auths: { [locked.host]: { auth } } });
    apply(hub, JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'regcred' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from(dockerConfig).toString('base64') } }));
    apply(hub, pod('admitted', image, '  imagePullSecrets: [{name: regcred}]\n'));
    await waitFor('admitted running', () => podRunning(hub, 'admitted'), 60_000);
    // Its own pull, with its credentials: the other pod's back-off did not hold it back.
    const pulled = await waitFor('a Pulled event', () => eventsOf('admitted').find((e) => e.reason === 'Pulled'), 10_000);
    expect(pulled.message).toBe(`Successfully pulled image "${image}"`);
  });
});

describe('imagePullPolicy', () => {
  it('pulls `:latest` again when the pod is made anew, and runs the image the tag has moved to', async () => {
    const image = await open.push(dockerd.docker, TEST_IMAGE, 'flotilla/app:latest');
    apply(hub, pod('latest', image));
    const first = await waitFor('latest running', () => podRunning(hub, 'latest'), 60_000);
    expect(first.status!.containerStatuses![0]).toMatchObject({ imageID: await imageId(TEST_IMAGE) });

    await open.push(dockerd.docker, TEST_IMAGE_V2, 'flotilla/app:latest');
    // The device still holds the old image under that tag, as it would after the registry moved it.
    await dockerd.docker.getImage(TEST_IMAGE).tag({ repo: `${open.host}/flotilla/app`, tag: 'latest' });
    expect(await imageId(image)).toBe(await imageId(TEST_IMAGE));

    expect(cli(hub, ['delete', 'pod', 'latest']).code).toBe(0);
    await waitFor('the pod gone', () => !getPod(hub, 'latest'), 30_000);
    apply(hub, pod('latest', image));
    const again = await waitFor('latest running anew', () => {
      const p = podRunning(hub, 'latest');
      return p && p.metadata.uid !== first.metadata.uid ? p : undefined;
    }, 60_000);
    expect(again.status!.containerStatuses![0]).toMatchObject({ imageID: await imageId(TEST_IMAGE_V2) });
    expect(await imageId(image)).toBe(await imageId(TEST_IMAGE_V2));
    await waitFor('a Pulled event of the new pod', () => eventsOf('latest', again.metadata.uid).some((e) => e.reason === 'Pulled'), 10_000);
  });
});
