import { describe, expect, it } from 'vitest';
import { validateAnnotations, validateEnvVarName, validatePortName } from '../../shared/labels/validation.js';
import { validateImageReference } from '../../shared/resources/image.js';
import { validateManifest, type ValidationResult } from '../../shared/resources/validate.js';

// Kubernetes' validation rules that Flotilla once let through (pkg/apis/core/validation and
// apps/validation): each refused on its field path, and its valid neighbour still accepted.

type Fields = Record<string, unknown>;

const container = (fields: Fields = {}): Fields => ({ name: 'app', image: 'nginx:1.27', ...fields });

function pod(spec: Fields = {}, metadata: Fields = {}): Fields {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', ...metadata }, spec: { containers: [container()], ...spec } };
}

function workload(kind: 'DaemonSet' | 'Deployment' | 'ReplicaSet', opts: { selector?: Fields; labels?: Record<string, string>; templateSpec?: Fields; spec?: Fields } = {}): Fields {
  return {
    apiVersion: 'apps/v1',
    kind,
    metadata: { name: 'w' },
    spec: {
      selector: opts.selector ?? { matchLabels: { app: 'w' } },
      template: { metadata: { labels: opts.labels ?? { app: 'w' } }, spec: { containers: [container()], ...opts.templateSpec } },
      ...opts.spec,
    },
  };
}

function secret(type: string, fields: Fields): Fields {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, type, ...fields };
}

function service(spec: Fields): Fields {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: 'svc' }, spec: { selector: { app: 'w' }, ...spec } };
}

function expectValid(result: ValidationResult): void {
  expect(result.errors).toEqual([]);
  expect(result.object).toBeDefined();
}

function expectRefused(result: ValidationResult, path: string, message: RegExp): void {
  expect(result.object).toBeUndefined();
  const at = result.errors.filter((e) => e.path === path);
  expect(at, JSON.stringify(result.errors)).not.toHaveLength(0);
  expect(at.map((e) => e.message).join('\n')).toMatch(message);
}

const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('annotations', () => {
  it('refuses keys and values over 256 KiB in total on metadata.annotations, and accepts 256 KiB exactly', () => {
    expectRefused(validateManifest(pod({}, { annotations: { a: 'x'.repeat(200 * 1024), b: 'y'.repeat(60 * 1024) } })), 'metadata.annotations', /at most 262144 bytes.*not 266242/);
    expectValid(validateManifest(pod({}, { annotations: { a: 'x'.repeat(256 * 1024 - 1) } })));
  });

  it('refuses an annotation key that is no qualified name, and accepts upper case as Kubernetes does', () => {
    expectRefused(validateManifest(pod({}, { annotations: { 'a b': 'x' } })), 'metadata.annotations.a b', /invalid annotation key 'a b'/);
    expectValid(validateManifest(pod({}, { annotations: { 'example.com/Owner': 'x', 'kubectl.kubernetes.io/last-applied-configuration': '{}' } })));
  });

  it('checks the annotations of a pod template too', () => {
    const ds = workload('DaemonSet');
    ((ds.spec as Fields).template as Fields).metadata = { labels: { app: 'w' }, annotations: { '/x': 'y' } };
    expectRefused(validateManifest(ds), 'spec.template.metadata.annotations./x', /prefix part must be non-empty/);
  });

  it('validateAnnotations counts bytes, not characters', () => {
    expect(validateAnnotations({ k: 'é'.repeat(131_072) })).toHaveLength(1);
    expect(validateAnnotations({ k: 'e'.repeat(131_072) })).toEqual([]);
  });
});

describe('__proto__ keys', () => {
  it('refuses a __proto__ key anywhere, rather than letting it vanish from a map', () => {
    const doc = JSON.parse('{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"__proto__":"x"}},"spec":{"containers":[{"name":"a","image":"b","resources":{"limits":{"__proto__":{"cpu":"1"}}}}]}}') as Fields;
    const result = validateManifest(doc);
    expect(result.object).toBeUndefined();
    expect(result.errors.map((e) => e.path).sort()).toEqual(['metadata.labels.__proto__', 'spec.containers[0].resources.limits.__proto__']);
  });
});

