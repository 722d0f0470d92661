import { describeIngress } from '../services/ingress-describe.js';
import type { ContainerStatus, PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { Probe } from '../../shared/resources/probe.js';
import type { NodeSpec, NodeStatus } from '../../shared/resources/node.js';
import type { DaemonSetSpec, DaemonSetStatus } from '../../shared/resources/daemonset.js';
import { REVISION_ANNOTATION, type DeploymentSpec, type DeploymentStatus, type ReplicaSetSpec, type ReplicaSetStatus } from '../../shared/resources/deployment.js';
import type { LabelSelectorSpec } from '../../shared/resources/meta.js';
import type { CronJobSpec, CronJobStatus, JobSpec, JobStatus } from '../../shared/resources/job.js';
import type { EndpointsFields, ServiceSpec } from '../../shared/resources/service.js';
import { describeNodeNetwork } from './describe-network.js';
import { describeNetworkPolicy } from './describe-policy.js';
import type { NetworkPolicySpec } from '../../shared/resources/networkpolicy.js';
import { age, kv, table } from './print.js';
import { latestPullProgress, pullUnderWay } from './pull-progress.js';
import { recordLines, rolloutSummaryLines, type RolloutRecord } from './rollout-waves-render.js';

type Obj = Record<string, unknown> & { kind: string; metadata: { name: string; namespace?: string; uid: string; labels?: Record<string, string>; annotations?: Record<string, string>; creationTimestamp?: string; ownerReferences?: { kind: string; name: string }[] } };
type Ev = { type: string; reason: string; message: string; count?: number; lastTimestamp?: string; firstTimestamp?: string; source?: { component?: string; host?: string }; involvedObject: { kind: string; name: string; uid?: string } };


function mapLines(label: string, map: Record<string, string> | undefined): string[] {
  const entries = Object.entries(map ?? {});
  if (entries.length === 0) return [kv(label, '<none>')];
  return entries.map(([k, v], i) => (i === 0 ? kv(label, `${k}=${v}`) : `${' '.repeat(18)}${k}=${v}`));
}

function stateText(c: ContainerStatus): string[] {
  if (c.state.running) return [kv('State', 'Running', 4), kv('Started', c.state.running.startedAt, 6)];
  if (c.state.waiting) return [kv('State', 'Waiting', 4), kv('Reason', c.state.waiting.reason, 6), ...(c.state.waiting.message ? [kv('Message', c.state.waiting.message, 6)] : [])];
  if (c.state.terminated) return [kv('State', 'Terminated', 4), kv('Reason', c.state.terminated.reason, 6), kv('Exit Code', c.state.terminated.exitCode, 6)];
  return [kv('State', 'Unknown', 4)];
}

/** A probe in one line, as kubectl describe shows it. */
export function probeText(p: Probe): string {
  const handler = p.exec
    ? `exec [${p.exec.command.join(' ')}]`
    : p.httpGet
      ? `http-get ${(p.httpGet.scheme ?? 'HTTP').toLowerCase()}://${p.httpGet.host ?? ''}:${p.httpGet.port}${p.httpGet.path ?? '/'}`
      : `tcp-socket ${p.tcpSocket?.host ?? ''}:${p.tcpSocket?.port}`;
  return `${handler} delay=${p.initialDelaySeconds}s timeout=${p.timeoutSeconds}s period=${p.periodSeconds}s #success=${p.successThreshold} #failure=${p.failureThreshold}`;
}

/** `flotilla describe`: the object in words, its conditions, and the events about it (newest last). */
export function describe(obj: Obj, events: Ev[], related: { endpoints?: Obj; usage?: string[]; replicaSets?: Obj[]; rollouts?: Obj[] } = {}): string {
  const m = obj.metadata;
  const mine = events.filter((e) => e.involvedObject.name === m.name && e.involvedObject.kind === obj.kind && (!e.involvedObject.uid || e.involvedObject.uid === m.uid));
  mine.sort((a, b) => Date.parse(a.lastTimestamp ?? '') - Date.parse(b.lastTimestamp ?? ''));
  const lines: string[] = [kv('Name', m.name)];
  if (m.namespace) lines.push(kv('Namespace', m.namespace));
  lines.push(...mapLines('Labels', m.labels), ...mapLines('Annotations', m.annotations), kv('Created', m.creationTimestamp), kv('UID', m.uid));
  if (m.ownerReferences?.length) lines.push(kv('Controlled By', m.ownerReferences.map((o) => `${o.kind}/${o.name}`).join(', ')));
  if (obj.kind === 'Pod') lines.push(...describePod(obj, mine));
  else if (obj.kind === 'Node') lines.push(...describeNode(obj));
  else if (obj.kind === 'DaemonSet') lines.push(...describeDaemonSet(obj, related.rollouts));
  else if (obj.kind === 'Rollout') lines.push(...recordLines(obj as unknown as RolloutRecord));
  else if (obj.kind === 'Deployment') lines.push(...describeDeployment(obj, related.replicaSets ?? [], related.rollouts));
  else if (obj.kind === 'ReplicaSet') lines.push(...describeReplicaSet(obj));
  else if (obj.kind === 'Job') lines.push(...describeJob(obj));
  else if (obj.kind === 'CronJob') lines.push(...describeCronJob(obj));
  else if (obj.kind === 'Service') lines.push(...describeService(obj, related.endpoints));
  else if (obj.kind === 'ConfigMap' || obj.kind === 'Secret') lines.push(...describeData(obj));
  else if (obj.kind === 'Ingress') lines.push(...describeIngress(obj));
  else if (obj.kind === 'NetworkPolicy') lines.push(...describeNetworkPolicy(obj.spec as NetworkPolicySpec));
  // A Pod's or Node's CPU and memory over the last hour (hub/cli/top.ts), when the devices report metrics.
  if (related.usage?.length) lines.push(...related.usage);
  lines.push('Events:');
  // Of a pull's progress, its latest step only.
  const shown = latestPullProgress(mine);
  if (shown.length === 0) lines.push('  <none>');
  else {
    const rows = [['Type', 'Reason', 'Age', 'From', 'Message'], ...shown.map((e) => [e.type, e.reason, (e.count ?? 1) > 1 ? `${age(e.lastTimestamp)} (x${e.count} over ${age(e.firstTimestamp)})` : age(e.lastTimestamp), e.source?.host ? `${e.source.component ?? ''}, ${e.source.host}` : (e.source?.component ?? ''), e.message])];
    lines.push(...table(rows).split('\n').map((l) => `  ${l}`));
  }
  return lines.join('\n');
}

/** As kubectl: a ConfigMap's values, but of a Secret only the size of each value. */
function describeData(obj: Obj): string[] {
  const data = (obj.data as Record<string, string> | undefined) ?? {};
  const lines = obj.kind === 'Secret' ? [kv('Type', typeof obj.type === 'string' ? obj.type : 'Opaque')] : [];
  lines.push('Data', '====');
  for (const [key, value] of Object.entries(data)) {
    if (obj.kind === 'Secret') lines.push(`${key}:  ${Buffer.from(value, 'base64').length} bytes`);
    else lines.push(`${key}:`, '----', value, '');
  }
  const binary = (obj.binaryData as Record<string, string> | undefined) ?? {};
  if (Object.keys(binary).length > 0) lines.push('BinaryData', '====', ...Object.entries(binary).map(([k, v]) => `${k}: ${Buffer.from(v, 'base64').length} bytes`));
  return lines;
}

function describePod(obj: Obj, events: Ev[]): string[] {
  const spec = obj.spec as PodSpec;
  const status = (obj.status as PodStatus | undefined) ?? { phase: 'Pending' };
  const lines = [kv('Node', spec.nodeName), kv('Status', status.phase), ...(status.reason ? [kv('Reason', status.reason)] : []), ...(status.message ? [kv('Message', status.message)] : []), kv('IP', status.podIP), kv('Restart Policy', spec.restartPolicy ?? 'Always')];
  lines.push('Containers:');
  for (const c of spec.containers) {
    const cs = status.containerStatuses?.find((s) => s.name === c.name);
    lines.push(`  ${c.name}:`, kv('Image', c.image, 4));
    const pulling = cs?.state.running ? undefined : pullUnderWay(events, c.image);
    if (pulling) lines.push(kv('Pulling', pulling, 4));
    if (c.command) lines.push(kv('Command', c.command.join(' '), 4));
    if (c.args) lines.push(kv('Args', c.args.join(' '), 4));
    if (c.livenessProbe) lines.push(kv('Liveness', probeText(c.livenessProbe), 4));
    if (c.readinessProbe) lines.push(kv('Readiness', probeText(c.readinessProbe), 4));
    if (c.startupProbe) lines.push(kv('Startup', probeText(c.startupProbe), 4));
    if (cs) lines.push(kv('Container ID', cs.containerID, 4), ...stateText(cs), kv('Ready', String(cs.ready), 4), kv('Restart Count', cs.restartCount, 4));
  }
  lines.push('Conditions:');
  for (const c of status.conditions ?? []) lines.push(`  ${c.type.padEnd(18)}${c.status}${c.message ? `  ${c.message}` : ''}`);
  lines.push(...mapLines('Node-Selectors', spec.nodeSelector));
  return lines;
}

function describeNode(obj: Obj): string[] {
  const status = (obj.status as NodeStatus | undefined) ?? {};
  const spec = obj.spec as { unschedulable?: boolean; taints?: { key: string; value?: string; effect: string }[] } | undefined;
  const taints = (spec?.taints ?? []).map((t) => `${t.key}${t.value ? `=${t.value}` : ''}:${t.effect}`);
  const lines = [kv('Taints', taints[0]), ...taints.slice(1).map((t) => `${' '.repeat(18)}${t}`), kv('Unschedulable', String(spec?.unschedulable ?? false)), 'Conditions:'];
  const rows = [['Type', 'Status', 'LastTransitionTime', 'Reason', 'Message'], ...(status.conditions ?? []).map((c) => [c.type, c.status, c.lastTransitionTime ?? '', c.reason ?? '', c.message ?? ''])];
  lines.push(...table(rows).split('\n').map((l) => `  ${l}`));
  lines.push('Addresses:', ...(status.addresses ?? []).map((a) => `  ${a.type}: ${a.address}`));
  lines.push(...describeNodeNetwork(obj.spec as NodeSpec | undefined, status, obj.metadata.annotations));
  lines.push('Capacity:', ...Object.entries(status.capacity ?? {}).map(([k, v]) => `  ${k}: ${v}`));
  const info = status.nodeInfo;
  if (info) {
    lines.push('System Info:', kv('Hostname', info.hostname, 2), kv('Operating System', info.operatingSystem, 2), kv('OS Image', info.osImage, 2), kv('Kernel Version', info.kernelVersion, 2), kv('Architecture', info.architecture, 2), kv('Container Runtime', info.containerRuntimeVersion, 2), kv('Agent Version', info.agentVersion, 2));
  }
  lines.push(kv('Desired Revision', status.desiredRevision), kv('Observed Revision', status.observedRevision), kv('Last Heartbeat', status.lastHeartbeatTime));
  return lines;
}

function describeDaemonSet(obj: Obj, rollouts: Obj[] | undefined): string[] {
  const spec = obj.spec as DaemonSetSpec;
  const s = obj.status as DaemonSetStatus | undefined;
  // In waves: the newest rollout of this DaemonSet, with its waves and failed devices.
  const current = spec.updateStrategy?.type === 'Waves' ? (rollouts ?? []).map((r) => r as unknown as RolloutRecord).filter((r) => r.spec.target?.uid === obj.metadata.uid).sort((a, b) => b.spec.revision - a.spec.revision)[0] : undefined;
  const wavesLines = spec.updateStrategy?.type === 'Waves' ? [kv('Update Strategy', `Waves (${spec.updateStrategy.waves?.length ?? 0} waves, onFailure ${spec.updateStrategy.onFailure ?? 'rollback'})`), ...rolloutSummaryLines(obj.metadata.name, current)] : [];
  const lines = [...wavesLines, ...mapLines('Node-Selector', spec.template.spec.nodeSelector), kv('Desired Number of Nodes Scheduled', s?.desiredNumberScheduled ?? 0), kv('Current Number of Nodes Scheduled', s?.currentNumberScheduled ?? 0), kv('Number Ready', s?.numberReady ?? 0), 'Pod Template:', ...mapLines('  Labels', spec.template.metadata?.labels), '  Containers:'];
  for (const c of spec.template.spec.containers) lines.push(`   ${c.name}:`, kv('Image', c.image, 4));
  return lines;
}

function selectorText(sel: LabelSelectorSpec): string {
  const parts = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel.matchExpressions ?? []) parts.push(e.operator === 'Exists' ? e.key : e.operator === 'DoesNotExist' ? `!${e.key}` : `${e.key} ${e.operator.toLowerCase()} (${(e.values ?? []).join(',')})`);
  return parts.join(',') || '<none>';
}

