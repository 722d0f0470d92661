import * as z from 'zod';

/**
 * Kubernetes' limit on a ConfigMap's or Secret's total data, its values decoded (keys are not
 * counted, as in Kubernetes' validation). The API's body limit (3 MiB) leaves room for such an
 * object in base64, JSON or YAML.
 */
export const MAX_CONFIG_BYTES = 1024 * 1024;

const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;

/** Kubernetes' IsConfigMapKey: the key becomes a file name in a volume, so `.` and `..` are refused. */
export function validateConfigKey(key: string): string[] {
  const problems: string[] = [];
  if (key.length > 253) problems.push('must be no more than 253 characters');
  if (!CONFIG_KEY.test(key)) problems.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
  if (key === '.' || key === '..' || key.startsWith('..')) problems.push("must not be '.' or '..' or start with '..'");
  return problems;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function isBase64(v: string): boolean {
  return BASE64.test(v);
}

const keyedMap = (value: z.ZodType<string>) =>
  z.record(z.string(), value).superRefine((map, ctx) => {
    for (const key of Object.keys(map)) for (const message of validateConfigKey(key)) ctx.addIssue({ code: 'custom', path: [key], message: `invalid key '${key}': ${message}` });
  });

const base64Value = z.string().refine(isBase64, 'must be base64-encoded');

/** The decoded length of a base64 value, without decoding it. */
function base64Length(value: string): number {
  const padding = value.endsWith('==') ? 2 : value.endsWith('=') ? 1 : 0;
  return Math.floor(value.length / 4) * 3 - padding;
}

function checkSize(bytes: number, ctx: z.RefinementCtx, kind: string): void {
  if (bytes > MAX_CONFIG_BYTES) ctx.addIssue({ code: 'custom', path: ['data'], message: `${kind} data must be no more than ${MAX_CONFIG_BYTES} bytes in total, not ${bytes}` });
}

/**
 * A ConfigMap's fields, at the top level as in Kubernetes core/v1. `immutable` is not among
 * them: it would need the API to refuse updates, so it is reported as unsupported instead.
 */
export const configMapFieldsSchema = z
  .object({
    data: keyedMap(z.string()).optional(),
    binaryData: keyedMap(base64Value).optional(),
  })
  .superRefine((cm, ctx) => {
    let bytes = 0;
    for (const value of Object.values(cm.data ?? {})) bytes += Buffer.byteLength(value);
    for (const [key, value] of Object.entries(cm.binaryData ?? {})) {
      bytes += base64Length(value);
      if (cm.data && key in cm.data) ctx.addIssue({ code: 'custom', path: ['binaryData', key], message: `duplicate of key '${key}' in data` });
    }
    checkSize(bytes, ctx, 'ConfigMap');
  });

/** A Secret's fields. `stringData` is write-only: merged into `data` (base64) on write, as the API server does. */
export const secretFieldsSchema = z
  .object({
    data: keyedMap(base64Value).optional(),
    stringData: keyedMap(z.string()).optional(),
    type: z.string().min(1).default('Opaque'),
  })
  .superRefine((s, ctx) => {
    let bytes = 0;
    // stringData's values override data's, as on write.
    for (const [key, value] of Object.entries(s.data ?? {})) if (!(s.stringData && key in s.stringData)) bytes += base64Length(value);
    for (const value of Object.values(s.stringData ?? {})) bytes += Buffer.byteLength(value);
    checkSize(bytes, ctx, 'Secret');
    checkSecretType(s, ctx);
  });

/**
 * Kubernetes' ValidateSecret: the keys each well-known type requires, and for the two kinds of
 * registry credentials, a JSON object in them (what the device pulls images with).
 */
const REQUIRED_KEYS: Record<string, { keys: string[]; json?: boolean; anyOf?: boolean }> = {
  'kubernetes.io/dockerconfigjson': { keys: ['.dockerconfigjson'], json: true },
  'kubernetes.io/dockercfg': { keys: ['.dockercfg'], json: true },
  'kubernetes.io/tls': { keys: ['tls.crt', 'tls.key'] },
  'kubernetes.io/ssh-auth': { keys: ['ssh-privatekey'] },
  'kubernetes.io/basic-auth': { keys: ['username', 'password'], anyOf: true },
};

function checkSecretType(s: { type: string; data?: Record<string, string> | undefined; stringData?: Record<string, string> | undefined }, ctx: z.RefinementCtx): void {
  const rule = REQUIRED_KEYS[s.type];
  if (!rule) return;
  // stringData's value wins over data's, as on write.
  const valueOf = (key: string): string | undefined => s.stringData?.[key] ?? (s.data?.[key] !== undefined && isBase64(s.data[key]) ? Buffer.from(s.data[key], 'base64').toString('utf8') : undefined);
  const present = rule.keys.filter((key) => (valueOf(key) ?? '') !== '');
  if (rule.anyOf) {
    if (present.length === 0) ctx.addIssue({ code: 'custom', path: ['data'], message: `must have at least one of ${rule.keys.map((k) => `'${k}'`).join(' or ')} for type ${s.type}` });
    return;
  }
  for (const key of rule.keys) {
    const where = s.stringData?.[key] !== undefined ? 'stringData' : 'data';
    if (where === 'data' && s.data?.[key] !== undefined && !isBase64(s.data[key])) continue; // reported as not base64 already
    const value = valueOf(key);
    if (!value) {
      ctx.addIssue({ code: 'custom', path: [`data[${key}]`], message: `Required value: a Secret of type ${s.type} must have the key '${key}'` });
      continue;
    }
    if (!rule.json) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', path: [`${where}[${key}]`], message: `must be JSON: ${(err as Error).message}` });
      continue;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) ctx.addIssue({ code: 'custom', path: [`${where}[${key}]`], message: 'must be a JSON object' });
  }
}

export type ConfigMapFields = z.infer<typeof configMapFieldsSchema>;
export type SecretFields = z.infer<typeof secretFieldsSchema>;

/** Kubernetes' Secret write path: each stringData value overrides data's, base64-encoded; stringData is not stored. */
export function mergeStringData(body: Record<string, unknown>): Record<string, unknown> {
  const { stringData, ...rest } = body as SecretFields & Record<string, unknown>;
  if (!stringData || Object.keys(stringData).length === 0) return rest;
  const data = { ...(rest.data as Record<string, string> | undefined) };
  for (const [key, value] of Object.entries(stringData)) data[key] = Buffer.from(value, 'utf8').toString('base64');
  return { ...rest, data };
}