describe('environment variables', () => {
  it.each(['A=B', 'HAS SPACE', '1ST', ''])('refuses the env var name %j on its path', (name) => {
    expectRefused(validateManifest(pod({ containers: [container({ env: [{ name, value: 'x' }] })] })), 'spec.containers[0].env[0].name', name === '' ? /is required/ : /environment variable name/);
  });

  it.each(['MY_VAR', 'my.env-name', '_x', 'Camel9'])('accepts the env var name %j', (name) => {
    expectValid(validateManifest(pod({ containers: [container({ env: [{ name, value: 'x' }] })] })));
  });

  it('refuses an envFrom prefix that is no env var name', () => {
    expectRefused(validateManifest(pod({ containers: [container({ envFrom: [{ configMapRef: { name: 'cm' }, prefix: 'A=' }] })] })), 'spec.containers[0].envFrom[0].prefix', /environment variable name/);
    expectValid(validateManifest(pod({ containers: [container({ envFrom: [{ configMapRef: { name: 'cm' }, prefix: 'CFG_' }] })] })));
  });

  it('validateEnvVarName names the rule', () => {
    expect(validateEnvVarName('A=B')[0]).toMatch(/must not start with a digit/);
    expect(validateEnvVarName('PATH')).toEqual([]);
  });
});

describe('ports', () => {
  it('refuses the same hostPort twice in a pod, on the second one', () => {
    const spec = { containers: [container({ ports: [{ containerPort: 80, hostPort: 8080 }] }), container({ name: 'side', ports: [{ containerPort: 81, hostPort: 8080 }] })] };
    expectRefused(validateManifest(pod(spec)), 'spec.containers[1].ports[0].hostPort', /Duplicate value: '8080\/TCP'.*container 'app'/);
  });

  it('accepts one hostPort for TCP and UDP, and host ports in a template of another pod', () => {
    expectValid(validateManifest(pod({ containers: [container({ ports: [{ containerPort: 53, hostPort: 53 }, { containerPort: 53, hostPort: 53, protocol: 'UDP' }] })] })));
  });

  it('refuses two ports of one container with the same name, and accepts the name in two containers', () => {
    expectRefused(validateManifest(pod({ containers: [container({ ports: [{ name: 'http', containerPort: 80 }, { name: 'http', containerPort: 81 }] })] })), 'spec.containers[0].ports[1].name', /Duplicate value: 'http'/);
    expectValid(validateManifest(pod({ containers: [container({ ports: [{ name: 'http', containerPort: 80 }] }), container({ name: 'side', ports: [{ name: 'http', containerPort: 81 }] })] })));
  });

  it.each(['HTTP', 'web-server-port-1', '8080', 'a--b', '-a'])('refuses the port name %j', (name) => {
    expectRefused(validateManifest(pod({ containers: [container({ ports: [{ name, containerPort: 80 }] })] })), 'spec.containers[0].ports[0].name', /invalid port name/);
  });

  it('refuses with hostNetwork a hostPort other than the containerPort, and two containers on one port', () => {
    expectRefused(validateManifest(pod({ hostNetwork: true, containers: [container({ ports: [{ containerPort: 80, hostPort: 8080 }] })] })), 'spec.containers[0].ports[0].hostPort', /must match containerPort/);
    const two = { hostNetwork: true, containers: [container({ ports: [{ containerPort: 80 }] }), container({ name: 'side', ports: [{ containerPort: 80 }] })] };
    expectRefused(validateManifest(pod(two)), 'spec.containers[1].ports[0].containerPort', /Duplicate value: '80\/TCP'/);
  });

  it('validatePortName follows IANA_SVC_NAME', () => {
    expect(validatePortName('metrics')).toEqual([]);
    expect(validatePortName('123')).toContain('must contain at least one letter (a-z)');
  });
});

