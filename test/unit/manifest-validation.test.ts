import { describe, expect, it } from 'vitest';
import { ManifestSyntaxError, parseManifests } from '../../shared/resources/manifest.js';
import { validateManifest, type ValidationResult } from '../../shared/resources/validate.js';

// ---------------------------------------------------------------------------------------------
// Builders: a valid manifest of each kind, with the one field a test is about overridden.

type Fields = Record<string, unknown>;

function container(fields: Fields = {}): Fields {
  return { name: 'app', image: 'nginx:1.27', ...fields };
}

function podManifest(opts: { apiVersion?: string; name?: string; namespace?: string; labels?: Fields; metadata?: Fields; container?: Fields; containers?: Fields[]; spec?: Fields; top?: Fields } = {}): Fields {
  return {
    apiVersion: opts.apiVersion ?? 'flotilla/v1',
    kind: 'Pod',
    metadata: {
      name: opts.name ?? 'web',
      ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
      ...(opts.labels ? { labels: opts.labels } : {}),
      ...opts.metadata,
    },
    spec: { containers: opts.containers ?? [container(opts.container)], ...opts.spec },
    ...opts.top,
  };
}

function daemonSetManifest(opts: { apiVersion?: string; selector?: Fields; templateLabels?: Record<string, string>; container?: Fields; spec?: Fields } = {}): Fields {
  return {
    apiVersion: opts.apiVersion ?? 'flotilla/v1',
    kind: 'DaemonSet',
    metadata: { name: 'sensor-reader', namespace: 'default' },
    spec: {
      selector: opts.selector ?? { matchLabels: { app: 'sensor-reader' } },
      template: {
        metadata: { labels: opts.templateLabels ?? { app: 'sensor-reader' } },
        spec: { nodeSelector: { fleet: 'sensors' }, containers: [container({ name: 'reader', ...opts.container })] },
      },
      ...opts.spec,
    },
  };
}

function namespaceManifest(opts: { apiVersion?: string; name?: string; metadata?: Fields } = {}): Fields {
  return { apiVersion: opts.apiVersion ?? 'flotilla/v1', kind: 'Namespace', metadata: { name: opts.name ?? 'team-a', ...opts.metadata } };
}

function nodeManifest(opts: { apiVersion?: string; name?: string; metadata?: Fields; spec?: Fields } = {}): Fields {
  return { apiVersion: opts.apiVersion ?? 'flotilla/v1', kind: 'Node', metadata: { name: opts.name ?? 'pi-01', ...opts.metadata }, spec: opts.spec ?? {} };
}

function eventManifest(opts: { apiVersion?: string; fields?: Fields } = {}): Fields {
  return {
    apiVersion: opts.apiVersion ?? 'flotilla/v1',
    kind: 'Event',
    metadata: { name: 'web.1', namespace: 'default' },
    involvedObject: { kind: 'Pod', name: 'web', namespace: 'default' },
    reason: 'Scheduled',
    message: 'Successfully assigned default/web to pi-01',
    type: 'Normal',
    ...opts.fields,
  };
}

function expectValid(result: ValidationResult): NonNullable<ValidationResult['object']> {
  expect(result.errors).toEqual([]);
  expect(result.object).toBeDefined();
  return result.object!;
}

/** The result has no object and an error on exactly `path` whose message matches. */
function expectFieldError(result: ValidationResult, path: string, message: string | RegExp): void {
  expect(result.object).toBeUndefined();
  const atPath = result.errors.filter((e) => e.path === path);
  expect(atPath, `errors: ${JSON.stringify(result.errors)}`).not.toHaveLength(0);
  expect(atPath.map((e) => e.message).join('\n')).toMatch(message);
}

// ---------------------------------------------------------------------------------------------

