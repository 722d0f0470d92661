import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from 'better-sqlite3';
import type { JoinLabelRule } from './join-labels.js';

/**
 * Every secret the hub hands out: the admin token (CLI and API), join tokens (devices that
 * have nothing else yet) and each device's own MQTT password, issued at join. Secrets are
 * random 32-byte strings, so a plain SHA-256 is enough to store them (a slow password hash
 * protects guessable human passwords; these are not guessable). Only the hash is kept.
 */
export type CredentialKind = 'admin' | 'join' | 'device' | 'hub';

export interface CredentialRecord {
  id: string;
  kind: CredentialKind;
  node: string | null;
  description: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  /** A join token's label rule (join-labels.ts); absent: its devices may claim any label outside the reserved prefix. */
  labels?: Record<string, string>;
  labelPrefixes?: string[];
  /** A device's credentials: the join token it joined with, which alone may make it join again. */
  joinTokenId?: string;
}

export const CREDENTIALS_MIGRATION = `
CREATE TABLE credentials (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('admin','join','device','hub')),
  secret_hash TEXT NOT NULL,
  node TEXT,
  description TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  expires_at TEXT,
  revoked_at TEXT
);
CREATE INDEX credentials_node ON credentials(node) WHERE node IS NOT NULL;
`;

/** A join token's label rule (JSON), and the join token a device's credentials were issued to. */
export const JOIN_TOKEN_RULES_MIGRATION = `
ALTER TABLE credentials ADD COLUMN label_rule TEXT;
ALTER TABLE credentials ADD COLUMN join_token_id TEXT;
`;

interface Row {
  id: string;
  kind: CredentialKind;
  secret_hash: string;
  node: string | null;
  description: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  label_rule: string | null;
  join_token_id: string | null;
}

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

function toRecord(row: Row): CredentialRecord {
  const rule = row.label_rule ? (JSON.parse(row.label_rule) as JoinLabelRule) : undefined;
  return {
    id: row.id,
    kind: row.kind,
    node: row.node,
    description: row.description,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    ...(rule ? { labels: rule.labels, labelPrefixes: rule.prefixes } : {}),
    ...(row.join_token_id ? { joinTokenId: row.join_token_id } : {}),
  };
}

/** A join token's label rule from its record; undefined for a token without one. */
export function labelRuleOf(record: CredentialRecord): JoinLabelRule | undefined {
  return record.labels || record.labelPrefixes ? { labels: record.labels ?? {}, prefixes: record.labelPrefixes ?? [] } : undefined;
}

/** Tokens read `<id>.<secret>`, like Kubernetes bootstrap tokens: the id is public, the secret is not. */
export function splitToken(token: string): { id: string; secret: string } | undefined {
  const m = /^([a-z0-9]{6,32})\.([A-Za-z0-9_-]{16,128})$/.exec(token.trim());
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

export class Credentials {
  private readonly insert;
  private readonly byId;
  private readonly deviceByNode;
  private readonly revokeStmt;
  private readonly revokeNodeStmt;
  private readonly listStmt;
  private readonly everByNode;
  private readonly forgetStmt;

  constructor(private readonly db: Database) {
    this.insert = db.prepare('INSERT INTO credentials (id, kind, secret_hash, node, description, created_at, expires_at, label_rule, join_token_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
    this.byId = db.prepare<[string], Row>('SELECT * FROM credentials WHERE id = ?');
    this.deviceByNode = db.prepare<[string], Row>("SELECT * FROM credentials WHERE kind = 'device' AND node = ? AND revoked_at IS NULL");
    this.revokeStmt = db.prepare('UPDATE credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
    this.revokeNodeStmt = db.prepare("UPDATE credentials SET revoked_at = ? WHERE kind = 'device' AND node = ? AND revoked_at IS NULL");
    this.everByNode = db.prepare<[string], { id: string }>("SELECT id FROM credentials WHERE kind = 'device' AND node = ? LIMIT 1");
    this.forgetStmt = db.prepare("DELETE FROM credentials WHERE kind = 'device' AND node = ?");
    this.listStmt = db.prepare<[], Row>('SELECT * FROM credentials ORDER BY created_at, id');
  }

  /** Issues a token of `kind`; returns it in the clear once, and keeps only its hash. */
  createToken(kind: 'admin' | 'join' | 'hub', opts: { description?: string; ttlSeconds?: number; labelRule?: JoinLabelRule } = {}): { token: string; record: CredentialRecord } {
    const id = randomBytes(5).toString('hex').slice(0, 8);
    const secret = randomBytes(24).toString('base64url');
    const now = new Date();
    const expiresAt = opts.ttlSeconds ? new Date(now.getTime() + opts.ttlSeconds * 1000).toISOString() : null;
    this.insert.run(id, kind, hashSecret(secret), null, opts.description ?? '', now.toISOString(), expiresAt, opts.labelRule ? JSON.stringify(opts.labelRule) : null, null);
    return { token: `${id}.${secret}`, record: toRecord(this.byId.get(id)!) };
  }

  /** Checks a token of the given kind: known, not revoked, not expired, and the secret matches. */
  verifyToken(kind: CredentialKind, token: string): CredentialRecord | undefined {
    const parts = splitToken(token);
    if (!parts) return undefined;
    const row = this.byId.get(parts.id);
    if (!row || row.kind !== kind || row.revoked_at) return undefined;
    if (row.expires_at && Date.parse(row.expires_at) <= Date.now()) return undefined;
    return sameHash(row.secret_hash, hashSecret(parts.secret)) ? toRecord(row) : undefined;
  }

  /** Issues a device's own MQTT password at join, revoking any earlier one for that node. */
  issueDevicePassword(node: string, joinTokenId?: string): string {
    const password = randomBytes(32).toString('base64url');
    const now = new Date().toISOString();
    this.db.transaction(() => {
      this.revokeNodeStmt.run(now, node);
      this.insert.run(`dev-${randomBytes(6).toString('hex')}`, 'device', hashSecret(password), node, `credentials of node ${node}`, now, null, null, joinTokenId ?? null);
    })();
    return password;
  }

  verifyDevice(node: string, password: string): boolean {
    const row = this.deviceByNode.get(node);
    return row !== undefined && sameHash(row.secret_hash, hashSecret(password));
  }

  hasDeviceCredentials(node: string): boolean {
    return this.deviceByNode.get(node) !== undefined;
  }

  /** A node's credentials in force (not revoked), if any. */
  deviceCredentials(node: string): CredentialRecord | undefined {
    const row = this.deviceByNode.get(node);
    return row ? toRecord(row) : undefined;
  }

  /** Whether a device ever joined under this name (revoked credentials count: revocation must stick). */
  hasEverJoined(node: string): boolean {
    return this.everByNode.get(node) !== undefined;
  }

  /** Forgets a node's credentials entirely (the node was deleted), so the name may join again. */
  forgetNode(node: string): number {
    return this.forgetStmt.run(node).changes;
  }

  get(id: string): CredentialRecord | undefined {
    const row = this.byId.get(id);
    return row ? toRecord(row) : undefined;
  }

  list(): CredentialRecord[] {
    return this.listStmt.all().map(toRecord);
  }

  /** Revokes one credential by id; returns it, or undefined when unknown. */
  revoke(id: string): CredentialRecord | undefined {
    this.revokeStmt.run(new Date().toISOString(), id);
    return this.get(id);
  }

  revokeNode(node: string): number {
    return this.revokeNodeStmt.run(new Date().toISOString(), node).changes;
  }
}