describe('resources', () => {
  it('refuses a request above its limit, on the request', () => {
    expectRefused(validateManifest(pod({ containers: [container({ resources: { requests: { cpu: '1500m' }, limits: { cpu: 1 } } })] })), 'spec.containers[0].resources.requests.cpu', /less than or equal to cpu limit of 1, not '1500m'/);
    expectRefused(validateManifest(pod({ containers: [container({ resources: { requests: { memory: '1G' }, limits: { memory: '512Mi' } } })] })), 'spec.containers[0].resources.requests.memory', /memory limit/);
  });

  it('accepts a request equal to its limit (in other units), or without a limit', () => {
    expectValid(validateManifest(pod({ containers: [container({ resources: { requests: { cpu: '1000m', memory: '1Gi' }, limits: { cpu: 1, memory: '1024Mi' } } })] })));
    expectValid(validateManifest(pod({ containers: [container({ resources: { requests: { cpu: 4 } } })] })));
  });

  it('refuses a quantity beyond int64, which would reach the engine as Infinity', () => {
    expectRefused(validateManifest(pod({ containers: [container({ resources: { limits: { cpu: '1e308' } } })] })), 'spec.containers[0].resources.limits.cpu', /no more than 9223372036854775807/);
    expectRefused(validateManifest(pod({ containers: [container({ resources: { limits: { memory: '8Ei' } } })] })), 'spec.containers[0].resources.limits.memory', /no more than/);
    expectValid(validateManifest(pod({ containers: [container({ resources: { limits: { memory: '7Ei' } } })] })));
  });

  it('refuses an unknown resource name without a domain, and accepts extended and hugepages resources', () => {
    expectRefused(validateManifest(pod({ containers: [container({ resources: { limits: { cpus: 1 } } })] })), 'spec.containers[0].resources.limits.cpus', /standard resource/);
    expectValid(validateManifest(pod({ containers: [container({ resources: { limits: { 'example.com/dongle': 1, 'hugepages-2Mi': '4Mi', 'ephemeral-storage': '1Gi', pids: 10 } } })] })));
  });
});

describe('images', () => {
  it.each([
    ['library/BusyBox:1', /lower case/],
    ['UPPER CASE:://nope', /invalid reference format/],
    [' nginx', /whitespace/],
    ['nginx:', /invalid reference format/],
    ['nginx@sha256:abc', /invalid reference format/],
    ['a'.repeat(600), /no more than 512/],
  ])('refuses the image %j on its path', (image, message) => {
    expectRefused(validateManifest(pod({ containers: [container({ image })] })), 'spec.containers[0].image', message);
  });

  it.each([
    'nginx',
    'nginx:1.27-alpine',
    'registry.example:5000/team/app:v1',
    '127.0.0.1:40123/flotilla/big:1',
    'localhost/app',
    'Registry.Example/app:1',
    '[::1]:5000/app:1',
    'ghcr.io/a_b/c__d/e-f.g:1',
    `busybox@sha256:${'a'.repeat(64)}`,
    `busybox:1@sha256:${'a'.repeat(64)}`,
  ])('accepts the image %j', (image) => {
    expect(validateImageReference(image)).toEqual([]);
  });

  it('refuses a repository name over 255 characters', () => {
    expect(validateImageReference(`${'a'.repeat(256)}:1`)).toEqual(['repository name must not be more than 255 characters']);
  });
});

describe('workingDir', () => {
  it('refuses a relative workingDir, which the engine refuses on the device', () => {
    expectRefused(validateManifest(pod({ containers: [container({ workingDir: 'srv' })] })), 'spec.containers[0].workingDir', /absolute path/);
    expectValid(validateManifest(pod({ containers: [container({ workingDir: '/srv' })] })));
  });
});

