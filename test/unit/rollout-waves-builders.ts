/**
 * Builders for the command line of Waves rollouts: Rollout records and DaemonSets as the hub
 * returns them, and a stand-in for the hub's HTTP API on loopback that answers from a table of
 * routes and keeps every request it got.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { templateHash } from '../../hub/controllers/names.js';
import type { RolloutRecord } from '../../hub/cli/rollout-waves-render.js';
import type { WavesDaemonSet } from '../../hub/cli/rollout-waves.js';
import type { PodTemplate } from '../../shared/resources/daemonset.js';
import type { RolloutPhase, WaveStatus } from '../../shared/resources/rollout.js';
import { wavesStrategy } from '../../shared/resources/waves.js';

export const DS_UID = 'uid-sensor';
export const T0 = '2025-01-01T12:00:00Z';
export const NOW = Date.parse('2025-01-01T12:30:00Z');

export function template(image: string): PodTemplate {
  return { metadata: { labels: { app: 'sensor' } }, spec: { containers: [{ name: 'reader', image }] } } as PodTemplate;
}

export function daemonSet(image: string, extra: { generation?: number; observedGeneration?: number; waves?: boolean } = {}): WavesDaemonSet {
  const generation = extra.generation ?? 1;
  return {
    apiVersion: 'flotilla/v1',
    kind: 'DaemonSet',
    metadata: { name: 'sensor', namespace: 'default', uid: DS_UID, resourceVersion: '41', generation, annotations: { 'kubernetes.io/change-cause': `run ${image}` } },
    spec: {
      selector: { matchLabels: { app: 'sensor' } },
      template: template(image),
      updateStrategy: extra.waves === false ? { type: 'RollingUpdate' } : { type: 'Waves', waves: [{ name: 'canary', selector: 'channel=canary' }, { name: 'fleet', percent: 100 }] },
    },
    status: { desiredNumberScheduled: 4, currentNumberScheduled: 4, numberReady: 4, updatedNumberScheduled: 4, numberMisscheduled: 0, observedGeneration: extra.observedGeneration ?? generation },
  };
}

export function wave(name: string, phase: WaveStatus['phase'], counts: Partial<WaveStatus> & { total: number }): WaveStatus {
  return { name, phase, released: 0, updated: 0, ready: 0, failed: 0, waiting: 0, skipped: 0, ...counts };
}

/** A record of revision `revision` moving from `from` to `to`, with the given waves (planned as their totals). */
export function record(revision: number, images: { from?: string; to: string }, phase: RolloutPhase, waves: WaveStatus[] = [], extra: Partial<NonNullable<RolloutRecord['status']>> & { changeCause?: string; startedBy?: string } = {}): RolloutRecord {
  const { changeCause, startedBy, ...status } = extra;
  let n = 0;
  return {
    metadata: { name: `sensor-${revision}`, namespace: 'default', uid: `uid-r${revision}`, creationTimestamp: T0, ownerReferences: [{ kind: 'DaemonSet', name: 'sensor', uid: DS_UID }] },
    spec: {
      target: { kind: 'DaemonSet', name: 'sensor', uid: DS_UID },
      revision,
      fromRevision: images.from ? revision - 1 : 0,
      ...(images.from ? { fromHash: templateHash(template(images.from)), fromTemplate: template(images.from) } : {}),
      toHash: templateHash(template(images.to)),
      toTemplate: template(images.to),
      strategy: wavesStrategy({ waves: [{ selector: 'channel=canary' }], healthGate: { maxFailed: 1 } }),
      waves: waves.map((w) => ({ name: w.name, nodes: Array.from({ length: w.total }, () => `pi-${++n}`) })),
      startedBy: startedBy ?? 'admin',
      ...(changeCause ? { changeCause } : {}),
    },
    status: { phase, wave: Math.max(0, waves.findIndex((w) => w.phase !== 'Passed')), waves, failedNodes: [], startedAt: T0, ...status },
  };
}

export interface HubRequest {
  method: string;
  path: string;
  body: unknown;
}

type Answer = [number, unknown];
export type Routes = Record<string, Answer | ((req: HubRequest) => Answer)>;

/** Answers `METHOD /path` from `routes` (404 otherwise), on 127.0.0.1. */
export async function fakeHub(routes: Routes): Promise<{ server: string; requests: HubRequest[]; close: () => Promise<void> }> {
  const requests: HubRequest[] = [];
  const http: Server = createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      const r: HubRequest = { method: req.method ?? 'GET', path: req.url ?? '/', body: text ? JSON.parse(text) : undefined };
      requests.push(r);
      const route = routes[`${r.method} ${r.path}`];
      const [status, body] = route === undefined ? [404, { message: `no route ${r.method} ${r.path}` }] : typeof route === 'function' ? route(r) : route;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const server = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return { server, requests, close: () => new Promise((resolve) => http.close(() => resolve())) };
}

export const DS_PATH = '/api/v1/namespaces/default/daemonsets/sensor';
export const ROLLOUTS_PATH = '/api/v1/namespaces/default/rollouts';
export const CONTROL_PATH = '/apis/flotilla/v1/namespaces/default/daemonsets/sensor/rollout';