function templateLines(template: DaemonSetSpec['template']): string[] {
  const lines = ['Pod Template:', ...mapLines('  Labels', template.metadata?.labels), '  Containers:'];
  for (const c of template.spec.containers) lines.push(`   ${c.name}:`, kv('Image', c.image, 4), ...(c.command ? [kv('Command', c.command.join(' '), 4)] : []));
  return lines;
}

/** As kubectl: replicas, strategy, template, conditions, then the new and the old ReplicaSets that still have pods. */
function describeDeployment(obj: Obj, replicaSets: Obj[], rollouts?: Obj[]): string[] {
  const spec = obj.spec as DeploymentSpec;
  const s = (obj.status as DeploymentStatus | undefined) ?? {};
  const strategy = spec.strategy?.type ?? 'RollingUpdate';
  const lines = [kv('Selector', selectorText(spec.selector)), kv('Replicas', `${spec.replicas ?? 1} desired | ${s.updatedReplicas ?? 0} updated | ${s.replicas ?? 0} total | ${s.availableReplicas ?? 0} available | ${s.unavailableReplicas ?? 0} unavailable`), kv('StrategyType', strategy), kv('MinReadySeconds', spec.minReadySeconds ?? 0)];
  if (strategy === 'RollingUpdate') lines.push(kv('RollingUpdateStrategy', `${spec.strategy?.rollingUpdate?.maxUnavailable ?? '25%'} max unavailable, ${spec.strategy?.rollingUpdate?.maxSurge ?? '25%'} max surge`));
  if (strategy === 'Waves') {
    // In waves: the newest rollout of this Deployment, with its waves (of pods) and failed pods.
    const current = (rollouts ?? []).map((r) => r as unknown as RolloutRecord).filter((r) => r.spec.target?.uid === obj.metadata.uid).sort((a, b) => b.spec.revision - a.spec.revision)[0];
    lines.push(kv('WavesStrategy', `${spec.strategy?.waves?.length ?? 0} waves, onFailure ${spec.strategy?.onFailure ?? 'rollback'}`), ...rolloutSummaryLines(obj.metadata.name, current));
  }
  lines.push(kv('Paused', String(spec.paused ?? false)), ...templateLines(spec.template), 'Conditions:');
  lines.push(...table([['Type', 'Status', 'Reason', 'Message'], ...(s.conditions ?? []).map((c) => [c.type, c.status, c.reason ?? '', c.message ?? ''])]).split('\n').map((l) => `  ${l}`));
  const owned = replicaSets.filter((rs) => rs.metadata.ownerReferences?.some((o) => o.kind === 'Deployment' && o.name === obj.metadata.name));
  const revision = obj.metadata.annotations?.[REVISION_ANNOTATION];
  const isNew = (rs: Obj) => revision !== undefined && rs.metadata.annotations?.[REVISION_ANNOTATION] === revision;
  const rsText = (rs: Obj) => `${rs.metadata.name} (${(rs.status as ReplicaSetStatus | undefined)?.replicas ?? 0}/${(rs.spec as ReplicaSetSpec).replicas ?? 1} replicas created)`;
  const olds = owned.filter((rs) => !isNew(rs) && ((rs.status as ReplicaSetStatus | undefined)?.replicas ?? 0) + ((rs.spec as ReplicaSetSpec).replicas ?? 1) > 0);
  const newRS = owned.find(isNew);
  lines.push(kv('OldReplicaSets', olds.map(rsText).join(', ') || '<none>'), kv('NewReplicaSet', newRS ? rsText(newRS) : '<none>'));
  return lines;
}

