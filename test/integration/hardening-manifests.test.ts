import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// Manifests that Kubernetes refuses and that the hub used to store, and documents built to
// exhaust the hub's parser (deep nesting, YAML alias bombs). Each goes through the real CLI
// (`flotilla apply -f`) and the HTTP API of a real hub process: each is refused with the field
// path (or a clear parse error), nothing is stored, and the hub's memory stays put.

interface ApiStatus {
  code: string;
  httpStatus: number;
  message: string;
  details?: { fields?: { path: string; message: string }[] };
}

let hub: RunningHub;
const dirs = tempDir('hardening-manifests');

type Manifest = Record<string, unknown>;

const IMAGE = 'flotilla-test/busybox:1';

function pod(name: string, spec: Manifest, metadata: Manifest = {}): Manifest {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, ...metadata }, spec };
}

function daemonSet(name: string, opts: { selector?: Manifest; templateSpec?: Manifest } = {}): Manifest {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name },
    spec: {
      selector: opts.selector ?? { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'web', image: IMAGE }], ...opts.templateSpec } },
    },
  };
}

const container = (fields: Manifest = {}): Manifest => ({ name: 'web', image: IMAGE, ...fields });

/** Each manifest is refused at `path`, and the message matches. */
const REFUSED: { what: string; manifest: Manifest | string; path: string; message: RegExp }[] = [
  {
    what: 'annotations over 256 KiB in total',
    manifest: pod('big-annotations', { containers: [container()] }, { annotations: { a: 'x'.repeat(200 * 1024), b: 'y'.repeat(100 * 1024) } }),
    path: 'metadata.annotations',
    message: /at most 262144 bytes/,
  },
  { what: "an env var name with '='", manifest: pod('env-equals', { containers: [container({ env: [{ name: 'A=B', value: 'x' }] })] }), path: 'spec.containers[0].env[0].name', message: /environment variable name/ },
  {
    what: 'two containers with the same hostPort',
    manifest: pod('same-host-port', { containers: [container({ ports: [{ containerPort: 80, hostPort: 8080 }] }), container({ name: 'side', ports: [{ containerPort: 81, hostPort: 8080 }] })] }),
    path: 'spec.containers[1].ports[0].hostPort',
    message: /Duplicate value: '8080\/TCP'/,
  },
  {
    what: 'two ports with the same name',
    manifest: pod('same-port-name', { containers: [container({ ports: [{ name: 'http', containerPort: 80 }, { name: 'http', containerPort: 81 }] })] }),
    path: 'spec.containers[0].ports[1].name',
    message: /Duplicate value: 'http'/,
  },
  {
    what: 'requests above limits',
    manifest: pod('over-limit', { containers: [container({ resources: { requests: { cpu: '2' }, limits: { cpu: '1' } } })] }),
    path: 'spec.containers[0].resources.requests.cpu',
    message: /less than or equal to cpu limit/,
  },
  {
    what: "a DaemonSet whose matchExpressions do not match its template's labels",
    manifest: daemonSet('expr-mismatch', { selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['other'] }] } }),
    path: 'spec.template.metadata.labels',
    message: /selector does not match template labels/,
  },
  { what: 'an upper-case repository', manifest: pod('upper-image', { containers: [container({ image: 'library/BusyBox:1' })] }), path: 'spec.containers[0].image', message: /invalid reference format.*lower case/ },
  { what: 'an image outside the grammar', manifest: pod('bad-image', { containers: [container({ image: 'UPPER CASE:://nope' })] }), path: 'spec.containers[0].image', message: /invalid reference format/ },
  {
    what: "a hostPath with '..'",
    manifest: pod('host-backstep', { containers: [container({ volumeMounts: [{ name: 'h', mountPath: '/h' }] })], volumes: [{ name: 'h', hostPath: { path: '/var/lib/../../etc' } }] }),
    path: 'spec.volumes[0].hostPath.path',
    message: /must not contain '\.\.'/,
  },
  { what: 'a DaemonSet with restartPolicy Never', manifest: daemonSet('never-restart', { templateSpec: { restartPolicy: 'Never' } }), path: 'spec.template.spec.restartPolicy', message: /supported values: 'Always'/ },
  {
    what: 'a kubernetes.io/dockerconfigjson Secret without .dockerconfigjson',
    manifest: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'no-docker-config' }, type: 'kubernetes.io/dockerconfigjson', data: { other: 'eA==' } },
    path: 'data[.dockerconfigjson]',
    message: /Required value/,
  },
  // Found beside the issue's list, by Kubernetes' validation.
  { what: 'an envFrom prefix with a space', manifest: pod('env-prefix', { containers: [container({ envFrom: [{ configMapRef: { name: 'cm' }, prefix: 'MY PREFIX' }] })] }), path: 'spec.containers[0].envFrom[0].prefix', message: /environment variable name/ },
  {
    what: "a mountPath with ':', the bind syntax's separator",
    manifest: pod('colon-mount', { containers: [container({ volumeMounts: [{ name: 'cfg', mountPath: '/etc/app:rw' }] })], volumes: [{ name: 'cfg', configMap: { name: 'cm' } }] }),
    path: 'spec.containers[0].volumeMounts[0].mountPath',
    message: /must not contain ':'/,
  },
  {
    what: 'two mounts on one path',
    manifest: pod('same-mount', { containers: [container({ volumeMounts: [{ name: 'a', mountPath: '/data' }, { name: 'b', mountPath: '/data' }] })], volumes: [{ name: 'a', emptyDir: {} }, { name: 'b', emptyDir: {} }] }),
    path: 'spec.containers[0].volumeMounts[1].mountPath',
    message: /must be unique/,
  },
  { what: 'a cpu limit of 1e308', manifest: pod('infinite-cpu', { containers: [container({ resources: { limits: { cpu: '1e308' } } })] }), path: 'spec.containers[0].resources.limits.cpu', message: /no more than 9223372036854775807/ },
  { what: 'a relative workingDir', manifest: pod('relative-dir', { containers: [container({ workingDir: 'srv' })] }), path: 'spec.containers[0].workingDir', message: /absolute path/ },
  { what: 'a misspelt resource name', manifest: pod('cpus', { containers: [container({ resources: { limits: { cpus: '1' } } })] }), path: 'spec.containers[0].resources.limits.cpus', message: /standard resource/ },
  { what: 'an annotation key that is no qualified name', manifest: pod('bad-annotation', { containers: [container()] }, { annotations: { 'not a key!': 'x' } }), path: 'metadata.annotations.not a key!', message: /invalid annotation key/ },
  {
    what: 'a matchExpressions In without values',
    manifest: daemonSet('in-no-values', { selector: { matchLabels: { app: 'in-no-values' }, matchExpressions: [{ key: 'app', operator: 'In' }] } }),
    path: 'spec.selector.matchExpressions[0].values',
    message: /non-empty/,
  },
  {
    what: 'a Service with two ports on the same number',
    manifest: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'dup-ports' }, spec: { selector: { app: 'x' }, ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80 }] } },
    path: 'spec.ports[1]',
    message: /Duplicate value: '80\/TCP'/,
  },
  {
    what: 'a Deployment with replicas beyond int32',
    manifest: { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'huge' }, spec: { replicas: 2 ** 40, selector: { matchLabels: { app: 'huge' } }, template: { metadata: { labels: { app: 'huge' } }, spec: { containers: [container()] } } } },
    path: 'spec.replicas',
    message: /less than or equal to 2147483647/,
  },
  {
    what: "a label key '__proto__', which vanished from the map",
    manifest: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"proto","labels":{"__proto__":"x"}},"spec":{"containers":[{"name":"web","image":"${IMAGE}"}]}}`,
    path: 'metadata.labels.__proto__',
    message: /not accepted/,
  },
  {
    what: 'a toleration with a value and operator Exists',
    manifest: pod('tolerate', { containers: [container()], tolerations: [{ key: 'k', operator: 'Exists', value: 'v' }] }),
    path: 'spec.tolerations[0].value',
    message: /must be empty/,
  },
];

/** What a refused manifest could have changed, as the API lists it. */
async function snapshot(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const plural of ['pods', 'daemonsets', 'deployments', 'secrets', 'services', 'namespaces']) {
    const res = await fetch(`${hub.apiUrl}/api/v1/${plural}`, { headers: { authorization: `Bearer ${hub.adminToken}` } });
    expect(res.status, plural).toBe(200);
    out[plural] = ((await res.json()) as { items: unknown[] }).items;
  }
  return out;
}

let baseline: Record<string, unknown>;

async function post(body: string, type: string, path = '/api/v1/apply'): Promise<{ status: number; body: ApiStatus }> {
  const res = await fetch(`${hub.apiUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${hub.adminToken}`, 'content-type': type }, body });
  return { status: res.status, body: JSON.parse(await res.text()) as ApiStatus };
}

let fileCount = 0;
function file(text: string, ext: string): string {
  const path = join(dirs.path, `m${++fileCount}.${ext}`);
  writeFileSync(path, text);
  return path;
}

/** The hub's resident memory in MB, from /proc/PID/status. */
function hubRssMb(): number {
  const status = readFileSync(`/proc/${hub.process.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024;
}

/** Runs `fn` while sampling the hub's RSS every 5 ms; returns its result and the highest sample. */
async function withPeakRss<T>(fn: () => Promise<T> | T): Promise<{ result: T; peakMb: number }> {
  let peakMb = hubRssMb();
  const timer = setInterval(() => (peakMb = Math.max(peakMb, hubRssMb())), 5);
  try {
    const result = await fn();
    // The answer is sent before the request's garbage is collected: look a little longer.
    await new Promise((r) => setTimeout(r, 200));
    return { result, peakMb: Math.max(peakMb, hubRssMb()) };
  } finally {
    clearInterval(timer);
  }
}

beforeAll(async () => {
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  // Something to lose: a DaemonSet, a Pod and a registry Secret, all valid.
  const good = [
    daemonSet('keeper'),
    pod('keeper-pod', { containers: [container({ ports: [{ name: 'http', containerPort: 80, hostPort: 8080 }] })] }),
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'registry' }, type: 'kubernetes.io/dockerconfigjson', stringData: { '.dockerconfigjson': '{"auths":{}}' } },
  ];
  const applied = cli(hub, ['apply', '-f', file(JSON.stringify({ items: good }), 'json')]);
  expect(applied.code, applied.stderr).toBe(0);
  let previous = '';
  baseline = await waitFor('the stored state to settle', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const now = await snapshot();
    const text = JSON.stringify(now);
    const settled = text === previous;
    previous = text;
    return settled ? now : undefined;
  }, 30_000, 0);
});

