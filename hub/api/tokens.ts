import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CredentialRecord, Credentials } from '../auth/credentials.js';
import { validateLabelRule, type JoinLabelRule } from '../auth/join-labels.js';
import { HubError } from './errors.js';

/** An external broker that must learn of join tokens (hub/broker/mosquitto-accounts.ts). */
export interface JoinTokenSync {
  joinTokenCreated(token: string, record: CredentialRecord): Promise<void>;
  joinTokenRevoked(record: CredentialRecord): Promise<void>;
}

/**
 * /api/v1/tokens: list every credential (never a secret), create a join token (the secret is
 * shown once, in the answer), revoke one by id. Revoking a device's credentials cuts it off at
 * once through `onRevokeDevice`.
 */
export class TokenRoutes {
  constructor(
    private readonly credentials: Credentials,
    private readonly onRevokeDevice: (node: string) => void,
    private readonly joinTokens?: JoinTokenSync,
  ) {}

  async handle(method: string, rest: string[], _req: IncomingMessage, _res: ServerResponse, send: (status: number, body: unknown) => void, body: () => Promise<Buffer>): Promise<void> {
    if (rest.length === 0 && method === 'GET') return send(200, { kind: 'TokenList', items: this.credentials.list() });
    if (rest.length === 0 && method === 'POST') {
      const raw = (await body()).toString('utf8');
      let input: { description?: unknown; ttlSeconds?: unknown; labels?: unknown; labelPrefixes?: unknown } = {};
      if (raw.trim()) {
        try {
          input = JSON.parse(raw) as typeof input;
        } catch {
          throw new HubError('HUB_ERR_BAD_REQUEST', 'body is not valid JSON');
        }
      }
      if (input.description !== undefined && typeof input.description !== 'string') throw new HubError('HUB_ERR_INVALID', 'description: must be a string', [{ path: 'description', message: 'must be a string' }]);
      if (input.ttlSeconds !== undefined && (typeof input.ttlSeconds !== 'number' || !Number.isInteger(input.ttlSeconds) || input.ttlSeconds <= 0)) {
        throw new HubError('HUB_ERR_INVALID', 'ttlSeconds: must be a positive integer', [{ path: 'ttlSeconds', message: 'must be a positive integer' }]);
      }
      const labelRule = parseLabelRule(input.labels, input.labelPrefixes);
      const { token, record } = this.credentials.createToken('join', {
        ...(typeof input.description === 'string' ? { description: input.description } : {}),
        ...(typeof input.ttlSeconds === 'number' ? { ttlSeconds: input.ttlSeconds } : {}),
        ...(labelRule ? { labelRule } : {}),
      });
      if (this.joinTokens) {
        try {
          await this.joinTokens.joinTokenCreated(token, record);
        } catch (err) {
          // A token the broker does not accept would only mislead: take it back.
          this.credentials.revoke(record.id);
          throw new HubError('HUB_ERR_UNAVAILABLE', `the MQTT broker did not take the new join token: ${(err as Error).message}`);
        }
      }
      return send(201, { token, record });
    }
    if (rest.length === 1 && method === 'DELETE') {
      const id = rest[0]!;
      const before = this.credentials.get(id);
      if (!before) throw new HubError('HUB_ERR_NOT_FOUND', `token "${id}" not found`);
      if (before.kind === 'admin') throw new HubError('HUB_ERR_FORBIDDEN', 'the admin token cannot be revoked through the API (delete admin.token and restart the hub)');
      const record = this.credentials.revoke(id)!;
      if (record.kind === 'device' && record.node) this.onRevokeDevice(record.node);
      // The broker follows within its next check if this fails (hub/broker/mosquitto-accounts.ts).
      if (record.kind === 'join') await this.joinTokens?.joinTokenRevoked(record).catch(() => undefined);
      return send(200, record);
    }
    throw new HubError('HUB_ERR_NOT_FOUND', 'no such token route');
  }
}

/**
 * A join token's label rule from the request body: `labels` (a map of strings) and
 * `labelPrefixes` (a list of strings), both optional; undefined when neither is given.
 */
function parseLabelRule(labels: unknown, labelPrefixes: unknown): JoinLabelRule | undefined {
  if (labels === undefined && labelPrefixes === undefined) return undefined;
  const invalid = (path: string, message: string) => new HubError('HUB_ERR_INVALID', `${path}: ${message}`, [{ path, message }]);
  if (labels !== undefined && (labels === null || typeof labels !== 'object' || Array.isArray(labels))) throw invalid('labels', 'must be a map of label keys to values');
  for (const [key, value] of Object.entries(labels ?? {})) if (typeof value !== 'string') throw invalid(`labels.${key}`, 'must be a string');
  if (labelPrefixes !== undefined && (!Array.isArray(labelPrefixes) || labelPrefixes.some((p) => typeof p !== 'string'))) throw invalid('labelPrefixes', 'must be a list of strings');
  const rule: JoinLabelRule = { labels: (labels ?? {}) as Record<string, string>, prefixes: (labelPrefixes ?? []) as string[] };
  const problems = validateLabelRule(rule);
  if (problems.length > 0) throw new HubError('HUB_ERR_INVALID', problems.map((p) => `${p.path}: ${p.message}`).join('; '), problems);
  return rule;
}
