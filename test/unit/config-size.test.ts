import { describe, expect, it } from 'vitest';
import { hubConfigSchema } from '../../hub/config.js';
import { MAX_CONFIG_BYTES } from '../../shared/resources/config.js';
import { validateManifest } from '../../shared/resources/validate.js';

// Kubernetes' 1 MiB limit on a ConfigMap's or Secret's data, counted on the decoded values, and
// an API body limit that lets such an object through in base64 and JSON.

const secret = (fields: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, ...fields });
const configMap = (fields: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, ...fields });
const base64Of = (bytes: number) => Buffer.alloc(bytes, 7).toString('base64');

describe('the size of a ConfigMap or Secret', () => {
  it('accepts exactly 1 MiB of decoded data, whatever the keys and the base64 padding', () => {
    for (const split of [0, 1, 2]) {
      const data = { 'a-rather-long-key-name.bin': base64Of(MAX_CONFIG_BYTES - 1000 - split), 'b.bin': base64Of(1000 + split) };
      expect(validateManifest(secret({ data })).errors).toEqual([]);
    }
    expect(validateManifest(configMap({ data: { 'blob.txt': 'x'.repeat(MAX_CONFIG_BYTES - 10) }, binaryData: { 'b.bin': base64Of(10) } })).errors).toEqual([]);
  });

  it('refuses one byte more, naming data and the sizes', () => {
    const over = validateManifest(secret({ data: { blob: base64Of(MAX_CONFIG_BYTES + 1) } }));
    expect(over.errors).toEqual([{ path: 'data', message: `Secret data must be no more than ${MAX_CONFIG_BYTES} bytes in total, not ${MAX_CONFIG_BYTES + 1}` }]);
    const cm = validateManifest(configMap({ data: { a: 'é'.repeat(MAX_CONFIG_BYTES / 2), b: 'x' } }));
    expect(cm.errors.map((e) => e.path)).toEqual(['data']);
  });

  it('counts a stringData value once, in place of the data value it overrides', () => {
    const half = MAX_CONFIG_BYTES / 2;
    expect(validateManifest(secret({ data: { k: base64Of(half) }, stringData: { k: 'x'.repeat(half + 100) } })).errors).toEqual([]);
    expect(validateManifest(secret({ data: { k: base64Of(half) }, stringData: { j: 'x'.repeat(half + 100) } })).errors.map((e) => e.path)).toEqual(['data']);
  });
});

describe('the API body limit', () => {
  it('defaults to 3 MiB, enough for a Secret of 1 MiB of data in base64 and JSON', () => {
    const limit = hubConfigSchema.parse({}).bodyLimitBytes;
    expect(limit).toBe(3 * 1024 * 1024);
    const body = JSON.stringify(secret({ data: { blob: base64Of(MAX_CONFIG_BYTES) } }));
    expect(Buffer.byteLength(body)).toBeLessThan(limit);
  });
});