afterAll(async () => {
  await stopAll();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('manifests Kubernetes refuses are refused with their field path', () => {
  it.each(REFUSED)('$what: through `flotilla apply`', async ({ manifest, path, message }) => {
    const f = file(typeof manifest === 'string' ? manifest : JSON.stringify(manifest, null, 2), 'json');
    const r = cli(hub, ['apply', '-f', f]);
    expect(r.code, r.stdout).toBe(1);
    expect(r.stderr).toContain(f);
    expect(r.stderr).toContain(`${path}: `);
    expect(r.stderr).toMatch(message);
    expect(await snapshot()).toEqual(baseline);
  });

  it.each(REFUSED)('$what: through the API', async ({ manifest, path, message }) => {
    const r = await post(typeof manifest === 'string' ? manifest : JSON.stringify(manifest), 'application/json');
    expect(r.status, r.body.message).toBe(422);
    expect(r.body.code).toBe('HUB_ERR_INVALID');
    const field = r.body.details?.fields?.find((f) => f.path === path);
    expect(field, JSON.stringify(r.body.details)).toBeDefined();
    expect(field!.message).toMatch(message);
    expect(await snapshot()).toEqual(baseline);
  });
});

// ---------------------------------------------------------------------------------------------
// Documents made to exhaust the parser.

const DEPTH = 100_000;
/** 600 KB of JSON nested 100,000 deep, as a Pod's spec. */
const DEEP_JSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"deep"},"spec":${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}}`;
const DEEP_YAML_BLOCK = `apiVersion: v1\nkind: Pod\nmetadata: {name: deep}\nspec:\n  containers:\n  ${'- '.repeat(DEPTH)}x\n`;
const DEEP_YAML_FLOW = `apiVersion: v1\nkind: Pod\nmetadata: {name: deep}\nspec: ${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}\n`;
/** Billion laughs: nine levels of nine aliases. */
const BILLION_LAUGHS = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]', ...'bcdefghi'.split('').map((l, i) => `${l}: &${l} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(',')}]`)].join('\n') + '\n';
/** A list of 2,000 env vars aliased by 90 containers: 50 KB of YAML, 6 MB once expanded. */
const WIDE_ALIASES = `apiVersion: v1\nkind: Pod\nmetadata: {name: wide}\nspec:\n  containers:\n${Array.from({ length: 90 }, (_, i) => `  - {name: c${i}, image: ${IMAGE}, env: ${i === 0 ? '&env ' : '*env'}${i === 0 ? `[${Array.from({ length: 2_000 }, (_, j) => `{name: V${j}, value: x}`).join(',')}]` : ''}}`).join('\n')}\n`;
/** 2.5 MB of YAML made of 1.7 million small tokens: the yaml library's tree of it would take 600 MB. */
const DENSE_YAML = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dense}\nlist:\n${Array.from({ length: 100_000 }, (_, j) => `- name: V${j}\n  value: x`).join('\n')}\n`;
const CYCLE = `apiVersion: v1\nkind: Pod\nmetadata: {name: cycle}\nspec: &s\n  containers: [{name: web, image: ${IMAGE}}]\n  loop: *s\n`;

