import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseManifests } from '../../shared/resources/manifest.js';
import { describe as describeObject } from '../../hub/cli/describe.js';
import { formatObjects } from '../../hub/cli/print.js';
import { MAX_CONFIG_BYTES } from '../../shared/resources/config.js';
import { validateManifest, type ValidationResult } from '../../shared/resources/validate.js';

function configMap(fields: Record<string, unknown>): unknown {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'app' }, ...fields };
}

function secret(fields: Record<string, unknown>): unknown {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds' }, ...fields };
}

function pod(spec: Record<string, unknown>, container: Record<string, unknown> = {}): unknown {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'app', image: 'busybox:1', ...container }], ...spec } };
}

function errorPaths(result: ValidationResult): string[] {
  return result.errors.map((e) => e.path);
}

describe('ConfigMap and Secret manifests', () => {
  it('accepts a ConfigMap with data and binaryData, kept at the top level', () => {
    const result = validateManifest(configMap({ data: { 'app.conf': 'a=1', GREETING: 'hi' }, binaryData: { 'logo.png': Buffer.from([1, 2, 3]).toString('base64') } }));
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
    expect(result.object).toMatchObject({ kind: 'ConfigMap', data: { 'app.conf': 'a=1' }, binaryData: { 'logo.png': 'AQID' } });
    expect(result.object).not.toHaveProperty('spec');
  });

  it('refuses keys that are not config keys, naming the key', () => {
    const result = validateManifest(configMap({ data: { 'bad key': 'x', '..hidden': 'y' } }));
    expect(errorPaths(result).sort()).toEqual(['data...hidden', 'data.bad key']);
    expect(result.errors[0]!.message).toMatch(/invalid key/);
  });

  it('refuses binaryData and Secret data that are not base64, and a key in both data and binaryData', () => {
    expect(errorPaths(validateManifest(configMap({ binaryData: { k: 'not base64!' } })))).toEqual(['binaryData.k']);
    expect(errorPaths(validateManifest(configMap({ data: { k: 'x' }, binaryData: { k: 'eA==' } })))).toEqual(['binaryData.k']);
    const bad = validateManifest(secret({ data: { password: 'plain text' } }));
    expect(bad.errors).toEqual([{ path: 'data.password', message: 'must be base64-encoded' }]);
  });

  it('refuses more than 1 MiB of data in total', () => {
    const big = 'x'.repeat(MAX_CONFIG_BYTES / 2 + 1);
    expect(errorPaths(validateManifest(configMap({ data: { a: big, b: big } })))).toEqual(['data']);
    expect(errorPaths(validateManifest(secret({ stringData: { a: big, b: big } })))).toEqual(['data']);
  });

  it('merges stringData into data as base64, stores no stringData, and defaults type to Opaque', () => {
    const result = validateManifest(secret({ data: { user: Buffer.from('old').toString('base64'), keep: 'eA==' }, stringData: { user: 'admin' } }));
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
    expect(result.object).toMatchObject({ type: 'Opaque', data: { user: Buffer.from('admin').toString('base64'), keep: 'eA==' } });
    expect(result.object).not.toHaveProperty('stringData');
  });

  it('reports immutable as unsupported rather than ignoring it silently', () => {
    expect(validateManifest(configMap({ data: { a: 'b' }, immutable: true })).warnings).toEqual(['immutable: unsupported field, ignored']);
  });

  it('prints key counts and never a Secret value', () => {
    const now = new Date().toISOString();
    const cm = { kind: 'ConfigMap', metadata: { name: 'app', creationTimestamp: now }, data: { a: '1', b: '2' }, binaryData: { c: 'eA==' } };
    expect(formatObjects('ConfigMap', [cm], 'table')).toMatch(/^NAME\s+DATA\s+AGE\napp\s+3\s+\d+s$/);
    const s = { kind: 'Secret', metadata: { name: 'creds', creationTimestamp: now }, type: 'Opaque', data: { password: 'c2VjcmV0' } };
    const table = formatObjects('Secret', [s], 'wide');
    expect(table).toMatch(/^NAME\s+TYPE\s+DATA\s+AGE\ncreds\s+Opaque\s+1\s+\d+s$/);
    expect(table).not.toContain('c2VjcmV0');
  });

  it('describes a ConfigMap with its values, a Secret with only the sizes of its values', () => {
    const metadata = { name: 'x', uid: 'u', creationTimestamp: new Date().toISOString() };
    const cmText = describeObject({ kind: 'ConfigMap', metadata, data: { greeting: 'hello' } }, []);
    expect(cmText).toContain('greeting:\n----\nhello');
    const secretText = describeObject({ kind: 'Secret', metadata, type: 'Opaque', data: { password: 'c2VjcmV0' } }, []);
    expect(secretText).toContain('password:  6 bytes');
    expect(secretText).not.toContain('c2VjcmV0');
    expect(secretText).not.toContain('secret\n');
  });
});

