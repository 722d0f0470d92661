import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { readyCondition } from '../harness/fleet.js';
import { BIN, ManagedProcess, REPO, spawnLogged, startAgent, startHub, stopAll, tempDir, waitFor } from '../harness/processes.js';

// A hub starts whole or not at all, and a signal always ends it. Whatever keeps it from
// starting (a port taken, a data directory it cannot write, a store it cannot open, a bad
// flag), it exits non-zero within seconds with the reason, and what it had opened is closed:
// no MQTT port left taking logins. SIGTERM ends it during start-up and while it serves, with
// devices connected and a watch open.

const UNSHARE = '/usr/bin/unshare';
/** How long a hub that cannot start may take to say so and exit (node's own start included). */
const EXIT_WITHIN_MS = 8_000;

const dirs = tempDir('lifecycle');
const listeners: Server[] = [];
let sequence = 0;

/** A TCP port free on loopback right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A listener of the test's own on loopback (a free port unless given one); closed after each test. */
async function listenOn(port = 0, onConnection?: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => onConnection?.(socket));
  listeners.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return { server, port: (server.address() as { port: number }).port };
}

/** Whether nothing listens on this loopback port: the test can take it. */
async function portIsFree(port: number): Promise<boolean> {
  const server = createServer();
  const free = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (free) await new Promise((resolve) => server.close(resolve));
  return free;
}

function newDataDir(): string {
  const dir = join(dirs.path, `hub-${++sequence}`);
  return dir;
}

/**
 * `flotilla hub ARGS` as a user starts it, its output in a log file. `wrap` runs it through
 * another program first (`unshare … sh -c '…; exec "$@"'`), which execs node in its place: the
 * pid is node's own either way, so signals reach the hub and stopAll() ends it.
 */
function spawnHub(args: string[], wrap: string[] = []): ManagedProcess {
  // The relay would make an interface in the host's namespace: off, as startHub has it.
  return spawnLogged([BIN, 'hub', '--relay', 'off', ...args], join(dirs.path, `hub-${++sequence}.log`), REPO, {}, undefined, wrap);
}

/** The exit status of a process that must end within `ms` (fails the test, and kills it, if it does not). */
async function exitsWithin(proc: ManagedProcess, ms: number): Promise<number | null | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  const outcome = await Promise.race([proc.exited, timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    const log = proc.log();
    await proc.kill();
    return expect.fail(`the hub was still running after ${ms} ms; its log:\n${log.slice(-3000)}`);
  }
  return proc.exitCode;
}

/** The error line the CLI printed (the last `error: …` line of the output). */
function errorLine(proc: ManagedProcess): string {
  return proc.log().split('\n').filter((l) => l.startsWith('error: ')).at(-1) ?? '';
}

