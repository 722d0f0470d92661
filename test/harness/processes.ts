import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Real hub and agent processes for integration tests, started the way a user starts them
 * (`node bin/flotilla.js hub|agent …`), on loopback, with their logs in files. Every process
 * started here is ended by its own pid in `stopAll()`, even when a test fails.
 */
export const REPO = resolve(import.meta.dirname, '..', '..');
export const BIN = join(REPO, 'bin', 'flotilla.js');
export const AGENT_BUNDLE = join(REPO, 'dist', 'flotilla-agent.cjs');

const started = new Set<ManagedProcess>();

export class ManagedProcess {
  exited: Promise<number | null>;
  exitCode: number | null | undefined;

  constructor(
    readonly child: ChildProcess,
    readonly logPath: string,
  ) {
    started.add(this);
    this.exited = new Promise((res) => child.once('exit', (code, signal) => {
      this.exitCode = code ?? (signal ? -1 : null);
      started.delete(this);
      res(code);
    }));
  }

  log(): string {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** Ends the process: SIGTERM (an orderly stop), SIGKILL if it is still there after the grace. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.exitCode !== undefined || this.child.pid === undefined) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** A crash: SIGKILL, no chance to clean up. */
  async kill(): Promise<void> {
    if (this.exitCode !== undefined) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

export async function stopAll(): Promise<void> {
  await Promise.all([...started].map((p) => p.stop(5_000)));
}

// A test run that is interrupted must not leave processes behind.
process.once('exit', () => {
  for (const p of started) p.child.kill('SIGKILL');
});

export function tempDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), `flt-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * Runs `node ARGS` with its output in `logPath`; inside the network namespace `netns` when
 * given, or through `wrap` (a command such as `unshare …` or `nsenter …` that execs node in its
 * place). Either way the pid is node's own, so signals reach it and stopAll() ends it.
 */
export function spawnLogged(args: string[], logPath: string, cwd: string, env: Record<string, string> = {}, netns?: string, wrap: string[] = []): ManagedProcess {
  const fd = openSync(logPath, 'a');
  const prefix = netns ? ['/usr/sbin/ip', 'netns', 'exec', netns, ...wrap] : wrap;
  const [command, argv] = prefix.length > 0 ? [prefix[0]!, [...prefix.slice(1), process.execPath, ...args]] : [process.execPath, args];
  const child = spawn(command, argv, { cwd, stdio: ['ignore', fd, fd], env: { ...process.env, FLOTILLA_LOG_FORMAT: 'json', FLOTILLA_LOG_LEVEL: 'debug', ...env } });
  closeSync(fd);
  return new ManagedProcess(child, logPath);
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface RunningHub {
  process: ManagedProcess;
  dataDir: string;
  apiPort: number;
  mqttPort: number;
  apiUrl: string;
  mqttUrl: string;
  adminToken: string;
  joinToken: string;
}

/**
 * Starts `flotilla hub` on loopback; ports 0 means "any free port", read back from its log.
 * `nodeOptions` go to node itself (e.g. `--cpu-prof`), `env` over the debug-level default.
 * `wrap` starts it through a command that execs node in place (e.g. `nsenter -t PID -m --`, to
 * run it in another mount namespace); `hostPath` then says where the test reaches a path of the
 * hub's (its tokens), and `logDir` where the hub's log goes.
 */
export async function startHub(opts: { dataDir: string; apiPort?: number; mqttPort?: number; extraArgs?: string[]; nodeOptions?: string[]; env?: Record<string, string>; wrap?: string[]; hostPath?: (path: string) => string; logDir?: string }): Promise<RunningHub> {
  const logPath = join(opts.logDir ?? join(opts.dataDir, '..'), `hub-${Date.now()}.log`);
  // The relay makes a network interface: never in the host's namespace, so off unless a test (in a namespace of its own) asks.
  const relay = (opts.extraArgs ?? []).some((a) => a === '--relay' || a.startsWith('--relay=')) ? [] : ['--relay', 'off'];
  const proc = spawnLogged([...(opts.nodeOptions ?? []), BIN, 'hub', '--data-dir', opts.dataDir, '--api-port', String(opts.apiPort ?? 0), '--mqtt-port', String(opts.mqttPort ?? 0), ...relay, ...(opts.extraArgs ?? [])], logPath, REPO, opts.env ?? {}, undefined, opts.wrap);
  const hostPath = opts.hostPath ?? ((path: string) => path);
  const ports = await waitFor('the hub to start', () => {
    if (proc.exitCode !== undefined) throw new Error(`hub exited with ${proc.exitCode}: ${proc.log().slice(-2000)}`);
    let api: number | undefined;
    let mqtt: number | undefined;
    for (const line of proc.log().split('\n')) {
      if (!line.startsWith('{')) continue;
      const entry = JSON.parse(line) as { msg?: string; port?: number };
      if (entry.msg === 'api listening') api = entry.port;
      // The embedded broker's port, or with --broker the external broker's that the hub joined.
      if (entry.msg === 'mqtt broker listening' || entry.msg === 'mqtt broker connected') mqtt = entry.port;
    }
    return api !== undefined && mqtt !== undefined && proc.log().includes('"hub started"') ? { api, mqtt } : undefined;
  }, 30_000);
  return {
    process: proc,
    dataDir: opts.dataDir,
    apiPort: ports.api,
    mqttPort: ports.mqtt,
    apiUrl: `http://127.0.0.1:${ports.api}`,
    mqttUrl: `mqtt://127.0.0.1:${ports.mqtt}`,
    adminToken: readFileSync(hostPath(join(opts.dataDir, 'admin.token')), 'utf8').trim(),
    joinToken: readFileSync(hostPath(join(opts.dataDir, 'join.token')), 'utf8').trim(),
  };
}