describe('validateManifest: valid manifests', () => {
  it.each([
    ['flotilla/v1', 'flotilla/v1'],
    ['v1', 'flotilla/v1'],
  ])('accepts a Pod with apiVersion %s and stores it as %s', (apiVersion, stored) => {
    const object = expectValid(validateManifest(podManifest({ apiVersion, namespace: 'default', labels: { app: 'web' } })));
    expect(object).toEqual({
      apiVersion: stored,
      kind: 'Pod',
      metadata: { name: 'web', namespace: 'default', labels: { app: 'web' } },
      spec: { containers: [{ name: 'app', image: 'nginx:1.27' }] },
    });
  });

  it('accepts a Pod using every supported container field and keeps them all', () => {
    const full = container({
      command: ['/bin/sh'],
      args: ['-c', 'sleep 1'],
      workingDir: '/srv',
      env: [{ name: 'MODE', value: 'edge' }],
      // With hostNetwork a host port is its container port, and requests stay within limits (as Kubernetes requires).
      ports: [{ name: 'http', containerPort: 8080, hostPort: 8080, protocol: 'TCP' }],
      imagePullPolicy: 'IfNotPresent',
      resources: { limits: { cpu: '250m', memory: '64Mi' }, requests: { cpu: 0.1, memory: '32Mi' } },
    });
    const result = validateManifest(podManifest({ containers: [full], spec: { restartPolicy: 'OnFailure', hostNetwork: true, terminationGracePeriodSeconds: 0, nodeSelector: { fleet: 'sensors' } } }));
    const object = expectValid(result);
    expect(result.warnings).toEqual([]);
    expect((object.spec as { containers: unknown[] }).containers[0]).toEqual(full);
    expect(object.spec).toMatchObject({ restartPolicy: 'OnFailure', hostNetwork: true, terminationGracePeriodSeconds: 0, nodeSelector: { fleet: 'sensors' } });
  });

  it.each(['flotilla/v1', 'apps/v1'])('accepts a DaemonSet with apiVersion %s', (apiVersion) => {
    const result = validateManifest(daemonSetManifest({ apiVersion, spec: { minReadySeconds: 10, updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } } } }));
    const object = expectValid(result);
    expect(result.warnings).toEqual([]);
    expect(object.apiVersion).toBe('flotilla/v1');
    expect(object.kind).toBe('DaemonSet');
    expect(object.spec).toMatchObject({ selector: { matchLabels: { app: 'sensor-reader' } }, minReadySeconds: 10 });
  });

  it.each(['flotilla/v1', 'v1'])('accepts a Namespace with apiVersion %s, with or without spec', (apiVersion) => {
    // Labelled with its own name, as Kubernetes labels every namespace.
    expect(expectValid(validateManifest(namespaceManifest({ apiVersion }))).metadata).toEqual({ name: 'team-a', labels: { 'kubernetes.io/metadata.name': 'team-a' } });
    const withSpec = expectValid(validateManifest({ ...namespaceManifest({ apiVersion }), spec: { finalizers: ['kubernetes'] } }));
    expect(withSpec.spec).toEqual({ finalizers: ['kubernetes'] });
  });

  it.each(['flotilla/v1', 'v1'])('accepts a Node with apiVersion %s', (apiVersion) => {
    const spec = { unschedulable: true, taints: [{ key: 'dedicated', value: 'cam', effect: 'NoSchedule' }] };
    const object = expectValid(validateManifest(nodeManifest({ apiVersion, metadata: { labels: { 'example.com/arch': 'arm64' } }, spec })));
    expect(object).toEqual({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'pi-01', labels: { 'example.com/arch': 'arm64' } }, spec });
  });

  it.each(['flotilla/v1', 'v1', 'events.k8s.io/v1'])('accepts an Event with apiVersion %s, its fields at the top level', (apiVersion) => {
    const object = expectValid(validateManifest(eventManifest({ apiVersion })));
    expect(object).toMatchObject({ kind: 'Event', reason: 'Scheduled', type: 'Normal', involvedObject: { kind: 'Pod', name: 'web' } });
    expect(object.spec).toBeUndefined();
  });

  it('accepts a name of 253 characters made of dot-separated labels for a Pod', () => {
    const name = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    expect(name).toHaveLength(253);
    expect(expectValid(validateManifest(podManifest({ name }))).metadata.name).toBe(name);
  });

  it('accepts the store-owned metadata of `get -o yaml` output and a status, without warnings', () => {
    const result = validateManifest(
      podManifest({ metadata: { uid: 'abc', resourceVersion: '12', generation: 3, creationTimestamp: '2024-01-01T00:00:00Z' }, top: { status: { phase: 'Running' } } }),
    );
    const object = expectValid(result);
    expect(result.warnings).toEqual([]);
    expect(object.metadata).toEqual({ name: 'web', resourceVersion: '12' });
    expect(object.status).toBeUndefined();
  });
});

