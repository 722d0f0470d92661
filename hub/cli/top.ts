import type { Command } from 'commander';
import { parseSelector, SelectorError } from '../../shared/labels/selector.js';
import { bytes, cpuToMilli } from '../../shared/quantities/quantity.js';
import { HubClient, objectPath, type ClientOptions } from './client.js';
import { CliError } from './errors.js';
import { table } from './print.js';

type Out = (text: string) => void;

interface Usage {
  cpuCores?: number;
  memoryBytes?: number;
}
interface PodMetrics {
  metadata: { name: string; namespace: string };
  node: string;
  containers: { name: string; usage: Usage }[];
}
interface NodeMetrics {
  metadata: { name: string };
  usage: Usage;
  capacity: Usage;
}
interface NodeObj {
  metadata: { name: string };
  status?: { capacity?: Record<string, string> };
}

export interface TopOptions extends ClientOptions {
  selector?: string;
  namespace?: string;
  allNamespaces?: boolean;
  sortBy?: string;
  containers?: boolean;
}

/** kubectl's forms: 250m of CPU, 40Mi of memory. */
export const cpuText = (cores: number | undefined) => (cores === undefined ? '<unknown>' : `${Math.round(cores * 1000)}m`);
export const memoryText = (b: number | undefined) => (b === undefined ? '<unknown>' : `${Math.round(b / 1048576)}Mi`);
const percent = (part: number | undefined, whole: number | undefined) => (part === undefined || !whole ? '<unknown>' : `${Math.round((100 * part) / whole)}%`);

function query(opts: TopOptions): URLSearchParams {
  const q = new URLSearchParams();
  if (opts.selector) {
    try {
      parseSelector(opts.selector);
    } catch (err) {
      if (err instanceof SelectorError) throw CliError.usage(`invalid selector '${opts.selector}': ${err.message}`);
      throw err;
    }
    q.set('labelSelector', opts.selector);
  }
  return q;
}

function sortKey(sortBy: string | undefined): ((u: Usage) => number) | undefined {
  if (sortBy === undefined) return undefined;
  if (sortBy === 'cpu') return (u) => u.cpuCores ?? -1;
  if (sortBy === 'memory') return (u) => u.memoryBytes ?? -1;
  throw CliError.usage(`--sort-by: '${sortBy}' is not cpu or memory`);
}

function capacityOf(node: NodeObj | undefined): Usage {
  const c = node?.status?.capacity ?? {};
  const parse = (fn: () => number) => {
    try {
      return fn();
    } catch {
      return undefined;
    }
  };
  return { ...(c.cpu ? { cpuCores: parse(() => cpuToMilli(c.cpu!) / 1000) } : {}), ...(c.memory ? { memoryBytes: parse(() => bytes(c.memory!)) } : {}) };
}

function sum(values: (number | undefined)[]): number | undefined {
  return values.some((v) => v !== undefined) ? values.reduce<number>((a, v) => a + (v ?? 0), 0) : undefined;
}

/**
 * `flotilla top nodes|pods`, as kubectl top: CPU in millicores and memory in Mi, with each as a
 * percentage of the node's capacity (for a pod, of the node that runs it).
 */
export async function topCommand(what: string, opts: TopOptions, out: Out): Promise<void> {
  const client = new HubClient(opts);
  const sort = sortKey(opts.sortBy);
  const q = query(opts);
  if (['node', 'nodes', 'no'].includes(what)) {
    const { body } = await client.request<{ items: NodeMetrics[] }>('GET', `/api/v1/metrics/nodes${q.size ? `?${q}` : ''}`);
    if (body.items.length === 0) throw new CliError('metrics not available yet');
    const items = sort ? [...body.items].sort((a, b) => sort(b.usage) - sort(a.usage)) : body.items;
    const rows = items.map((n) => [n.metadata.name, cpuText(n.usage.cpuCores), percent(n.usage.cpuCores, n.capacity.cpuCores), memoryText(n.usage.memoryBytes), percent(n.usage.memoryBytes, n.capacity.memoryBytes)]);
    out(table([['NAME', 'CPU(cores)', 'CPU%', 'MEMORY(bytes)', 'MEMORY%'], ...rows]));
    return;
  }
  if (!['pod', 'pods', 'po'].includes(what)) throw CliError.usage(`top takes nodes or pods, not '${what}'`);
  const namespace = opts.allNamespaces ? undefined : (opts.namespace ?? 'default');
  if (namespace) q.set('namespace', namespace);
  const [{ body }, nodes] = await Promise.all([client.request<{ items: PodMetrics[] }>('GET', `/api/v1/metrics/pods?${q}`), client.request<{ items: NodeObj[] }>('GET', '/api/v1/nodes')]);
  if (body.items.length === 0) {
    const pods = await client.request<{ items: unknown[] }>('GET', `${objectPath('pods', true, namespace)}${opts.selector ? `?labelSelector=${encodeURIComponent(opts.selector)}` : ''}`);
    if (pods.body.items.length === 0) return out(namespace ? `No resources found in ${namespace} namespace.` : 'No resources found');
    throw new CliError('metrics not available yet');
  }
  const capacity = new Map(nodes.body.items.map((n) => [n.metadata.name, capacityOf(n)]));
  const total = (p: PodMetrics): Usage => ({ cpuCores: sum(p.containers.map((c) => c.usage.cpuCores)), memoryBytes: sum(p.containers.map((c) => c.usage.memoryBytes)) });
  const items = sort ? [...body.items].sort((a, b) => sort(total(b)) - sort(total(a))) : body.items;
  const head = [...(opts.allNamespaces ? ['NAMESPACE'] : []), 'NAME', ...(opts.containers ? ['CONTAINER'] : []), 'CPU(cores)', 'CPU%', 'MEMORY(bytes)', 'MEMORY%'];
  const rows: string[][] = [];
  for (const p of items) {
    const cap = capacity.get(p.node) ?? {};
    const lines = opts.containers ? p.containers.map((c) => ({ name: c.name, u: c.usage })) : [{ name: undefined, u: total(p) }];
    for (const l of lines) {
      rows.push([...(opts.allNamespaces ? [p.metadata.namespace] : []), p.metadata.name, ...(l.name !== undefined ? [l.name] : []), cpuText(l.u.cpuCores), percent(l.u.cpuCores, cap.cpuCores), memoryText(l.u.memoryBytes), percent(l.u.memoryBytes, cap.memoryBytes)]);
    }
  }
  out(table([head, ...rows]));
}

