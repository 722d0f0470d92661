import type Dockerode from 'dockerode';
import { join } from 'node:path';
import type { TestDockerd } from './dockerd.js';
import { cli, getJson, startAgent, waitFor, type ManagedProcess, type RunningHub } from './processes.js';

// What the Waves rollout tests share: a fleet of real agents on one test dockerd, the
// DaemonSet manifest they roll out, the hub's Rollout records, and a record of every container
// the engine creates (from its event stream), which says which device ever ran which image.

export interface WaveStatusJson {
  name: string;
  phase: string;
  total: number;
  released: number;
  updated: number;
  ready: number;
  failed: number;
  waiting: number;
  skipped: number;
  startedAt?: string;
  finishedAt?: string;
}

export interface RolloutJson {
  metadata: { name: string; creationTimestamp?: string };
  spec: { revision: number; fromRevision: number; toHash: string; fromHash?: string; waves: { name: string; nodes: string[]; pause?: number | 'resume' }[] };
  status?: { phase: string; wave: number; waves: WaveStatusJson[]; failedNodes: { node: string; wave: string; reason: string; message?: string }[]; skippedNodes?: { node: string; reason: string }[]; pauseUntil?: string; message?: string };
}

export interface DsPodJson {
  metadata: { name: string; uid: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: { kind: string; name: string }[] };
  spec: { nodeName?: string; containers: { name: string; image: string; env?: { name: string; value?: string }[] }[] };
  status?: { phase?: string; conditions?: { type: string; status: string; lastTransitionTime?: string; reason?: string }[]; containerStatuses?: { ready: boolean; state: { running?: unknown } }[] };
}

export interface EventJson {
  involvedObject: { kind: string; name: string };
  reason: string;
  message: string;
  type: string;
  firstTimestamp?: string;
  lastTimestamp?: string;
  metadata: { creationTimestamp?: string; name: string };
}

export interface WavesManifest {
  name: string;
  image: string;
  /** Printed by the container: a new version makes a new template. */
  version: string;
  /** The container's shell command (default: print the version and sleep). */
  script?: string;
  /** The YAML lines of updateStrategy below `type: Waves`, indented by four spaces. */
  strategy: string;
  nodeSelector?: Record<string, string>;
}

export function wavesDaemonSet(m: WavesManifest): string {
  const selector = Object.entries(m.nodeSelector ?? { fleet: 'waves' }).map(([k, v]) => `${k}: ${v}`).join(', ');
  return `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ${m.name}}
spec:
  selector: {matchLabels: {app: ${m.name}}}
  template:
    metadata: {labels: {app: ${m.name}}}
    spec:
      nodeSelector: {${selector}}
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: ${m.image}
          command: ["sh", "-c", ${JSON.stringify(m.script ?? `echo version ${m.version}; exec sleep 3600`)}]
          env: [{name: VERSION, value: "${m.version}"}]
  updateStrategy:
    type: Waves
${m.strategy}
`;
}

export function applyManifest(hub: RunningHub, manifest: string, extra: string[] = []): { stdout: string; stderr: string; code: number } {
  const r = cli(hub, ['apply', '-f', '-', ...extra], { input: manifest });
  if (r.code !== 0) throw new Error(`apply failed (${r.code}): ${r.stderr}`);
  return r;
}

export function rollouts(hub: RunningHub): RolloutJson[] {
  return getJson<{ items: RolloutJson[] }>(hub, ['rollouts']).items;
}

export function rollout(hub: RunningHub, ds: string, revision: number): RolloutJson | undefined {
  return rollouts(hub).find((r) => r.metadata.name === `${ds}-${revision}`);
}

export async function waitForPhase(hub: RunningHub, ds: string, revision: number, phases: string[], timeoutMs = 120_000): Promise<RolloutJson> {
  return waitFor(`rollout ${ds}-${revision} to reach ${phases.join(' or ')}`, () => {
    const r = rollout(hub, ds, revision);
    return r?.status && phases.includes(r.status.phase) ? r : undefined;
  }, timeoutMs, 500);
}

