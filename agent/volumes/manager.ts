import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { DesiredConfig, DesiredPod } from '../../shared/protocol/messages.js';
import type { Volume } from '../../shared/resources/volumes.js';
import { nodeAllocatable, podFieldValue, resourceFieldValue, type DownwardContext } from '../reconcile/downward.js';
import type { ConfigSources } from '../reconcile/env.js';
import { writeAtomically, type VolumeFile } from './atomic.js';
import { podDir, podsDir, volumeDir } from './layout.js';

/** Why a pod's containers cannot be made yet. */
export interface VolumeBlock {
  reason: string;
  message: string;
}

// Kubernetes' defaultMode is 0644 for both; a Secret's files are kept to their owner here, since
// on a device they sit on the SD card rather than in the kubelet's tmpfs.
const CONFIG_MODE = 0o644;
const SECRET_MODE = 0o600;

/**
 * Makes the volumes of the desired pods exist on the device, before their containers are made:
 * emptyDir folders, ConfigMap, Secret and downwardAPI files (rewritten in place when their data,
 * or the pod's labels and annotations, change), hostPath checks. The one place (with cleanup) that writes under `<state>/pods`.
 */
export class VolumeManager {
  private readonly warned = new Set<string>();

  constructor(
    private readonly stateDir: string,
    private readonly onWarning: (podUid: string, reason: string, message: string) => void,
  ) {}

  /** Prepares every pod's volumes; returns the pods whose volumes cannot be set up, by uid. */
  sync(pods: readonly DesiredPod[], sources: ConfigSources): Map<string, VolumeBlock> {
    const blocked = new Map<string, VolumeBlock>();
    for (const pod of pods) {
      for (const volume of pod.spec.volumes ?? []) {
        try {
          const problem = this.prepare(pod, volume, sources);
          if (problem) {
            blocked.set(pod.uid, { reason: 'ContainerCreating', message: `MountVolume.SetUp failed for volume "${volume.name}": ${problem}` });
            break;
          }
        } catch (err) {
          blocked.set(pod.uid, { reason: 'ContainerCreating', message: `MountVolume.SetUp failed for volume "${volume.name}": ${(err as Error).message}` });
          break;
        }
      }
    }
    return blocked;
  }

  /** Removes the volume folders of pods that are not desired and have no container left. */
  cleanup(keep: ReadonlySet<string>): void {
    const dir = podsDir(this.stateDir);
    if (!existsSync(dir)) return;
    for (const uid of readdirSync(dir)) {
      if (keep.has(uid)) continue;
      rmSync(podDir(this.stateDir, uid), { recursive: true, force: true });
      for (const key of this.warned) if (key.startsWith(`${uid}/`)) this.warned.delete(key);
    }
  }

  private prepare(pod: DesiredPod, volume: Volume, sources: ConfigSources): string | undefined {
    const dir = volumeDir(this.stateDir, pod.uid, volume.name);
    if (volume.emptyDir) {
      if (!existsSync(dir)) {
        mkdirSync(dir, { recursive: true });
        // As Kubernetes' emptyDir: writable by any user the container runs as.
        chmodSync(dir, 0o777);
      }
      for (const c of pod.spec.containers) {
        for (const m of c.volumeMounts ?? []) if (m.name === volume.name && m.subPath) mkdirSync(join(dir, m.subPath), { recursive: true });
      }
      return undefined;
    }
    if (volume.hostPath) return this.checkHostPath(pod, volume.name, volume.hostPath);
    if (volume.configMap) {
      const { name, items, optional, defaultMode } = volume.configMap;
      const cm = sources.configs.find((x) => x.namespace === pod.namespace && x.name === name);
      if (!cm && !optional) return `configmap "${name}" not found`;
      const entries = cm ? configBytes(cm) : {};
      return this.project(dir, entries, items, defaultMode ?? CONFIG_MODE, optional, `configmap "${name}"`);
    }
    if (volume.secret) {
      const { secretName, items, optional, defaultMode } = volume.secret;
      const secret = sources.secrets.find((x) => x.namespace === pod.namespace && x.name === secretName);
      if (!secret && !optional) return `secret "${secretName}" not found`;
      const entries = secret ? Object.fromEntries(Object.entries(secret.data).map(([k, v]) => [k, Buffer.from(v, 'base64')])) : {};
      return this.project(dir, entries, items, defaultMode ?? SECRET_MODE, optional, `secret "${secretName}"`, secretOwner(pod, volume.name));
    }
    if (volume.downwardAPI) return this.downward(pod, dir, volume.downwardAPI);
    return undefined;
  }

