import type Dockerode from 'dockerode';
import { cli, getJson, waitFor, type ManagedProcess, type RunningHub } from './processes.js';

// Intent-revealing helpers for tests of one device: a pod pinned to a node, what the hub says of
// it, what the engine holds for it, and what the agent logged.

export interface ContainerStateJson {
  running?: { startedAt?: string };
  waiting?: { reason?: string; message?: string };
  terminated?: { exitCode: number; reason?: string; startedAt?: string; finishedAt?: string };
}

export interface ContainerStatusJson {
  name: string;
  image: string;
  ready: boolean;
  restartCount: number;
  containerID?: string;
  state: ContainerStateJson;
  lastState?: ContainerStateJson;
}

export interface PodJson {
  metadata: { name: string; uid: string };
  spec: { nodeName?: string };
  status?: { phase?: string; message?: string; podIP?: string; conditions?: { type: string; status: string }[]; containerStatuses?: ContainerStatusJson[] };
}

export interface NodeConditionJson {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

export interface NodeJson {
  metadata: { name: string };
  status?: { conditions?: NodeConditionJson[]; observedRevision?: number; desiredRevision?: number };
}

/** A bare Pod bound to `node`, with one container `app` that stops within a second. */
export function podManifest(o: { name: string; node: string; image: string; command?: string[] }): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${o.name}}
spec:
  nodeName: ${o.node}
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ${o.image}
${o.command ? `      command: ${JSON.stringify(o.command)}\n` : ''}`;
}

/** `flotilla apply -f -`, failing the test when the hub refuses. */
export function apply(hub: RunningHub, manifest: string): void {
  const r = cli(hub, ['apply', '-f', '-'], { input: manifest });
  if (r.code !== 0) throw new Error(`apply failed (${r.code}): ${r.stderr}`);
}

export function getPod(hub: RunningHub, name: string): PodJson | undefined {
  return getJson<{ items: PodJson[] }>(hub, ['pods']).items.find((p) => p.metadata.name === name);
}

export function readyCondition(hub: RunningHub, node: string): NodeConditionJson | undefined {
  return getJson<NodeJson>(hub, ['node', node]).status?.conditions?.find((c) => c.type === 'Ready');
}

/** The pod runs with every container ready, as the hub has it. */
export function podRunning(hub: RunningHub, name: string): PodJson | undefined {
  const pod = getPod(hub, name);
  const statuses = pod?.status?.containerStatuses ?? [];
  return pod?.status?.phase === 'Running' && statuses.length > 0 && statuses.every((c) => c.ready && c.state.running) ? pod : undefined;
}

export interface EngineContainer {
  id: string;
  name: string;
  state: string;
  labels: Record<string, string>;
}

/** The engine's containers carrying every one of `labels`, oldest first. */
export async function engineContainers(docker: Dockerode, labels: Record<string, string>): Promise<EngineContainer[]> {
  const list = await docker.listContainers({ all: true, filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) } });
  return list.sort((a, b) => a.Created - b.Created).map((c) => ({ id: c.Id, name: (c.Names[0] ?? '').replace(/^\//, ''), state: c.State, labels: c.Labels }));
}

/** How many lines of a process's JSON log carry exactly this message. */
export function logCount(proc: ManagedProcess, msg: string): number {
  const needle = `"msg":${JSON.stringify(msg)}`;
  return proc.log().split('\n').filter((line) => line.includes(needle)).length;
}

/** Waits until the process has logged `msg` `more` more times than it had when called. */
export async function waitForLog(proc: ManagedProcess, msg: string, more = 1, timeoutMs = 30_000): Promise<void> {
  const before = logCount(proc, msg);
  await waitFor(`${more} more "${msg}" in the log`, () => logCount(proc, msg) >= before + more, timeoutMs);
}