/**
 * Starts an agent from its single-file bundle with plain node, as a device runs it; inside the
 * network namespace `netns` (reaching the hub at `hubUrl`) when given.
 */
export function startAgent(opts: { hub: RunningHub; name: string; stateDir: string; dockerHost: string; labels?: Record<string, string>; token?: string; extraArgs?: string[]; nodeOptions?: string[]; netns?: string; hubUrl?: string; env?: Record<string, string> }): ManagedProcess {
  const labels = Object.entries(opts.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
  // No overlay unless a test asks for it: an agent in the host's namespace must make no interface there.
  const overlay = (opts.extraArgs ?? []).some((a) => a === '--overlay' || a.startsWith('--overlay=')) ? [] : ['--overlay', 'none'];
  const args = [...(opts.nodeOptions ?? []), AGENT_BUNDLE, '--hub', opts.hubUrl ?? opts.hub.mqttUrl, '--token', opts.token ?? opts.hub.joinToken, '--name', opts.name, '--state-dir', opts.stateDir, '--docker-host', opts.dockerHost, ...(labels ? ['--labels', labels] : []), ...overlay, ...(opts.extraArgs ?? [])];
  return spawnLogged(args, join(opts.stateDir, '..', `agent-${opts.name}-${Date.now()}.log`), REPO, opts.env ?? {}, opts.netns);
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the `flotilla` CLI against a hub, as a user would. */
export function cli(hub: Pick<RunningHub, 'apiUrl' | 'adminToken'> | undefined, args: string[], opts: { input?: string; cwd?: string } = {}): CliResult {
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  if (hub) {
    env.FLOTILLA_SERVER = hub.apiUrl;
    env.FLOTILLA_TOKEN = hub.adminToken;
  }
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? REPO, env, encoding: 'utf8', ...(opts.input !== undefined ? { input: opts.input } : {}), timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** `flotilla get KIND -o json`, parsed. */
export function getJson<T = Record<string, unknown>>(hub: RunningHub, args: string[]): T {
  const r = cli(hub, ['get', ...args, '-o', 'json']);
  if (r.code !== 0) throw new Error(`flotilla get ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
