import { execFile, execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, accessSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type Dockerode from 'dockerode';
import type { TestDockerd } from './dockerd.js';
import { ManagedProcess, waitFor } from './processes.js';

// A real image registry (distribution v2, Debian's docker-registry) for pull tests. It runs
// inside the test dockerd's own network namespace, on that namespace's loopback, so the engine
// reaches it at 127.0.0.1:PORT (a registry the engine treats as insecure: plain HTTP) and nothing
// on the host can. Its storage lives in the test's temporary folder. Optionally it asks for a
// password (htpasswd, bcrypt), and it can have a slow front: a relay that lets through only so
// many bytes a second toward the engine, so that a pull lasts long enough to show progress.

const execFileP = promisify(execFile);
const IP = '/usr/sbin/ip';
const REGISTRY = '/usr/bin/docker-registry';
const HTPASSWD = '/usr/bin/htpasswd';
const PACKAGES: Record<string, string> = { [REGISTRY]: 'docker-registry', [HTPASSWD]: 'apache2-utils', [IP]: 'iproute2' };

const START_TIMEOUT_MS = 20_000;

export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT`, as image references name the registry. */
  host: string;
  /** The same storage behind the slow front, when one was asked for. */
  slowHost?: string;
  dir: string;
  logPath: string;
  credentials?: RegistryCredentials;
  /**
   * Pushes the local image `source` to this registry as `repository:tag` (e.g. `flotilla/busybox:1`),
   * then removes the local tag of the pushed reference, so an agent on the engine must pull it.
   * Returns the pushed reference (`127.0.0.1:PORT/repository:tag`).
   */
  push(docker: Dockerode, source: string, target: string): Promise<string>;
  /** Ends the registry (and its front) by pid and removes its storage. */
  stop(): Promise<void>;
}

/** Throws (never skips) when a binary the registry needs is not installed. */
function requireBinary(path: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`required tool ${path} is missing: apt-get install ${PACKAGES[path] ?? path}`);
  }
}

/** Runs a short node script inside the network namespace; its exit code. */
async function nodeInNetns(netns: string, script: string, args: string[]): Promise<number> {
  try {
    await execFileP(IP, ['netns', 'exec', netns, process.execPath, '-e', script, ...args], { timeout: 5_000 });
    return 0;
  } catch (err) {
    return typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
  }
}

/** Exits 0 when a registry answers `GET /v2/` on the port (200, or 401 when it asks for a password). */
const PROBE_SCRIPT = `
const req = require('node:http').get({ host: '127.0.0.1', port: Number(process.argv[1]), path: '/v2/', timeout: 2000 }, (res) => {
  res.resume();
  process.exit(res.statusCode === 200 || res.statusCode === 401 ? 0 : 3);
});
req.on('timeout', () => req.destroy());
req.on('error', () => process.exit(2));
`;

/**
 * A relay (run inside the namespace) that passes at most BYTES_PER_SECOND a second from the
 * registry to each client, in tenths of a second; requests go through at full speed.
 */
const SLOW_FRONT_SCRIPT = `
const net = require('node:net');
const { Transform } = require('node:stream');
const [target, rate] = process.argv.slice(1).map(Number);
const slice = Math.max(1, Math.floor(rate / 10));
class Slow extends Transform {
  _transform(chunk, _enc, done) {
    let at = 0;
    const step = () => {
      if (at >= chunk.length) return done();
      this.push(chunk.subarray(at, at + slice));
      at += slice;
      setTimeout(step, 100);
    };
    step();
  }
}
const server = net.createServer((inbound) => {
  const outbound = net.connect({ host: '127.0.0.1', port: target });
  const end = () => { inbound.destroy(); outbound.destroy(); };
  // The registry may close its side as soon as it has written an answer: what the slow stream
  // still holds goes on to the client, whose side then ends. A failure ends both at once.
  inbound.on('error', end).on('close', end);
  outbound.on('error', end);
  inbound.pipe(outbound);
  outbound.pipe(new Slow()).pipe(inbound);
});
server.listen({ host: '127.0.0.1', port: 0 }, () => console.log(JSON.stringify({ listening: server.address().port })));
process.on('SIGTERM', () => process.exit(0));
`;

let nextPort = 5000;

function spawnInNetns(netns: string, command: string[], logPath: string): ManagedProcess {
  const fd = openSync(logPath, 'a');
  try {
    // `ip netns exec` execs the command in place: the pid is the command's own, and ends it.
    const child = spawn(IP, ['netns', 'exec', netns, ...command], { stdio: ['ignore', fd, fd], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
    return new ManagedProcess(child, logPath);
  } finally {
    closeSync(fd);
  }
}

function registryConfig(storage: string, port: number, htpasswdPath: string | undefined): string {
  return [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog: {disabled: true}',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storage}`,
    '  delete: {enabled: true}',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    ...(htpasswdPath ? ['auth:', '  htpasswd:', '    realm: flotilla-test', `    path: ${htpasswdPath}`] : []),
    '',
  ].join('\n');
}