describe('pod spec: env from ConfigMaps and Secrets, volumes, securityContext', () => {
  it('accepts the Kubernetes shapes without warnings', () => {
    const result = validateManifest(
      pod(
        {
          volumes: [
            { name: 'cfg', configMap: { name: 'app', items: [{ key: 'a', path: 'conf/a' }], optional: true } },
            { name: 'creds', secret: { secretName: 'creds' } },
            { name: 'scratch', emptyDir: {} },
            { name: 'dev', hostPath: { path: '/dev/ttyUSB0', type: 'CharDevice' } },
          ],
        },
        {
          env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: 'app', key: 'a' } } }, { name: 'B', valueFrom: { secretKeyRef: { name: 'creds', key: 'b', optional: true } } }],
          envFrom: [{ configMapRef: { name: 'app' }, prefix: 'APP_' }, { secretRef: { name: 'creds' } }],
          volumeMounts: [{ name: 'cfg', mountPath: '/etc/app', readOnly: true }, { name: 'scratch', mountPath: '/tmp/work', subPath: 'x' }],
          securityContext: { privileged: false, runAsUser: 1000, runAsGroup: 1000, readOnlyRootFilesystem: true, capabilities: { add: ['NET_ADMIN'], drop: ['ALL'] } },
        },
      ),
    );
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
  });

  it('warns that an emptyDir in memory is not supported', () => {
    const result = validateManifest(pod({ volumes: [{ name: 'scratch', emptyDir: { medium: 'Memory' } }] }));
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual(['spec.volumes[0].emptyDir.medium: unsupported field, ignored']);
  });

  it('refuses a mount of an undeclared volume, naming the path', () => {
    const result = validateManifest(pod({ volumes: [{ name: 'scratch', emptyDir: {} }] }, { volumeMounts: [{ name: 'scratch', mountPath: '/a' }, { name: 'missing', mountPath: '/b' }] }));
    expect(result.errors).toEqual([{ path: 'spec.containers[0].volumeMounts[1].name', message: "volume 'missing' is not declared in spec.volumes" }]);
  });

  it('refuses item paths that could reach outside the volume or clash with its ..data link', () => {
    const result = validateManifest(pod({ volumes: [{ name: 'cfg', configMap: { name: 'app', items: [{ key: 'a', path: '..data' }, { key: 'b', path: 'x/../../etc' }, { key: 'c', path: '/abs' }] } }] }));
    expect(errorPaths(result)).toEqual(['spec.volumes[0].configMap.items[0].path', 'spec.volumes[0].configMap.items[1].path', 'spec.volumes[0].configMap.items[2].path']);
  });

  it('refuses ambiguous or malformed sources, naming each field', () => {
    const result = validateManifest(
      pod(
        { volumes: [{ name: 'two', emptyDir: {}, hostPath: { path: '/x' } }, { name: 'rel', hostPath: { path: 'relative' } }, { name: 'rel', emptyDir: {} }] },
        {
          env: [{ name: 'A', value: 'x', valueFrom: { configMapKeyRef: { name: 'app', key: 'a' } } }, { name: 'B', valueFrom: {} }],
          envFrom: [{ prefix: 'X_' }],
          volumeMounts: [{ name: 'two', mountPath: 'relative', subPath: '../escape' }],
        },
      ),
    );
    expect(errorPaths(result).sort()).toEqual(
      [
        'spec.containers[0].env[0].valueFrom',
        'spec.containers[0].env[1].valueFrom',
        'spec.containers[0].envFrom[0]',
        'spec.containers[0].volumeMounts[0].mountPath',
        'spec.containers[0].volumeMounts[0].subPath',
        'spec.volumes[0]',
        'spec.volumes[1].hostPath.path',
        'spec.volumes[2].name',
      ].sort(),
    );
  });
});

describe('examples/config-and-secret.yaml', () => {
  it('is valid, with no warnings', () => {
    const file = join(import.meta.dirname, '..', '..', 'examples', 'config-and-secret.yaml');
    const docs = parseManifests(readFileSync(file, 'utf8'), file);
    expect(docs.map((d) => (d.value as { kind: string }).kind)).toEqual(['ConfigMap', 'Secret', 'DaemonSet']);
    for (const doc of docs) {
      const result = validateManifest(doc.value);
      expect(result.errors, doc.source).toEqual([]);
      expect(result.warnings, doc.source).toEqual([]);
    }
  });
});