export function registerTopCommand(program: Command, client: () => ClientOptions, out: Out): void {
  program
    .command('top <nodes|pods>')
    .description('show CPU and memory use of nodes or pods, from the devices\' metrics')
    .option('-l, --selector <selector>', 'label selector, e.g. app=web')
    .option('-n, --namespace <ns>', 'namespace (pods)')
    .option('-A, --all-namespaces', 'every namespace (pods)')
    .option('--containers', 'one line per container (pods)')
    .option('--sort-by <what>', 'cpu or memory')
    .action((what: string, o: Omit<TopOptions, keyof ClientOptions>) => topCommand(what, { ...client(), ...o }, out));
}

// ---- usage history, for `flotilla describe` ----

const SPARKS = '▁▂▃▄▅▆▇█';

/** A sparkline of values, scaled between their min and max. */
export function sparkline(values: number[]): string {
  if (values.length === 0) return '';
  const min = Math.min(...values);
  const max = Math.max(...values);
  return values.map((v) => SPARKS[max === min ? 0 : Math.min(7, Math.floor(((v - min) / (max - min)) * 8))]).join('');
}

interface Matrix {
  result: { metric: Record<string, string>; values: [number, number][] }[];
}

/** Points of several series added up by time. */
function added(m: Matrix, sign = 1, into = new Map<number, number>()): Map<number, number> {
  for (const s of m.result) for (const [t, v] of s.values) into.set(t, (into.get(t) ?? 0) + sign * v);
  return into;
}

function historyLine(label: string, points: Map<number, number>, text: (v: number) => string): string | undefined {
  const values = [...points.entries()].sort(([a], [b]) => a - b).map(([, v]) => v);
  if (values.length === 0) return undefined;
  const avg = values.reduce((a, v) => a + v, 0) / values.length;
  return `    ${`${label}:`.padEnd(9)}min ${text(Math.min(...values)).padEnd(8)}avg ${text(avg).padEnd(8)}max ${text(Math.max(...values)).padEnd(8)}${sparkline(values)}`;
}

/** `describe`'s "Resource Usage (last hour)" section of a Pod or Node: min, average, max and a sparkline; nothing when there is no data. */
export async function usageHistory(opts: ClientOptions, obj: { kind: string; metadata: { name: string; namespace?: string }; spec?: unknown }): Promise<string[]> {
  const client = new HubClient(opts);
  const ask = (q: Record<string, string>) => client.request<Matrix>('GET', `/api/v1/metrics/query?${new URLSearchParams({ from: '-1h', step: '2m', ...q })}`).then((r) => r.body);
  const lines: string[] = [];
  if (obj.kind === 'Pod') {
    const spec = obj.spec as { nodeName?: string; containers: { name: string }[] };
    if (!spec.nodeName) return [];
    const where = { node: spec.nodeName, namespace: obj.metadata.namespace ?? 'default', pod: obj.metadata.name };
    for (const c of spec.containers) {
      const [cpu, memory] = await Promise.all([ask({ series: 'container_cpu_usage_seconds_total', fn: 'rate', ...where, container: c.name }), ask({ series: 'container_memory_working_set_bytes', fn: 'avg', ...where, container: c.name })]);
      const rows = [historyLine('CPU', added(cpu), cpuText), historyLine('Memory', added(memory), memoryText)].filter((l): l is string => l !== undefined);
      if (rows.length) lines.push(`  ${c.name}:`, ...rows);
    }
  } else if (obj.kind === 'Node') {
    const node = obj.metadata.name;
    const modes = await Promise.all(['user', 'nice', 'system', 'irq', 'softirq', 'steal'].map((mode) => ask({ series: 'node_cpu_seconds_total', fn: 'rate', node, label: `mode=${mode}` })));
    const cpu = new Map<number, number>();
    for (const m of modes) added(m, 1, cpu);
    const [total, available] = await Promise.all([ask({ series: 'node_memory_MemTotal_bytes', fn: 'avg', node }), ask({ series: 'node_memory_MemAvailable_bytes', fn: 'avg', node })]);
    const totals = added(total);
    const availables = added(available);
    const used = new Map([...totals].filter(([t]) => availables.has(t)).map(([t, v]) => [t, v - availables.get(t)!]));
    const rows = [historyLine('CPU', cpu, cpuText), historyLine('Memory', used, memoryText)].filter((l): l is string => l !== undefined);
    lines.push(...rows);
  }
  return lines.length ? ['Resource Usage (last hour):', ...lines] : [];
}
