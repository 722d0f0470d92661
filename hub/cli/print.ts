import { stringify } from 'yaml';
import type { ContainerStatus, PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { NodeSpec, NodeStatus } from '../../shared/resources/node.js';
import type { DaemonSetSpec, DaemonSetStatus } from '../../shared/resources/daemonset.js';
import type { DeploymentSpec, DeploymentStatus, ReplicaSetSpec, ReplicaSetStatus } from '../../shared/resources/deployment.js';
import type { CronJobSpec, CronJobStatus, JobSpec, JobStatus } from '../../shared/resources/job.js';
import type { EndpointSliceFields, EndpointsFields, ServiceSpec } from '../../shared/resources/service.js';
import type { IngressSpec, IngressStatus } from '../../shared/resources/ingress.js';
import type { NetworkPolicySpec } from '../../shared/resources/networkpolicy.js';
import { selectorFromLabelSelector, selectorToString, type LabelSelector } from '../../shared/labels/selector.js';
import type { RolloutSpec, RolloutStatus } from '../../shared/resources/rollout.js';

export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml' | 'name';
type Obj = Record<string, unknown> & { kind?: string; metadata?: { name?: string; namespace?: string; labels?: Record<string, string>; creationTimestamp?: string } };

/** kubectl's age column: 5s, 3m, 2h, 4d. */
export function age(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]! + 3))).join('').trimEnd()).join('\n');
}

function podReady(status: PodStatus | undefined, spec: PodSpec): string {
  const statuses = status?.containerStatuses ?? [];
  return `${statuses.filter((c) => c.ready).length}/${spec.containers.length}`;
}

/** kubectl's STATUS column: the waiting or terminated reason of a container when there is one, else the phase. */
function podStatusText(obj: Obj): string {
  const status = obj.status as PodStatus | undefined;
  if ((obj.metadata as { deletionTimestamp?: string })?.deletionTimestamp) return 'Terminating';
  for (const c of status?.containerStatuses ?? []) {
    if (c.state.waiting?.reason) return c.state.waiting.reason;
    if (c.state.terminated?.reason && status?.phase !== 'Succeeded') return c.state.terminated.reason;
  }
  return status?.reason ?? status?.phase ?? 'Pending';
}

function restarts(statuses: ContainerStatus[] | undefined): string {
  return String((statuses ?? []).reduce((n, c) => n + c.restartCount, 0));
}

function nodeStatusText(obj: Obj): string {
  const status = obj.status as NodeStatus | undefined;
  const ready = status?.conditions?.find((c) => c.type === 'Ready');
  let text = ready?.status === 'True' ? 'Ready' : ready?.status === 'False' ? 'NotReady' : 'Unknown';
  if ((obj.spec as { unschedulable?: boolean } | undefined)?.unschedulable) text += ',SchedulingDisabled';
  return text;
}

/** kubectl's PORT(S) of a Service: `80/TCP,443/TCP`, `80:30080/TCP` with a NodePort, `<none>`. */
export function servicePorts(spec: ServiceSpec): string {
  const ports = (spec.ports ?? []).map((p) => `${p.port}${p.nodePort !== undefined ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`);
  return ports.join(',') || '<none>';
}

function firstThree(items: string[]): string {
  return items.slice(0, 3).join(',') + (items.length > 3 ? ` + ${items.length - 3} more...` : '');
}

function labelsText(labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {});
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(',') : '<none>';
}

function templateImages(containers: { name: string; image: string }[]): string[] {
  return [containers.map((c) => c.name).join(','), containers.map((c) => c.image).join(',')];
}

function dataCount(map: unknown): number {
  return map && typeof map === 'object' ? Object.keys(map).length : 0;
}

interface Columns {
  headers: string[];
  wide?: string[];
  row: (o: Obj) => string[];
  wideRow?: (o: Obj) => string[];
}

