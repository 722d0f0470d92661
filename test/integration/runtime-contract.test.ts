import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { DockerRuntime } from '../../agent/runtime/docker.js';
import { PAUSE_IMAGE_CHANGES, pauseImageTar } from '../../agent/runtime/pause/image.js';
import type { ContainerCreateSpec, ContainerRuntime, RuntimeContainer } from '../../agent/runtime/runtime.js';
import { MemoryRuntime } from '../../bench/hollow/memory-runtime.js';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { BROKEN_IMAGE, buildTestImages, TEST_IMAGE, TEST_IMAGE_V2 } from '../harness/images.js';
import { waitFor } from '../harness/processes.js';

// The hollow devices of bench/ run the real agent on an in-memory engine; their figures mean
// something only if that engine behaves as the real one does. The same checks, of everything
// the agent relies on, run against DockerRuntime on the harness's dockerd and against
// MemoryRuntime.

let dockerd: TestDockerd;

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'contract' });
  await buildTestImages(dockerd.docker);
});

afterAll(async () => {
  await dockerd?.stop();
});

const runtimes: [string, () => ContainerRuntime][] = [
  ['DockerRuntime on dockerd', () => new DockerRuntime(dockerd.dockerHost)],
  // The test images as buildTestImages makes them: a shell by default, the broken one exits 1.
  ['MemoryRuntime', () => new MemoryRuntime({ images: [{ ref: TEST_IMAGE, cmd: ['/bin/sh'] }, { ref: TEST_IMAGE_V2, cmd: ['/bin/sh'] }, { ref: BROKEN_IMAGE, cmd: ['/bin/sh', '-c', 'exit 1'] }] })],
];

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

