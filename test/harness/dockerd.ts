import { spawn, execFile, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import Dockerode from 'dockerode';
import { cgroupSetupScript, listChildren, mountsUnder, removeCgroups, trySignal, waitGoneSync } from './host.js';

// A throw-away Docker engine for integration tests. It must never touch the host's networking or any
// system daemon, so each one lives in its own network namespace (bridge networks the code under test
// creates end up there), its own mount namespace (its overlay mounts vanish with it) and its own PID
// namespace (killing that namespace's init takes every shim and container down with it), with all of
// its state under one fresh temporary folder.

const execFileP = promisify(execFile);

const DOCKERD = '/usr/sbin/dockerd';
const IP = '/usr/sbin/ip';
const UNSHARE = '/usr/bin/unshare';
const TINI = '/usr/bin/docker-init';
const UMOUNT = '/usr/bin/umount';
// dockerd finds containerd, runc and the shims on PATH; pin it to the distribution's binaries so a
// different engine installed under /usr/local cannot sneak in.
const DAEMON_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

const PING_TIMEOUT_MS = 60_000;
const TERM_GRACE_MS = 20_000;
const KILL_GRACE_MS = 5_000;

export interface TestDockerd {
  socketPath: string;
  dockerHost: string;
  netns: string;
  dir: string;
  logPath: string;
  docker: Dockerode;
  stop(): Promise<void>;
  /**
   * Stops the daemon and starts it again on the same data root, exec root, socket and network
   * namespace, as an engine upgrade or crash does on a device; `whileDown` runs in between.
   */
  restart(opts?: { whileDown?: () => Promise<void> }): Promise<void>;
}

// Debian package for each binary the harness needs (default: the binary's own name).
const TOOL_PACKAGES: Record<string, string> = {
  dockerd: 'docker.io', 'docker-init': 'docker.io', 'containerd-shim-runc-v2': 'containerd',
  ip: 'iproute2', unshare: 'util-linux', nsenter: 'util-linux', nft: 'nftables', wg: 'wireguard-tools', 'wireguard-go': 'wireguard-go', iperf3: 'iperf3', mosquitto_sub: 'mosquitto-clients', mosquitto_pub: 'mosquitto-clients', umount: 'mount', busybox: 'busybox-static', strip: 'binutils',
};

/** Throws (rather than letting a test skip) when a binary the harness depends on is not installed. */
export function requireTool(toolPath: string): void {
  try {
    fs.accessSync(toolPath, fs.constants.X_OK);
  } catch {
    const name = path.basename(toolPath);
    const pkg = TOOL_PACKAGES[name] ?? name;
    throw new Error(`required tool ${toolPath} is missing: apt-get install ${pkg}`);
  }
}


function tailOf(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no daemon log)';
  }
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping', timeout: 1_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves to undefined if `p` has not settled within `ms` (without holding the event loop after). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}


let sequence = 0;