const COLUMNS: Record<string, Columns> = {
  Pod: {
    headers: ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE'],
    wide: ['IP', 'NODE'],
    row: (o) => {
      const status = o.status as PodStatus | undefined;
      return [o.metadata!.name!, podReady(status, o.spec as PodSpec), podStatusText(o), restarts(status?.containerStatuses), age(o.metadata?.creationTimestamp)];
    },
    wideRow: (o) => [(o.status as PodStatus | undefined)?.podIP ?? '<none>', (o.spec as PodSpec).nodeName ?? '<none>'],
  },
  Node: {
    headers: ['NAME', 'STATUS', 'AGE', 'VERSION'],
    wide: ['INTERNAL-IP', 'POD-CIDR', 'OS-IMAGE', 'KERNEL-VERSION', 'ARCH', 'CONTAINER-RUNTIME', 'LABELS'],
    row: (o) => [o.metadata!.name!, nodeStatusText(o), age(o.metadata?.creationTimestamp), (o.status as NodeStatus | undefined)?.nodeInfo?.agentVersion ?? '<unknown>'],
    wideRow: (o) => {
      const s = o.status as NodeStatus | undefined;
      return [
        s?.addresses?.find((a) => a.type === 'InternalIP')?.address ?? '<none>',
        (o.spec as NodeSpec | undefined)?.podCIDR ?? '<none>',
        s?.nodeInfo?.osImage ?? '<unknown>',
        s?.nodeInfo?.kernelVersion ?? '<unknown>',
        s?.nodeInfo?.architecture ?? '<unknown>',
        s?.nodeInfo?.containerRuntimeVersion ?? '<unknown>',
        labelsText(o.metadata?.labels),
      ];
    },
  },
  DaemonSet: {
    headers: ['NAME', 'DESIRED', 'CURRENT', 'READY', 'UP-TO-DATE', 'NODE SELECTOR', 'AGE'],
    wide: ['CONTAINERS', 'IMAGES'],
    row: (o) => {
      const s = o.status as DaemonSetStatus | undefined;
      const sel = (o.spec as DaemonSetSpec).template.spec.nodeSelector;
      return [o.metadata!.name!, String(s?.desiredNumberScheduled ?? 0), String(s?.currentNumberScheduled ?? 0), String(s?.numberReady ?? 0), String(s?.updatedNumberScheduled ?? 0), sel && Object.keys(sel).length ? labelsText(sel) : '<none>', age(o.metadata?.creationTimestamp)];
    },
    wideRow: (o) => {
      const containers = (o.spec as DaemonSetSpec).template.spec.containers;
      return [containers.map((c) => c.name).join(','), containers.map((c) => c.image).join(',')];
    },
  },
  Deployment: {
    headers: ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE'],
    wide: ['CONTAINERS', 'IMAGES'],
    row: (o) => {
      const s = o.status as DeploymentStatus | undefined;
      return [o.metadata!.name!, `${s?.readyReplicas ?? 0}/${(o.spec as DeploymentSpec).replicas ?? 1}`, String(s?.updatedReplicas ?? 0), String(s?.availableReplicas ?? 0), age(o.metadata?.creationTimestamp)];
    },
    wideRow: (o) => templateImages((o.spec as DeploymentSpec).template.spec.containers),
  },
  ReplicaSet: {
    headers: ['NAME', 'DESIRED', 'CURRENT', 'READY', 'AGE'],
    wide: ['CONTAINERS', 'IMAGES'],
    row: (o) => {
      const s = o.status as ReplicaSetStatus | undefined;
      return [o.metadata!.name!, String((o.spec as ReplicaSetSpec).replicas ?? 1), String(s?.replicas ?? 0), String(s?.readyReplicas ?? 0), age(o.metadata?.creationTimestamp)];
    },
    wideRow: (o) => templateImages((o.spec as ReplicaSetSpec).template.spec.containers),
  },
  Job: {
    headers: ['NAME', 'STATUS', 'COMPLETIONS', 'AGE'],
    row: (o) => {
      const s = o.status as JobStatus | undefined;
      const cond = s?.conditions?.find((c) => c.status === 'True' && (c.type === 'Complete' || c.type === 'Failed' || c.type === 'Suspended'));
      const status = cond ? cond.type : 'Running';
      return [o.metadata!.name!, status, `${s?.succeeded ?? 0}/${(o.spec as JobSpec).completions ?? 1}`, age(o.metadata?.creationTimestamp)];
    },
  },
  CronJob: {
    headers: ['NAME', 'SCHEDULE', 'TIMEZONE', 'SUSPEND', 'ACTIVE', 'LAST SCHEDULE', 'AGE'],
    row: (o) => {
      const spec = o.spec as CronJobSpec;
      const s = o.status as CronJobStatus | undefined;
      return [o.metadata!.name!, spec.schedule, spec.timeZone ?? '<none>', String(spec.suspend ?? false), String(s?.active?.length ?? 0), s?.lastScheduleTime ? age(s.lastScheduleTime) : '<none>', age(o.metadata?.creationTimestamp)];
    },
  },
  // As kubectl: 80/TCP, or 80:30080/TCP with a NodePort; None for a headless Service.
  Service: {
    headers: ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE'],
    row: (o) => {
      const spec = o.spec as ServiceSpec;
      return [o.metadata!.name!, spec.type ?? 'ClusterIP', spec.clusterIP || '<none>', '<none>', servicePorts(spec), age(o.metadata?.creationTimestamp)];
    },
    wide: ['SELECTOR'],
    wideRow: (o) => [labelsText((o.spec as ServiceSpec).selector)],
  },
  Endpoints: {
    headers: ['NAME', 'ENDPOINTS', 'AGE'],
    row: (o) => {
      const subsets = (o as EndpointsFields).subsets ?? [];
      const eps = subsets.flatMap((ss) => (ss.addresses ?? []).flatMap((a) => ((ss.ports ?? []).length ? ss.ports!.map((p) => `${a.ip}:${p.port}`) : [a.ip])));
      const shown = eps.slice(0, 3).join(',') + (eps.length > 3 ? ` + ${eps.length - 3} more...` : '');
      return [o.metadata!.name!, shown || '<none>', age(o.metadata?.creationTimestamp)];
    },
  },
  // As kubectl: the ports' numbers and the endpoints' addresses, three at most.
  EndpointSlice: {
    headers: ['NAME', 'ADDRESSTYPE', 'PORTS', 'ENDPOINTS', 'AGE'],
    row: (o) => {
      const f = o as EndpointSliceFields;
      const ports = (f.ports ?? []).map((p) => (p.port === undefined ? '<unset>' : String(p.port)));
      const addresses = (f.endpoints ?? []).flatMap((e) => e.addresses);
      return [o.metadata!.name!, f.addressType ?? 'IPv4', firstThree(ports) || '<unset>', firstThree(addresses) || '<unset>', age(o.metadata?.creationTimestamp)];
    },
  },
  // kubectl's columns: ADDRESS lists the ingress devices' addresses, PORTS 80 and 443 when TLS is configured.
  Ingress: {
    headers: ['NAME', 'CLASS', 'HOSTS', 'ADDRESS', 'PORTS', 'AGE'],
    row: (o) => {
      const spec = o.spec as IngressSpec;
      const hosts = [...new Set((spec.rules ?? []).map((r) => r.host ?? '*'))];
      const shown = hosts.slice(0, 4).join(',') + (hosts.length > 4 ? ` + ${hosts.length - 4} more...` : '');
      const address = ((o.status as IngressStatus | undefined)?.loadBalancer?.ingress ?? []).map((a) => a.ip ?? a.hostname ?? '').filter(Boolean).join(',');
      return [o.metadata!.name!, spec.ingressClassName ?? '<none>', shown || '*', address, spec.tls?.length ? '80, 443' : '80', age(o.metadata?.creationTimestamp)];
    },
  },
  // As kubectl: the pod selector in its string form, <none> for every pod of the namespace.
  NetworkPolicy: {
    headers: ['NAME', 'POD-SELECTOR', 'AGE'],
    row: (o) => [o.metadata!.name!, podSelectorText((o.spec as NetworkPolicySpec).podSelector), age(o.metadata?.creationTimestamp)],
  },
  // As kubectl: how many keys, never the values (a Secret's table shows no data).
  ConfigMap: {
    headers: ['NAME', 'DATA', 'AGE'],
    row: (o) => [o.metadata!.name!, String(dataCount(o.data) + dataCount(o.binaryData)), age(o.metadata?.creationTimestamp)],
  },
  Secret: {
    headers: ['NAME', 'TYPE', 'DATA', 'AGE'],
    row: (o) => [o.metadata!.name!, typeof o.type === 'string' ? o.type : 'Opaque', String(dataCount(o.data)), age(o.metadata?.creationTimestamp)],
  },
  Namespace: {
    headers: ['NAME', 'STATUS', 'AGE'],
    row: (o) => [o.metadata!.name!, 'Active', age(o.metadata?.creationTimestamp)],
  },
  // A DaemonSet's rollout in waves (hub/cli/rollout-waves-render.ts has the same figures in words).
  Rollout: {
    headers: ['NAME', 'DAEMONSET', 'REVISION', 'PHASE', 'WAVE', 'UPDATED', 'FAILED', 'AGE'],
    row: (o) => {
      const spec = o.spec as RolloutSpec;
      const s = o.status as RolloutStatus | undefined;
      const waves = s?.waves ?? [];
      const total = spec.waves.length;
      const wave = total === 0 ? '-' : s?.phase === 'Succeeded' ? `${total}/${total}` : `${Math.min(total, (s?.wave ?? 0) + 1)}/${total}`;
      const updated = total === 0 ? '-' : `${waves.reduce((n, w) => n + w.updated, 0)}/${waves.length ? waves.reduce((n, w) => n + w.total, 0) : spec.waves.reduce((n, w) => n + (w.replicas ?? w.nodes.length), 0)}`;
      return [o.metadata!.name!, spec.target.kind === 'Deployment' ? `deployment/${spec.target.name}` : spec.target.name, String(spec.revision), s?.phase ?? 'Progressing', wave, updated, String(s?.failedNodes?.length ?? 0), age(o.metadata?.creationTimestamp)];
    },
  },
  Event: {
    headers: ['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE'],
    row: (o) => {
      const inv = o.involvedObject as { kind: string; name: string };
      return [age(o.lastTimestamp as string | undefined), String(o.type), String(o.reason), `${inv.kind.toLowerCase()}/${inv.name}`, String(o.message)];
    },
  },
};