describe('validateManifest: kind and apiVersion', () => {
  it('refuses an unknown kind on path `kind`, listing the known kinds', () => {
    const result = validateManifest({ apiVersion: 'flotilla/v1', kind: 'Gadget', metadata: { name: 'x' } });
    expectFieldError(result, 'kind', "unknown kind 'Gadget'");
    expect(result.errors[0]!.message).toMatch(/known kinds: .*Namespace.*Node.*Pod.*DaemonSet.*Event/);
  });

  it('refuses a kind spelled in another case, or by its plural', () => {
    expectFieldError(validateManifest({ ...podManifest(), kind: 'pod' }), 'kind', "unknown kind 'pod'");
    expectFieldError(validateManifest({ ...podManifest(), kind: 'pods' }), 'kind', "unknown kind 'pods'");
  });

  it('requires a kind', () => {
    const { kind: _kind, ...noKind } = podManifest();
    expectFieldError(validateManifest(noKind), 'kind', 'is required');
  });

  it('refuses a document that is not an object', () => {
    expectFieldError(validateManifest(['a']), '(root)', /must be an object/);
    expectFieldError(validateManifest('kind: Pod'), '(root)', /must be an object/);
  });

  it.each([
    ['Pod', podManifest({ apiVersion: 'apps/v1' }), "'apps/v1' is not accepted for Pod (use flotilla/v1 or v1)"],
    ['DaemonSet', daemonSetManifest({ apiVersion: 'v1' }), "'v1' is not accepted for DaemonSet (use flotilla/v1 or apps/v1)"],
    ['Namespace', namespaceManifest({ apiVersion: 'flotilla/v2' }), "'flotilla/v2' is not accepted for Namespace"],
  ])('refuses a wrong apiVersion for a %s', (_kind, doc, message) => {
    expectFieldError(validateManifest(doc), 'apiVersion', message);
  });

  it('requires an apiVersion', () => {
    const { apiVersion: _apiVersion, ...noVersion } = podManifest();
    expectFieldError(validateManifest(noVersion), 'apiVersion', 'is required');
  });
});

