import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, REPO, cli, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// The command line, as a careless user drives it: a huge manifest, a file over the hub's body
// limit, kubectl's own outputs, `get -o yaml` applied back, KIND/NAME arguments; and dryRun on
// every write of the API, which must never act. A real hub process; no device is needed.

let hub: RunningHub;
const dirs = tempDir('hardening-cli');

interface ApiStatus {
  kind: string;
  code: string;
  message: string;
}

/** Everything a write could change, as the API lists it; the tokens too. */
async function snapshot(): Promise<Record<string, unknown>> {
  const state: Record<string, unknown> = {};
  for (const plural of ['namespaces', 'pods', 'deployments', 'replicasets', 'configmaps', 'nodes', 'tokens']) state[plural] = (await api(`/api/v1/${plural}`)).body;
  return state;
}

async function api(path: string, init: { method?: string; body?: unknown; contentType?: string } = {}): Promise<{ status: number; body: Record<string, unknown> & ApiStatus }> {
  const body = init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
  const res = await fetch(`${hub.apiUrl}${path}`, {
    method: init.method ?? 'GET',
    // A fresh connection each time: an idle one the hub has closed would fail the next request.
    headers: { authorization: `Bearer ${hub.adminToken}`, connection: 'close', ...(body !== undefined ? { 'content-type': init.contentType ?? 'application/json' } : {}) },
    ...(body !== undefined ? { body } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Record<string, unknown> & ApiStatus };
}

let fileCount = 0;
function manifest(text: string, name = `m${++fileCount}.yaml`): string {
  const path = join(dirs.path, name);
  writeFileSync(path, text);
  return path;
}

/** Every kind of the snapshot as it was, one by one (a difference then names its kind). */
async function expectUnchanged(before: Record<string, unknown>): Promise<void> {
  const now = await snapshot();
  for (const key of Object.keys(before)) expect(JSON.stringify(now[key], null, 1), key).toBe(JSON.stringify(before[key], null, 1));
}

/** Waits until the stored state stops changing (the controllers have written what they write). */
async function settled(): Promise<Record<string, unknown>> {
  let previous = '';
  return waitFor('the stored state to settle', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const now = await snapshot();
    const text = JSON.stringify(now);
    const same = text === previous;
    previous = text;
    return same ? now : undefined;
  }, 30_000, 0);
}

/** Runs the CLI in its own process and reads its peak resident memory (VmHWM) until it exits. */
async function cliWithPeakRss(args: string[], timeoutMs: number): Promise<{ code: number | null; stderr: string; stdout: string; peakRssMb: number }> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, env: { ...process.env, FLOTILLA_SERVER: hub.apiUrl, FLOTILLA_TOKEN: hub.adminToken } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let peakKb = 0;
  const sample = setInterval(() => {
    try {
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (hwm) peakKb = Math.max(peakKb, Number(hwm[1]));
    } catch {
      // Exited between two samples.
    }
  }, 20);
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearInterval(sample);
  clearTimeout(killer);
  return { code, stdout, stderr, peakRssMb: Math.round(peakKb / 1024) };
}

const POD = (name: string, labels = '') => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
${labels ? `  labels: {${labels}}\n` : ''}spec:
  containers:
    - name: web
      image: flotilla-test/busybox:1
`;

beforeAll(async () => {
  // A node with no device behind it: no grace runs out (and marks it Unknown) while the tests run.
  hub = await startHub({ dataDir: join(dirs.path, 'hub'), extraArgs: ['--node-grace', '10m'] });
  const r = cli(hub, ['apply', '-f', manifest(`${POD('alpha', 'app: a')}---\n${POD('beta', 'app: b')}---
apiVersion: v1
kind: Node
metadata:
  name: pi-1