describe.each(runtimes)('%s', (_name, make) => {
  let runtime: ContainerRuntime;
  // Labels of this run only: the checks never see another run's containers.
  const run = randomBytes(4).toString('hex');
  const labels = { 'contract.run': run };
  const network = `contract-${run}`;
  let seq = 0;

  function spec(over: Partial<ContainerCreateSpec> = {}): ContainerCreateSpec {
    return { name: `contract-${run}-${seq++}`, image: TEST_IMAGE, labels, networkMode: 'none', cmd: ['sleep', '3600'], stopTimeout: 1, ...over };
  }

  async function find(id: string): Promise<RuntimeContainer | undefined> {
    return (await runtime.listContainers(labels)).find((c) => c.id === id);
  }

  async function started(over: Partial<ContainerCreateSpec> = {}): Promise<string> {
    const id = await runtime.createContainer(spec(over));
    await runtime.startContainer(id);
    return id;
  }

  beforeAll(() => {
    runtime = make();
  });

  it('answers a ping with its name and version', async () => {
    const info = await runtime.ping();
    expect(info.name).toMatch(/\S/);
    expect(info.version).toMatch(/\S/);
  });

  it('knows the images it holds, by reference, and refuses a pull no registry answers', async () => {
    expect(await runtime.hasImage(TEST_IMAGE)).toBe(true);
    expect(await runtime.hasImage('flotilla-test/absent:1')).toBe(false);
    expect((await runtime.listImages()).some((i) => i.tags.includes(TEST_IMAGE))).toBe(true);
    // A registry on the engine's own loopback that is not there.
    await expect(runtime.pullImage('127.0.0.1:1/absent:1')).rejects.toThrow();
    expect(await runtime.hasImage('127.0.0.1:1/absent:1')).toBe(false);
  });

  it('imports the pause image from the agent’s tarball and runs it with its entrypoint', async () => {
    const repo = `contract/pause-${run}`;
    await runtime.importImage(pauseImageTar(process.arch)!, repo, '1', PAUSE_IMAGE_CHANGES);
    expect(await runtime.hasImage(`${repo}:1`)).toBe(true);
    const id = await started({ image: `${repo}:1`, cmd: undefined });
    expect((await find(id))?.state).toBe('running');
    await runtime.removeContainer(id);
  });

  it('creates a container with its labels, lists it by them, and refuses a name in use or a missing image', async () => {
    const s = spec();
    const id = await runtime.createContainer(s);
    const c = await find(id);
    expect(c).toMatchObject({ id, name: s.name, image: TEST_IMAGE, state: 'created', labels: expect.objectContaining(labels) });
    expect(c?.createdAt).toBeTruthy();
    expect(await runtime.listContainers({ 'contract.run': `${run}-other` })).toEqual([]);
    await expect(runtime.createContainer({ ...s })).rejects.toThrow();
    await expect(runtime.createContainer(spec({ image: 'flotilla-test/absent:1' }))).rejects.toThrow();
    await runtime.removeContainer(id);
  });

  it('starts, stops and removes, each twice without error, with the state and times the agent reads', async () => {
    const id = await runtime.createContainer(spec());
    await runtime.startContainer(id);
    await runtime.startContainer(id);
    const running = await find(id);
    expect(running?.state).toBe('running');
    expect(running?.startedAt).toBeTruthy();
    await runtime.stopContainer(id, 1);
    await runtime.stopContainer(id, 1);
    const stopped = await find(id);
    expect(stopped?.state).toBe('exited');
    expect(stopped?.finishedAt).toBeTruthy();
    expect(stopped?.exitCode).not.toBe(0);
    await runtime.removeContainer(id);
    await runtime.removeContainer(id);
    await runtime.stopContainer(id);
    expect(await find(id)).toBeUndefined();
    await expect(runtime.startContainer(id)).rejects.toThrow();
  });

  it('reports a command that ends with its exit code, and the image’s own command', async () => {
    const exits3 = await started({ cmd: ['sh', '-c', 'exit 3'] });
    const broken = await started({ image: BROKEN_IMAGE, cmd: undefined });
    await waitFor('both to exit', async () => (await find(exits3))?.state === 'exited' && (await find(broken))?.state === 'exited', 30_000);
    expect((await find(exits3))?.exitCode).toBe(3);
    expect((await find(broken))?.exitCode).toBe(1);
    for (const id of [exits3, broken]) await runtime.removeContainer(id);
  });

  it('runs commands in a running container, and refuses to in a stopped one', async () => {
    const id = await started();
    expect(await runtime.exec(id, ['true'], 10_000)).toMatchObject({ exitCode: 0 });
    expect((await runtime.exec(id, ['false'], 10_000)).exitCode).not.toBe(0);
    expect((await runtime.exec(id, ['sh', '-c', 'echo contract'], 10_000)).output).toContain('contract');
    await runtime.stopContainer(id, 1);
    await expect(runtime.exec(id, ['true'], 10_000)).rejects.toThrow();
    await runtime.removeContainer(id);
    await expect(runtime.exec(id, ['true'], 10_000)).rejects.toThrow();
  });

  it('gives a container on a named network an address, and none to one joined to its namespace', async () => {
    await runtime.ensureNetwork(network, '10.231.0.0/24');
    await runtime.ensureNetwork(network, '10.231.0.0/24');
    const infra = await started({ networkMode: network });
    const joined = await started({ networkMode: `container:${infra}` });
    expect((await find(infra))?.podIP).toMatch(/^10\.231\.0\.\d+$/);
    expect((await find(joined))?.podIP).toBeUndefined();
    for (const id of [joined, infra]) await runtime.removeContainer(id);
  });

  it('keeps a container’s output, all of it or the last lines, and none for an unknown container', async () => {
    const id = await started({ cmd: ['sh', '-c', 'echo one; echo two'] });
    await waitFor('it to exit', async () => (await find(id))?.state === 'exited', 30_000);
    expect(await readAll(await runtime.containerLogs(id, { follow: false }))).toBe('one\ntwo\n');
    expect(await readAll(await runtime.containerLogs(id, { follow: false, tail: 1 }))).toBe('two\n');
    await runtime.removeContainer(id);
    await expect(runtime.containerLogs(id, { follow: false })).rejects.toThrow();
  });

  it('reads the figures of a running container, and none of a stopped one', async () => {
    const id = await started();
    expect(await runtime.containerStats!(id)).toBeDefined();
    await runtime.stopContainer(id, 1);
    expect(await runtime.containerStats!(id)).toBeUndefined();
    await runtime.removeContainer(id);
  });

  it('refuses to remove an image a container was made from, running or not', async () => {
    const id = await runtime.createContainer(spec({ image: TEST_IMAGE_V2 }));
    const image = (await runtime.listImages()).find((i) => i.tags.includes(TEST_IMAGE_V2))!;
    await expect(runtime.removeImage(image.id)).rejects.toThrow();
    await runtime.removeContainer(id);
    expect(await runtime.hasImage(TEST_IMAGE_V2)).toBe(true);
  });

  it('tells a watcher of the changes of containers with its labels, and not of others, until stopped', async () => {
    let mine = 0;
    let others = 0;
    const stopMine = await runtime.watchContainers(labels, () => mine++, () => undefined);
    const stopOthers = await runtime.watchContainers({ 'contract.run': `${run}-other` }, () => others++, () => undefined);
    // dockerd answers an events request just before it subscribes it: a change in that instant
    // is not told (the agent's periodic resync covers it). Let the subscription settle first.
    await new Promise((r) => setTimeout(r, 500));
    const id = await started();
    await waitFor('an event for the start', () => mine > 0, 30_000);
    // Counted before the stop: its events may arrive before the stop call returns.
    const seen = mine;
    await runtime.stopContainer(id, 1);
    await waitFor('an event for the stop', () => mine > seen, 30_000);
    expect(others).toBe(0);
    stopMine();
    stopOthers();
    await runtime.removeContainer(id);
  });
});