describe('validateManifest: metadata', () => {
  it('requires metadata with a name', () => {
    const { metadata: _metadata, ...noMetadata } = podManifest();
    expectFieldError(validateManifest(noMetadata), 'metadata.name', 'is required');
    expectFieldError(validateManifest({ ...podManifest(), metadata: {} }), 'metadata.name', 'is required');
  });

  it.each([
    ['upper case', 'Web'],
    ['an underscore', 'web_1'],
    ['a trailing dash', 'web-'],
    ['more than 253 characters', 'a'.repeat(254)],
  ])('refuses a Pod name with %s on metadata.name', (_what, name) => {
    expectFieldError(validateManifest(podManifest({ name })), 'metadata.name', `invalid name '${name}'`);
  });

  it('names the length limit when a name is too long', () => {
    expectFieldError(validateManifest(podManifest({ name: 'a'.repeat(254) })), 'metadata.name', 'must be no more than 253 characters');
    expectFieldError(validateManifest(namespaceManifest({ name: 'a'.repeat(64) })), 'metadata.name', 'must be no more than 63 characters');
  });

  it('refuses dots in a Namespace name (a DNS label, not a subdomain)', () => {
    expectFieldError(validateManifest(namespaceManifest({ name: 'team.a' })), 'metadata.name', 'must not contain dots');
  });

  it('refuses an invalid namespace on a namespaced object', () => {
    expectFieldError(validateManifest(podManifest({ namespace: 'Team_A' })), 'metadata.namespace', "invalid namespace 'Team_A'");
  });

  it('refuses an invalid label key on metadata.labels.<key>', () => {
    const result = validateManifest(podManifest({ labels: { 'bad key': 'x' } }));
    expectFieldError(result, 'metadata.labels.bad key', "invalid label key 'bad key'");
  });

  it('refuses a label key with an invalid prefix', () => {
    expectFieldError(validateManifest(podManifest({ labels: { 'Example.com/app': 'x' } })), 'metadata.labels.Example.com/app', 'prefix part');
  });

  it('refuses an invalid label value on metadata.labels.<key>', () => {
    expectFieldError(validateManifest(podManifest({ labels: { app: 'not ok!' } })), 'metadata.labels.app', "invalid label value 'not ok!'");
    expectFieldError(validateManifest(podManifest({ labels: { app: 'v'.repeat(64) } })), 'metadata.labels.app', 'must be no more than 63 characters');
  });

  it('refuses a non-string label value on metadata.labels.<key>', () => {
    expectFieldError(validateManifest(podManifest({ labels: { version: 2 } })), 'metadata.labels.version', /string/);
  });

  it('checks the labels of a pod template and the selector of a DaemonSet too', () => {
    expectFieldError(validateManifest(daemonSetManifest({ templateLabels: { app: 'sensor reader' } })), 'spec.template.metadata.labels.app', 'invalid label value');
    expectFieldError(validateManifest(daemonSetManifest({ selector: { matchLabels: { '-app': 'x' } } })), 'spec.selector.matchLabels.-app', 'invalid label key');
  });

  it('warns that a namespace on a cluster-scoped kind is ignored, and drops it', () => {
    const result = validateManifest(nodeManifest({ metadata: { namespace: 'default' } }));
    const object = expectValid(result);
    expect(result.warnings).toEqual(['metadata.namespace: ignored, Node is not namespaced']);
    expect(object.metadata).toEqual({ name: 'pi-01' });

    const ns = validateManifest(namespaceManifest({ metadata: { namespace: 'default' } }));
    expect(ns.warnings).toEqual(['metadata.namespace: ignored, Namespace is not namespaced']);
    expect(expectValid(ns).metadata.namespace).toBeUndefined();
  });
});

