import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool } from '../harness/dockerd.js';
import { cli, ManagedProcess, REPO, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// A full disk must not lock the hub's store. The hub's data directory sits on a 16 MiB tmpfs,
// in a mount namespace of the test's own (it goes away with its holder process). Another
// program's file takes part of it, then objects fill the rest until writes fail. The hub stays
// up and says so (log, /healthz, metric); deletes succeed, one after another, and make room
// for writes again; nothing acknowledged is lost across a restart; and once the other file is
// gone, the hub makes its reserve again and is healthy.

const UNSHARE = '/usr/bin/unshare';
const NSENTER = '/usr/bin/nsenter';
const DISK_SIZE = '16m';
/** Another program's file on the same disk (logs, images): what the operator removes in the end. */
const OTHER_FILE_BYTES = 4 * 1024 * 1024;
/** Each ConfigMap holds this much data: the store keeps the object and a copy in its change history. */
const BLOB_BYTES = 96 * 1024;
const NAMESPACE = 'default';

interface Acked {
  name: string;
  uid: string;
  resourceVersion: string;
}

interface Health {
  status: string;
  disk?: { full: boolean; since?: string; freeBytes: number; reserveBytes: number; message?: string };
}

const dirs = tempDir('full-disk');
/** The tmpfs mount point: the same path inside the holder's namespace, an empty folder outside. */
const mountPoint = join(dirs.path, 'disk');
const dataDir = join(mountPoint, 'hub');
let holder: ManagedProcess;
let hub: RunningHub;
let sequence = 0;

/** A path of the tmpfs as the test (outside the namespace) reaches it. */
function onDisk(path: string): string {
  return `/proc/${holder.child.pid}/root${path}`;
}

function spawnLoggedCommand(command: string, args: string[], logName: string): ManagedProcess {
  const logPath = join(dirs.path, `${logName}-${++sequence}.log`);
  const fd = openSync(logPath, 'a');
  const child = spawn(command, args, { cwd: REPO, stdio: ['ignore', fd, fd], env: { ...process.env, FLOTILLA_LOG_FORMAT: 'json', FLOTILLA_LOG_LEVEL: 'info' } });
  closeSync(fd);
  return new ManagedProcess(child, logPath);
}

/** `flotilla hub` inside the holder's mount namespace (nsenter execs node in place: the pid is the hub's). */
function startHubOnDisk(): Promise<RunningHub> {
  return startHub({ dataDir, wrap: [NSENTER, '-t', String(holder.child.pid), '-m', '--'], hostPath: onDisk, logDir: dirs.path, env: { FLOTILLA_LOG_LEVEL: 'info' } });
}

function configMap(name: string, fill: string): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: NAMESPACE }, data: { blob: fill.repeat(Math.ceil(BLOB_BYTES / fill.length)).slice(0, BLOB_BYTES) } };
}

