import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KEY_FILE, loadOrCreateKey } from '../../agent/network/key.js';
import { publicKeyOf } from '../../shared/net/keys.js';

const dirs: string[] = [];
function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flt-key-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('the WireGuard key in the state directory', () => {
  it('is made on first start, kept twice with mode 0600, and read back the same', () => {
    const dir = stateDir();
    const problems: string[] = [];
    const first = loadOrCreateKey(dir, (m) => problems.push(m));
    expect(first.publicKey).toBe(publicKeyOf(first.privateKey));
    for (const file of [KEY_FILE, `${KEY_FILE}.bak`]) {
      expect(readFileSync(join(dir, file), 'utf8')).toBe(`${first.privateKey}\n`);
      expect(statSync(join(dir, file)).mode & 0o777).toBe(0o600);
    }
    expect(loadOrCreateKey(dir, (m) => problems.push(m))).toEqual(first);
    expect(problems).toEqual([]);
  });

  it('takes the other copy when one is damaged, and repairs it', () => {
    const dir = stateDir();
    const key = loadOrCreateKey(dir, () => {});
    writeFileSync(join(dir, KEY_FILE), 'garbage');
    const problems: string[] = [];
    expect(loadOrCreateKey(dir, (m) => problems.push(m))).toEqual(key);
    expect(problems[0]).toContain('does not hold a WireGuard private key');
    expect(readFileSync(join(dir, KEY_FILE), 'utf8')).toBe(`${key.privateKey}\n`);
  });

  it('makes a new key when neither copy is usable, and says so', () => {
    const dir = stateDir();
    const key = loadOrCreateKey(dir, () => {});
    writeFileSync(join(dir, KEY_FILE), 'x');
    writeFileSync(join(dir, `${KEY_FILE}.bak`), 'y');
    const problems: string[] = [];
    const fresh = loadOrCreateKey(dir, (m) => problems.push(m));
    expect(fresh.privateKey).not.toBe(key.privateKey);
    expect(problems.some((p) => p.includes('made a new WireGuard key'))).toBe(true);
  });
});
