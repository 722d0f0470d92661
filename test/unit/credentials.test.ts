import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Credentials, splitToken } from '../../hub/auth/credentials.js';
import type { Database } from '../../hub/store/db.js';
import { openHubDatabase } from '../../hub/store/schema.js';

interface CredentialRow {
  id: string;
  kind: string;
  secret_hash: string;
  node: string | null;
  revoked_at: string | null;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** The same token with its secret changed in one character, so that it stays well-formed. */
function withWrongSecret(token: string): string {
  const { id, secret } = splitToken(token)!;
  const last = secret.at(-1) === 'A' ? 'B' : 'A';
  return `${id}.${secret.slice(0, -1)}${last}`;
}

describe('Credentials', () => {
  let db: Database;
  let credentials: Credentials;

  beforeEach(() => {
    db = openHubDatabase(':memory:');
    credentials = new Credentials(db);
  });
  afterEach(() => {
    vi.useRealTimers();
    db.close();
  });

  const rows = () => db.prepare<[], CredentialRow>('SELECT * FROM credentials').all();

  describe('tokens', () => {
    it('creates a token of the form <id>.<secret> and verifies it', () => {
      const { token, record } = credentials.createToken('join', { description: 'fleet berlin' });
      expect(splitToken(token)).toEqual({ id: record.id, secret: expect.any(String) });
      expect(record).toMatchObject({ kind: 'join', node: null, description: 'fleet berlin', expiresAt: null, revokedAt: null });
      expect(credentials.verifyToken('join', token)).toEqual(record);
    });

    it('accepts surrounding whitespace, as a token read from a file has', () => {
      const { token, record } = credentials.createToken('admin');
      expect(credentials.verifyToken('admin', `${token}\n`)?.id).toBe(record.id);
    });

    it('verifies a token only as its own kind', () => {
      const join = credentials.createToken('join').token;
      const admin = credentials.createToken('admin').token;
      const hub = credentials.createToken('hub').token;
      expect(credentials.verifyToken('admin', join)).toBeUndefined();
      expect(credentials.verifyToken('device', join)).toBeUndefined();
      expect(credentials.verifyToken('join', admin)).toBeUndefined();
      expect(credentials.verifyToken('admin', hub)).toBeUndefined();
      expect(credentials.verifyToken('admin', admin)?.kind).toBe('admin');
      expect(credentials.verifyToken('hub', hub)?.kind).toBe('hub');
    });

    it('gives every token its own id and secret', () => {
      const a = credentials.createToken('join').token;
      const b = credentials.createToken('join').token;
      expect(splitToken(a)!.id).not.toBe(splitToken(b)!.id);
      expect(splitToken(a)!.secret).not.toBe(splitToken(b)!.secret);
      expect(credentials.list().map((r) => r.kind)).toEqual(['join', 'join']);
    });

    it('refuses a known id with the wrong secret', () => {
      const { token } = credentials.createToken('join');
      expect(credentials.verifyToken('join', withWrongSecret(token))).toBeUndefined();
    });

    it('refuses a revoked token, and records when it was revoked', () => {
      const { token, record } = credentials.createToken('join');
      const revoked = credentials.revoke(record.id);
      expect(revoked?.revokedAt).toEqual(expect.any(String));
      expect(credentials.verifyToken('join', token)).toBeUndefined();
      expect(credentials.get(record.id)?.revokedAt).toBe(revoked?.revokedAt);
    });

    it('answers undefined when revoking an unknown id', () => {
      expect(credentials.revoke('unknown1')).toBeUndefined();
    });

    it('refuses a token once its ttl has passed, and not before', () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(new Date('2024-05-01T12:00:00Z'));
      const { token, record } = credentials.createToken('join', { ttlSeconds: 3600 });
      expect(record.expiresAt).toBe('2024-05-01T13:00:00.000Z');

      vi.setSystemTime(new Date('2024-05-01T12:59:59Z'));
      expect(credentials.verifyToken('join', token)?.id).toBe(record.id);
      vi.setSystemTime(new Date('2024-05-01T13:00:00Z'));
      expect(credentials.verifyToken('join', token)).toBeUndefined();
      vi.setSystemTime(new Date('2024-05-02T00:00:00Z'));
      expect(credentials.verifyToken('join', token)).toBeUndefined();
    });

    it('never expires a token created without a ttl', () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(new Date('2024-05-01T12:00:00Z'));
      const { token } = credentials.createToken('admin');
      vi.setSystemTime(new Date('2034-05-01T12:00:00Z'));
      expect(credentials.verifyToken('admin', token)).toBeDefined();
    });

    it.each([
      ['empty', ''],
      ['without a dot', 'abcdef1234567890abcdef'],
      ['with an id too short', 'abc.0123456789abcdefghij'],
      ['with an upper-case id', 'ABCDEF12.0123456789abcdefghij'],
      ['with a secret too short', 'abcdef12.short'],
      ['with a character outside the alphabet', 'abcdef12.0123456789abcdef+hij'],
      ['with two dots', 'abcdef12.0123456789.abcdefghij'],
    ])('refuses a malformed token (%s)', (_what, token) => {
      credentials.createToken('join');
      expect(splitToken(token)).toBeUndefined();
      expect(credentials.verifyToken('join', token)).toBeUndefined();
    });

    it('refuses a well-formed token that was never issued', () => {
      expect(credentials.verifyToken('join', 'abcdef12.0123456789abcdefghij')).toBeUndefined();
    });
  });