`)]);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await stopAll();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('the CLI with manifests over the hub\'s body limit', () => {
  it('refuses a 50 MB manifest itself, naming the file and the object, in bounded memory, and sends nothing', async () => {
    // One ConfigMap of 2.5 million keys: parsed whole, as the CLI did, it took over 2 GB and minutes.
    const lines: string[] = ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', '  name: enormous', 'data:'];
    for (let i = 0; i < 2_500_000; i++) lines.push(`  k${i}: v${i}`);
    const file = manifest(`${lines.join('\n')}\n`, 'enormous.yaml');
    const before = await snapshot();
    const r = await cliWithPeakRss(['apply', '-f', file], 60_000);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toContain('configmap/enormous');
    expect(r.stderr).toMatch(/over the 3\.0 MiB the hub takes for one object/);
    expect(r.stderr).not.toMatch(/EPIPE|cannot reach/);
    // Measured: about 130 MB (the CLI's own start is about 60 MB).
    expect(r.peakRssMb).toBeLessThan(300);
    await expectUnchanged(before);
  });

  it('applies a multi-document file of 4.7 MiB, more than one request may hold', async () => {
    const docs: string[] = [];
    for (let i = 0; i < 40; i++) docs.push(`apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: part-${i}\n  namespace: big\ndata:\n  blob: ${String.fromCharCode(97 + (i % 26)).repeat(120 * 1024)}\n`);
    // The namespace comes last in the file: it is still created before what goes in it.
    docs.push('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: big\n');
    const r = cli(hub, ['apply', '-f', manifest(docs.join('---\n'))]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('namespace/big created');
    const stored = (await api('/api/v1/namespaces/big/configmaps')).body as unknown as { items: { metadata: { name: string }; data: { blob: string } }[] };
    expect(stored.items).toHaveLength(40);
    expect(stored.items.every((c) => c.data.blob.length === 120 * 1024)).toBe(true);
  });

  it('sends nothing of a large file with one bad document at its end, naming the file, document and field', async () => {
    const docs: string[] = [];
    for (let i = 0; i < 30; i++) docs.push(`apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: doomed-${i}\ndata:\n  blob: ${'z'.repeat(120 * 1024)}\n`);
    docs.push('apiVersion: v1\nkind: Pod\nmetadata:\n  name: no-image\nspec:\n  containers:\n    - name: web\n');
    const file = manifest(docs.join('---\n'));
    const before = await snapshot();
    const r = cli(hub, ['apply', '-f', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file} (document 31): spec.containers[0].image`);
    await expectUnchanged(before);
  });
});

