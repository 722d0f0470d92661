import { Readable } from 'node:stream';
import type Dockerode from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAUSE_IMAGE, PAUSE_IMAGE_CHANGES, pauseImageTar } from '../../agent/runtime/pause/image.js';
import { startDockerd } from '../harness/dockerd.js';
import type { TestDockerd } from '../harness/dockerd.js';
import { BROKEN_IMAGE, TEST_IMAGE, TEST_IMAGE_V2, buildTestImages, importRootfs } from '../harness/images.js';

// Proves the test engine itself: an isolated dockerd, registry-free test images, and the agent's
// embedded pause image behaving as a well-mannered PID 1.

let engine: TestDockerd | undefined;

function docker(): Dockerode {
  if (!engine) throw new Error('harness dockerd did not start');
  return engine.docker;
}

/** Non-TTY logs are multiplexed: frames of [stream, 0, 0, 0, size (uint32 BE)] then the payload. */
function stdoutOf(raw: Buffer): string {
  const parts: Buffer[] = [];
  for (let off = 0; off + 8 <= raw.length; ) {
    const size = raw.readUInt32BE(off + 4);
    if (raw[off] === 1) parts.push(raw.subarray(off + 8, off + 8 + size));
    off += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}

/** Runs a container to completion and returns its exit code and demultiplexed stdout. */
async function runToCompletion(opts: Dockerode.ContainerCreateOptions): Promise<{ code: number; stdout: string }> {
  const container = await docker().createContainer({ ...opts, HostConfig: { NetworkMode: 'none', ...opts.HostConfig } });
  try {
    await container.start();
    const result = (await container.wait()) as { StatusCode: number };
    const raw = (await container.logs({ stdout: true, stderr: false, follow: false })) as unknown as Buffer;
    return { code: result.StatusCode, stdout: stdoutOf(raw) };
  } finally {
    await container.remove({ force: true });
  }
}

describe('test harness', () => {
  let startMs = 0;
  let imagesMs = 0;

  beforeAll(async () => {
    const t0 = Date.now();
    engine = await startDockerd({ name: 'harness' });
    startMs = Date.now() - t0;
    const t1 = Date.now();
    await buildTestImages(engine.docker);
    imagesMs = Date.now() - t1;
  });

  afterAll(async () => {
    await engine?.stop();
  });

  it('starts an isolated engine', async () => {
    expect(engine?.dockerHost).toMatch(/^unix:\/\/\/tmp\/flt-/);
    expect(engine?.netns).toMatch(/^flt-harness-/);
    const info = (await docker().info()) as { ServerVersion: string };
    expect(info.ServerVersion).toBeTruthy();
    console.log(`startDockerd: ${startMs} ms, buildTestImages: ${imagesMs} ms`);
  });

  it('has the three test images', async () => {
    for (const ref of [TEST_IMAGE, TEST_IMAGE_V2, BROKEN_IMAGE]) {
      const img = await docker().getImage(ref).inspect();
      expect(img.RepoTags).toContain(ref);
    }
    // Idempotent: a second build finds everything present.
    await buildTestImages(docker());
  });

  it('runs busybox images with their own /version', async () => {
    expect(await runToCompletion({ Image: TEST_IMAGE, Cmd: ['cat', '/version'] })).toEqual({ code: 0, stdout: '1\n' });
    expect(await runToCompletion({ Image: TEST_IMAGE_V2, Cmd: ['cat', '/version'] })).toEqual({ code: 0, stdout: '2\n' });
  });

  it('gives imported images their CMD', async () => {
    const img = await docker().getImage(TEST_IMAGE).inspect();
    expect(img.Config.Cmd).toEqual(['/bin/sh']);
    const run = await runToCompletion({ Image: TEST_IMAGE, Cmd: ['sh', '-c', 'echo $PATH; ls /bin/httpd'] });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('/bin/httpd');
  });

  it('has a broken image that exits 1', async () => {
    const run = await runToCompletion({ Image: BROKEN_IMAGE });
    expect(run.code).toBe(1);
  });

  it('imports and runs the pause image, which stops promptly on SIGTERM', async () => {
    const tar = pauseImageTar(process.arch);
    expect(tar, `no pause binary for ${process.arch}`).toBeDefined();
    if (!tar) return;
    await importRootfs(docker(), Readable.from([tar]), PAUSE_IMAGE, [...PAUSE_IMAGE_CHANGES]);
    const img = await docker().getImage(PAUSE_IMAGE).inspect();
    expect(img.Config.Entrypoint).toEqual(['/pause']);

    const container = await docker().createContainer({
      Image: PAUSE_IMAGE,
      Entrypoint: ['/pause'],
      HostConfig: { NetworkMode: 'none' },
    });
    try {
      await container.start();
      await new Promise((r) => setTimeout(r, 1_000));
      const running = await container.inspect();
      expect(running.State.Running).toBe(true);

      const t0 = Date.now();
      await container.stop({ t: 5 });
      const stopMs = Date.now() - t0;
      const stopped = await container.inspect();
      expect(stopped.State.Running).toBe(false);
      expect(stopped.State.ExitCode).toBe(0);
      // With no SIGTERM handler, PID 1 ignores the signal and stop takes the full 5 s.
      expect(stopMs).toBeLessThan(2_000);
    } finally {
      await container.remove({ force: true });
    }
  });

  it('restarts the engine on the same data root: images and containers stay, the containers stopped', async () => {
    const container = await docker().createContainer({ Image: TEST_IMAGE, Cmd: ['sleep', '600'], StopTimeout: 1, HostConfig: { NetworkMode: 'none' } });
    try {
      await container.start();
      let answeredWhileDown = true;
      await engine!.restart({
        whileDown: async () => {
          answeredWhileDown = await docker().ping().then(() => true, () => false);
        },
      });
      expect(answeredWhileDown).toBe(false);
      const after = await container.inspect();
      expect(after.State.Running).toBe(false);
      await container.start();
      expect((await container.inspect()).State.Running).toBe(true);
      expect((await docker().getImage(TEST_IMAGE).inspect()).RepoTags).toContain(TEST_IMAGE);
    } finally {
      await container.remove({ force: true });
    }
  });
});