describe('volumes', () => {
  it("refuses a hostPath with a '..' element, and accepts one with '..' inside a name", () => {
    const spec = (path: string) => ({ volumes: [{ name: 'h', hostPath: { path } }] });
    expectRefused(validateManifest(pod(spec('/var/../etc'))), 'spec.volumes[0].hostPath.path', /must not contain '\.\.'/);
    expectRefused(validateManifest(pod(spec('/data/..'))), 'spec.volumes[0].hostPath.path', /must not contain '\.\.'/);
    expectValid(validateManifest(pod(spec('/data/..hidden/x..y'))));
  });

  it("refuses a ':' in a hostPath, mountPath or subPath (the bind syntax's separator), and a mount on '/'", () => {
    const spec = (path: string, mount: Fields) => ({ volumes: [{ name: 'h', hostPath: { path } }], containers: [container({ volumeMounts: [{ name: 'h', ...mount }] })] });
    expectRefused(validateManifest(pod(spec('/a:/b', { mountPath: '/m' }))), 'spec.volumes[0].hostPath.path', /must not contain ':'/);
    expectRefused(validateManifest(pod(spec('/a', { mountPath: '/m:rw' }))), 'spec.containers[0].volumeMounts[0].mountPath', /must not contain ':'/);
    expectRefused(validateManifest(pod(spec('/a', { mountPath: '/m', subPath: 'x:y' }))), 'spec.containers[0].volumeMounts[0].subPath', /must not contain ':'/);
    expectRefused(validateManifest(pod(spec('/a', { mountPath: '/' }))), 'spec.containers[0].volumeMounts[0].mountPath', /must not be '\/'/);
    expectValid(validateManifest(pod(spec('/a', { mountPath: '/m', subPath: 'x/y' }))));
  });

  it('refuses two mounts on one path in a container', () => {
    const spec = { volumes: [{ name: 'a', emptyDir: {} }, { name: 'b', emptyDir: {} }], containers: [container({ volumeMounts: [{ name: 'a', mountPath: '/d' }, { name: 'b', mountPath: '/d' }] })] };
    expectRefused(validateManifest(pod(spec)), 'spec.containers[0].volumeMounts[1].mountPath', /must be unique/);
  });
});

describe('workloads', () => {
  it('refuses a DaemonSet whose matchExpressions do not select its template, naming the requirement', () => {
    const ds = workload('DaemonSet', { selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['x', 'y'] }] } });
    expectRefused(validateManifest(ds), 'spec.template.metadata.labels', /selector does not match template labels \('app in \(x,y\)' does not hold\)/);
    expectRefused(validateManifest(workload('DaemonSet', { selector: { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] } })), 'spec.template.metadata.labels', /does not match/);
  });

  it('accepts matchExpressions that select the template', () => {
    expectValid(validateManifest(workload('DaemonSet', { selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['w', 'v'] }, { key: 'tier', operator: 'DoesNotExist' }] } })));
    expectValid(validateManifest(workload('Deployment', { selector: { matchLabels: { app: 'w' }, matchExpressions: [{ key: 'app', operator: 'Exists' }] } })));
  });

  it.each(['Deployment', 'ReplicaSet'] as const)('refuses a %s whose matchExpressions do not select its template', (kind) => {
    expectRefused(validateManifest(workload(kind, { selector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['w'] }] } })), 'spec.template.metadata.labels', /does not match/);
  });

  it('refuses a malformed matchExpression on its own path', () => {
    expectRefused(validateManifest(workload('DaemonSet', { selector: { matchLabels: { app: 'w' }, matchExpressions: [{ key: 'app', operator: 'In' }] } })), 'spec.selector.matchExpressions[0].values', /non-empty/);
    expectRefused(validateManifest(workload('DaemonSet', { selector: { matchLabels: { app: 'w' }, matchExpressions: [{ key: 'a b', operator: 'Exists' }] } })), 'spec.selector.matchExpressions[0].key', /./);
  });

  it.each(['DaemonSet', 'Deployment', 'ReplicaSet'] as const)('refuses a %s with restartPolicy other than Always', (kind) => {
    for (const restartPolicy of ['Never', 'OnFailure']) {
      expectRefused(validateManifest(workload(kind, { templateSpec: { restartPolicy } })), 'spec.template.spec.restartPolicy', /supported values: 'Always'/);
    }
    expectValid(validateManifest(workload(kind, { templateSpec: { restartPolicy: 'Always' } })));
  });

  it('refuses int32 overflows in replicas and seconds', () => {
    expectRefused(validateManifest(workload('Deployment', { spec: { replicas: 2 ** 31 } })), 'spec.replicas', /less than or equal to 2147483647/);
    expectValid(validateManifest(workload('Deployment', { spec: { replicas: 2 ** 31 - 1 } })));
  });

  it('refuses a DaemonSet rolling update that could never move, or over 100%', () => {
    expectRefused(validateManifest(workload('DaemonSet', { spec: { updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0 } } } })), 'spec.updateStrategy.rollingUpdate.maxUnavailable', /may not be 0/);
    expectRefused(validateManifest(workload('DaemonSet', { spec: { updateStrategy: { rollingUpdate: { maxUnavailable: '150%' } } } })), 'spec.updateStrategy.rollingUpdate.maxUnavailable', /100%/);
    expectValid(validateManifest(workload('DaemonSet', { spec: { updateStrategy: { rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } } } })));
  });

  it('refuses a CronJob name over 52 characters', () => {
    const cronJob = (name: string) => ({
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: { name },
      spec: { schedule: '*/5 * * * *', jobTemplate: { spec: { template: { spec: { restartPolicy: 'Never', containers: [container()] } } } } },
    });
    expectRefused(validateManifest(cronJob('c'.repeat(53))), 'metadata.name', /no more than 52 characters/);
    expectValid(validateManifest(cronJob('c'.repeat(52))));
  });
});