function describeReplicaSet(obj: Obj): string[] {
  const spec = obj.spec as ReplicaSetSpec;
  const s = (obj.status as ReplicaSetStatus | undefined) ?? { replicas: 0 };
  return [kv('Selector', selectorText(spec.selector)), kv('Replicas', `${s.replicas} current / ${spec.replicas ?? 1} desired`), kv('Pods Status', `${s.readyReplicas ?? 0} Ready / ${s.availableReplicas ?? 0} Available`), kv('MinReadySeconds', spec.minReadySeconds ?? 0), ...templateLines(spec.template)];
}

function describeJob(obj: Obj): string[] {
  const spec = obj.spec as JobSpec;
  const s = (obj.status as JobStatus | undefined) ?? {};
  const lines = [kv('Parallelism', spec.parallelism ?? 1), kv('Completions', spec.completions ?? (spec.parallelism === undefined ? 1 : '<unset>')), kv('Backoff Limit', spec.backoffLimit ?? 6), kv('Active Deadline', spec.activeDeadlineSeconds === undefined ? undefined : `${spec.activeDeadlineSeconds}s`), kv('TTL After Finish', spec.ttlSecondsAfterFinished === undefined ? undefined : `${spec.ttlSecondsAfterFinished}s`), kv('Suspend', String(spec.suspend ?? false))];
  lines.push(kv('Start Time', s.startTime), kv('Completed At', s.completionTime), kv('Pods Statuses', `${s.active ?? 0} Active / ${s.succeeded ?? 0} Succeeded / ${s.failed ?? 0} Failed`), 'Conditions:');
  for (const c of s.conditions ?? []) lines.push(`  ${c.type.padEnd(18)}${c.status}${c.reason ? `  ${c.reason}` : ''}${c.message ? `: ${c.message}` : ''}`);
  lines.push('Pod Template:', ...mapLines('  Labels', spec.template.metadata?.labels), '  Containers:');
  for (const c of spec.template.spec.containers) lines.push(`   ${c.name}:`, kv('Image', c.image, 4), ...(c.command ? [kv('Command', c.command.join(' '), 4)] : []));
  return lines;
}