export async function startDockerd(opts: { name?: string } = {}): Promise<TestDockerd> {
  for (const tool of [DOCKERD, IP, UNSHARE, TINI, UMOUNT, '/usr/bin/containerd', '/usr/bin/containerd-shim-runc-v2', '/usr/sbin/runc']) {
    requireTool(tool);
  }
  const label = (opts.name ?? 'test').toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 16);
  const netns = `flt-${label}-${process.pid}-${++sequence}`;
  // Short on purpose: containerd's sockets live under exec-root and unix socket paths cap near 108 bytes.
  const dir = fs.mkdtempSync('/tmp/flt-');
  const socketPath = path.join(dir, 'docker.sock');
  const logPath = path.join(dir, 'dockerd.log');
  const cgroupParent = `/${netns}`;

  // Without an explicit config file dockerd reads /etc/docker/daemon.json and writes its trust key
  // to /etc/docker/key.json; keep both in our folder.
  fs.writeFileSync(
    path.join(dir, 'daemon.json'),
    JSON.stringify({ 'deprecated-key-path': path.join(dir, 'key.json'), 'exec-opts': ['native.cgroupdriver=cgroupfs'] }),
  );

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let netnsCreated = false;
  let stopping: Promise<void> | undefined;
  let cleanedUp = false;

  const killTree = (signal: NodeJS.Signals): void => {
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
    // The namespace init (tini) is the only child of unshare; signalling it either forwards the
    // signal to dockerd (TERM) or tears the whole PID namespace down (KILL).
    const inits = listChildren(child.pid);
    if (inits.length === 0 || signal === 'SIGKILL') trySignal(child.pid, 'SIGKILL');
    for (const pid of inits) trySignal(pid, signal);
  };

  // Last resort if a test run ends without stop(): must be synchronous, so no API calls here.
  const onExit = (): void => {
    if (cleanedUp) return;
    const pids = child?.pid ? [child.pid, ...listChildren(child.pid)] : [];
    killTree('SIGKILL');
    // Once the namespace init is gone the kernel has reaped everything in its PID namespace and
    // the private mount namespace is released, so the folder and cgroups can go too.
    waitGoneSync(pids, 3_000);
    if (netnsCreated) {
      try {
        execFileSync(IP, ['netns', 'del', netns], { stdio: 'ignore' });
      } catch {
        // Nothing more can be done while exiting.
      }
    }
    removeCgroups(cgroupParent);
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // Best effort while exiting.
    }
  };
  process.on('exit', onExit);

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child && child.exitCode === null && child.signalCode === null) {
        await withTimeout(removeAllContainers(docker), 30_000).catch(() => undefined);
        await terminate();
      }
      // Mounts normally die with the private mount namespace; anything visible here leaked.
      for (const mp of mountsUnder(dir)) {
        await execFileP(UMOUNT, ['-R', '-l', mp]).catch(() => undefined);
      }
      if (netnsCreated) {
        await execFileP(IP, ['netns', 'del', netns]).catch(() => undefined);
        netnsCreated = false;
      }
      removeCgroups(cgroupParent);
      for (let attempt = 0; ; attempt++) {
        try {
          fs.rmSync(dir, { recursive: true, force: true });
          break;
        } catch (err) {
          if (attempt >= 10) throw err;
          await delay(200);
        }
      }
      // Only now is the exit hook redundant; after a failed stop it still gets a last try.
      cleanedUp = true;
      process.off('exit', onExit);
    })();
    return stopping;
  };

  const docker = new Dockerode({ socketPath });

  const script = [
    'set -e',
    // A private /run keeps containerd's shim sockets (hard-wired to /run/containerd/s) and any
    // systemd/dbus detection away from the host.
    'mount -t tmpfs -o mode=755 tmpfs /run',
    cgroupSetupScript(),
    `exec ${DOCKERD} "$@"`,
  ].join('\n');
  const dockerdArgs = [
    '--config-file', path.join(dir, 'daemon.json'),
    '--host', `unix://${socketPath}`,
    '--data-root', path.join(dir, 'data'),
    '--exec-root', path.join(dir, 'exec'),
    '--pidfile', path.join(dir, 'dockerd.pid'),
    '--cgroup-parent', cgroupParent,
    '--bridge=none',
    '--iptables=false',
    '--ip-masq=false',
    '--log-level', 'warn',
  ];

  /** Starts the daemon in fresh PID and mount namespaces inside our network namespace, and waits until it answers. */
  const launch = async (): Promise<void> => {
    let spawnError: Error | undefined;
    const logFd = fs.openSync(logPath, 'a');
    try {
      child = spawn(
        IP,
        [
          'netns', 'exec', netns,
          // --kill-child: if unshare dies, its child (the namespace init) is SIGKILLed and with it
          // everything in the PID namespace. tini as init reaps the daemonised shims.
          UNSHARE, '--pid', '--fork', '--kill-child', '--mount-proc',
          TINI, '--', '/bin/sh', '-c', script, 'flotilla-test-dockerd', ...dockerdArgs,
        ],
        { stdio: ['ignore', logFd, logFd], env: { PATH: DAEMON_PATH, HOME: dir } },
      );
    } finally {
      fs.closeSync(logFd);
    }
    const proc = child;
    exited = new Promise((resolve) => {
      proc.once('exit', () => resolve());
      proc.once('error', (err) => {
        spawnError = err;
        resolve();
      });
    });
    // A forgotten stop() must not keep the test process alive; the exit hook cleans up instead.
    proc.unref();

    const deadline = Date.now() + PING_TIMEOUT_MS;
    for (;;) {
      if (spawnError) throw new Error(`could not start dockerd: ${spawnError.message}`);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`dockerd exited during startup (code ${proc.exitCode}, signal ${proc.signalCode}); log tail:\n${tailOf(logPath)}`);
      }
      if (await ping(socketPath)) break;
      if (Date.now() > deadline) {
        throw new Error(`dockerd did not answer /_ping within ${PING_TIMEOUT_MS / 1000} s; log tail:\n${tailOf(logPath)}`);
      }
      await delay(100);
    }
  };

  /** SIGTERM (dockerd stops its containers and exits), SIGKILL to the namespace if it lingers. */
  const terminate = async (): Promise<void> => {
    killTree('SIGTERM');
    if ((await withTimeout(exited.then(() => true), TERM_GRACE_MS)) === undefined) {
      killTree('SIGKILL');
      if ((await withTimeout(exited.then(() => true), KILL_GRACE_MS)) === undefined) {
        throw new Error(`dockerd (pid ${child?.pid}) did not exit after SIGKILL`);
      }
    }
  };

  const restart = async (opts: { whileDown?: () => Promise<void> } = {}): Promise<void> => {
    if (stopping) throw new Error('dockerd was stopped; it cannot be restarted');
    // Without live-restore the daemon stops every container as it shuts down; they stay on the
    // data root, exited, as after a power cut of the engine alone.
    await terminate();
    // The new daemon gets the pid the old one had in its own PID namespace; a stale pidfile
    // naming it would make it refuse to start.
    fs.rmSync(path.join(dir, 'dockerd.pid'), { force: true });
    try {
      await opts.whileDown?.();
    } finally {
      await launch();
    }
  };

  try {
    await execFileP(IP, ['netns', 'add', netns]);
    netnsCreated = true;
    await execFileP(IP, ['netns', 'exec', netns, IP, 'link', 'set', 'lo', 'up']);
    await launch();
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }

  return { socketPath, dockerHost: `unix://${socketPath}`, netns, dir, logPath, docker, stop, restart };
}

async function removeAllContainers(docker: Dockerode): Promise<void> {
  const containers = await docker.listContainers({ all: true });
  await Promise.all(
    containers.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined)),
  );
}