describe('validateManifest: spec fields', () => {
  it('requires the spec of a Pod', () => {
    const { spec: _spec, ...noSpec } = podManifest();
    expectFieldError(validateManifest(noSpec), 'spec', 'is required');
  });

  it('requires at least one container', () => {
    expectFieldError(validateManifest(podManifest({ containers: [] })), 'spec.containers', 'must have at least one container');
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['blank', '   '],
  ])('refuses a %s image on spec.containers[0].image', (_what, image) => {
    expectFieldError(validateManifest(podManifest({ container: { image } })), 'spec.containers[0].image', 'is required');
  });

  it('names the index of the container with the missing image', () => {
    const result = validateManifest(podManifest({ containers: [container(), container({ name: 'sidecar', image: '' })] }));
    expectFieldError(result, 'spec.containers[1].image', 'is required');
    expect(result.errors.map((e) => e.path)).toEqual(['spec.containers[1].image']);
  });

  it('refuses an invalid container name', () => {
    expectFieldError(validateManifest(podManifest({ container: { name: 'App' } })), 'spec.containers[0].name', "invalid name 'App'");
  });

  it.each([
    [-1, 'must be between 1 and 65535'],
    [0, 'must be between 1 and 65535'],
    [65536, 'must be between 1 and 65535'],
    [80.5, 'must be an integer'],
    ['abc', 'must be a number'],
    ['80', 'must be a number'],
  ])('refuses containerPort %j on its path', (containerPort, message) => {
    const result = validateManifest(podManifest({ container: { ports: [{ containerPort }] } }));
    expectFieldError(result, 'spec.containers[0].ports[0].containerPort', message);
  });

  it('refuses a hostPort out of range on its path', () => {
    const result = validateManifest(podManifest({ container: { ports: [{ containerPort: 80, hostPort: 70000 }] } }));
    expectFieldError(result, 'spec.containers[0].ports[0].hostPort', 'must be between 1 and 65535');
  });

  it.each([
    [-5, 'must be greater than or equal to 0'],
    ['30', 'must be a number'],
    [1.5, 'must be an integer'],
  ])('refuses terminationGracePeriodSeconds %j on spec.terminationGracePeriodSeconds', (value, message) => {
    expectFieldError(validateManifest(podManifest({ spec: { terminationGracePeriodSeconds: value } })), 'spec.terminationGracePeriodSeconds', message);
  });

  it('refuses a negative DaemonSet minReadySeconds on spec.minReadySeconds', () => {
    expectFieldError(validateManifest(daemonSetManifest({ spec: { minReadySeconds: -1 } })), 'spec.minReadySeconds', 'must be greater than or equal to 0');
  });

  it('refuses a negative DaemonSet revisionHistoryLimit and a malformed maxUnavailable', () => {
    expectFieldError(validateManifest(daemonSetManifest({ spec: { revisionHistoryLimit: -3 } })), 'spec.revisionHistoryLimit', 'must be greater than or equal to 0');
    const result = validateManifest(daemonSetManifest({ spec: { updateStrategy: { rollingUpdate: { maxUnavailable: 'ten' } } } }));
    expect(result.object).toBeUndefined();
    expect(result.errors.some((e) => e.path.startsWith('spec.updateStrategy.rollingUpdate.maxUnavailable'))).toBe(true);
  });

  it('reports errors inside a DaemonSet pod template with the full path', () => {
    expectFieldError(validateManifest(daemonSetManifest({ container: { image: '' } })), 'spec.template.spec.containers[0].image', 'is required');
    const port = validateManifest(daemonSetManifest({ container: { ports: [{ containerPort: -1 }] } }));
    expectFieldError(port, 'spec.template.spec.containers[0].ports[0].containerPort', 'must be between 1 and 65535');
  });

  it.each([
    ['cpu', 'lots', "'lots' is not a valid quantity"],
    ['memory', '64Mb', "'64Mb' is not a valid quantity"],
    ['memory', '-1Gi', 'must be greater than or equal to 0'],
  ])('refuses resources.limits.%s %j on its path', (resource, value, message) => {
    const result = validateManifest(podManifest({ container: { resources: { limits: { [resource]: value } } } }));
    expectFieldError(result, `spec.containers[0].resources.limits.${resource}`, message);
  });

  it('refuses an invalid quantity in resources.requests too', () => {
    const result = validateManifest(podManifest({ container: { resources: { requests: { cpu: '1.2.3' } } } }));
    expectFieldError(result, 'spec.containers[0].resources.requests.cpu', 'is not a valid quantity');
  });

  it('refuses duplicate container names on the second one', () => {
    const result = validateManifest(podManifest({ containers: [container(), container({ image: 'busybox' })] }));
    expectFieldError(result, 'spec.containers[1].name', "duplicate container name 'app'");
  });

  it('refuses an invalid enum value naming the field', () => {
    const result = validateManifest(podManifest({ spec: { restartPolicy: 'Sometimes' } }));
    expect(result.object).toBeUndefined();
    expect(result.errors.map((e) => e.path)).toEqual(['spec.restartPolicy']);
  });

  it('refuses an invalid nodeSelector key', () => {
    expectFieldError(validateManifest(podManifest({ spec: { nodeSelector: { 'a/b/c': 'x' } } })), 'spec.nodeSelector.a/b/c', 'qualified name');
  });

  it('refuses a DaemonSet whose selector does not match its template labels', () => {
    const result = validateManifest(daemonSetManifest({ templateLabels: { app: 'other' } }));
    expectFieldError(result, 'spec.template.metadata.labels', 'selector does not match template labels (app=sensor-reader is missing)');
  });

  it('refuses a DaemonSet with an empty selector', () => {
    expectFieldError(validateManifest(daemonSetManifest({ selector: {} })), 'spec.selector', 'empty selector is invalid for a workload');
  });

  it('accepts a DaemonSet whose template has more labels than the selector asks for', () => {
    expectValid(validateManifest(daemonSetManifest({ templateLabels: { app: 'sensor-reader', tier: 'edge' } })));
  });

  it('refuses an Event without a reason or with an unknown type', () => {
    expectFieldError(validateManifest(eventManifest({ fields: { reason: '' } })), 'reason', 'is required');
    const result = validateManifest(eventManifest({ fields: { type: 'Fatal' } }));
    expect(result.object).toBeUndefined();
    expect(result.errors.map((e) => e.path)).toEqual(['type']);
  });

  it('reports every error of a document at once', () => {
    const result = validateManifest(podManifest({ name: 'Bad_Name', container: { image: '', ports: [{ containerPort: -1 }] } }));
    expect(result.errors.map((e) => e.path).sort()).toEqual(['metadata.name', 'spec.containers[0].image', 'spec.containers[0].ports[0].containerPort']);
  });
});

