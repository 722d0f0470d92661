import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aesGcmCodec, loadOrCreateKey, SECRET_KEY_FILE } from '../../hub/store/encryption.js';
import { ObjectStore } from '../../hub/store/objects.js';
import { openHubDatabase } from '../../hub/store/schema.js';
import type { Database } from '../../hub/store/db.js';
import type { WatchEvent } from '../../hub/store/types.js';

const PLAINTEXT = 'hunter2-the-password';
const ENCODED = Buffer.from(PLAINTEXT).toString('base64');

let dir: string;
let db: Database;
let store: ObjectStore;

function rawRows(): string[] {
  const objects = db.prepare<[], string>("SELECT object FROM objects WHERE kind = 'Secret'").pluck().all();
  const changes = db.prepare<[], string>("SELECT object FROM changes WHERE kind = 'Secret'").pluck().all();
  return [...objects, ...changes];
}

function secret(value: string) {
  return { apiVersion: 'flotilla/v1', kind: 'Secret', metadata: { name: 'creds', namespace: 'default' }, type: 'Opaque', data: { password: Buffer.from(value).toString('base64') } };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flt-secret-'));
  db = openHubDatabase(':memory:');
  const codec = aesGcmCodec(loadOrCreateKey(join(dir, SECRET_KEY_FILE)));
  store = new ObjectStore(db, { atRest: (kind) => (kind === 'Secret' ? codec : undefined) });
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the secret key file', () => {
  it('is made on first use with mode 0600 and read back the same afterwards', () => {
    const file = join(dir, SECRET_KEY_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(loadOrCreateKey(file).equals(loadOrCreateKey(file))).toBe(true);
    expect(loadOrCreateKey(file)).toHaveLength(32);
  });

  it('refuses a file that does not hold a 256-bit key', () => {
    const file = join(dir, 'short.key');
    writeFileSync(file, 'c2hvcnQ=\n', { mode: 0o600 });
    expect(() => loadOrCreateKey(file)).toThrow(/256-bit key/);
  });
});

describe('AES-GCM sealing', () => {
  it('round-trips, with a fresh nonce each time, and fails loudly with another key or altered bytes', () => {
    const codec = aesGcmCodec(Buffer.alloc(32, 7));
    const a = codec.seal('{"x":1}');
    expect(a).not.toBe(codec.seal('{"x":1}'));
    expect(codec.open(a)).toBe('{"x":1}');
    expect(() => aesGcmCodec(Buffer.alloc(32, 8)).open(a)).toThrow(/cannot be decrypted/);
    const flipped = a.slice(0, -4) + (a.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    expect(() => codec.open(flipped)).toThrow(/cannot be decrypted/);
  });

  it('reads a value stored before encryption was on as it is', () => {
    expect(aesGcmCodec(Buffer.alloc(32)).open('{"plain":true}')).toBe('{"plain":true}');
  });
});

describe('an ObjectStore with Secrets sealed at rest', () => {
  it('never writes the data in the clear, and returns it decoded from get, list and watch', () => {
    const events: WatchEvent[] = [];
    const stop = store.watch({ kind: 'Secret' }, (e) => events.push(e));
    const created = store.create(secret(PLAINTEXT));
    store.update({ ...created, data: { password: Buffer.from(`${PLAINTEXT}-2`).toString('base64') } });
    store.delete('Secret', 'default', 'creds');
    stop();
    for (const row of rawRows()) {
      expect(row).not.toContain(ENCODED);
      expect(row).not.toContain(PLAINTEXT);
      expect(row.startsWith('flotilla:enc:aesgcm:v1:')).toBe(true);
    }
    expect(events.map((e) => (e.object.data as Record<string, string>).password)).toEqual([ENCODED, Buffer.from(`${PLAINTEXT}-2`).toString('base64'), Buffer.from(`${PLAINTEXT}-2`).toString('base64')]);
  });

  it('decodes on get, list and a watch replayed from the change history', () => {
    const created = store.create(secret(PLAINTEXT));
    expect((store.get('Secret', 'default', 'creds')!.data as Record<string, string>).password).toBe(ENCODED);
    expect((store.list('Secret').items[0]!.data as Record<string, string>).password).toBe(ENCODED);
    const replayed: WatchEvent[] = [];
    store.watch({ kind: 'Secret', fromResourceVersion: String(Number(created.metadata.resourceVersion) - 1) }, (e) => replayed.push(e))();
    expect((replayed[0]!.object.data as Record<string, string>).password).toBe(ENCODED);
  });

  it('leaves other kinds as plain JSON', () => {
    store.create({ apiVersion: 'flotilla/v1', kind: 'ConfigMap', metadata: { name: 'app', namespace: 'default' }, data: { greeting: 'hello' } });
    const row = db.prepare<[], string>("SELECT object FROM objects WHERE kind = 'ConfigMap'").pluck().get();
    expect(JSON.parse(row!)).toMatchObject({ data: { greeting: 'hello' } });
  });

  it('cannot be read back with another key file', () => {
    store.create(secret(PLAINTEXT));
    const other = new ObjectStore(db, { atRest: () => aesGcmCodec(loadOrCreateKey(join(dir, 'other.key'))) });
    expect(() => other.get('Secret', 'default', 'creds')).toThrow(/cannot be decrypted/);
    expect(readFileSync(join(dir, SECRET_KEY_FILE), 'utf8').trim()).toHaveLength(44);
  });
});
