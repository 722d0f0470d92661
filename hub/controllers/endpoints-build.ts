import { createHash } from 'node:crypto';
import type { NodeStatus } from '../../shared/resources/node.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { EndpointSliceEndpoint, EndpointSliceFields, EndpointsFields, ServiceSpec } from '../../shared/resources/service.js';
import type { StoredObject } from '../store/types.js';

export type EndpointSubset = NonNullable<EndpointsFields['subsets']>[number];
type EndpointAddress = NonNullable<EndpointSubset['addresses']>[number];
type EndpointPort = NonNullable<EndpointSubset['ports']>[number];
type ServicePort = NonNullable<ServiceSpec['ports']>[number];

/** The address a node is reached at: its InternalIP, else its ExternalIP (status.addresses, from the agent). */
export function nodeAddress(node: StoredObject | undefined): string | undefined {
  const addresses = (node?.status as NodeStatus | undefined)?.addresses ?? [];
  return addresses.find((a) => a.type === 'InternalIP')?.address ?? addresses.find((a) => a.type === 'ExternalIP')?.address;
}

/** A node's site: its label topology.kubernetes.io/zone, else its label site (the team's rule for PreferClose). */
export function nodeSite(node: StoredObject | undefined): string | undefined {
  const labels = node?.metadata.labels;
  return labels?.['topology.kubernetes.io/zone'] ?? labels?.site;
}

