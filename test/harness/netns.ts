import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { requireTool } from './dockerd.js';
import { trySignal, waitGoneSync } from './host.js';

// Network namespace primitives for the device lab: run a command inside one, make veth pairs
// straight between two of them (never through the host's namespace), and find every process
// that lives in one, so that a test ends what it (or a daemon it started) left running there.

const execFileP = promisify(execFile);

export const IP = '/usr/sbin/ip';
export const NSENTER = '/usr/bin/nsenter';
export const NFT = '/usr/sbin/nft';
export const WG = '/usr/bin/wg';
export const WIREGUARD_GO = '/usr/bin/wireguard-go';
export const IPERF3 = '/usr/bin/iperf3';
export const UNSHARE = '/usr/bin/unshare';
/** busybox's sysctl: busybox is a harness tool already, procps may be absent from a slim image. */
export const BUSYBOX = '/usr/bin/busybox';

/** wireguard-go's control sockets: one folder for every namespace, so interface names must be unique. */
export const WIREGUARD_SOCKETS = '/var/run/wireguard';

export function requireLabTools(): void {
  for (const tool of [IP, NSENTER, NFT, WG, WIREGUARD_GO, IPERF3, UNSHARE, BUSYBOX]) requireTool(tool);
}

export function netnsPath(ns: string): string {
  return `/var/run/netns/${ns}`;
}

/**
 * `nsenter --net` rather than `ip netns exec`: the latter remounts /sys in a new mount
 * namespace, which a command here has no need of, and costs a fork more.
 */
export function nsArgv(ns: string, argv: readonly string[]): string[] {
  return [NSENTER, `--net=${netnsPath(ns)}`, '--', ...argv];
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `argv` inside namespace `ns`; never throws for a non-zero exit (the caller judges). */
export async function runIn(ns: string, argv: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  const full = nsArgv(ns, argv);
  return new Promise((resolve) => {
    const child = execFile(full[0]!, full.slice(1), { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** runIn that throws with the command's output when it fails. */
export async function mustRunIn(ns: string, argv: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
  const r = await runIn(ns, argv, opts);
  if (r.code !== 0) throw new Error(`in ${ns}: ${argv.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export async function addNetns(ns: string): Promise<void> {
  await execFileP(IP, ['netns', 'add', ns]);
  await execFileP(IP, ['-n', ns, 'link', 'set', 'lo', 'up']);
}

/**
 * A veth pair made inside namespace `a` with its peer created directly in `b`: the host's own
 * namespace never holds either end, even for a moment.
 */
export async function addVeth(a: { ns: string; name: string }, b: { ns: string; name: string }): Promise<void> {
  await execFileP(IP, ['-n', a.ns, 'link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.ns]);
}

export async function ip(ns: string, ...args: string[]): Promise<void> {
  try {
    await execFileP(IP, ['-n', ns, ...args]);
  } catch (err) {
    throw new Error(`ip -n ${ns} ${args.join(' ')}: ${(err as { stderr?: string }).stderr?.trim() ?? (err as Error).message}`);
  }
}

/** `ip -j` output inside a namespace, parsed. */
export async function ipJson<T = Record<string, unknown>>(ns: string, ...args: string[]): Promise<T[]> {
  const { stdout } = await execFileP(IP, ['-n', ns, '-j', ...args]);
  return stdout.trim() ? (JSON.parse(stdout) as T[]) : [];
}

export async function sysctl(ns: string, key: string, value: string): Promise<void> {
  await mustRunIn(ns, [BUSYBOX, 'sysctl', '-w', `${key}=${value}`]);
}

/** The inode that names a network namespace: the same for a netns file and a process inside it. */
function nsInode(path: string): number | undefined {
  try {
    return fs.statSync(path).ino;
  } catch {
    return undefined;
  }
}

/** Pids of every process whose network namespace is `ns` (the test's own namespaces only). */
export function pidsIn(ns: string): number[] {
  const inode = nsInode(netnsPath(ns));
  if (inode === undefined) return [];
  const pids: number[] = [];
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent) || Number(ent) === process.pid) continue;
    if (nsInode(`/proc/${ent}/ns/net`) === inode) pids.push(Number(ent));
  }
  return pids;
}

/** The command name of a process (its /proc comm), or undefined when it has gone. */
export function commOf(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** TUN links (what wireguard-go makes) in a namespace, by name. */
export function tunLinksSync(ns: string): string[] {
  try {
    const out = execFileSync(IP, ['-n', ns, '-j', '-d', 'link', 'show'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const links = JSON.parse(out || '[]') as { ifname: string; linkinfo?: { info_kind?: string } }[];
    return links.filter((l) => l.linkinfo?.info_kind === 'tun' || l.linkinfo?.info_kind === 'wireguard').map((l) => l.ifname);
  } catch {
    return [];
  }
}

/** Deletes the TUN links of a namespace: wireguard-go exits once its interface is gone. */
export function deleteTunLinksSync(ns: string): void {
  for (const link of tunLinksSync(ns)) {
    try {
      execFileSync(IP, ['-n', ns, 'link', 'del', link], { stdio: 'ignore' });
    } catch {
      // Gone meanwhile.
    }
  }
}

/**
 * Empties a namespace of what outlives a test there: TUN links (a wireguard-go's sockets would
 * otherwise keep the namespace alive) and any process still inside, by pid. Synchronous so
 * that the exit hook can use it too.
 */
export function emptyNetnsSync(ns: string, graceMs = 3_000): void {
  deleteTunLinksSync(ns);
  let pids = pidsIn(ns);
  if (pids.length === 0) return;
  for (const pid of pids) trySignal(pid, 'SIGTERM');
  waitGoneSync(pids, graceMs);
  pids = pidsIn(ns);
  for (const pid of pids) trySignal(pid, 'SIGKILL');
  waitGoneSync(pids, graceMs);
}

export function delNetnsSync(ns: string): void {
  try {
    execFileSync(IP, ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    // Already gone.
  }
}

export function netnsExists(ns: string): boolean {
  return fs.existsSync(netnsPath(ns));
}

/** Removes a wireguard-go control socket left behind for one of the test's interface names. */
export function removeWireguardSocket(ifname: string): void {
  fs.rmSync(`${WIREGUARD_SOCKETS}/${ifname}.sock`, { force: true });
  fs.rmSync(`${WIREGUARD_SOCKETS}/${ifname}.name`, { force: true });
}

/** Live (not zombie) wireguard-go processes serving one of `ifnames`, by pid. */
export function liveWireguardGo(ifnames: readonly string[]): number[] {
  const pids: number[] = [];
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${ent}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.endsWith('wireguard-go') || !ifnames.includes(argv[1] ?? '')) continue;
      const stat = fs.readFileSync(`/proc/${ent}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z') pids.push(Number(ent));
    } catch {
      // Gone while we looked.
    }
  }
  return pids;
}
