import { describe, expect, it } from 'vitest';
import { validateManifest, type ValidationResult } from '../../shared/resources/validate.js';

// The downward API and Service links as the hub validates them: Kubernetes' field paths,
// resource names and divisors, and volume item paths, each refused naming the field.

type Fields = Record<string, unknown>;

function pod(spec: Fields): Fields {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web' }, spec: { containers: [{ name: 'app', image: 'nginx:1.27' }], ...spec } };
}

function withEnv(env: Fields[]): Fields {
  return pod({ containers: [{ name: 'app', image: 'nginx:1.27', env }] });
}

function withVolume(downwardAPI: Fields): Fields {
  return pod({ volumes: [{ name: 'info', downwardAPI }], containers: [{ name: 'app', image: 'nginx:1.27', volumeMounts: [{ name: 'info', mountPath: '/etc/podinfo' }] }] });
}

function errors(result: ValidationResult): string[] {
  return result.errors.map((e) => `${e.path}: ${e.message}`);
}

describe('downward API validation', () => {
  it('accepts every supported env field, resource and divisor, and the pod fields, with no warning', () => {
    const paths = ['metadata.name', 'metadata.namespace', 'metadata.uid', "metadata.labels['app']", "metadata.annotations['example.com/x']", 'spec.nodeName', 'spec.serviceAccountName', 'status.podIP', 'status.podIPs', 'status.hostIP', 'status.hostIPs'];
    const env = [
      ...paths.map((fieldPath, i) => ({ name: `F${i}`, valueFrom: { fieldRef: { fieldPath, ...(i === 0 ? { apiVersion: 'v1' } : {}) } } })),
      { name: 'CPU', valueFrom: { resourceFieldRef: { resource: 'limits.cpu', divisor: '1m' } } },
      { name: 'MEM', valueFrom: { resourceFieldRef: { containerName: 'app', resource: 'requests.memory', divisor: '1Mi' } } },
      { name: 'DISK', valueFrom: { resourceFieldRef: { resource: 'limits.ephemeral-storage', divisor: 1 } } },
    ];
    const result = validateManifest(pod({ enableServiceLinks: false, serviceAccountName: 'runner', containers: [{ name: 'app', image: 'nginx:1.27', env }] }));
    expect(errors(result)).toEqual([]);
    expect(result.warnings).toEqual([]);
  });

  it('refuses an unsupported field path, naming the field and the supported values', () => {
    const result = validateManifest(withEnv([{ name: 'A', value: 'a' }, { name: 'B', value: 'b' }, { name: 'C', valueFrom: { fieldRef: { fieldPath: 'status.foo' } } }]));
    expect(errors(result)).toHaveLength(1);
    expect(errors(result)[0]).toMatch(/^spec\.containers\[0\]\.env\[2\]\.valueFrom\.fieldRef\.fieldPath: Unsupported value: "status\.foo": supported values: "metadata\.name", "metadata\.namespace", /);
  });

  it('refuses a whole-map field in env (allowed only in a volume) and a bad label key', () => {
    expect(errors(validateManifest(withEnv([{ name: 'L', valueFrom: { fieldRef: { fieldPath: 'metadata.labels' } } }])))[0]).toMatch(/^spec\.containers\[0\]\.env\[0\]\.valueFrom\.fieldRef\.fieldPath: Unsupported value: "metadata\.labels"/);
    expect(errors(validateManifest(withEnv([{ name: 'L', valueFrom: { fieldRef: { fieldPath: "metadata.labels['bad key!']" } } }])))[0]).toMatch(/^spec\.containers\[0\]\.env\[0\]\.valueFrom\.fieldRef\.fieldPath: invalid key 'bad key!'/);
  });

  it('refuses a bad resource, divisor or container, and more than one source', () => {
    const env = [
      { name: 'A', valueFrom: { resourceFieldRef: { resource: 'limits.gpu' } } },
      { name: 'B', valueFrom: { resourceFieldRef: { resource: 'limits.cpu', divisor: '2' } } },
      { name: 'C', valueFrom: { resourceFieldRef: { resource: 'limits.memory', divisor: '1m' } } },
      { name: 'D', valueFrom: { resourceFieldRef: { containerName: 'ghost', resource: 'limits.memory' } } },
      { name: 'E', valueFrom: { fieldRef: { fieldPath: 'metadata.name' }, configMapKeyRef: { name: 'c', key: 'k' } } },
    ];
    expect(errors(validateManifest(withEnv(env)))).toEqual([
      'spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: Unsupported value: "limits.gpu": supported values: "limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage"',
      'spec.containers[0].env[1].valueFrom.resourceFieldRef.divisor: Invalid value: "2": only divisor\'s values 1m, 1 are supported with the cpu resource',
      'spec.containers[0].env[2].valueFrom.resourceFieldRef.divisor: Invalid value: "1m": only divisor\'s values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource',
      'spec.containers[0].env[4].valueFrom: must have exactly one of configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef',
      'spec.containers[0].env[3].valueFrom.resourceFieldRef.containerName: Not found: "ghost": no container of this name in the pod',
    ]);
  });

  it('accepts a downwardAPI volume with whole maps, one key, resources and modes', () => {
    const result = validateManifest(
      withVolume({
        defaultMode: 0o640,
        items: [
          { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
          { path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } },
          { path: 'sub/name', fieldRef: { fieldPath: 'metadata.name' }, mode: 0o600 },
          { path: 'cpu', resourceFieldRef: { containerName: 'app', resource: 'limits.cpu', divisor: '1m' } },
        ],
      }),
    );
    expect(errors(result)).toEqual([]);
    expect(result.warnings).toEqual([]);
  });

  it('refuses a volume item that climbs out, is absolute, names a node field or leaves out its container', () => {
    const result = validateManifest(
      withVolume({
        items: [
          { path: '../escape', fieldRef: { fieldPath: 'metadata.name' } },
          { path: '/abs', fieldRef: { fieldPath: 'metadata.name' } },
          { path: 'ip', fieldRef: { fieldPath: 'status.podIP' } },
          { path: 'cpu', resourceFieldRef: { resource: 'limits.cpu' } },
          { path: 'both', fieldRef: { fieldPath: 'metadata.name' }, resourceFieldRef: { containerName: 'app', resource: 'limits.cpu' } },
        ],
      }),
    );
    const at = 'spec.volumes[0].downwardAPI.items';
    expect(errors(result)).toEqual([
      `${at}[0].path: must not contain '..'`,
      `${at}[1].path: must be a relative path`,
      expect.stringMatching(new RegExp(`^${at.replace(/[.[\]]/g, '\\$&')}\\[2\\]\\.fieldRef\\.fieldPath: Unsupported value: "status\\.podIP": supported values: "metadata\\.name", "metadata\\.namespace", "metadata\\.uid", "metadata\\.labels", "metadata\\.annotations"`)),
      `${at}[3].resourceFieldRef.containerName: Required value`,
      `${at}[4]: must have exactly one of fieldRef or resourceFieldRef`,
    ]);
  });

  it('refuses a projected volume (not supported), naming the volume', () => {
    const result = validateManifest(pod({ volumes: [{ name: 'p', projected: { sources: [] } }] }));
    expect(errors(result)).toEqual(['spec.volumes[0]: must have exactly one of emptyDir, hostPath, configMap, secret or downwardAPI']);
  });
});
