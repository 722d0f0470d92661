import { spawn, execFile, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import Dockerode from 'dockerode';

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
}

// Debian package for each binary the harness needs (default: the binary's own name).
const TOOL_PACKAGES: Record<string, string> = {
  dockerd: 'docker.io', 'docker-init': 'docker.io', 'containerd-shim-runc-v2': 'containerd',
  ip: 'iproute2', unshare: 'util-linux', mosquitto_sub: 'mosquitto-clients', mosquitto_pub: 'mosquitto-clients', umount: 'mount', busybox: 'busybox-static', strip: 'binutils',
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

interface MountEntry {
  mountPoint: string;
  fsType: string;
  superOptions: string;
}

function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

function readMounts(): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const mp = left[4];
    const fsType = right[0];
    if (mp === undefined || fsType === undefined) continue;
    entries.push({ mountPoint: unescapeMountPath(mp), fsType, superOptions: right[2] ?? '' });
  }
  return entries;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * `ip netns exec` mounts a fresh sysfs over /sys (so /sys/class/net shows the namespace's devices),
 * which hides the host's cgroup mounts that dockerd needs. This rebuilds the same layout inside the
 * private mount namespace. Super options are passed through verbatim: mounting cgroup2 with other
 * flags would silently reconfigure the host's hierarchy (e.g. drop nsdelegate), and cgroup v1
 * hierarchies only re-attach with matching options.
 */
function cgroupSetupScript(): string {
  const root = '/sys/fs/cgroup';
  const cgroupTypes = new Set(['cgroup', 'cgroup2']);
  const opts = (o: string) => o.split(',').filter((x) => x !== 'rw' && x !== 'ro').join(',');
  const lines: string[] = [];
  const mounts = readMounts();
  const top = mounts.filter((m) => m.mountPoint === root).pop();
  if (top && cgroupTypes.has(top.fsType)) {
    const o = opts(top.superOptions);
    lines.push(`mount -t ${top.fsType} ${o ? `-o ${shellQuote(o)} ` : ''}${top.fsType} ${root}`);
    return lines.join('\n');
  }
  lines.push(`mount -t tmpfs -o mode=755 cgroup ${root}`);
  for (const m of mounts) {
    if (!cgroupTypes.has(m.fsType) || path.dirname(m.mountPoint) !== root) continue;
    const o = opts(m.superOptions);
    lines.push(`mkdir -p ${shellQuote(m.mountPoint)}`);
    lines.push(`mount -t ${m.fsType} ${o ? `-o ${shellQuote(o)} ` : ''}${m.fsType} ${shellQuote(m.mountPoint)}`);
  }
  // systemd hosts alias co-mounted controllers (cpu -> cpu,cpuacct); keep those aliases too.
  try {
    for (const e of fs.readdirSync(root, { withFileTypes: true })) {
      if (!e.isSymbolicLink()) continue;
      const target = fs.readlinkSync(path.join(root, e.name));
      lines.push(`ln -s ${shellQuote(target)} ${shellQuote(path.join(root, e.name))}`);
    }
  } catch {
    // No cgroup tree to mirror; dockerd will say what it misses in its log.
  }
  return lines.join('\n');
}

function listChildren(ppid: number): number[] {
  const out: number[] = [];
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${ent}/stat`, 'utf8');
      // The command name may contain spaces and parentheses; fields resume after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(ent));
    } catch {
      // The process exited while we looked.
    }
  }
  return out;
}

function trySignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // A zombie has already released its namespaces; only its exit status is left to collect.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Blocks (for use in an 'exit' handler, where no timers run) until the processes are dead. */
function waitGoneSync(pids: number[], ms: number): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && pids.some(isAlive)) Atomics.wait(cell, 0, 0, 20);
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

function cgroupDirs(parent: string): string[] {
  return readMounts()
    .filter((m) => (m.fsType === 'cgroup' || m.fsType === 'cgroup2') && m.mountPoint.startsWith('/sys/fs/cgroup'))
    .map((m) => path.join(m.mountPoint, parent));
}

/** Removes the (empty) cgroups dockerd created under our private cgroup parent, deepest first. */
function removeCgroups(parent: string): void {
  const rmTree = (dir: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) rmTree(path.join(dir, e.name));
    try {
      fs.rmdirSync(dir);
    } catch {
      // Still holds a process; leaving an empty-named cgroup behind is harmless.
    }
  };
  for (const dir of cgroupDirs(parent)) rmTree(dir);
}

function mountsUnder(dir: string): string[] {
  return readMounts()
    .map((m) => m.mountPoint)
    .filter((mp) => mp === dir || mp.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
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
  let spawnError: Error | undefined;
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
        killTree('SIGTERM');
        if ((await withTimeout(exited.then(() => true), TERM_GRACE_MS)) === undefined) {
          killTree('SIGKILL');
          if ((await withTimeout(exited.then(() => true), KILL_GRACE_MS)) === undefined) {
            throw new Error(`dockerd (pid ${child.pid}) did not exit after SIGKILL`);
          }
        }
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

  try {
    await execFileP(IP, ['netns', 'add', netns]);
    netnsCreated = true;
    await execFileP(IP, ['netns', 'exec', netns, IP, 'link', 'set', 'lo', 'up']);

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
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }

  return { socketPath, dockerHost: `unix://${socketPath}`, netns, dir, logPath, docker, stop };
}

async function removeAllContainers(docker: Dockerode): Promise<void> {
  const containers = await docker.listContainers({ all: true });
  await Promise.all(
    containers.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined)),
  );
}