const HOSTILE: { what: string; text: string; type: string; ext: string; message: RegExp }[] = [
  { what: 'JSON nested 100,000 deep', text: DEEP_JSON, type: 'application/json', ext: 'json', message: /nested more than 100 levels/ },
  { what: 'the same JSON sent as YAML', text: DEEP_JSON, type: 'application/yaml', ext: 'yaml', message: /nested more than 100 levels/ },
  { what: 'YAML block sequences nested 100,000 deep', text: DEEP_YAML_BLOCK, type: 'application/yaml', ext: 'yaml', message: /nested more than 100 levels/ },
  { what: 'YAML flow sequences nested 100,000 deep', text: DEEP_YAML_FLOW, type: 'application/yaml', ext: 'yaml', message: /nested more than 100 levels/ },
  { what: 'a billion laughs', text: BILLION_LAUGHS, type: 'application/yaml', ext: 'yaml', message: /alias/i },
  { what: 'one list aliased by 90 containers', text: WIDE_ALIASES, type: 'application/yaml', ext: 'yaml', message: /expand to more than 3145728 bytes/ },
  { what: 'an alias inside the node it names', text: CYCLE, type: 'application/yaml', ext: 'yaml', message: /cycle/ },
];

/** Refused by the API only: the CLI reads big YAML files (its own memory) and sends JSON. */
const HOSTILE_TO_THE_API = [...HOSTILE, { what: '2.5 MB of dense YAML', text: DENSE_YAML, type: 'application/yaml', ext: 'yaml', message: /more than 50000 YAML tokens/ }];

