import type { SeriesRegistry } from './series.js';

/**
 * What `flotilla top` shows, from the two newest samples of each series (as metrics-server
 * answers kubectl top from cAdvisor's two newest): CPU as cores used over the window between
 * them, memory as the newest working set. A series left out of the node's newest batch did not
 * change (shared/protocol/metrics.ts): a counter that stood still used nothing since.
 */
export interface Usage {
  cpuCores?: number;
  memoryBytes?: number;
  /** ms since the epoch of the newest sample used. */
  timestamp?: number;
  /** ms between the samples the CPU figure comes from. */
  windowMs?: number;
}

export class UsageReader {
  constructor(
    private readonly registry: SeriesRegistry,
    private readonly nodeSeenAt: ReadonlyMap<string, number>,
  ) {}

  /** Cores used, from a counter of CPU seconds; undefined until it has two samples. */
  private rate(id: number | undefined, node: string): { cores: number; at: number; windowMs: number } | undefined {
    if (id === undefined) return undefined;
    const r = this.registry;
    const lastTs = r.lastTs[id]!;
    const prevTs = r.prevTs[id]!;
    const seen = this.nodeSeenAt.get(node) ?? 0;
    if (lastTs > 0 && seen > lastTs) return { cores: 0, at: seen, windowMs: seen - lastTs };
    if (!(lastTs > 0 && prevTs > 0 && lastTs > prevTs)) return undefined;
    const last = r.lastValue[id]!;
    const prev = r.prevValue[id]!;
    // A counter that went down was reset (the container was recreated): it counts from zero.
    const increase = last >= prev ? last - prev : last;
    return { cores: increase / ((lastTs - prevTs) / 1000), at: lastTs, windowMs: lastTs - prevTs };
  }

  private gauge(id: number | undefined): { value: number; at: number } | undefined {
    if (id === undefined || !(this.registry.lastTs[id]! > 0)) return undefined;
    return { value: this.registry.lastValue[id]!, at: this.registry.lastTs[id]! };
  }

  container(node: string, namespace: string, pod: string, container: string): Usage {
    const find = (key: string) => this.registry.find(node, namespace, pod, container, key);
    const cpu = this.rate(find('cpu'), node);
    const memory = this.gauge(find('mem_ws'));
    return usage(cpu, memory?.value, Math.max(cpu?.at ?? 0, memory?.at ?? 0));
  }

  /** CPU: every mode but idle and iowait; memory: MemTotal minus MemAvailable. */
  node(node: string): Usage {
    let cores: number | undefined;
    let at = 0;
    let windowMs: number | undefined;
    for (const mode of ['user', 'nice', 'system', 'irq', 'softirq', 'steal']) {
      const r = this.rate(this.registry.find(node, '', '', '', `cpu|${mode}`), node);
      if (!r) continue;
      cores = (cores ?? 0) + r.cores;
      at = Math.max(at, r.at);
      windowMs = Math.max(windowMs ?? 0, r.windowMs);
    }
    const total = this.gauge(this.registry.find(node, '', '', '', 'mem_total'));
    const available = this.gauge(this.registry.find(node, '', '', '', 'mem_avail'));
    const memory = total && available ? total.value - available.value : undefined;
    return usage(cores === undefined ? undefined : { cores, windowMs: windowMs ?? 0 }, memory, Math.max(at, available?.at ?? 0));
  }
}

function usage(cpu: { cores: number; windowMs: number } | undefined, memoryBytes: number | undefined, at: number): Usage {
  return {
    ...(cpu ? { cpuCores: cpu.cores, windowMs: cpu.windowMs } : {}),
    ...(memoryBytes !== undefined ? { memoryBytes } : {}),
    ...(at > 0 ? { timestamp: at } : {}),
  };
}
