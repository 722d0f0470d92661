import { readdirSync, readFileSync, realpathSync, statfsSync } from 'node:fs';

/**
 * The node's figures from /proc and /sys, read as node_exporter reads them. Parsers take the
 * file's text (tested with fixtures); readers take a root so tests can point them elsewhere.
 * Every series is handed to `emit(key, value)` with the wire key and integer of
 * shared/protocol/metrics.ts (NODE_CODES): nothing is kept between samples.
 */
export type Emit = (key: string, value: number) => void;

/** /proc/stat counts in USER_HZ, which Linux fixes at 100 for user space. */
const MS_PER_TICK = 10;
const CPU_MODES = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'] as const;

/** The aggregate `cpu` line (ms per mode, all CPUs together) and the boot time (`btime`, s since the epoch). */
export function parseProcStat(text: string, emit: Emit): void {
  const end = text.indexOf('\n');
  const first = text.slice(0, end < 0 ? undefined : end);
  if (first.startsWith('cpu ')) {
    const fields = first.slice(4).trim().split(/\s+/);
    for (let i = 0; i < CPU_MODES.length && i < fields.length; i++) {
      const ticks = Number(fields[i]);
      if (Number.isFinite(ticks)) emit(`cpu|${CPU_MODES[i]}`, ticks * MS_PER_TICK);
    }
  }
  const btime = /^btime (\d+)$/m.exec(text)?.[1];
  if (btime) emit('boot', Number(btime));
}

/** Load averages, in thousandths. */
export function parseLoadavg(text: string, emit: Emit): void {
  const [l1, l5, l15] = text.split(' ', 3).map(Number);
  if (Number.isFinite(l1)) emit('load1', Math.round(l1! * 1000));
  if (Number.isFinite(l5)) emit('load5', Math.round(l5! * 1000));
  if (Number.isFinite(l15)) emit('load15', Math.round(l15! * 1000));
}

/** MemTotal and MemAvailable, in bytes; the total is returned too (a container's "no limit" is measured against it). */
export function parseMeminfo(text: string, emit: Emit): number | undefined {
  const total = /^MemTotal:\s+(\d+) kB/m.exec(text)?.[1];
  const available = /^MemAvailable:\s+(\d+) kB/m.exec(text)?.[1];
  if (total) emit('mem_total', Number(total) * 1024);
  if (available) emit('mem_avail', Number(available) * 1024);
  return total ? Number(total) * 1024 : undefined;
}

/**
 * /proc/net/dev, per interface: bytes, packets, errors and drops each way. Loopback and the
 * host ends of containers' veth pairs are left out (the containers' own figures carry that
 * traffic, from inside their namespace).
 */
export function parseNetDev(text: string, emit: Emit): void {
  let start = text.indexOf('\n', text.indexOf('\n') + 1) + 1;
  while (start > 0 && start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const colon = text.indexOf(':', start);
    if (colon > start && colon < end) {
      const device = text.slice(start, colon).trim();
      if (device !== 'lo' && !device.startsWith('veth') && !device.includes('|')) {
        const f = text.slice(colon + 1, end).trim().split(/\s+/);
        if (f.length >= 12) {
          emit(`net_rxb|${device}`, Number(f[0]));
          emit(`net_rxp|${device}`, Number(f[1]));
          emit(`net_rxe|${device}`, Number(f[2]));
          emit(`net_rxd|${device}`, Number(f[3]));
          emit(`net_txb|${device}`, Number(f[8]));
          emit(`net_txp|${device}`, Number(f[9]));
          emit(`net_txe|${device}`, Number(f[10]));
          emit(`net_txd|${device}`, Number(f[11]));
        }
      }
    }
    start = end + 1;
  }
}

export interface MountPoint {
  mountpoint: string;
  device: string;
  fstype: string;
}

