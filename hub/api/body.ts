import type { IncomingMessage } from 'node:http';
import { depthMessage, jsonTooDeep } from '../../shared/resources/depth.js';
import { ManifestSyntaxError, parseManifests, type ManifestDocument } from '../../shared/resources/manifest.js';
import { HubError } from './errors.js';

/** Kubernetes' apiserver takes up to 3 MiB per request: room for a Secret with 1 MiB of data, base64-encoded. */
export const DEFAULT_BODY_LIMIT = 3 * 1024 * 1024;

/**
 * The most tokens a YAML body may have. The yaml library needs some 700 bytes of memory per
 * token (syntax tree, then document) where JSON.parse needs a few: 50,000 tokens is a YAML
 * manifest of 100 KB or more, and costs the hub about 35 MB while it is read. The CLI sends
 * JSON, whatever its files hold; a larger YAML body can be sent as JSON.
 */
export const MAX_YAML_BODY_TOKENS = 50_000;

/**
 * How much of a body over the limit is still read (and dropped) before the answer: a client
 * that is still sending when the hub answers 413 and closes would see its write fail (EPIPE or
 * a reset) instead of the answer. Past this, the connection is closed without waiting.
 */
export const DRAIN_LIMIT = 32 * 1024 * 1024;

export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit && declared > DRAIN_LIMIT) {
    req.resume();
    throw new HubError('HUB_ERR_BODY_TOO_LARGE', `request body of ${declared} bytes is over the limit of ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size <= limit && declared <= limit) chunks.push(chunk as Buffer);
    // Over the limit the rest is read and dropped, until DRAIN_LIMIT (leaving the loop ends the request).
    else if (size > DRAIN_LIMIT) break;
  }
  if (declared > limit) throw new HubError('HUB_ERR_BODY_TOO_LARGE', `request body of ${declared} bytes is over the limit of ${limit} bytes`);
  if (size > limit) throw new HubError('HUB_ERR_BODY_TOO_LARGE', `request body is over the limit of ${limit} bytes`);
  return Buffer.concat(chunks);
}

/**
 * Parses a JSON or YAML body into manifest documents; syntax errors name line and column. Depth
 * is checked on the text, before a tree is built (parseManifests does the same for YAML).
 */
export function parseBody(req: IncomingMessage, body: Buffer): ManifestDocument[] {
  const type = (req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
  const text = body.toString('utf8');
  if (text.trim() === '') throw new HubError('HUB_ERR_BAD_REQUEST', 'request body is empty');
  if (type === 'application/json' || type === 'application/merge-patch+json') {
    if (jsonTooDeep(text)) throw new HubError('HUB_ERR_BAD_REQUEST', `body is not accepted: ${depthMessage()}`);
    try {
      const value: unknown = JSON.parse(text);
      if (Array.isArray(value)) return value.map((v, i) => ({ source: `item ${i}`, value: v }));
      if (value && typeof value === 'object' && Array.isArray((value as { items?: unknown }).items) && !('kind' in value && (value as { kind?: unknown }).kind !== 'List')) {
        return ((value as { items: unknown[] }).items).map((v, i) => ({ source: `item ${i}`, value: v }));
      }
      return [{ source: 'body', value }];
    } catch (err) {
      throw new HubError('HUB_ERR_BAD_REQUEST', `body is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (type === 'application/yaml' || type === 'application/x-yaml' || type === 'text/yaml') {
    try {
      return parseManifests(text, 'body', { maxTokens: MAX_YAML_BODY_TOKENS });
    } catch (err) {
      if (err instanceof ManifestSyntaxError) throw new HubError('HUB_ERR_BAD_REQUEST', err.message);
      throw err;
    }
  }
  throw new HubError('HUB_ERR_UNSUPPORTED_MEDIA_TYPE', `unsupported content type '${type}' (use application/json or application/yaml)`);
}