afterEach(async () => {
  await stopAll();
  await Promise.all(listeners.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

afterAll(() => {
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a hub that cannot start exits non-zero with the reason and leaves nothing open', () => {
  it('API port taken: exits 1 naming --api-port, and its MQTT port is free again', async () => {
    const taken = await listenOn();
    const mqttPort = await freePort();
    const hub = spawnHub(['--data-dir', newDataDir(), '--api-port', String(taken.port), '--mqtt-port', String(mqttPort)]);
    expect(await exitsWithin(hub, EXIT_WITHIN_MS)).toBe(1);
    expect(errorLine(hub)).toContain(`127.0.0.1:${taken.port}`);
    expect(errorLine(hub)).toContain('--api-port');
    expect(errorLine(hub)).toContain('in use');
    // It had its broker listening before the API failed: closed again.
    expect(hub.log()).toContain('mqtt broker listening');
    expect(await portIsFree(mqttPort)).toBe(true);
  });

  it('MQTT port taken: exits 1 naming --mqtt-port, and its API port is free', async () => {
    const taken = await listenOn();
    const apiPort = await freePort();
    const hub = spawnHub(['--data-dir', newDataDir(), '--api-port', String(apiPort), '--mqtt-port', String(taken.port)]);
    expect(await exitsWithin(hub, EXIT_WITHIN_MS)).toBe(1);
    expect(errorLine(hub)).toContain('--mqtt-port');
    expect(errorLine(hub)).toContain(`127.0.0.1:${taken.port}`);
    expect(await portIsFree(apiPort)).toBe(true);
    // The listener the hub could not take still answers: the hub never touched it.
    expect(taken.server.listening).toBe(true);
  });

  it('data directory on a read-only file system: exits 1 naming --data-dir', async () => {
    requireTool(UNSHARE);
    const dataDir = newDataDir();
    mkdirSync(dataDir);
    const [apiPort, mqttPort] = [await freePort(), await freePort()];
    // A read-only tmpfs over the data directory, in a mount namespace of the hub's own: it goes
    // away with the process. (Root ignores file modes, so a mode would not stop this hub.)
    const readOnly = [UNSHARE, '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', 'mount -t tmpfs -o ro,size=1m flt-ro "$0" && exec "$@"', dataDir];
    const wrapped = spawnHub(['--data-dir', dataDir, '--api-port', String(apiPort), '--mqtt-port', String(mqttPort)], readOnly);
    expect(await exitsWithin(wrapped, EXIT_WITHIN_MS)).toBe(1);
    expect(errorLine(wrapped)).toContain('--data-dir');
    expect(errorLine(wrapped)).toContain(dataDir);
    expect(await portIsFree(apiPort)).toBe(true);
    expect(await portIsFree(mqttPort)).toBe(true);
  });

  it('store that is not a database: exits 1 naming --data-dir and the reason', async () => {
    const dataDir = newDataDir();
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, 'flotilla.db'), 'this is not an SQLite database, but it is the store file\n'.repeat(200));
    const [apiPort, mqttPort] = [await freePort(), await freePort()];
    const hub = spawnHub(['--data-dir', dataDir, '--api-port', String(apiPort), '--mqtt-port', String(mqttPort)]);
    expect(await exitsWithin(hub, EXIT_WITHIN_MS)).toBe(1);
    expect(errorLine(hub)).toContain('--data-dir');
    expect(errorLine(hub)).toContain('not a database');
    expect(await portIsFree(apiPort)).toBe(true);
    expect(await portIsFree(mqttPort)).toBe(true);
  });

  it('data directory in use by another hub: exits 1 naming --data-dir; the running hub is untouched; a kill -9 leaves no stale lock', async () => {
    const dataDir = newDataDir();
    const first = await startHub({ dataDir });
    const [apiPort, mqttPort] = [await freePort(), await freePort()];
    const second = spawnHub(['--data-dir', dataDir, '--api-port', String(apiPort), '--mqtt-port', String(mqttPort)]);
    expect(await exitsWithin(second, EXIT_WITHIN_MS)).toBe(1);
    expect(errorLine(second)).toContain('another hub is running on the data directory');
    expect(errorLine(second)).toContain('--data-dir');
    expect(await portIsFree(apiPort)).toBe(true);
    expect(await portIsFree(mqttPort)).toBe(true);
    expect((await fetch(`${first.apiUrl}/healthz`)).status).toBe(200);
    expect(first.process.exitCode).toBeUndefined();
    // The lock goes with the process, however it ends.
    await first.process.kill();
    const again = await startHub({ dataDir });
    expect((await fetch(`${again.apiUrl}/healthz`)).status).toBe(200);
  });

  it('bad flag values: exits 2 naming the flag, before opening anything', async () => {
    const [apiPort, mqttPort] = [await freePort(), await freePort()];
    const cases: [string[], string][] = [
      [['--api-port', 'eighty', '--mqtt-port', String(mqttPort)], '--api-port'],
      [['--api-port', String(apiPort), '--mqtt-port', '70000'], '--mqtt-port'],
      [['--api-port', String(apiPort), '--mqtt-port', String(mqttPort), '--node-grace', 'soon'], '--node-grace'],
      [['--api-port', String(apiPort), '--mqtt-port', String(mqttPort), '--eviction-timeout', '-5m'], '--eviction-timeout'],
    ];
    for (const [args, flag] of cases) {
      const dataDir = newDataDir();
      const hub = spawnHub(['--data-dir', dataDir, ...args]);
      expect(await exitsWithin(hub, EXIT_WITHIN_MS), args.join(' ')).toBe(2);
      expect(errorLine(hub), args.join(' ')).toContain(flag);
      expect(hub.log()).not.toContain('hub started');
    }
    // One port for both: refused before anything opens, rather than the API finding its own broker there.
    const same = spawnHub(['--data-dir', newDataDir(), '--api-port', String(apiPort), '--mqtt-port', String(apiPort)]);
    expect(await exitsWithin(same, EXIT_WITHIN_MS)).toBe(1);
    expect(errorLine(same)).toContain('--api-port and --mqtt-port are both');
    expect(await portIsFree(apiPort)).toBe(true);
    expect(await portIsFree(mqttPort)).toBe(true);
  });
});


describe('SIGTERM ends the hub', () => {
  it('during start-up, while the hub waits for an external broker that never answers', async () => {
    const dataDir = newDataDir();
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, 'broker.password'), 'a-password-of-more-than-sixteen-characters\n', { mode: 0o600 });
    // A broker that takes the connection and never sends its CONNACK: the hub's start-up waits (up to 15 s).
    const connections: Socket[] = [];
    const silent = await listenOn(0, (socket) => connections.push(socket));
    const apiPort = await freePort();
    const hub = spawnHub(['--data-dir', dataDir, '--api-port', String(apiPort), '--broker', `mqtt://127.0.0.1:${silent.port}`]);
    await waitFor('the hub to connect to the silent broker', () => connections.length > 0, 15_000, 20);
    hub.child.kill('SIGTERM');
    expect(await exitsWithin(hub, 3_000)).toBe(0);
    expect(hub.log()).toContain('hub stopped during start-up');
    expect(hub.log()).not.toContain('hub started');
    expect(await portIsFree(apiPort)).toBe(true);
    for (const socket of connections) socket.destroy();
  });

  it('at any moment of its start-up, and leaves no port open', async () => {
    const [apiPort, mqttPort] = [await freePort(), await freePort()];
    for (const delayMs of [0, 150, 300, 500, 800, 1_200]) {
      const hub = spawnHub(['--data-dir', newDataDir(), '--api-port', String(apiPort), '--mqtt-port', String(mqttPort)]);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      hub.child.kill('SIGTERM');
      // Killed by the signal before node has set the hub up (-1), or stopped in order (0).
      expect([0, -1], `SIGTERM after ${delayMs} ms`).toContain(await exitsWithin(hub, 5_000));
      expect(await portIsFree(apiPort), `API port after SIGTERM at ${delayMs} ms`).toBe(true);
      expect(await portIsFree(mqttPort), `MQTT port after SIGTERM at ${delayMs} ms`).toBe(true);
    }
  });

  describe('while it serves', () => {
    let dockerd: TestDockerd;

    beforeAll(async () => {
      dockerd = await startDockerd({ name: 'lifecycle' });
    });

    afterAll(async () => {
      await stopAll();
      await dockerd?.stop();
    });

    it('with a device connected and a watch open: stops in order, exits 0, frees both ports; the device keeps running', async () => {
      const hub = await startHub({ dataDir: newDataDir() });
      const agent = startAgent({ hub, name: 'sigterm-dev', stateDir: join(dirs.path, 'sigterm-dev-state'), dockerHost: dockerd.dockerHost });
      await waitFor('the node Ready', () => readyCondition(hub, 'sigterm-dev')?.status === 'True', 60_000);
      const res = await fetch(`${hub.apiUrl}/api/v1/nodes?watch=true`, { headers: { authorization: `Bearer ${hub.adminToken}` } });
      expect(res.status).toBe(200);
      let watchEnded = false;
      const reading = (async () => {
        try {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) void chunk;
        } catch {
          // The connection reset by the hub's stop ends the watch too.
        }
        watchEnded = true;
      })();

      hub.process.child.kill('SIGTERM');
      expect(await exitsWithin(hub.process, 5_000)).toBe(0);
      expect(hub.process.log()).toContain('"hub stopped"');
      await reading;
      expect(watchEnded).toBe(true);
      expect(await portIsFree(hub.apiPort)).toBe(true);
      expect(await portIsFree(hub.mqttPort)).toBe(true);
      // The device is on its own now, and keeps going (it runs its last desired set offline).
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(agent.exitCode).toBeUndefined();
    });
  });
});
