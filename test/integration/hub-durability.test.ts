import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, getJson, startHub, stopAll, tempDir, type RunningHub } from '../harness/processes.js';

// What the hub acknowledged, it keeps: objects written through the API one by one survive a
// kill -9 of the hub (no orderly shutdown, no chance to flush anything), with the same uid and
// resourceVersion, and so do the tokens that the CLI and devices hold.

interface Meta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
}

interface Acked {
  name: string;
  uid: string;
  resourceVersion: string;
}

const NAMESPACE = 'durable';
// A node that never joins: pods bound to it run nowhere. The scheduler marks each of them once
// (PodScheduled False, NodeNotFound), so a pod may be found at a later resourceVersion than the
// one acknowledged, never an earlier one, and always with the uid acknowledged.
const ABSENT_NODE = 'never-joins';

const dirs = tempDir('durability');
let hub: RunningHub;

function podManifest(name: string, i: number): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NAMESPACE, labels: { app: 'durable', index: String(i) } },
    spec: { nodeName: ABSENT_NODE, containers: [{ name: 'main', image: 'flotilla-test/busybox:1', command: ['sleep', String(1000 + i)] }] },
  };
}

/** Applies one object through the API; the acknowledged object, or undefined when the hub did not say 2xx. */
async function applyOne(h: RunningHub, manifest: Record<string, unknown>): Promise<Acked | undefined> {
  let res: Response;
  try {
    res = await fetch(`${h.apiUrl}/api/v1/apply`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ items: [manifest] }),
    });
  } catch {
    return undefined;
  }
  if (res.status < 200 || res.status >= 300) return undefined;
  const body = (await res.json()) as { results: { action: string; object: { metadata: Meta } }[] };
  const meta = body.results[0]!.object.metadata;
  return { name: meta.name, uid: meta.uid, resourceVersion: meta.resourceVersion };
}

/** What the API acknowledged is there: the same uid, at that resourceVersion or a later one. */
function expectKept(after: Map<string, Acked>, a: Acked): void {
  const stored = after.get(a.name);
  expect(stored, a.name).toBeDefined();
  expect(stored!.uid, a.name).toBe(a.uid);
  expect(Number(stored!.resourceVersion), a.name).toBeGreaterThanOrEqual(Number(a.resourceVersion));
}

function storedPods(h: RunningHub): Map<string, Acked> {
  const items = getJson<{ items: { metadata: Meta }[] }>(h, ['pods', '-n', NAMESPACE]).items;
  return new Map(items.map((p) => [p.metadata.name, { name: p.metadata.name, uid: p.metadata.uid, resourceVersion: p.metadata.resourceVersion }]));
}

async function restart(h: RunningHub): Promise<RunningHub> {
  return startHub({ dataDir: h.dataDir });
}

beforeAll(async () => {
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  const ns = cli(hub, ['apply', '-f', '-'], { input: `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${NAMESPACE}\n` });
  expect(ns.code, ns.stderr).toBe(0);
});

afterAll(async () => {
  await stopAll();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('the hub keeps what it acknowledged across a kill -9', () => {
  it('keeps 50 pods applied one by one, with the uid acknowledged and no older resourceVersion', async () => {
    const adminTokenFile = readFileSync(join(hub.dataDir, 'admin.token'), 'utf8');
    const joinTokenFile = readFileSync(join(hub.dataDir, 'join.token'), 'utf8');
    const acked: Acked[] = [];
    for (let i = 0; i < 50; i++) {
      const ack = await applyOne(hub, podManifest(`pod-${String(i).padStart(2, '0')}`, i));
      if (ack) acked.push(ack);
    }
    // Nothing stands between the hub and these writes: every one of them must be acknowledged.
    expect(acked).toHaveLength(50);
    expect(new Set(acked.map((a) => a.uid)).size).toBe(50);
    const namespaceBefore = getJson<{ metadata: Meta }>(hub, ['namespace', NAMESPACE]).metadata;

    await hub.process.kill();
    expect(hub.process.exitCode).toBe(-1);
    hub = await restart(hub);

    const after = storedPods(hub);
    for (const a of acked) expectKept(after, a);
    expect(after.size).toBe(50);
    const namespaceAfter = getJson<{ metadata: Meta }>(hub, ['namespace', NAMESPACE]).metadata;
    expect({ uid: namespaceAfter.uid, resourceVersion: namespaceAfter.resourceVersion }).toEqual({ uid: namespaceBefore.uid, resourceVersion: namespaceBefore.resourceVersion });

    // The tokens are the same files, and the one the CLI holds still works.
    expect(readFileSync(join(hub.dataDir, 'admin.token'), 'utf8')).toBe(adminTokenFile);
    expect(readFileSync(join(hub.dataDir, 'join.token'), 'utf8')).toBe(joinTokenFile);
    expect(hub.adminToken).toBe(adminTokenFile.trim());
    const table = cli(hub, ['get', 'pods', '-n', NAMESPACE]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout.trim().split('\n')).toHaveLength(51);
    expect(table.stdout).toContain('pod-49');
  });

  it('keeps every write acknowledged before a kill -9 that lands in the middle of a stream of writes', async () => {
    const acked: Acked[] = [];
    const attempted: string[] = [];
    let stop = false;
    // Four writers at once, so that writes are in flight when the hub dies.
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const name = `burst-${w}-${i}`;
        attempted.push(name);
        const ack = await applyOne(hub, podManifest(name, 100 + i));
        // Once the hub is gone, requests fail; a 2xx that made it out before is an acknowledgement.
        if (!ack) return;
        acked.push(ack);
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    while (acked.length < 60) await new Promise((r) => setTimeout(r, 5));
    const victim = hub;
    await victim.process.kill();
    stop = true;
    await Promise.all(writers);
    expect(acked.length).toBeGreaterThanOrEqual(60);

    hub = await restart(victim);
    const after = storedPods(hub);
    for (const a of acked) expectKept(after, a);
    // Nothing appears that was never sent; an unacknowledged write may or may not be there.
    for (const name of after.keys()) if (name.startsWith('burst-')) expect(attempted).toContain(name);
    // The first 50 are still there too.
    expect([...after.keys()].filter((n) => n.startsWith('pod-'))).toHaveLength(50);
    const again = cli(hub, ['get', 'pods', '-n', NAMESPACE, '-o', 'name']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.trim().split('\n')).toHaveLength(after.size);
  });
});