/**
 * Starts a registry inside `dockerd`'s network namespace, with its storage under `dir`. With
 * `credentials` it refuses every request without them; with `slowBytesPerSecond` it also gets a
 * slow front (`slowHost`). The processes are ManagedProcesses: `stopAll()` ends them too.
 */
export async function startRegistry(opts: { dockerd: TestDockerd; dir: string; credentials?: RegistryCredentials; slowBytesPerSecond?: number }): Promise<TestRegistry> {
  requireBinary(IP);
  requireBinary(REGISTRY);
  if (opts.credentials) requireBinary(HTPASSWD);
  const { netns } = opts.dockerd;
  mkdirSync(opts.dir, { recursive: true });
  const storage = join(opts.dir, 'storage');
  const logPath = join(opts.dir, 'registry.log');
  let htpasswdPath: string | undefined;
  if (opts.credentials) {
    htpasswdPath = join(opts.dir, 'htpasswd');
    const line = execFileSync(HTPASSWD, ['-Bbn', opts.credentials.username, opts.credentials.password], { encoding: 'utf8' });
    writeFileSync(htpasswdPath, line, { mode: 0o600 });
  }
  // The namespace starts with its loopback down (the harness sets it up; again is harmless).
  await execFileP(IP, ['netns', 'exec', netns, IP, 'link', 'set', 'lo', 'up']);

  const processes: ManagedProcess[] = [];
  let port = 0;
  const stop = async (): Promise<void> => {
    await Promise.all(processes.map((p) => p.stop(5_000)));
    rmSync(storage, { recursive: true, force: true });
  };
  try {
    // Ports are free in a fresh namespace; one taken by something else there is skipped.
    for (let attempt = 0; ; attempt++) {
      port = nextPort++;
      const configPath = join(opts.dir, `config-${port}.yml`);
      writeFileSync(configPath, registryConfig(storage, port, htpasswdPath));
      const proc = spawnInNetns(netns, [REGISTRY, 'serve', configPath], logPath);
      processes.push(proc);
      const up = await waitFor(`the registry on 127.0.0.1:${port}`, async () => {
        if (proc.exitCode !== undefined) return 'exited';
        return (await nodeInNetns(netns, PROBE_SCRIPT, [String(port)])) === 0 ? 'up' : undefined;
      }, START_TIMEOUT_MS, 200);
      if (up === 'up') break;
      if (attempt >= 5 || !proc.log().includes('address already in use')) throw new Error(`the registry exited at start; log:\n${proc.log().slice(-2000)}`);
    }
    let slowHost: string | undefined;
    if (opts.slowBytesPerSecond) {
      const front = spawnInNetns(netns, [process.execPath, '-e', SLOW_FRONT_SCRIPT, String(port), String(opts.slowBytesPerSecond)], join(opts.dir, 'slow-front.log'));
      processes.push(front);
      const frontPort = await waitFor('the slow front', () => {
        if (front.exitCode !== undefined) throw new Error(`the slow front exited: ${front.log()}`);
        const line = front.log().split('\n').find((l) => l.startsWith('{"listening"'));
        return line ? (JSON.parse(line) as { listening: number }).listening : undefined;
      }, 10_000, 50);
      slowHost = `127.0.0.1:${frontPort}`;
    }
    const host = `127.0.0.1:${port}`;
    return {
      host,
      ...(slowHost ? { slowHost } : {}),
      dir: opts.dir,
      logPath,
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      push: (docker, source, target) => pushImage(docker, host, opts.credentials, source, target),
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

async function pushImage(docker: Dockerode, host: string, credentials: RegistryCredentials | undefined, source: string, target: string): Promise<string> {
  const colon = target.lastIndexOf(':');
  if (colon < 0) throw new Error(`push target ${target} needs a tag`);
  const repo = `${host}/${target.slice(0, colon)}`;
  const tag = target.slice(colon + 1);
  await docker.getImage(source).tag({ repo, tag });
  const stream = await docker.getImage(repo).push({ tag, authconfig: { serveraddress: host, ...(credentials ?? {}) } });
  // The engine reports a refused push inside a 200 answer's progress stream.
  const events = await new Promise<{ error?: string }[]>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null, res: { error?: string }[]) => (err ? reject(err) : resolve(res))));
  const failure = events.find((e) => e.error);
  if (failure) throw new Error(`pushing ${repo}:${tag} failed: ${failure.error}`);
  const ref = `${repo}:${tag}`;
  await docker.getImage(ref).remove();
  return ref;
}