export function formatObjects(kind: string, items: Obj[], format: OutputFormat, opts: { allNamespaces?: boolean; headers?: boolean; list?: boolean } = {}): string {
  if (format === 'json') return JSON.stringify(opts.list === false && items.length === 1 ? items[0] : { items }, null, 2);
  if (format === 'yaml') return stringify(opts.list === false && items.length === 1 ? items[0] : { items }).trimEnd();
  if (format === 'name') return items.map((o) => `${kind.toLowerCase()}/${o.metadata?.name}`).join('\n');
  const cols = COLUMNS[kind] ?? { headers: ['NAME', 'AGE'], row: (o: Obj) => [o.metadata!.name!, age(o.metadata?.creationTimestamp)] };
  const wide = format === 'wide' && cols.wide && cols.wideRow;
  const rows: string[][] = [];
  if (opts.headers !== false) rows.push([...(opts.allNamespaces ? ['NAMESPACE'] : []), ...cols.headers, ...(wide ? cols.wide! : [])]);
  for (const o of items) rows.push([...(opts.allNamespaces ? [o.metadata?.namespace ?? ''] : []), ...cols.row(o), ...(wide ? cols.wideRow!(o) : [])]);
  return table(rows);
}

/** One `Label:   value` line of describe's output, the value aligned at column 18 (`<none>` when absent). */
export function kv(label: string, value: string | number | undefined, indent = 0): string {
  return `${' '.repeat(indent)}${`${label}:`.padEnd(Math.max(18 - indent, label.length + 2))}${value ?? '<none>'}`;
}

function podSelectorText(selector: LabelSelector | undefined): string {
  try {
    return selectorToString(selectorFromLabelSelector(selector)) || '<none>';
  } catch {
    return '<invalid>';
  }
}
