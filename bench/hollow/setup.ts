import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PAUSE_IMAGE } from '../../agent/runtime/pause/image.js';
import { startHub, type RunningHub } from '../../test/harness/processes.js';

/** What the benchmarks with hollow devices share: a hub to point them at, and where their state lives. */

/** The label every hollow device carries, and that the benchmarks' DaemonSets select. */
export const HOLLOW_LABELS = { fleet: 'hollow' };

/** Images each hollow device holds from the start: pods start with their image present. */
export function appImages(count: number, tag: number | string): string[] {
  return Array.from({ length: count }, (_, i) => `registry.example/app-${i}:${tag}`);
}

export const HOLLOW_BASE_IMAGES = [PAUSE_IMAGE];

/**
 * Parent of the devices' state directories: tmpfs when there is one. Each device fsyncs its
 * desired set as a real one does, and thousands of fsyncs on a disk would measure the disk.
 */
export function stateRoot(prefix: string): { path: string; remove: () => void } {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const path = mkdtempSync(join(base, `flt-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * A hub for a benchmark: logging at info (debug lines for thousands of devices would measure
 * the log file), node options from FLOTILLA_BENCH_HUB_NODE_OPTIONS (e.g. `--cpu-prof
 * --cpu-prof-dir=/tmp/prof` to profile it), and the broker of FLOTILLA_BENCH_BROKER when set.
 */
export async function startBenchHub(dataDir: string, extraArgs: string[] = []): Promise<RunningHub> {
  const nodeOptions = (process.env.FLOTILLA_BENCH_HUB_NODE_OPTIONS ?? '').split(' ').filter(Boolean);
  const broker = process.env.FLOTILLA_BENCH_BROKER;
  return startHub({ dataDir, nodeOptions, env: { FLOTILLA_LOG_LEVEL: 'info' }, extraArgs: [...(broker ? ['--broker', broker] : []), ...extraArgs] });
}

/**
 * The MQTT URL devices connect to: the hub's embedded broker, or the external broker the hub
 * uses when FLOTILLA_BENCH_BROKER names one (the same benchmark then runs through it).
 */
export function deviceBrokerUrl(hub: RunningHub): string {
  return process.env.FLOTILLA_BENCH_BROKER ?? hub.mqttUrl;
}

/** One call to the hub's API with the admin token; the parsed answer, or an error naming the status. */
export async function hubApi<T = unknown>(hub: RunningHub, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${hub.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${hub.adminToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 500)}`);
  return JSON.parse(text) as T;
}

/** `flotilla apply` of objects, straight to the API (no CLI start-up inside a timed window). */
export async function applyObjects(hub: RunningHub, objects: unknown[]): Promise<void> {
  await hubApi(hub, 'POST', '/api/v1/apply', { items: objects });
}

/** A DaemonSet of one long-running container on every hollow device. */
export function hollowDaemonSet(name: string, image: string): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name, namespace: 'default' },
    spec: {
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { nodeSelector: HOLLOW_LABELS, terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image, command: ['sleep', '86400'] }] },
      },
    },
  };
}

export interface DaemonSetStatusJson {
  metadata: { name: string };
  status?: { desiredNumberScheduled?: number; numberReady?: number; updatedNumberScheduled?: number };
}

export async function daemonSets(hub: RunningHub): Promise<DaemonSetStatusJson[]> {
  return (await hubApi<{ items: DaemonSetStatusJson[] }>(hub, 'GET', '/api/v1/namespaces/default/daemonsets')).items;
}