export function dsPods(hub: RunningHub, ds: string): DsPodJson[] {
  return getJson<{ items: DsPodJson[] }>(hub, ['pods', '-l', `app=${ds}`]).items;
}

/** The VERSION each node's pod of the DaemonSet is meant to run, by node. */
export function versionsByNode(hub: RunningHub, ds: string): Record<string, string | undefined> {
  return Object.fromEntries(dsPods(hub, ds).map((p) => [p.spec.nodeName ?? '', p.spec.containers[0]?.env?.find((e) => e.name === 'VERSION')?.value]));
}

export function isReady(p: DsPodJson): boolean {
  return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** Every node runs `version`, Ready. */
export function allOn(hub: RunningHub, ds: string, nodes: string[], version: string): boolean {
  const pods = dsPods(hub, ds);
  return nodes.every((n) => pods.some((p) => p.spec.nodeName === n && p.spec.containers[0]?.env?.some((e) => e.name === 'VERSION' && e.value === version) && isReady(p)));
}

export function events(hub: RunningHub, kind: string, name: string): EventJson[] {
  return getJson<{ items: EventJson[] }>(hub, ['events']).items.filter((e) => e.involvedObject.kind === kind && e.involvedObject.name === name);
}

/** Wave names in the order their WaveStarted events say they began. */
export function wavesStarted(hub: RunningHub, ds: string, revision: number): string[] {
  const mine = events(hub, 'Rollout', `${ds}-${revision}`).filter((e) => e.reason === 'WaveStarted');
  return mine.sort((a, b) => Date.parse(a.firstTimestamp ?? a.lastTimestamp ?? '') - Date.parse(b.firstTimestamp ?? b.lastTimestamp ?? '')).map((e) => /wave ([\w-]+)/.exec(e.message)?.[1] ?? e.message);
}

export interface CreatedContainer {
  node: string;
  pod: string;
  container: string;
  image: string;
  version?: string;
  at: number;
}

/**
 * Every container the engine creates from now on (its event stream), with the node, pod and
 * image: which devices ever ran what, even after the containers were replaced and removed.
 */
export async function recordCreates(docker: Dockerode): Promise<{ created: CreatedContainer[]; stop: () => void }> {
  const created: CreatedContainer[] = [];
  const stream = (await docker.getEvents({ filters: { type: ['container'], event: ['create'] } })) as NodeJS.ReadableStream & { destroy?: () => void };
  let buffered = '';
  stream.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      const e = JSON.parse(line) as { time: number; timeNano?: number; Actor: { ID: string; Attributes: Record<string, string> } };
      const a = e.Actor.Attributes;
      if (!a['flotilla.node'] || a['flotilla.container'] === undefined) continue;
      created.push({ node: a['flotilla.node'], pod: a['flotilla.pod'] ?? '', container: a['flotilla.container'], image: a.image ?? '', at: e.timeNano ? e.timeNano / 1e6 : e.time * 1000 });
    }
  });
  return { created, stop: () => stream.destroy?.() };
}

/**
 * Starts an agent for `name` sharing the test dockerd, with its own state directory under `root`,
 * heard from every 2 s (so that a hub with a short --node-grace sees a stopped one go quickly).
 */
export function fleetAgent(hub: RunningHub, dockerd: TestDockerd, root: string, name: string, labels: Record<string, string>): ManagedProcess {
  return startAgent({ hub, name, stateDir: join(root, `state-${name}`), dockerHost: dockerd.dockerHost, labels, extraArgs: ['--heartbeat', '2'] });
}

export function nodeReady(hub: RunningHub, name: string): boolean {
  const node = getJson<{ status?: { conditions?: { type: string; status: string }[] } }>(hub, ['node', name]);
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** The node names of each wave, from a `--dry-run` listing: lines `WAVE  COUNT  PAUSE  NODES` or similar, read leniently. */
export function nodesInOutput(text: string, nodes: string[]): string[][] {
  const lines = text.split('\n');
  return lines.map((l) => nodes.filter((n) => new RegExp(`(^|[\\s,])${n}($|[\\s,])`).test(l))).filter((found) => found.length > 0);
}