  describe('device passwords', () => {
    it('issues a password that verifies for its node only', () => {
      const password = credentials.issueDevicePassword('pi-01');
      expect(password.length).toBeGreaterThanOrEqual(32);
      expect(credentials.verifyDevice('pi-01', password)).toBe(true);
      expect(credentials.verifyDevice('pi-02', password)).toBe(false);
      expect(credentials.verifyDevice('pi-01', `${password}x`)).toBe(false);
      expect(credentials.verifyDevice('pi-01', '')).toBe(false);
      expect(credentials.hasDeviceCredentials('pi-01')).toBe(true);
      expect(credentials.hasDeviceCredentials('pi-02')).toBe(false);
    });

    it('revokes the earlier password when one is issued again', () => {
      const first = credentials.issueDevicePassword('pi-01');
      const second = credentials.issueDevicePassword('pi-01');
      expect(second).not.toBe(first);
      expect(credentials.verifyDevice('pi-01', first)).toBe(false);
      expect(credentials.verifyDevice('pi-01', second)).toBe(true);
      const records = credentials.list().filter((r) => r.node === 'pi-01');
      expect(records).toHaveLength(2);
      expect(records.filter((r) => r.revokedAt === null)).toHaveLength(1);
    });

    it('leaves other nodes alone when one node is issued a new password', () => {
      const a = credentials.issueDevicePassword('pi-01');
      const b = credentials.issueDevicePassword('pi-02');
      credentials.issueDevicePassword('pi-01');
      expect(credentials.verifyDevice('pi-01', a)).toBe(false);
      expect(credentials.verifyDevice('pi-02', b)).toBe(true);
    });

    it('refuses a revoked node, which still counts as having joined', () => {
      const password = credentials.issueDevicePassword('pi-01');
      expect(credentials.revokeNode('pi-01')).toBe(1);
      expect(credentials.verifyDevice('pi-01', password)).toBe(false);
      expect(credentials.hasDeviceCredentials('pi-01')).toBe(false);
      expect(credentials.hasEverJoined('pi-01')).toBe(true);
      expect(credentials.revokeNode('pi-01')).toBe(0);
    });

    it('refuses a device whose credential was revoked by id', () => {
      const password = credentials.issueDevicePassword('pi-01');
      const [record] = credentials.list();
      credentials.revoke(record!.id);
      expect(credentials.verifyDevice('pi-01', password)).toBe(false);
      expect(credentials.hasEverJoined('pi-01')).toBe(true);
    });

    it('knows no node that never joined', () => {
      expect(credentials.hasEverJoined('pi-01')).toBe(false);
    });

    it('forgets a node entirely so that its name can join again', () => {
      const first = credentials.issueDevicePassword('pi-01');
      credentials.issueDevicePassword('pi-01');
      credentials.issueDevicePassword('pi-02');
      expect(credentials.forgetNode('pi-01')).toBe(2);
      expect(credentials.hasEverJoined('pi-01')).toBe(false);
      expect(credentials.hasEverJoined('pi-02')).toBe(true);
      const again = credentials.issueDevicePassword('pi-01');
      expect(credentials.verifyDevice('pi-01', again)).toBe(true);
      expect(credentials.verifyDevice('pi-01', first)).toBe(false);
    });

    it('keeps device passwords apart from tokens', () => {
      const password = credentials.issueDevicePassword('pi-01');
      const [record] = credentials.list();
      expect(credentials.verifyToken('device', `${record!.id}.${password}`)).toBeUndefined();
    });
  });

  describe('storage', () => {
    it('keeps only a SHA-256 hash of every secret, never the secret itself', () => {
      const { token } = credentials.createToken('join');
      const admin = credentials.createToken('admin').token;
      const password = credentials.issueDevicePassword('pi-01');
      const secrets = [splitToken(token)!.secret, splitToken(admin)!.secret, password];

      const stored = rows();
      expect(stored).toHaveLength(3);
      const dump = JSON.stringify(stored);
      for (const secret of secrets) expect(dump).not.toContain(secret);
      expect(stored.map((r) => r.secret_hash).sort()).toEqual(secrets.map(sha256).sort());
    });

    it('exposes no hash through the records it returns', () => {
      credentials.createToken('join');
      credentials.issueDevicePassword('pi-01');
      for (const record of credentials.list()) expect(Object.keys(record).sort()).toEqual(['createdAt', 'description', 'expiresAt', 'id', 'kind', 'node', 'revokedAt']);
    });
  });
});