function isPodReady(pod: StoredObject): boolean {
  return (pod.status as PodStatus | undefined)?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/**
 * Where one of the Service's ports reaches one pod, or undefined when the pod has no such port
 * (a named targetPort none of its containers declares: Kubernetes leaves the pod out for that
 * port). A container's hostPort on the node's address is listed where one is declared: it is
 * what a client off the pod network reaches. Otherwise the pod's podIP (else the node's address)
 * and the container port: with the overlay on, every pod of the fleet reaches that
 * (docs/ARCHITECTURE.md, 'The pod network'); with --overlay none only a client on the same
 * device does. Virtual IPs in front of them: docs/ARCHITECTURE.md, 'Services on the hub'.
 */
function resolvePort(spec: PodSpec, podIP: string | undefined, nodeIP: string | undefined, sp: ServicePort): { ip: string; port: EndpointPort } | undefined {
  const target = sp.targetPort ?? sp.port;
  const declared = spec.containers.flatMap((c) => c.ports ?? []).find((p) => (typeof target === 'number' ? p.containerPort === target : p.name === target) && (p.protocol ?? 'TCP') === (sp.protocol ?? 'TCP'));
  if (!declared && typeof target === 'string') return undefined;
  const base = { ...(sp.name ? { name: sp.name } : {}), protocol: sp.protocol ?? 'TCP' } as const;
  if (declared?.hostPort !== undefined && nodeIP) return { ip: nodeIP, port: { ...base, port: declared.hostPort } };
  const containerPort = declared?.containerPort ?? (target as number);
  // A pod on the host's network is reached at the node's address on its own port.
  const ip = spec.hostNetwork ? (nodeIP ?? podIP) : (podIP ?? nodeIP);
  return ip ? { ip, port: { ...base, port: containerPort } } : undefined;
}

/**
 * The subsets of a Service's Endpoints: the pods its selector picks, grouped by the ports they
 * are reached on (Kubernetes' RepackSubsets), ready pods in `addresses`, the others in
 * `notReadyAddresses`. Pods that are not bound to a node yet, or have finished, are left out.
 * Sorted, so that the same pods always give the same object.
 */
export function buildSubsets(service: StoredObject, pods: StoredObject[], nodeOf: (name: string) => StoredObject | undefined): EndpointSubset[] {
  const ports = (service.spec as ServiceSpec).ports ?? [];
  const groups = new Map<string, { ports: EndpointPort[]; ready: EndpointAddress[]; notReady: EndpointAddress[] }>();
  for (const pod of pods) {
    const spec = pod.spec as PodSpec;
    const status = pod.status as PodStatus | undefined;
    if (!spec.nodeName || status?.phase === 'Succeeded' || status?.phase === 'Failed') continue;
    const nodeIP = nodeAddress(nodeOf(spec.nodeName));
    // One pod may be reached at two addresses: a hostPort on the node's, another port on its own.
    const byIp = new Map<string, EndpointPort[]>();
    if (ports.length === 0) {
      const ip = status?.podIP ?? nodeIP;
      if (ip) byIp.set(ip, []);
    }
    for (const sp of ports) {
      const resolved = resolvePort(spec, status?.podIP, nodeIP, sp);
      if (resolved) byIp.set(resolved.ip, [...(byIp.get(resolved.ip) ?? []), resolved.port]);
    }
    // publishNotReadyAddresses: every pod is listed as an address, as Kubernetes' controller does.
    const ready = isPodReady(pod) || (service.spec as ServiceSpec).publishNotReadyAddresses === true;
    for (const [ip, podPorts] of byIp) {
      const key = JSON.stringify(podPorts);
      const group = groups.get(key) ?? { ports: podPorts, ready: [], notReady: [] };
      groups.set(key, group);
      const address: EndpointAddress = { ip, nodeName: spec.nodeName, targetRef: { kind: 'Pod', name: pod.metadata.name, namespace: pod.metadata.namespace ?? 'default', uid: pod.metadata.uid } };
      (ready ? group.ready : group.notReady).push(address);
    }
  }
  const byAddress = (a: EndpointAddress, b: EndpointAddress) => a.ip.localeCompare(b.ip) || (a.targetRef?.name ?? '').localeCompare(b.targetRef?.name ?? '');
  return [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([, g]) => ({
      ...(g.ready.length ? { addresses: g.ready.sort(byAddress) } : {}),
      ...(g.notReady.length ? { notReadyAddresses: g.notReady.sort(byAddress) } : {}),
      ...(g.ports.length ? { ports: g.ports } : {}),
    }));
}

export function countAddresses(subsets: EndpointSubset[]): { ready: number; notReady: number } {
  return subsets.reduce((n, s) => ({ ready: n.ready + (s.addresses?.length ?? 0), notReady: n.notReady + (s.notReadyAddresses?.length ?? 0) }), { ready: 0, notReady: 0 });
}

export interface EndpointSliceDraft {
  name: string;
  fields: EndpointSliceFields & { addressType: 'IPv4' };
}

/**
 * The EndpointSlices of a Service (discovery.k8s.io/v1): its pods grouped by the ports they
 * resolve to (a named targetPort may be a different number in each pod), one slice per group.
 * Unlike Endpoints, an address is the pod's own (the node's with hostNetwork) and a port the
 * container's, as Kubernetes lists them, with each endpoint's readiness, node, zone (the node's
 * site) and, for a pod whose spec.subdomain is the Service's name, its hostname. A slice's name
 * is the Service's and a hash of its ports, so the same pods always give the same slices.
 */
export function buildSlices(service: StoredObject, pods: StoredObject[], nodeOf: (name: string) => StoredObject | undefined): EndpointSliceDraft[] {
  const spec = service.spec as ServiceSpec;
  const ports = spec.ports ?? [];
  const groups = new Map<string, { ports: { name: string; port: number; protocol: 'TCP' | 'UDP' }[]; endpoints: EndpointSliceEndpoint[] }>();
  for (const pod of pods) {
    const podSpec = pod.spec as PodSpec & { hostname?: string; subdomain?: string };
    const status = pod.status as PodStatus | undefined;
    if (!podSpec.nodeName || status?.phase === 'Succeeded' || status?.phase === 'Failed') continue;
    const node = nodeOf(podSpec.nodeName);
    const ip = podSpec.hostNetwork ? (nodeAddress(node) ?? status?.podIP) : status?.podIP;
    if (!ip) continue;
    const resolved: { name: string; port: number; protocol: 'TCP' | 'UDP' }[] = [];
    for (const sp of ports) {
      const target = sp.targetPort ?? sp.port;
      const protocol = sp.protocol ?? 'TCP';
      const declared = podSpec.containers.flatMap((c) => c.ports ?? []).find((p) => (typeof target === 'number' ? p.containerPort === target : p.name === target) && (p.protocol ?? 'TCP') === protocol);
      const number = declared?.containerPort ?? (typeof target === 'number' ? target : undefined);
      if (number !== undefined) resolved.push({ name: sp.name ?? '', port: number, protocol });
    }
    // A pod with none of the Service's ports is no endpoint of it (a Service without ports lists every pod).
    if (ports.length > 0 && resolved.length === 0) continue;
    const ready = isPodReady(pod);
    const terminating = Boolean((pod.metadata as { deletionTimestamp?: string }).deletionTimestamp);
    const zone = nodeSite(node);
    const hostname = podSpec.subdomain === service.metadata.name ? (podSpec.hostname ?? pod.metadata.name) : undefined;
    const endpoint: EndpointSliceEndpoint = {
      addresses: [ip],
      conditions: { ready: (ready || spec.publishNotReadyAddresses === true) && !terminating, serving: ready, terminating },
      ...(hostname ? { hostname } : {}),
      nodeName: podSpec.nodeName,
      ...(zone ? { zone } : {}),
      targetRef: { kind: 'Pod', name: pod.metadata.name, namespace: pod.metadata.namespace ?? 'default', uid: pod.metadata.uid },
    };
    const key = JSON.stringify(resolved);
    const group = groups.get(key) ?? { ports: resolved, endpoints: [] };
    groups.set(key, group);
    group.endpoints.push(endpoint);
  }
  // A Service whose selector picks nothing has one empty slice, as Kubernetes keeps.
  if (groups.size === 0) groups.set('[]', { ports: [], endpoints: [] });
  return [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, g]) => ({
      name: sliceName(service.metadata.name, key),
      fields: {
        addressType: 'IPv4' as const,
        endpoints: g.endpoints.sort((a, b) => (a.targetRef?.name ?? '').localeCompare(b.targetRef?.name ?? '')),
        ...(g.ports.length ? { ports: g.ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.port, protocol: p.protocol })) } : {}),
      },
    }));
}

/** `<service>-<5 characters>`: the characters from the slice's ports, so that a slice keeps its name. */
export function sliceName(service: string, portsKey: string): string {
  const digest = createHash('sha256').update(portsKey).digest();
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  let suffix = '';
  for (let i = 0; i < 5; i++) suffix += alphabet[digest[i]! % alphabet.length];
  return `${service}-${suffix}`;
}
