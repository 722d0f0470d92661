import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, openSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { requireTool } from './dockerd.js';
import { ManagedProcess, cli, waitFor } from './processes.js';

/**
 * A real Mosquitto (Debian's 2.0) for the external-broker tests, configured by the hub's own
 * `flotilla broker-config mosquitto --out`, listening on 127.0.0.1 on a free port, with its
 * configuration, dynamic-security file and persistence under the test's temporary folder. It
 * is a ManagedProcess: stopped by its pid in stopAll(), even when the test fails.
 */
export const MOSQUITTO = '/usr/sbin/mosquitto';

export interface TestMosquitto {
  port: number;
  url: string;
  dir: string;
  process: ManagedProcess;
  log(): string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Writes the broker's configuration with the CLI (making the hub's broker.password in `hubDataDir`), then starts it. */
export async function startMosquitto(opts: { dir: string; hubDataDir: string }): Promise<TestMosquitto> {
  requireTool(MOSQUITTO);
  const port = await freePort();
  const made = cli(undefined, ['broker-config', 'mosquitto', '--data-dir', opts.hubDataDir, '--out', opts.dir, '--port', String(port)]);
  if (made.code !== 0) throw new Error(`flotilla broker-config failed (${made.code}): ${made.stderr}`);
  const confFile = join(opts.dir, 'mosquitto.conf');
  // Started as root, Mosquitto would switch to the `mosquitto` user, which cannot enter the
  // test's private temporary folder; the test's broker stays the user that started it.
  appendFileSync(confFile, '# test harness: keep the user that started the broker\nuser root\n');
  const logPath = join(opts.dir, 'mosquitto.log');
  const fd = openSync(logPath, 'a');
  const child = spawn(MOSQUITTO, ['-c', confFile], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const proc = new ManagedProcess(child, logPath);
  await waitFor(`mosquitto to listen on 127.0.0.1:${port}`, async () => {
    if (proc.exitCode !== undefined) throw new Error(`mosquitto exited with ${proc.exitCode}: ${proc.log().slice(-2000)}`);
    return accepts(port);
  }, 15_000, 100);
  return { port, url: `mqtt://127.0.0.1:${port}`, dir: opts.dir, process: proc, log: () => proc.log(), stop: () => proc.stop() };
}