function describeCronJob(obj: Obj): string[] {
  const spec = obj.spec as CronJobSpec;
  const s = (obj.status as CronJobStatus | undefined) ?? {};
  return [
    kv('Schedule', spec.schedule),
    kv('Time Zone', spec.timeZone ?? '<hub local>'),
    kv('Concurrency Policy', spec.concurrencyPolicy ?? 'Allow'),
    kv('Suspend', String(spec.suspend ?? false)),
    kv('Successful Job History Limit', spec.successfulJobsHistoryLimit ?? 3),
    kv('Failed Job History Limit', spec.failedJobsHistoryLimit ?? 1),
    kv('Starting Deadline Seconds', spec.startingDeadlineSeconds ?? '<unset>'),
    kv('Last Schedule Time', s.lastScheduleTime),
    kv('Last Successful Time', s.lastSuccessfulTime),
    kv('Active Jobs', s.active?.map((a) => a.name).join(', ') || '<none>'),
  ];
}

/**
 * As kubectl: selector, type, virtual IP, each port with its target and NodePort, the
 * Endpoints, session affinity and traffic policies; then each endpoint with its pod, node and
 * readiness (which kubectl leaves to `get endpointslices -o wide`).
 */
function describeService(obj: Obj, endpoints: Obj | undefined): string[] {
  const spec = obj.spec as ServiceSpec;
  const subsets = (endpoints as (Obj & EndpointsFields) | undefined)?.subsets ?? [];
  const list = (key: 'addresses' | 'notReadyAddresses') =>
    subsets.flatMap((ss) => (ss[key] ?? []).flatMap((a) => ((ss.ports ?? []).length ? ss.ports!.map((p) => `${a.ip}:${p.port}`) : [a.ip]))).join(',') || '<none>';
  const type = spec.type ?? 'ClusterIP';
  const lines = [...mapLines('Selector', spec.selector), kv('Type', type), kv('IP', spec.clusterIP), kv('IPs', spec.clusterIPs?.join(',') ?? spec.clusterIP)];
  for (const p of spec.ports ?? []) {
    const name = p.name ?? '<unset>';
    const protocol = p.protocol ?? 'TCP';
    lines.push(kv('Port', `${name}  ${p.port}/${protocol}`), kv('TargetPort', `${p.targetPort ?? p.port}/${protocol}`));
    if (p.nodePort !== undefined) lines.push(kv('NodePort', `${name}  ${p.nodePort}/${protocol}`));
  }
  lines.push(kv('Endpoints', list('addresses')), kv('NotReady', list('notReadyAddresses')));
  lines.push(kv('Session Affinity', spec.sessionAffinity ?? 'None'));
  if (spec.sessionAffinity === 'ClientIP') lines.push(kv('Affinity Timeout', `${spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800}s`));
  if (type === 'NodePort') lines.push(kv('External Traffic Policy', spec.externalTrafficPolicy ?? 'Cluster'));
  lines.push(kv('Internal Traffic Policy', spec.internalTrafficPolicy ?? 'Cluster'));
  if (spec.trafficDistribution) lines.push(kv('Traffic Distribution', spec.trafficDistribution));
  const rows = subsets.flatMap((ss) => [
    ...(ss.addresses ?? []).map((a) => [a.ip, a.targetRef?.name ?? '<none>', a.nodeName ?? '<none>', 'true']),
    ...(ss.notReadyAddresses ?? []).map((a) => [a.ip, a.targetRef?.name ?? '<none>', a.nodeName ?? '<none>', 'false']),
  ]);
  const seen = new Set<string>();
  const unique = rows.filter((r) => !seen.has(r.join(' ')) && seen.add(r.join(' ')));
  lines.push('Endpoint Pods:');
  if (unique.length === 0) lines.push('  <none>');
  else lines.push(...table([['Address', 'Pod', 'Node', 'Ready'], ...unique]).split('\n').map((l) => `  ${l}`));
  return lines;
}
