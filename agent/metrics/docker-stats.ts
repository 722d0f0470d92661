import type { ContainerStats, InterfaceStats } from '../runtime/runtime.js';

/** The parts of the Docker Engine's `GET /containers/{id}/stats` answer that are read (cgroup v1 and v2). */
export interface DockerStatsJson {
  read?: string;
  cpu_stats?: { cpu_usage?: { total_usage?: number; usage_in_usermode?: number; usage_in_kernelmode?: number } };
  memory_stats?: { usage?: number; limit?: number; stats?: Record<string, number> };
  networks?: Record<string, { rx_bytes?: number; rx_packets?: number; rx_errors?: number; rx_dropped?: number; tx_bytes?: number; tx_packets?: number; tx_errors?: number; tx_dropped?: number }>;
  blkio_stats?: { io_service_bytes_recursive?: { op?: string; value?: number }[] | null };
  pids_stats?: { current?: number };
}

const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) && x >= 0 ? x : undefined);

/**
 * The engine's answer in our terms, figured as cAdvisor figures them: the working set is usage
 * minus inactive file pages (`total_inactive_file` on cgroup v1, `inactive_file` on v2), never
 * below zero; on cgroup v2, which has no rss and cache, they are `anon` and `file`. A stopped
 * container's answer (no cpu figures, no `read` time) is undefined.
 */
export function statsFromDocker(json: DockerStatsJson): ContainerStats | undefined {
  const cpu = json.cpu_stats?.cpu_usage;
  if (!cpu || num(cpu.total_usage) === undefined || !json.read || json.read.startsWith('0001-')) return undefined;
  const out: ContainerStats = { cpuTotalNs: cpu.total_usage! };
  const user = num(cpu.usage_in_usermode);
  const system = num(cpu.usage_in_kernelmode);
  if (user !== undefined) out.cpuUserNs = user;
  if (system !== undefined) out.cpuSystemNs = system;
  const mem = json.memory_stats;
  const usage = num(mem?.usage);
  if (mem && usage !== undefined) {
    const stats = mem.stats ?? {};
    const v1 = stats.total_inactive_file !== undefined || stats.rss !== undefined;
    const inactiveFile = num(v1 ? stats.total_inactive_file : stats.inactive_file) ?? 0;
    out.memoryUsageBytes = usage;
    out.memoryWorkingSetBytes = Math.max(0, usage - inactiveFile);
    const rss = num(v1 ? (stats.total_rss ?? stats.rss) : stats.anon);
    const cache = num(v1 ? (stats.total_cache ?? stats.cache) : stats.file);
    if (rss !== undefined) out.memoryRssBytes = rss;
    if (cache !== undefined) out.memoryCacheBytes = cache;
    const limit = num(mem.limit);
    if (limit !== undefined) out.memoryLimitBytes = limit;
  }
  if (json.networks) {
    const networks: Record<string, InterfaceStats> = {};
    for (const [name, n] of Object.entries(json.networks)) {
      networks[name] = {
        rxBytes: num(n.rx_bytes) ?? 0,
        rxPackets: num(n.rx_packets) ?? 0,
        rxErrors: num(n.rx_errors) ?? 0,
        rxDropped: num(n.rx_dropped) ?? 0,
        txBytes: num(n.tx_bytes) ?? 0,
        txPackets: num(n.tx_packets) ?? 0,
        txErrors: num(n.tx_errors) ?? 0,
        txDropped: num(n.tx_dropped) ?? 0,
      };
    }
    out.networks = networks;
  }
  const io = json.blkio_stats?.io_service_bytes_recursive;
  if (Array.isArray(io)) {
    let read = 0;
    let write = 0;
    for (const entry of io) {
      const op = entry.op?.toLowerCase();
      if (op === 'read') read += num(entry.value) ?? 0;
      else if (op === 'write') write += num(entry.value) ?? 0;
    }
    out.blockReadBytes = read;
    out.blockWriteBytes = write;
  }
  const pids = num(json.pids_stats?.current);
  if (pids !== undefined) out.pids = pids;
  return out;
}
