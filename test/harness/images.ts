import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Dockerode from 'dockerode';
import { requireTool } from './dockerd.js';

// Test images are made locally from the host's static busybox, because the test engine (like many
// edge devices) has no registry to pull from.

export const TEST_IMAGE = 'flotilla-test/busybox:1';
export const TEST_IMAGE_V2 = 'flotilla-test/busybox:2';
export const BROKEN_IMAGE = 'flotilla-test/broken:1';

const BUSYBOX = '/usr/bin/busybox';
const TAR = '/usr/bin/tar';

// Tests rely on these; every other applet busybox was built with is linked as well.
const REQUIRED_APPLETS = [
  'sh', 'sleep', 'httpd', 'nc', 'cat', 'echo', 'ls', 'true', 'false', 'wget', 'env', 'ps', 'kill',
  'mkdir', 'date',
];

function busyboxApplets(): string[] {
  const listed = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .map((a) => a.trim())
    .filter((a) => /^[A-Za-z0-9_.+-]+$/.test(a) && a !== 'busybox');
  const missing = REQUIRED_APPLETS.filter((a) => !listed.includes(a));
  if (missing.length > 0) throw new Error(`${BUSYBOX} lacks applets ${missing.join(', ')}: apt-get install busybox-static`);
  return listed;
}

interface ImageSpec {
  ref: string;
  version: string;
  cmd: string[];
}

const SPECS: ImageSpec[] = [
  { ref: TEST_IMAGE, version: '1', cmd: ['/bin/sh'] },
  { ref: TEST_IMAGE_V2, version: '2', cmd: ['/bin/sh'] },
  { ref: BROKEN_IMAGE, version: '1', cmd: ['/bin/sh', '-c', 'exit 1'] },
];

function stageRootfs(dir: string, version: string, applets: string[]): void {
  for (const d of ['bin', 'tmp', 'etc', 'www', 'proc', 'sys', 'dev', 'root', 'var', 'home']) {
    fs.mkdirSync(path.join(dir, d), { recursive: true });
  }
  fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
  fs.copyFileSync(BUSYBOX, path.join(dir, 'bin', 'busybox'));
  fs.chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
  for (const applet of applets) fs.symlinkSync('busybox', path.join(dir, 'bin', applet));
  // Some scripts hard-code /usr/bin/env or /sbin paths; point those at the same bin.
  fs.mkdirSync(path.join(dir, 'usr'), { recursive: true });
  fs.symlinkSync('../bin', path.join(dir, 'usr', 'bin'));
  fs.symlinkSync('bin', path.join(dir, 'sbin'));
  fs.writeFileSync(
    path.join(dir, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  fs.writeFileSync(path.join(dir, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  fs.writeFileSync(path.join(dir, 'www', 'index.html'), `<html><body>flotilla test ${version}</body></html>\n`);
  fs.writeFileSync(path.join(dir, 'version'), `${version}\n`);
}

function tarStream(dir: string): { stream: NodeJS.ReadableStream; done: Promise<void> } {
  // Numeric root ownership so the image does not depend on the host's user names.
  const tar = spawn(TAR, ['-C', dir, '--numeric-owner', '--owner=0', '--group=0', '-cf', '-', '.'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  tar.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<void>((resolve, reject) => {
    tar.on('error', reject);
    tar.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar exited ${code}: ${stderr.trim()}`))));
  });
  return { stream: tar.stdout, done };
}

async function imageExists(docker: Dockerode, ref: string): Promise<boolean> {
  try {
    await docker.getImage(ref).inspect();
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw err;
  }
}

/**
 * Imports a root file system tar as an image. An imported image has no configuration at all, so
 * `changes` (Dockerfile instructions, sent as repeated query parameters) gives it its CMD.
 */
export async function importRootfs(
  docker: Dockerode,
  tar: NodeJS.ReadableStream,
  ref: string,
  changes: string[],
): Promise<void> {
  const colon = ref.lastIndexOf(':');
  const repo = ref.slice(0, colon);
  const tag = ref.slice(colon + 1);
  const stream = await docker.importImage(tar, { repo, tag, changes });
  // The engine reports failures inside the progress stream with a 200 status.
  const events = await new Promise<Array<{ error?: string; errorDetail?: { message?: string } }>>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, res: Array<{ error?: string }>) =>
      err ? reject(err) : resolve(res),
    );
  });
  const failure = events.find((e) => e.error ?? e.errorDetail);
  if (failure) throw new Error(`importing ${ref} failed: ${failure.error ?? failure.errorDetail?.message}`);
  if (!(await imageExists(docker, ref))) throw new Error(`importing ${ref} reported success but the image is missing`);
}

export async function buildTestImages(docker: Dockerode): Promise<void> {
  requireTool(BUSYBOX);
  requireTool(TAR);
  let applets: string[] | undefined;
  for (const spec of SPECS) {
    if (await imageExists(docker, spec.ref)) continue;
    applets ??= busyboxApplets();
    const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'flt-rootfs-'));
    try {
      stageRootfs(staging, spec.version, applets);
      const tar = tarStream(staging);
      await Promise.all([
        tar.done,
        importRootfs(docker, tar.stream, spec.ref, [`CMD ${JSON.stringify(spec.cmd)}`, 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'WORKDIR /']),
      ]);
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }
}
