import { cpus, totalmem } from 'node:os';
import type { DesiredPod } from '../../shared/protocol/messages.js';
import { parseQuantity } from '../../shared/quantities/quantity.js';
import { subscriptedField, type ObjectFieldSelector, type ResourceFieldSelector } from '../../shared/resources/downward.js';
import { internalIP } from '../node/info.js';
import { fsUsage } from '../node/pressure.js';

/**
 * What the agent knows of a pod beyond its spec, for the downward API: the node it runs on, the
 * node's address and allocatable resources, and the pod's own address once its sandbox has one.
 */
export interface DownwardContext {
  nodeName: string;
  /** The node's InternalIP (status.hostIP). */
  hostIP?: string | undefined;
  /** The sandbox's address (status.podIP); the host's for a hostNetwork pod. */
  podIP?: string | undefined;
  /** What an unset limit stands for, as the kubelet defaults it: the node's allocatable cpu, memory and ephemeral-storage. */
  allocatable: { cpu: string; memory: string; 'ephemeral-storage': string };
}

/**
 * The node's allocatable resources as the device reports its capacity (all of its CPUs and
 * memory), and the size of the file system of its state folder for ephemeral-storage.
 */
export function nodeAllocatable(stateDir: string): DownwardContext['allocatable'] {
  return { cpu: String(cpus().length), memory: String(totalmem()), 'ephemeral-storage': String(fsUsage(stateDir)?.sizeBytes ?? 0) };
}

/** What the node tells a pod created now; `podIP` is its sandbox's address (the host's for hostNetwork). */
export function nodeDownward(pod: DesiredPod, nodeName: string, stateDir: string, podIP: string | undefined): DownwardContext {
  const hostIP = internalIP();
  return { nodeName, hostIP, podIP: pod.spec.hostNetwork ? hostIP : podIP, allocatable: nodeAllocatable(stateDir) };
}

/** A pod's field by its path (validated at the hub), or undefined for a path this agent does not know. */
export function podFieldValue(pod: DesiredPod, ref: ObjectFieldSelector, ctx: DownwardContext): string | undefined {
  const sub = subscriptedField(ref.fieldPath);
  if (sub) return (sub.map === 'labels' ? pod.labels : pod.annotations)?.[sub.key] ?? '';
  switch (ref.fieldPath) {
    case 'metadata.name':
      return pod.name;
    case 'metadata.namespace':
      return pod.namespace;
    case 'metadata.uid':
      return pod.uid;
    case 'metadata.labels':
      return formatMap(pod.labels ?? {});
    case 'metadata.annotations':
      return formatMap(pod.annotations ?? {});
    case 'spec.nodeName':
      return pod.spec.nodeName ?? ctx.nodeName;
    case 'spec.serviceAccountName':
      return pod.spec.serviceAccountName ?? '';
    case 'status.hostIP':
    case 'status.hostIPs':
      return ctx.hostIP ?? '';
    case 'status.podIP':
    case 'status.podIPs':
      return ctx.podIP ?? '';
    default:
      return undefined;
  }
}

/**
 * A container's resource as the kubelet gives it (ExtractContainerResourceValue): the limit, or
 * the node's allocatable when no limit is set; a request, or its limit when only that is set, or
 * 0; divided by the divisor and rounded up. CPU is counted in millicores before dividing, so a
 * limit of 250m is 1 by the default divisor 1 and 250 by 1m.
 */
export function resourceFieldValue(pod: DesiredPod, ref: ResourceFieldSelector, ownContainer: string | undefined, ctx: DownwardContext): string {
  const name = ref.containerName ?? ownContainer;
  const c = pod.spec.containers.find((x) => x.name === name);
  if (!c) throw new Error(`container "${name ?? ''}" not found in pod ${pod.namespace}/${pod.name}`);
  const [kind, resource] = ref.resource.split('.') as ['limits' | 'requests', 'cpu' | 'memory' | 'ephemeral-storage'];
  const limit = c.resources?.limits?.[resource];
  const amount = kind === 'limits' ? (limit ?? ctx.allocatable[resource]) : (c.resources?.requests?.[resource] ?? limit ?? 0);
  const quantity = parseQuantity(amount);
  const divisor = parseQuantity(ref.divisor ?? '1');
  if (resource === 'cpu') return String(ceilDiv(BigInt(quantity.milli()), BigInt(divisor.milli())));
  return String(ceilDiv(BigInt(quantity.value()), BigInt(divisor.value())));
}

function ceilDiv(a: bigint, b: bigint): bigint {
  if (b <= 0n) return a;
  return (a + b - 1n) / b;
}

/**
 * Labels or annotations as the kubelet writes them in a downwardAPI file: one `key="value"` a
 * line, sorted by key, the value quoted as Go's %q does.
 */
export function formatMap(map: Readonly<Record<string, string>>): string {
  return Object.keys(map)
    .sort()
    .map((k) => `${k}=${goQuote(map[k]!)}\n`)
    .join('');
}

const GO_ESCAPES: Record<string, string> = { '\u0007': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\u000b': '\\v', '"': '\\"', '\\': '\\\\' };

/** Go's strconv.Quote for printable text and the usual control characters. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const escaped = GO_ESCAPES[ch];
    if (escaped) out += escaped;
    else {
      const code = ch.codePointAt(0)!;
      if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
      else out += ch;
    }
  }
  return `${out}"`;
}