describe('validateManifest: unsupported fields', () => {
  it('warns about an unsupported container field, naming its path, and leaves it out of the result', () => {
    const result = validateManifest(podManifest({ container: { lifecycle: { preStop: { exec: { command: ['true'] } } } } }));
    const object = expectValid(result);
    expect(result.warnings).toEqual(['spec.containers[0].lifecycle: unsupported field, ignored']);
    expect((object.spec as { containers: Fields[] }).containers[0]).not.toHaveProperty('lifecycle');
    expect((object.spec as { containers: Fields[] }).containers[0]).toEqual({ name: 'app', image: 'nginx:1.27' });
  });

  it('warns about unsupported fields at every level: pod spec, template, metadata and top level', () => {
    const pod = validateManifest(podManifest({ spec: { priorityClassName: 'high' }, metadata: { finalizers: ['a'] }, top: { extra: 1 } }));
    const object = expectValid(pod);
    expect(pod.warnings.sort()).toEqual(['extra: unsupported field, ignored', 'metadata.finalizers: unsupported field, ignored', 'spec.priorityClassName: unsupported field, ignored']);
    expect(object).not.toHaveProperty('extra');
    expect(object.spec).not.toHaveProperty('priorityClassName');
    expect(object.metadata).not.toHaveProperty('finalizers');

    const ds = validateManifest(daemonSetManifest({ container: { stdin: true } }));
    expect(ds.warnings).toEqual(['spec.template.spec.containers[0].stdin: unsupported field, ignored']);
  });

  it('warns about an unsupported field of an Event', () => {
    const result = validateManifest(eventManifest({ fields: { series: { count: 2 } } }));
    const object = expectValid(result);
    expect(result.warnings).toEqual(['series: unsupported field, ignored']);
    expect(object).not.toHaveProperty('series');
  });

  it('never warns about the keys of free-form maps (labels, nodeSelector, resource lists)', () => {
    const result = validateManifest(
      podManifest({ labels: { 'example.com/anything': 'x' }, container: { resources: { limits: { 'example.com/gpu': '1' } } }, spec: { nodeSelector: { 'kubernetes.io/arch': 'arm64' } } }),
    );
    expectValid(result);
    expect(result.warnings).toEqual([]);
  });

  it('does not warn about an unsupported field whose value is null', () => {
    const result = validateManifest(podManifest({ container: { lifecycle: null } }));
    expectValid(result);
    expect(result.warnings).toEqual([]);
  });
});