/**
 * A valid ConfigMap as one YAML flow mapping of 2,000 keys: as many tokens as the hostile
 * documents below, applied as a dry run (nothing stored).
 */
const WARM_UP_YAML = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: warm-up}\ndata: {${Array.from({ length: 2_000 }, (_, j) => `k${j}: v`).join(', ')}}\n`;

describe('documents built to exhaust the parser', () => {
  let startMb: number;
  beforeAll(async () => {
    // "Where it started" is a hub at work, not one just started: parsing any YAML body of some
    // ten thousand tokens grows V8's young generation to its working size (some 30-45 MB of
    // RSS that stays), which a busy hub has anyway. The hostile documents must cost nothing
    // beyond what a valid document of their size costs.
    for (let i = 0; i < 3; i++) {
      const warm = await post(WARM_UP_YAML, 'application/yaml', '/api/v1/apply?dryRun=All');
      expect(warm.status, warm.body.message).toBe(200);
    }
    startMb = hubRssMb();
  });

  it.each(HOSTILE_TO_THE_API)('$what: refused by the API with 400, the hub within 50 MB of its start', async ({ what, text, type, message }) => {
    const { result: r, peakMb } = await withPeakRss(() => post(text, type));
    console.log(`${what}: hub RSS ${startMb.toFixed(1)} MB at start, +${(peakMb - startMb).toFixed(1)} MB at peak`);
    expect(r.status, r.body.message).toBe(400);
    expect(r.body.code).toBe('HUB_ERR_BAD_REQUEST');
    expect(r.body.message).toMatch(message);
    expect(peakMb - startMb, `hub RSS ${startMb.toFixed(1)} MB at start, ${peakMb.toFixed(1)} MB at peak`).toBeLessThan(50);
    expect(hubRssMb() - startMb).toBeLessThan(50);
    expect(await snapshot()).toEqual(baseline);
  });

  it.each(HOSTILE)('$what: refused by `flotilla apply` with exit 1, naming the file', async ({ text, ext, message }) => {
    const f = file(text, ext);
    const r = cli(hub, ['apply', '-f', f]);
    expect(r.code, r.stdout).toBe(1);
    expect(r.stderr).toContain(f);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.length).toBeLessThan(4000);
    expect(await snapshot()).toEqual(baseline);
  });
});
