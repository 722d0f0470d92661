import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/log/logger.js';
import { type Database } from '../../hub/store/db.js';
import { DISK_RESERVE_FILE, DiskGuard } from '../../hub/store/disk.js';
import { isDiskFull } from '../../hub/store/errors.js';
import { ObjectStore } from '../../hub/store/objects.js';
import { openHubDatabase } from '../../hub/store/schema.js';

// The disk guard's reactions, on a real database file in a temporary directory: the disk is
// not really full here; SQLite's SQLITE_FULL error is handed to the guard as a write would.

const log = createLogger({ name: 'test', level: 'silent' });

function sqliteFull(): Error {
  return Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
}

let dir: string;
let db: Database;
let store: ObjectStore;
let guard: DiskGuard;

function configMap(name: string): Parameters<ObjectStore['create']>[0] {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { v: name.repeat(100) } } as Parameters<ObjectStore['create']>[0];
}

function changeRows(): number {
  return db.prepare('SELECT count(*) FROM changes').pluck().get() as number;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flt-disk-guard-'));
  db = openHubDatabase(join(dir, 'flotilla.db'));
  store = new ObjectStore(db);
  guard = new DiskGuard(db, dir, log);
  guard.start();
});

afterEach(() => {
  guard.stop();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('isDiskFull', () => {
  it('knows SQLite\'s SQLITE_FULL and the system\'s ENOSPC, nothing else', () => {
    expect(isDiskFull(sqliteFull())).toBe(true);
    expect(isDiskFull(Object.assign(new Error('no space'), { code: 'ENOSPC' }))).toBe(true);
    expect(isDiskFull(Object.assign(new Error('busy'), { code: 'SQLITE_BUSY' }))).toBe(false);
    expect(isDiskFull(new Error('plain'))).toBe(false);
    expect(isDiskFull(undefined)).toBe(false);
  });
});

describe('the disk guard', () => {
  it('makes a reserve of at least 1 MiB in the data directory at start', () => {
    expect(statSync(join(dir, DISK_RESERVE_FILE)).size).toBeGreaterThanOrEqual(1024 * 1024);
    expect(guard.health()).toMatchObject({ full: false });
    expect(guard.health().reserveBytes).toBeGreaterThanOrEqual(1024 * 1024);
  });

  it('ignores failures that are not for lack of space', () => {
    expect(guard.storeFull(Object.assign(new Error('constraint'), { code: 'SQLITE_CONSTRAINT' }))).toBe(false);
    expect(guard.health().full).toBe(false);
    expect(existsSync(join(dir, DISK_RESERVE_FILE))).toBe(true);
  });

  it('on a full disk: releases the reserve, compacts the change history, caps the store, and reports it', () => {
    for (let i = 0; i < 40; i++) store.create(configMap(`cm-${i}`));
    expect(changeRows()).toBe(40);
    const pagesBefore = db.pragma('page_count', { simple: true }) as number;

    expect(guard.storeFull(sqliteFull())).toBe(true);

    expect(existsSync(join(dir, DISK_RESERVE_FILE))).toBe(false);
    const health = guard.health();
    expect(health).toMatchObject({ full: true, reserveBytes: 0 });
    expect(health.message).toContain(dir);
    expect(Date.parse(health.since!)).not.toBeNaN();
    expect(changeRows()).toBeLessThanOrEqual(10);
    // A watch from before the compaction has to list again (410 Gone), as after etcd's compaction.
    expect(() => store.watch({ kind: 'ConfigMap', fromResourceVersion: '1' }, () => undefined)).toThrow(/too old resource version/);
    const cap = db.pragma('max_page_count', { simple: true }) as number;
    expect(cap).toBeGreaterThan(pagesBefore);
    expect(cap).toBeLessThan(pagesBefore + 1024);

    // Deletes still work under the cap, and another failure does not raise it.
    for (let i = 0; i < 20; i++) store.delete('ConfigMap', 'default', `cm-${i}`);
    guard.storeFull(sqliteFull());
    expect(db.pragma('max_page_count', { simple: true })).toBe(cap);
  });
});