describe('parseManifests', () => {
  it('parses one YAML document', () => {
    const docs = parseManifests('apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n', 'pod.yaml');
    expect(docs).toEqual([{ source: 'pod.yaml', value: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web' } } }]);
  });

  it('parses JSON, since JSON is YAML', () => {
    const docs = parseManifests(JSON.stringify(podManifest()));
    expect(docs).toEqual([{ source: 'input', value: podManifest() }]);
  });

  it('parses multi-document YAML and names each document by its position', () => {
    const text = ['kind: Namespace', 'metadata: {name: a}', '---', 'kind: Pod', 'metadata: {name: b}', '---', 'kind: Node', 'metadata: {name: c}'].join('\n');
    const docs = parseManifests(text, 'all.yaml');
    expect(docs.map((d) => d.source)).toEqual(['all.yaml (document 1)', 'all.yaml (document 2)', 'all.yaml (document 3)']);
    expect(docs.map((d) => (d.value as { kind: string }).kind)).toEqual(['Namespace', 'Pod', 'Node']);
  });

  it('skips empty documents', () => {
    const docs = parseManifests('---\nkind: Pod\n---\n# only a comment\n---\nkind: Node\n');
    expect(docs.map((d) => (d.value as { kind: string }).kind)).toEqual(['Pod', 'Node']);
    expect(parseManifests('')).toEqual([]);
  });

  it('flattens a `kind: List` into its items', () => {
    const text = ['apiVersion: v1', 'kind: List', 'items:', '  - kind: Pod', '    metadata: {name: a}', '  - kind: Pod', '    metadata: {name: b}'].join('\n');
    const docs = parseManifests(text, 'list.yaml');
    expect(docs).toEqual([
      { source: 'list.yaml item 0', value: { kind: 'Pod', metadata: { name: 'a' } } },
      { source: 'list.yaml item 1', value: { kind: 'Pod', metadata: { name: 'b' } } },
    ]);
  });

  it('flattens `{items: [...]}` as the API prints a list', () => {
    const docs = parseManifests(JSON.stringify({ items: [podManifest({ name: 'a' }), podManifest({ name: 'b' })] }));
    expect(docs.map((d) => d.source)).toEqual(['input item 0', 'input item 1']);
    expect(docs.map((d) => validateManifest(d.value).object?.metadata.name)).toEqual(['a', 'b']);
  });

  it('flattens a List inside a multi-document file, naming the document and the item', () => {
    const docs = parseManifests('kind: Node\nmetadata: {name: n}\n---\nkind: List\nitems:\n  - kind: Pod\n', 'f.yaml');
    expect(docs.map((d) => d.source)).toEqual(['f.yaml (document 1)', 'f.yaml (document 2) item 0']);
  });

  it('throws ManifestSyntaxError with the line and column of a YAML syntax error', () => {
    const text = 'kind: Pod\nmetadata:\n  name: web\n  labels: {app: web\n';
    let caught: unknown;
    try {
      parseManifests(text, 'bad.yaml');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ManifestSyntaxError);
    const err = caught as ManifestSyntaxError;
    expect(err.line).toBeGreaterThanOrEqual(4);
    expect(err.column).toBeGreaterThan(0);
    expect(err.message).toContain(`bad.yaml: YAML syntax error at line ${err.line}, column ${err.column}: `);
  });

  it.each([
    ['a nested mapping in a compact one', 'kind: Pod\nmetadata: name: web\n', 2, 11],
    ['a duplicate key', 'kind: Pod\nkind: Node\n', 2, 1],
  ])('reports the exact line and column of %s', (_what, text, line, column) => {
    let caught: unknown;
    try {
      parseManifests(text);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ManifestSyntaxError);
    const err = caught as ManifestSyntaxError;
    expect({ line: err.line, column: err.column }).toEqual({ line, column });
    expect(err.message).toMatch(new RegExp(`^input: YAML syntax error at line ${line}, column ${column}: `));
  });

  it('refuses a document whose aliases expand too much (a YAML bomb) with a ManifestSyntaxError', () => {
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i <= 6; i++) {
      const prev = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      levels.push(`${name}: &${name} [${Array.from({ length: 10 }, () => `*${prev}`).join(', ')}]`);
    }
    expect(() => parseManifests(levels.join('\n'), 'bomb.yaml')).toThrow(ManifestSyntaxError);
    expect(() => parseManifests(levels.join('\n'), 'bomb.yaml')).toThrow(/^bomb\.yaml: invalid YAML: /);
  });

  it('expands a few aliases normally', () => {
    const docs = parseManifests('base: &labels {app: web}\nkind: Pod\nmetadata: {name: web, labels: *labels}\n');
    expect(docs[0]!.value).toMatchObject({ metadata: { labels: { app: 'web' } } });
  });

  it('reports a syntax error in a later document', () => {
    expect(() => parseManifests('kind: Pod\n---\nkind: [Pod\n', 'multi.yaml')).toThrow(/multi\.yaml: YAML syntax error at line [34], column \d+/);
  });
});