describe('Secrets of the well-known types', () => {
  it('refuses a dockerconfigjson Secret without its key, or with no JSON object in it', () => {
    expectRefused(validateManifest(secret('kubernetes.io/dockerconfigjson', { data: { other: b64('x') } })), 'data[.dockerconfigjson]', /Required value/);
    expectRefused(validateManifest(secret('kubernetes.io/dockerconfigjson', { data: { '.dockerconfigjson': b64('{not json') } })), 'data[.dockerconfigjson]', /must be JSON/);
    expectRefused(validateManifest(secret('kubernetes.io/dockerconfigjson', { stringData: { '.dockerconfigjson': '[1]' } })), 'stringData[.dockerconfigjson]', /JSON object/);
  });

  it('accepts a dockerconfigjson Secret in data or in stringData', () => {
    expectValid(validateManifest(secret('kubernetes.io/dockerconfigjson', { data: { '.dockerconfigjson': b64('{"auths":{}}') } })));
    expectValid(validateManifest(secret('kubernetes.io/dockerconfigjson', { stringData: { '.dockerconfigjson': '{"auths":{}}' } })));
  });

  it('refuses tls, ssh-auth, dockercfg and basic-auth Secrets without their keys', () => {
    expectRefused(validateManifest(secret('kubernetes.io/tls', { data: { 'tls.crt': b64('c') } })), 'data[tls.key]', /Required value/);
    expectRefused(validateManifest(secret('kubernetes.io/ssh-auth', {})), 'data[ssh-privatekey]', /Required value/);
    expectRefused(validateManifest(secret('kubernetes.io/dockercfg', {})), 'data[.dockercfg]', /Required value/);
    expectRefused(validateManifest(secret('kubernetes.io/basic-auth', { data: {} })), 'data', /at least one of 'username' or 'password'/);
    expectValid(validateManifest(secret('kubernetes.io/basic-auth', { stringData: { password: 'p' } })));
    expectValid(validateManifest(secret('example.com/custom', {})));
  });
});

describe('Services', () => {
  it('refuses unnamed ports when there are several, duplicate names and duplicate port numbers', () => {
    expectRefused(validateManifest(service({ ports: [{ port: 80 }, { name: 'b', port: 81 }] })), 'spec.ports[0].name', /Required value/);
    expectRefused(validateManifest(service({ ports: [{ name: 'a', port: 80 }, { name: 'a', port: 81 }] })), 'spec.ports[1].name', /Duplicate value: 'a'/);
    expectRefused(validateManifest(service({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80 }] })), 'spec.ports[1]', /Duplicate value: '80\/TCP'/);
    expectValid(validateManifest(service({ ports: [{ name: 'dns', port: 53 }, { name: 'dns-udp', port: 53, protocol: 'UDP' }] })));
    expectValid(validateManifest(service({ ports: [{ port: 80 }] })));
  });

  it('refuses a port name or a named targetPort outside their grammar', () => {
    expectRefused(validateManifest(service({ ports: [{ name: 'Web', port: 80 }] })), 'spec.ports[0].name', /invalid port name/);
    expectRefused(validateManifest(service({ ports: [{ port: 80, targetPort: 'not valid' }] })), 'spec.ports[0].targetPort', /invalid port name/);
    expectValid(validateManifest(service({ ports: [{ port: 80, targetPort: 'http' }] })));
  });
});