/** POSTs a ConfigMap: the acknowledged object, or the refusal's status and message. */
async function create(name: string): Promise<Acked | { status: number; message: string }> {
  const res = await fetch(`${hub.apiUrl}/api/v1/namespaces/${NAMESPACE}/configmaps`, {
    method: 'POST',
    headers: { authorization: `Bearer ${hub.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(configMap(name, `${name}:`)),
  });
  const body = (await res.json()) as { metadata?: Acked; message?: string };
  if (res.status === 201) return { name, uid: body.metadata!.uid, resourceVersion: body.metadata!.resourceVersion };
  return { status: res.status, message: body.message ?? '' };
}

function isAcked(r: Acked | { status: number }): r is Acked {
  return 'uid' in r;
}

async function remove(name: string): Promise<number> {
  const res = await fetch(`${hub.apiUrl}/api/v1/namespaces/${NAMESPACE}/configmaps/${name}`, { method: 'DELETE', headers: { authorization: `Bearer ${hub.adminToken}` } });
  await res.arrayBuffer();
  return res.status;
}

async function health(): Promise<{ code: number; body: Health }> {
  const res = await fetch(`${hub.apiUrl}/healthz`);
  return { code: res.status, body: (await res.json()) as Health };
}

/** One sample of the hub's own metrics. */
async function metric(name: string): Promise<number> {
  const res = await fetch(`${hub.apiUrl}/metrics`, { headers: { authorization: `Bearer ${hub.adminToken}` } });
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in /metrics`);
  return Number(line.split(' ')[1]);
}

/** The ConfigMaps the hub has (through the API: a list of megabytes is more than the CLI test helper buffers). */
async function storedConfigMaps(): Promise<Map<string, Acked>> {
  const res = await fetch(`${hub.apiUrl}/api/v1/namespaces/${NAMESPACE}/configmaps`, { headers: { authorization: `Bearer ${hub.adminToken}` } });
  if (res.status !== 200) throw new Error(`listing configmaps: HTTP ${res.status}`);
  const items = ((await res.json()) as { items: { metadata: Acked }[] }).items;
  return new Map(items.map((c) => [c.metadata.name, { name: c.metadata.name, uid: c.metadata.uid, resourceVersion: c.metadata.resourceVersion }]));
}

function logCount(proc: ManagedProcess, msg: string): number {
  return proc.log().split('\n').filter((l) => l.includes(`"msg":"${msg}`)).length;
}

beforeAll(async () => {
  requireTool(UNSHARE);
  requireTool(NSENTER);
  mkdirSync(mountPoint);
  // The holder keeps the namespace, and the tmpfs in it, alive; stopAll() ends it by its pid.
  holder = spawnLoggedCommand(UNSHARE, ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', `mount -t tmpfs -o size=${DISK_SIZE},mode=700 flt-full "$0" && echo mounted && exec sleep 900`, mountPoint], 'holder');
  await waitFor('the tmpfs to be mounted', () => {
    if (holder.exitCode !== undefined) throw new Error(`the mount holder exited: ${holder.log()}`);
    return holder.log().includes('mounted');
  }, 10_000, 20);
  hub = await startHubOnDisk();
});

afterAll(async () => {
  await stopAll();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a hub whose disk fills up', () => {
  const acked = new Map<string, Acked>();
  const deleted = new Set<string>();

  it('starts healthy, with a reserve on its disk', async () => {
    expect(await health()).toEqual({ code: 200, body: { status: 'ok' } });
    expect(await metric('flotilla_store_disk_full')).toBe(0);
    expect(await metric('flotilla_store_disk_reserve_bytes')).toBeGreaterThanOrEqual(1024 * 1024);
  });

  it('stays up when writes fail for lack of space, and says so: log, /healthz, metric', async () => {
    writeFileSync(onDisk(join(mountPoint, 'other-program.log')), Buffer.alloc(OTHER_FILE_BYTES, 'x'));
    let refusal: { status: number; message: string } | undefined;
    for (let i = 0; i < 500 && !refusal; i++) {
      const name = `fill-${String(i).padStart(3, '0')}`;
      const r = await create(name);
      if (isAcked(r)) acked.set(name, r);
      else refusal = r;
    }
    expect(refusal, 'a write refused for lack of space').toBeDefined();
    expect(refusal!.status).toBe(503);
    expect(refusal!.message).toContain('disk is full');
    expect(acked.size).toBeGreaterThan(20);

    expect(hub.process.exitCode).toBeUndefined();
    const { code, body } = await health();
    expect(code).toBe(200);
    expect(body.status).toBe('degraded');
    expect(body.disk).toMatchObject({ full: true, reserveBytes: 0 });
    expect(body.disk!.message).toContain(dataDir);
    expect(await metric('flotilla_store_disk_full')).toBe(1);
    expect(await metric('flotilla_store_disk_reserve_bytes')).toBe(0);
    expect(logCount(hub.process, 'the disk of the data directory is full')).toBe(1);
    // Reads still work.
    expect((await storedConfigMaps()).size).toBe(acked.size);
  });

  it('deletes succeed, one after another, and make room for writes again', async () => {
    const names = [...acked.keys()];
    // All but the first five, one by one through the API, and one through the CLI.
    const viaCli = names.at(-1)!;
    const r = cli(hub, ['delete', 'configmap', viaCli, '-n', NAMESPACE]);
    expect(r.code, r.stderr).toBe(0);
    deleted.add(viaCli);
    for (const name of names.slice(5, -1)) {
      expect(await remove(name), `delete ${name}`).toBe(200);
      deleted.add(name);
    }
    for (const name of deleted) acked.delete(name);
    expect(deleted.size).toBeGreaterThan(15);

    // The room deletes made takes new objects (it is reused in the store; the disk itself stays full).
    let written = 0;
    for (let i = 0; i < 5; i++) {
      const name = `after-${i}`;
      const created = await waitFor(`${name} accepted`, async () => {
        const c = await create(name);
        return isAcked(c) ? c : undefined;
      }, 10_000, 250);
      acked.set(name, created);
      written++;
    }
    expect(written).toBe(5);
    expect(hub.process.exitCode).toBeUndefined();
  });

  it('keeps everything it acknowledged across a restart, and nothing it deleted', async () => {
    await hub.process.stop();
    expect(hub.process.exitCode).toBe(0);
    hub = await startHubOnDisk();
    const stored = await storedConfigMaps();
    for (const a of acked.values()) expect(stored.get(a.name), a.name).toEqual(a);
    for (const name of deleted) expect(stored.has(name), name).toBe(false);
    expect(stored.size).toBe(acked.size);
    // Still full: the reserve could not be made again.
    expect((await health()).body.disk?.full).toBe(true);
  });

  it('makes its reserve again and is healthy once space is freed', async () => {
    rmSync(onDisk(join(mountPoint, 'other-program.log')));
    await waitFor('the hub healthy again', async () => (await health()).body.status === 'ok', 10_000, 200);
    expect(await metric('flotilla_store_disk_full')).toBe(0);
    expect(await metric('flotilla_store_disk_reserve_bytes')).toBeGreaterThanOrEqual(1024 * 1024);
    expect(logCount(hub.process, 'disk space is back')).toBe(1);
    const again = await create('healthy-again');
    expect(isAcked(again), JSON.stringify(again)).toBe(true);
    if (isAcked(again)) acked.set(again.name, again);
  });

  it('sees a disk filled by another program, keeps its reserve until a delete needs it, and the delete succeeds', async () => {
    // Another program writes until the disk has no block left; the hub writes nothing meanwhile.
    const hog = onDisk(join(mountPoint, 'runaway.log'));
    const fd = openSync(hog, 'w');
    const chunk = Buffer.alloc(64 * 1024, 'y');
    try {
      for (;;) writeSync(fd, chunk);
    } catch (err) {
      expect((err as { code?: string }).code).toBe('ENOSPC');
    } finally {
      closeSync(fd);
    }
    await waitFor('the hub to report its disk full', async () => (await health()).body.disk?.full === true, 10_000, 200);
    expect(await metric('flotilla_store_disk_full')).toBe(1);
    // Kept for the hub's own need: released now, it would only have gone to the runaway program.
    expect(await metric('flotilla_store_disk_reserve_bytes')).toBeGreaterThanOrEqual(1024 * 1024);
    for (const name of [...acked.keys()].slice(0, 3)) {
      expect(await remove(name), `delete ${name}`).toBe(200);
      acked.delete(name);
    }
    expect(hub.process.exitCode).toBeUndefined();
    rmSync(hog);
    await waitFor('the hub healthy again', async () => (await health()).body.status === 'ok', 10_000, 200);
    const stored = await storedConfigMaps();
    for (const a of acked.values()) expect(stored.get(a.name), a.name).toEqual(a);
    expect(stored.size).toBe(acked.size);
  });
});
