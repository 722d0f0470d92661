import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { DesiredPod } from '../../../shared/protocol/messages.js';
import type { Container } from '../../../shared/resources/pod.js';
import { podDir } from '../../volumes/layout.js';
import { formatResolvConf, podHostsFile, podResolvConf, type PodDnsContext } from './resolv.js';

/**
 * A pod's /etc/hosts and /etc/resolv.conf, as the kubelet makes them: files in the pod's folder
 * (`<state>/pods/<uid>/etc-hosts`, `resolv.conf`) bound into each of its app containers. The
 * engine's own files cannot serve: on a user-defined network its resolv.conf names its embedded
 * resolver (127.0.0.11) rather than the servers given to it. A container that mounts a volume on
 * one of these paths keeps its own, as in Kubernetes.
 */

export function podHostsPath(stateDir: string, uid: string): string {
  return join(podDir(stateDir, uid), 'etc-hosts');
}

export function podResolvPath(stateDir: string, uid: string): string {
  return join(podDir(stateDir, uid), 'resolv.conf');
}

/**
 * Writes the pod's files (when their content differs, in place, so that a container bound to
 * them sees the change) and returns the binds for container `c`. A hostNetwork pod keeps the
 * device's hosts file and, unless its policy says otherwise, the engine's resolv.conf.
 */
export function podDnsBinds(stateDir: string, pod: DesiredPod, c: Container, podIP: string | undefined, ctx: PodDnsContext, onProblem: (message: string) => void = () => {}): string[] {
  const mounted = new Set((c.volumeMounts ?? []).map((m) => m.mountPath.replace(/\/+$/, '')));
  const binds: string[] = [];
  if (!pod.spec.hostNetwork && !mounted.has('/etc/hosts')) {
    const path = podHostsPath(stateDir, pod.uid);
    if (writeIfChanged(path, podHostsFile(pod, podIP, ctx.domain), onProblem)) binds.push(`${resolve(path)}:/etc/hosts`);
  }
  const conf = podResolvConf(pod, ctx);
  if (conf && !mounted.has('/etc/resolv.conf')) {
    const path = podResolvPath(stateDir, pod.uid);
    if (writeIfChanged(path, formatResolvConf(conf), onProblem)) binds.push(`${resolve(path)}:/etc/resolv.conf`);
  }
  return binds;
}

/**
 * Whether the file is there to bind. A write that fails (a full disk) never stops a container
 * from being made: the file written before is bound as it is, and without one the engine's own
 * file stays.
 */
function writeIfChanged(path: string, text: string, onProblem: (message: string) => void): boolean {
  try {
    if (existsSync(path) && readFileSync(path, 'utf8') === text) return true;
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, text, { mode: 0o644 });
    return true;
  } catch (err) {
    onProblem(`could not write ${path}: ${(err as Error).message}`);
    return existsSync(path);
  }
}
