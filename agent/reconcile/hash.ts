import { createHash } from 'node:crypto';
import type { DesiredPod } from '../../shared/protocol/messages.js';
import type { Container } from '../../shared/resources/pod.js';

function digest(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/**
 * Hashes already made, by the spec objects they were made of: a desired set is kept as parsed
 * and never changed in place, and every reconcile (each resync too) hashes each of its containers.
 */
const infraHashes = new WeakMap<DesiredPod, Map<string, { hash: string }>>();
const containerHashes = new WeakMap<DesiredPod, Map<string, { container: Container; hash: string }>>();

function remembered(memo: WeakMap<DesiredPod, Map<string, { container?: Container; hash: string }>>, pod: DesiredPod, key: string, container: Container | undefined, make: () => string): string {
  let byKey = memo.get(pod);
  if (!byKey) memo.set(pod, (byKey = new Map()));
  const known = byKey.get(key);
  if (known !== undefined && known.container === container) return known.hash;
  const hash = make();
  // A few keys per pod (its containers, a pause image, an env resolution): keep it that way.
  if (byKey.size >= 64) byKey.clear();
  byKey.set(key, { container, hash });
  return hash;
}

/** What the infra container is made from: a change means a new network namespace for the whole pod. */
export function infraSpecHash(pod: DesiredPod, pauseImage: string, podNetwork: string): string {
  return remembered(infraHashes, pod, `${pauseImage}\u0000${podNetwork}`, undefined, () => makeInfraSpecHash(pod, pauseImage, podNetwork));
}

function makeInfraSpecHash(pod: DesiredPod, pauseImage: string, podNetwork: string): string {
  const ports = pod.spec.containers.flatMap((c) => (c.ports ?? []).filter((p) => p.hostPort !== undefined));
  return digest({ pauseImage, hostNetwork: pod.spec.hostNetwork ?? false, podNetwork, ports });
}

/**
 * The hash of one app container's spec (docs/ARCHITECTURE.md, 'The agent and the container engine': a change of hash means replace).
 * It includes the infra hash, because a container joined to a replaced infra container has
 * lost its network namespace and must be made again.
 */
export function containerSpecHash(pod: DesiredPod, container: Container, infraHash: string, resolvedEnv?: readonly string[]): string {
  const key = `${container.name}\u0000${infraHash}\u0000${resolvedEnv ? JSON.stringify(resolvedEnv) : ''}`;
  return remembered(containerHashes, pod, key, container, () => makeContainerSpecHash(pod, container, infraHash, resolvedEnv));
}

function makeContainerSpecHash(pod: DesiredPod, container: Container, infraHash: string, resolvedEnv?: readonly string[]): string {
  // Only what a container uses is added, so the hash of a container without env references or
  // mounts stays what it was (an upgraded agent replaces nothing). Env values taken from
  // ConfigMaps and Secrets are in it, since a process reads its environment only at start; the
  // content of ConfigMap and Secret volumes is not, since it is updated in place.
  const mounted = new Set((container.volumeMounts ?? []).map((m) => m.name));
  const volumes = (pod.spec.volumes ?? []).filter((v) => mounted.has(v.name));
  return digest({
    container,
    infraHash,
    restartPolicy: pod.spec.restartPolicy ?? 'Always',
    ...(resolvedEnv ? { resolvedEnv } : {}),
    ...(volumes.length ? { volumes } : {}),
  });
}
