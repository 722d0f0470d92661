import fs from 'node:fs';
import path from 'node:path';

// What the test engine needs to know of the host: its mounts and cgroups (to mirror them into the
// engine's namespaces and to clean up after it) and its process tree (to end it).

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
export function cgroupSetupScript(): string {
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

export function listChildren(ppid: number): number[] {
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

export function trySignal(pid: number, signal: NodeJS.Signals): void {
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
export function waitGoneSync(pids: number[], ms: number): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && pids.some(isAlive)) Atomics.wait(cell, 0, 0, 20);
}
function cgroupDirs(parent: string): string[] {
  return readMounts()
    .filter((m) => (m.fsType === 'cgroup' || m.fsType === 'cgroup2') && m.mountPoint.startsWith('/sys/fs/cgroup'))
    .map((m) => path.join(m.mountPoint, parent));
}

/** Removes the (empty) cgroups dockerd created under our private cgroup parent, deepest first. */
export function removeCgroups(parent: string): void {
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

export function mountsUnder(dir: string): string[] {
  return readMounts()
    .map((m) => m.mountPoint)
    .filter((mp) => mp === dir || mp.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}