/** The mount a path lives on: the longest mount point of /proc/self/mountinfo that contains it. */
export function mountOf(path: string, mountinfo: string): MountPoint | undefined {
  let best: MountPoint | undefined;
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const mountpoint = (left[4] ?? '').replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
    const inside = mountpoint === '/' || path === mountpoint || path.startsWith(`${mountpoint}/`);
    // Later lines are mounted over earlier ones at the same point.
    if (inside && (!best || mountpoint.length >= best.mountpoint.length)) best = { mountpoint, device: right[1] ?? 'none', fstype: right[0] ?? 'unknown' };
  }
  return best;
}

/** Reads the node's figures; the mounts of the watched paths and the thermal zones are found once and remembered. */
export class NodeReader {
  private mounts = new Map<string, MountPoint | undefined>();
  private zones: { index: string; type: string }[] | undefined;

  constructor(
    private readonly procRoot = '/proc',
    private readonly sysRoot = '/sys',
  ) {}

  /** Emits every node series; returns MemTotal in bytes when known. */
  read(fsPaths: readonly string[], emit: Emit): number | undefined {
    const stat = this.text('stat');
    if (stat) parseProcStat(stat, emit);
    const loadavg = this.text('loadavg');
    if (loadavg) parseLoadavg(loadavg, emit);
    const meminfo = this.text('meminfo');
    const memTotal = meminfo ? parseMeminfo(meminfo, emit) : undefined;
    const netdev = this.text('net/dev');
    if (netdev) parseNetDev(netdev, emit);
    this.readFilesystems(fsPaths, emit);
    this.readThermal(emit);
    return memTotal;
  }

  private readFilesystems(paths: readonly string[], emit: Emit): void {
    const seen = new Set<string>();
    for (const path of paths) {
      if (!this.mounts.has(path)) this.mounts.set(path, this.findMount(path));
      const mount = this.mounts.get(path);
      if (!mount || seen.has(mount.mountpoint) || /\|/.test(mount.mountpoint + mount.device + mount.fstype)) continue;
      seen.add(mount.mountpoint);
      try {
        const s = statfsSync(path);
        const labels = `${mount.mountpoint}|${mount.device}|${mount.fstype}`;
        emit(`fs_size|${labels}`, s.blocks * s.bsize);
        emit(`fs_avail|${labels}`, s.bavail * s.bsize);
      } catch {
        // A path that went away (an unmounted disk) is simply not reported.
      }
    }
  }

  private findMount(path: string): MountPoint | undefined {
    const mountinfo = this.text('self/mountinfo');
    if (!mountinfo) return undefined;
    let real = path;
    try {
      real = realpathSync(path);
    } catch {
      return undefined;
    }
    return mountOf(real, mountinfo);
  }

  /** /sys/class/thermal/thermal_zone*: temp in millidegrees Celsius, and the zone's type. */
  private readThermal(emit: Emit): void {
    if (!this.zones) {
      this.zones = [];
      try {
        for (const name of readdirSync(`${this.sysRoot}/class/thermal`)) {
          const m = /^thermal_zone(\d+)$/.exec(name);
          if (!m) continue;
          const type = (this.sysText(`class/thermal/${name}/type`) ?? 'unknown').trim().replace(/\|/g, '_');
          this.zones.push({ index: m[1]!, type });
        }
      } catch {
        // No thermal zones here (a VM, a container): nothing to report.
      }
    }
    for (const zone of this.zones) {
      const temp = Number(this.sysText(`class/thermal/thermal_zone${zone.index}/temp`));
      if (Number.isFinite(temp) && temp !== 0) emit(`temp|${zone.index}|${zone.type}`, temp);
    }
  }

  private text(rel: string): string | undefined {
    try {
      return readFileSync(`${this.procRoot}/${rel}`, 'utf8');
    } catch {
      return undefined;
    }
  }

  private sysText(rel: string): string | undefined {
    try {
      return readFileSync(`${this.sysRoot}/${rel}`, 'utf8');
    } catch {
      return undefined;
    }
  }
}