describe('scheduling fields', () => {
  it('refuses tolerations Kubernetes refuses, on the field', () => {
    const tolerating = (t: Fields) => pod({ tolerations: [t] });
    expectRefused(validateManifest(tolerating({ key: 'k', operator: 'Exists', value: 'v' })), 'spec.tolerations[0].value', /must be empty/);
    expectRefused(validateManifest(tolerating({ value: 'v' })), 'spec.tolerations[0].operator', /must be 'Exists' when key is empty/);
    expectRefused(validateManifest(tolerating({ key: 'k', effect: 'NoSchedule', tolerationSeconds: 5 })), 'spec.tolerations[0].effect', /NoExecute/);
    expectRefused(validateManifest(tolerating({ key: 'a b' })), 'spec.tolerations[0].key', /invalid key/);
    expectValid(validateManifest(tolerating({ operator: 'Exists' })));
    expectValid(validateManifest(tolerating({ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 60 })));
  });

  it('refuses node selector requirements with the wrong values for their operator', () => {
    const affinity = (expr: Fields) => pod({ affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [expr] }] } } } });
    const at = 'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]';
    expectRefused(validateManifest(affinity({ key: 'zone', operator: 'In' })), `${at}.values`, /must be specified/);
    expectRefused(validateManifest(affinity({ key: 'zone', operator: 'Exists', values: ['a'] })), `${at}.values`, /may not be specified/);
    expectRefused(validateManifest(affinity({ key: 'cores', operator: 'Gt', values: ['four'] })), `${at}.values`, /single integer/);
    expectRefused(validateManifest(affinity({ key: 'a b', operator: 'Exists' })), `${at}.key`, /invalid key/);
    expectValid(validateManifest(affinity({ key: 'cores', operator: 'Gt', values: ['4'] })));
  });

  it('refuses a topologyKey that is no label key, and a namespace that is no DNS label', () => {
    const spec = (term: Fields) => ({ affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'w' } }, topologyKey: 'kubernetes.io/hostname', ...term }] } } });
    const at = 'spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]';
    expectRefused(validateManifest(pod(spec({ topologyKey: 'not a key' }))), `${at}.topologyKey`, /invalid key/);
    expectRefused(validateManifest(pod(spec({ namespaces: ['Team_A'] }))), `${at}.namespaces[0]`, /invalid namespace/);
    expectValid(validateManifest(pod(spec({ namespaces: ['team-a'] }))));
  });

  it('refuses a Node with the same taint twice, or a taint key that is no label key', () => {
    const node = (taints: Fields[]) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'pi-1' }, spec: { taints } });
    expectRefused(validateManifest(node([{ key: 'k', effect: 'NoSchedule' }, { key: 'k', value: 'v', effect: 'NoSchedule' }])), 'spec.taints[1]', /unique by key and effect/);
    expectRefused(validateManifest(node([{ key: 'k k', effect: 'NoSchedule' }])), 'spec.taints[0].key', /invalid key/);
    expectValid(validateManifest(node([{ key: 'k', effect: 'NoSchedule' }, { key: 'k', effect: 'NoExecute' }])));
  });

  it('refuses an invalid nodeName and imagePullSecrets name', () => {
    expectRefused(validateManifest(pod({ nodeName: 'Pi_1' })), 'spec.nodeName', /invalid name/);
    expectRefused(validateManifest(pod({ imagePullSecrets: [{ name: 'Reg Cred' }] })), 'spec.imagePullSecrets[0].name', /invalid name/);
  });
});