  /**
   * A downwardAPI volume: one file per item, written as a whole set (atomic.ts) at each sync, so
   * that a change of the pod's labels or annotations reaches the running containers' files, as
   * the kubelet keeps them up to date.
   */
  private downward(pod: DesiredPod, dir: string, source: NonNullable<Volume['downwardAPI']>): string | undefined {
    const mode = source.defaultMode ?? CONFIG_MODE;
    const files: VolumeFile[] = [];
    let allocatable: DownwardContext['allocatable'] | undefined;
    for (const item of source.items ?? []) {
      let value: string | undefined;
      if (item.fieldRef) {
        // Only metadata is allowed in a volume (the hub checks it): no node facts are needed.
        value = podFieldValue(pod, item.fieldRef, { nodeName: '', allocatable: { cpu: '0', memory: '0', 'ephemeral-storage': '0' } });
        if (value === undefined) return `unsupported fieldPath in item "${item.path}": ${item.fieldRef.fieldPath}`;
      } else {
        allocatable ??= nodeAllocatable(this.stateDir);
        value = resourceFieldValue(pod, item.resourceFieldRef!, undefined, { nodeName: '', allocatable });
      }
      files.push({ path: item.path, content: Buffer.from(value, 'utf8'), mode: item.mode ?? mode });
    }
    writeAtomically(dir, files);
    return undefined;
  }

  private project(
    dir: string,
    entries: Record<string, Buffer>,
    items: { key: string; path: string; mode?: number | undefined }[] | undefined,
    mode: number,
    optional: boolean | undefined,
    what: string,
    owner?: { uid: number; gid: number },
  ): string | undefined {
    const files: VolumeFile[] = [];
    if (items) {
      for (const item of items) {
        const content = entries[item.key];
        if (content === undefined) {
          if (optional) continue;
          return `${what} references non-existent key: ${item.key}`;
        }
        files.push({ path: item.path, content, mode: item.mode ?? mode });
      }
    } else {
      for (const [key, content] of Object.entries(entries)) files.push({ path: key, content, mode });
    }
    writeAtomically(dir, files, owner);
    return undefined;
  }

  private checkHostPath(pod: DesiredPod, volume: string, hostPath: NonNullable<Volume['hostPath']>): string | undefined {
    const { path, type = '' } = hostPath;
    const exists = existsSync(path);
    if (type === 'DirectoryOrCreate') {
      if (!exists) mkdirSync(path, { recursive: true, mode: 0o755 });
      return undefined;
    }
    if (type === 'FileOrCreate') {
      if (!exists) closeSync(openSync(path, 'a', 0o644));
      return undefined;
    }
    if (type === '') {
      // Kubernetes checks nothing here; the engine makes a missing source folder. Say so once,
      // since a typo in the path otherwise shows only as an empty folder in the container.
      const key = `${pod.uid}/${volume}`;
      if (!exists && !this.warned.has(key)) {
        this.warned.add(key);
        this.onWarning(pod.uid, 'HostPathMissing', `hostPath ${path} of volume "${volume}" does not exist on this node; the engine will create an empty folder`);
      }
      return undefined;
    }
    if (!exists) return `hostPath type check failed: ${path} does not exist`;
    const st = statSync(path);
    const ok =
      (type === 'Directory' && st.isDirectory()) || (type === 'File' && st.isFile()) || (type === 'Socket' && st.isSocket()) || (type === 'CharDevice' && st.isCharacterDevice()) || (type === 'BlockDevice' && st.isBlockDevice());
    return ok ? undefined : `hostPath type check failed: ${path} is not a ${type}`;
  }
}

/**
 * Whom a Secret's 0600 files belong to: the user the containers that mount it run as, when they
 * agree on one (Kubernetes reaches the same end with fsGroup); root otherwise. Without this a
 * container with runAsUser could not read its own Secret.
 */
function secretOwner(pod: DesiredPod, volume: string): { uid: number; gid: number } | undefined {
  const users = new Set<string>();
  for (const c of pod.spec.containers) {
    if (!(c.volumeMounts ?? []).some((m) => m.name === volume)) continue;
    const sc = c.securityContext;
    users.add(`${sc?.runAsUser ?? 0}:${sc?.runAsGroup ?? sc?.runAsUser ?? 0}`);
  }
  if (users.size !== 1) return undefined;
  const [uid, gid] = [...users][0]!.split(':').map(Number) as [number, number];
  return uid === 0 && gid === 0 ? undefined : { uid, gid };
}

function configBytes(cm: DesiredConfig): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(cm.data)) out[k] = Buffer.from(v, 'utf8');
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) out[k] = Buffer.from(v, 'base64');
  return out;
}
