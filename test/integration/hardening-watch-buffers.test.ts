import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';
import { watchObjects } from '../harness/watch.js';

// Watchers that stop reading: a watch whose client does not take its events must not make the
// hub hold them without bound. The hub closes such a watch, as the Kubernetes API server closes
// a watcher that does not keep up, and a watcher that reads is not affected.

const dirs = tempDir('watchbuf');
let hub: RunningHub;
const stuck: Socket[] = [];

const STUCK_WATCHES = 10;
const WRITES = 60;
/** Writes made first, with only the reading watcher, so that the hub's heap is at its working size for them. */
const WARM_UP_WRITES = 20;
/** Each write is a ConfigMap of about 500 KB: 30 MB in all, to every watcher. */
const VALUE = 'x'.repeat(500 * 1024);

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function api(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${hub.apiUrl}${path}`, { ...init, headers: { authorization: `Bearer ${hub.adminToken}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await api('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ')[1]) : Number.NaN;
}

/** A watch whose client sends its request and then never reads a byte of the answer (until resumed). */
function stuckWatch(path: string, query = ''): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: hub.apiPort }, () => {
      socket.write(`GET ${path}?watch=true${query} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer ${hub.adminToken}\r\n\r\n`);
      socket.pause();
      resolve(socket);
    });
    socket.once('error', reject);
    stuck.push(socket);
  });
}

function configMap(generation: number, name = 'big'): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { generation: String(generation), blob: VALUE } });
}

beforeAll(async () => {
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
});

afterAll(async () => {
  for (const s of stuck) s.destroy();
  await stopAll();
  dirs.remove();
});

describe('watchers that stop reading', () => {
  it('closes each watch that falls behind, keeps the hub RSS bounded, and leaves a reading watcher whole', async () => {
    const path = '/api/v1/namespaces/default/configmaps';
    expect((await api(path, { method: 'POST', body: configMap(0) })).status).toBe(201);
    // Warm up the write path, then take the hub's resident memory as it stands.
    for (let generation = -WARM_UP_WRITES; generation < 0; generation++) expect((await api(`${path}/big`, { method: 'PUT', body: configMap(generation) })).status).toBe(200);
    const healthy = await watchObjects<{ data: { generation: string } }>(hub, path);
    try {
      for (let i = 0; i < STUCK_WATCHES; i++) await stuckWatch(path);
      expect((await api(`${path}/big`, { method: 'PUT', body: configMap(1) })).status).toBe(200);
      await waitFor('the healthy watcher to see the first write', () => healthy.events.some((e) => e.object.data.generation === '1'), 10_000);
      const pid = hub.process.child.pid!;
      const before = rssMiB(pid);
      let peak = before;
      for (let generation = 2; generation < WRITES + 2; generation++) {
        expect((await api(`${path}/big`, { method: 'PUT', body: configMap(generation) })).status).toBe(200);
        peak = Math.max(peak, rssMiB(pid));
      }
      const last = String(WRITES + 1);
      await waitFor('the healthy watcher to see every write', () => healthy.events.some((e) => e.object.data.generation === last), 30_000);
      peak = Math.max(peak, rssMiB(pid));
      console.log(`hub RSS ${before.toFixed(1)} MiB before ${WRITES} writes of 500 KB to ${STUCK_WATCHES} stuck watches and one reading; peak ${peak.toFixed(1)} MiB`);
      expect(peak - before).toBeLessThan(50);
      // Every stuck watch was closed; the one that reads was not, and saw every write in order.
      expect(await metric('flotilla_api_watches_closed_total', 'reason="slow"')).toBe(STUCK_WATCHES);
      const generations = healthy.events.map((e) => Number(e.object.data.generation)).filter((g) => g >= 1);
      expect(generations).toEqual(Array.from({ length: WRITES + 1 }, (_, i) => i + 1));
      // The stuck clients, reading at last, find their stream ended (then they list again).
      const ended = stuck.map((s) => new Promise<void>((resolve) => {
        s.on('data', () => {});
        s.once('end', resolve);
        s.once('close', () => resolve());
        s.resume();
      }));
      await Promise.all(ended);
      // The hub keeps serving watches.
      const again = await watchObjects<{ data: { generation: string } }>(hub, path);
      try {
        expect((await api(`${path}/big`, { method: 'PUT', body: configMap(WRITES + 2) })).status).toBe(200);
        await waitFor('a new watch to see the next write', () => again.events.some((e) => e.object.data.generation === String(WRITES + 2)), 10_000);
        await waitFor('the healthy watcher to see it too', () => healthy.events.at(-1)?.object.data.generation === String(WRITES + 2), 10_000);
      } finally {
        await again.stop();
      }
    } finally {
      await healthy.stop();
    }
  }, 90_000);

  it('does not count the changes a watch asked to replay against its limit', async () => {
    const path = '/api/v1/namespaces/default/configmaps';
    const closedBefore = await metric('flotilla_api_watches_closed_total', 'reason="slow"');
    expect((await api(path, { method: 'POST', body: configMap(99, 'replayed') })).status).toBe(201);
    const list = (await (await api(path)).json()) as { metadata: { resourceVersion: string } };
    // 5 MB of changes after that version, then a watch resuming from it that is slow to start reading.
    for (let generation = 100; generation < 110; generation++) expect((await api(`${path}/replayed`, { method: 'PUT', body: configMap(generation, 'replayed') })).status).toBe(200);
    const resuming = await stuckWatch(path, `&resourceVersion=${list.metadata.resourceVersion}`);
    await new Promise((r) => setTimeout(r, 500));
    expect((await api(`${path}/replayed`, { method: 'PUT', body: configMap(110, 'replayed') })).status).toBe(200);
    let text = '';
    resuming.setEncoding('latin1');
    resuming.on('data', (chunk: string) => (text += chunk));
    resuming.resume();
    await waitFor('the replayed changes and the live one', () => text.includes('"generation":"110"'), 20_000);
    for (let generation = 100; generation <= 110; generation++) expect(text).toContain(`"generation":"${generation}"`);
    expect(await metric('flotilla_api_watches_closed_total', 'reason="slow"')).toBe(closedBefore);
    // Still open, and now held to the usual limit: it gets the next change too.
    expect((await api(`${path}/replayed`, { method: 'PUT', body: configMap(111, 'replayed') })).status).toBe(200);
    await waitFor('the next live change', () => text.includes('"generation":"111"'), 10_000);
  }, 60_000);
});
