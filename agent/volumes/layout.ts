import { join, resolve } from 'node:path';
import type { DesiredPod } from '../../shared/protocol/messages.js';
import { UPDATE_LOCK_MOUNT_PATH } from '../../shared/protocol/update-lock.js';
import type { Container } from '../../shared/resources/pod.js';

// Where a pod's volumes live on the device, as the kubelet keeps them under
// /var/lib/kubelet/pods/<uid>/volumes: `<state>/pods/<uid>/volumes/<name>`.

export function podsDir(stateDir: string): string {
  return join(stateDir, 'pods');
}

export function podDir(stateDir: string, uid: string): string {
  return join(podsDir(stateDir), uid);
}

export function volumeDir(stateDir: string, uid: string, volume: string): string {
  return join(podDir(stateDir, uid), 'volumes', volume);
}

/**
 * The folder a pod's app containers see at /run/flotilla, where a container writes its update
 * lock: `<state>/pods/<uid>/flotilla`, so it goes with the pod's other folders.
 */
export function updateLockDir(stateDir: string, uid: string): string {
  return join(podDir(stateDir, uid), 'flotilla');
}

/**
 * The bind of the update lock folder, made for every app container unless one of its own
 * mounts already takes that path. It is not part of the container's spec hash: an agent that
 * starts giving it replaces no running container. The source is absolute, since the engine
 * takes a relative one for the name of a volume.
 */
export function updateLockBind(stateDir: string, pod: DesiredPod, c: Container): string | undefined {
  if ((c.volumeMounts ?? []).some((m) => m.mountPath.replace(/\/+$/, '') === UPDATE_LOCK_MOUNT_PATH)) return undefined;
  return `${resolve(updateLockDir(stateDir, pod.uid))}:${UPDATE_LOCK_MOUNT_PATH}`;
}

/**
 * The engine binds (`source:target[:ro]`) of a container's volumeMounts. A whole volume
 * directory is bound, never a single file of it, so that content swapped inside it later is
 * seen by the running container; ConfigMap, Secret and downwardAPI volumes are always read-only, as in
 * Kubernetes. A subPath binds what is there at creation and, as in Kubernetes, sees no update.
 */
export function containerBinds(stateDir: string, pod: DesiredPod, c: Container): string[] {
  const binds: string[] = [];
  for (const m of c.volumeMounts ?? []) {
    const volume = pod.spec.volumes?.find((v) => v.name === m.name);
    if (!volume) continue;
    const base = volume.hostPath ? volume.hostPath.path : volumeDir(stateDir, pod.uid, volume.name);
    const source = m.subPath ? join(base, m.subPath) : base;
    const readOnly = m.readOnly === true || volume.configMap !== undefined || volume.secret !== undefined || volume.downwardAPI !== undefined;
    binds.push(`${source}:${m.mountPath}${readOnly ? ':ro' : ''}`);
  }
  return binds;
}