describe('the CLI with what kubectl prints', () => {
  it('applies `kubectl create deployment|configmap|secret` and `kubectl run` output (--dry-run=client -o yaml)', () => {
    const kubectlOutput = `apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels:
    app: kx
  name: kx
spec:
  replicas: 1
  selector:
    matchLabels:
      app: kx
  strategy: {}
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: kx
    spec:
      containers:
      - image: busybox
        name: busybox
        resources: {}
status: {}
---
apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    run: krun
  name: krun
spec:
  containers:
  - image: busybox
    name: krun
    resources: {}
  restartPolicy: Always
status: {}
---
apiVersion: v1
data:
  a: b
kind: ConfigMap
metadata:
  creationTimestamp: null
  name: kcm
---
apiVersion: v1
data:
  password: czNjcjN0
kind: Secret
metadata:
  creationTimestamp: null
  name: ksecret
`;
    const r = cli(hub, ['apply', '-f', manifest(kubectlOutput)]);
    expect(r.code, r.stderr).toBe(0);
    for (const line of ['deployment/kx created', 'pod/krun created', 'configmap/kcm created', 'secret/ksecret created']) expect(r.stdout).toContain(line);
    expect(r.stderr).not.toContain('creationTimestamp');
  });

  it('applies `get pods -o yaml` and `-o json` back, item by item, a changed label included', async () => {
    const listed = cli(hub, ['get', 'pods', '-o', 'yaml']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('kind: PodList');
    const back = cli(hub, ['apply', '-f', manifest(listed.stdout.replace('app: a', 'app: a2'))]);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toContain('pod/alpha configured');
    expect(back.stdout).toContain('pod/beta unchanged');
    expect(((await api('/api/v1/namespaces/default/pods/alpha')).body.metadata as { labels: Record<string, string> }).labels).toEqual({ app: 'a2' });
    const json = cli(hub, ['get', 'pods', '-o', 'json']);
    const again = cli(hub, ['apply', '-f', manifest(json.stdout, 'pods.json')]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('pod/alpha unchanged');
  });
});

describe('the CLI with KIND/NAME and refusals', () => {
  it('get pod/NAME shows that pod only', () => {
    const r = cli(hub, ['get', 'pod/alpha', '-o', 'name']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('pod/alpha');
    const two = cli(hub, ['get', 'pods', 'alpha', 'beta', '-o', 'name']);
    expect(two.stdout.trim().split('\n')).toEqual(['pod/alpha', 'pod/beta']);
  });

  it('describe pod/NAME describes it', () => {
    const r = cli(hub, ['describe', 'pod/beta']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Name:\s+beta$/m);
  });

  it('label node/NAME k=v labels the node', async () => {
    const r = cli(hub, ['label', 'node/pi-1', 'fleet=demo']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('node/pi-1 labeled');
    expect(((await api('/api/v1/nodes/pi-1')).body.metadata as { labels: Record<string, string> }).labels).toMatchObject({ fleet: 'demo' });
  });

  it('reports a refused delete once, deletes the other names, and exits 1', async () => {
    cli(hub, ['apply', '-f', manifest(POD('gamma'))]);
    const r = cli(hub, ['delete', 'pod', 'no-such-pod', 'gamma']);
    expect(r.code).toBe(1);
    expect(r.stderr.split('pods "no-such-pod" not found').length - 1).toBe(1);
    expect(r.stdout).toContain('pod/gamma deleted');
    expect((await api('/api/v1/namespaces/default/pods/gamma')).status).toBe(404);
  });
});

describe('dryRun on every write of the API', () => {
  let before: Record<string, unknown>;
  beforeAll(async () => {
    const r = cli(hub, ['apply', '-f', manifest(`apiVersion: v1
kind: Namespace
metadata:
  name: dry
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: dry
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: flotilla-test/busybox:1}]
`)]);
    expect(r.code, r.stderr).toBe(0);
    before = await settled();
  });

  const podBody = (name: string) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'web', image: 'flotilla-test/busybox:2' }] } });

  it('POST create answers the pod as it would be and creates nothing', async () => {
    const r = await api('/api/v1/namespaces/default/pods?dryRun=All', { method: 'POST', body: podBody('would-be') });
    expect(r.status).toBe(201);
    expect(r.body.metadata).toMatchObject({ name: 'would-be', namespace: 'default' });
    expect((r.body.metadata as { resourceVersion?: string }).resourceVersion).toBeUndefined();
    expect((await api('/api/v1/namespaces/default/pods/would-be')).status).toBe(404);
    await expectUnchanged(before);
  });

  it('PUT answers the replaced pod, PATCH the patched one (label, scale), and neither changes anything', async () => {
    const current = (await api('/api/v1/namespaces/default/pods/alpha')).body;
    const put = await api('/api/v1/namespaces/default/pods/alpha?dryRun=All', { method: 'PUT', body: podBody('alpha') });
    expect(put.status).toBe(200);
    expect((put.body.spec as { containers: { image: string }[] }).containers[0]!.image).toBe('flotilla-test/busybox:2');
    expect((put.body.metadata as { resourceVersion: string }).resourceVersion).toBe((current.metadata as { resourceVersion: string }).resourceVersion);
    const label = await api('/api/v1/namespaces/default/pods/alpha?dryRun=All', { method: 'PATCH', body: { metadata: { labels: { tried: 'yes' } } }, contentType: 'application/merge-patch+json' });
    expect(label.status).toBe(200);
    expect((label.body.metadata as { labels: Record<string, string> }).labels).toMatchObject({ tried: 'yes' });
    const scale = await api('/api/v1/namespaces/dry/deployments/web?dryRun=All', { method: 'PATCH', body: { spec: { replicas: 5 } }, contentType: 'application/merge-patch+json' });
    expect(scale.status).toBe(200);
    expect((scale.body.spec as { replicas: number }).replicas).toBe(5);
    await expectUnchanged(before);
  });

  it('DELETE, by query or by DeleteOptions in the body, answers the object and deletes nothing, a namespace neither', async () => {
    const byQuery = await api('/api/v1/namespaces/default/pods/alpha?dryRun=All', { method: 'DELETE' });
    expect(byQuery.status).toBe(200);
    expect((byQuery.body.metadata as { name: string }).name).toBe('alpha');
    const byBody = await api('/api/v1/namespaces/default/pods/beta', { method: 'DELETE', body: { kind: 'DeleteOptions', apiVersion: 'v1', dryRun: ['All'] } });
    expect(byBody.status).toBe(200);
    expect((await api('/api/v1/namespaces/dry?dryRun=All', { method: 'DELETE' })).status).toBe(200);
    await expectUnchanged(before);
  });

  it('eviction, by query or by the Eviction\'s deleteOptions, evicts nothing', async () => {
    const byQuery = await api('/api/v1/namespaces/default/pods/alpha/eviction?dryRun=All', { method: 'POST', body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'alpha' } } });
    expect(byQuery.status).toBe(201);
    expect(byQuery.body.message).toMatch(/dry run/);
    const byBody = await api('/api/v1/namespaces/default/pods/beta/eviction', { method: 'POST', body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'beta' }, deleteOptions: { dryRun: ['All'] } } });
    expect(byBody.status).toBe(201);
    await expectUnchanged(before);
  });

  it('apply with dryRun=All creates nothing; the CLI\'s delete and label --dry-run change nothing', async () => {
    const r = await api('/api/v1/apply?dryRun=All', { method: 'POST', body: { items: [podBody('applied-dry')] } });
    expect(r.status).toBe(200);
    expect(cli(hub, ['delete', 'pod', 'alpha', '--dry-run']).code).toBe(0);
    expect(cli(hub, ['label', 'pod/alpha', 'x=y', '--dry-run']).code).toBe(0);
    await expectUnchanged(before);
  });

  it('refuses dryRun where it cannot be honoured (tokens, rollout actions) with 400, and acts on nothing', async () => {
    const token = await api('/api/v1/tokens?dryRun=All', { method: 'POST', body: { description: 'dry' } });
    expect(token.status).toBe(400);
    expect(token.body.message).toContain('dryRun');
    const tokens = (await api('/api/v1/tokens')).body as unknown as { items: { id: string; kind: string }[] };
    const join = tokens.items.find((t) => t.kind === 'join')!;
    expect((await api(`/api/v1/tokens/${join.id}?dryRun=All`, { method: 'DELETE' })).status).toBe(400);
    const rollout = await api('/apis/flotilla/v1/namespaces/dry/deployments/web/rollout?dryRun=All', { method: 'POST', body: { action: 'pause' } });
    expect(rollout.status).toBe(400);
    expect(rollout.body.message).toContain('dryRun');
    await expectUnchanged(before);
  });

  it('refuses an unknown dryRun value with 400 naming the parameter, on every verb', async () => {
    const tries: [string, string, unknown?][] = [
      ['POST', '/api/v1/namespaces/default/pods?dryRun=Yes', podBody('typo')],
      ['PUT', '/api/v1/namespaces/default/pods/alpha?dryRun=all', podBody('alpha')],
      ['PATCH', '/api/v1/namespaces/default/pods/alpha?dryRun=1', { metadata: { labels: { a: 'b' } } }],
      ['DELETE', '/api/v1/namespaces/default/pods/alpha?dryRun=server'],
      ['DELETE', '/api/v1/namespaces/default/pods/beta', { dryRun: ['Server'] }],
      ['POST', '/api/v1/namespaces/default/pods/alpha/eviction?dryRun=', {}],
      ['POST', '/api/v1/apply?dryRun=maybe', { items: [podBody('typo')] }],
    ];
    for (const [method, path, body] of tries) {
      const r = await api(path, { method, ...(body !== undefined ? { body, contentType: method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' } : {}) });
      expect(r.status, `${method} ${path}`).toBe(400);
      expect(r.body.message, `${method} ${path}`).toContain('dryRun');
    }
    await expectUnchanged(before);
  });
});
