import { request as httpRequest, Agent } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// Bad input at every door of the hub: the CLI (files, flags, tokens) and the HTTP API (bodies,
// content types, tokens, selectors). Each bad input is refused with a message that names what
// is wrong, and nothing of it reaches the store: every test compares the stored state before
// and after. One good apply comes first, so that there is something to lose.

interface ApiStatus {
  kind: string;
  code: string;
  httpStatus: number;
  message: string;
  details?: { fields?: { path: string; message: string }[] };
}

let hub: RunningHub;
const dirs = tempDir('bad-input');
let baseline: Snapshot;

type Snapshot = { daemonsets: unknown; pods: unknown; namespaces: unknown };

/** Everything a bad input could damage, as the API lists it (what `get -A -o json` prints). */
async function snapshot(h: RunningHub): Promise<Snapshot> {
  const list = async (plural: string) => {
    const res = await fetch(`${h.apiUrl}/api/v1/${plural}`, { headers: { authorization: `Bearer ${h.adminToken}`, connection: 'close' } });
    expect(res.status, plural).toBe(200);
    return res.json() as Promise<unknown>;
  };
  const [daemonsets, pods, namespaces] = await Promise.all([list('daemonsets'), list('pods'), list('namespaces')]);
  return { daemonsets, pods, namespaces };
}

async function expectUnchanged(): Promise<void> {
  expect(await snapshot(hub)).toEqual(baseline);
}

let fileCount = 0;
/** Writes a manifest to a fresh temporary file and returns its path. */
function manifest(text: string, name = `m${++fileCount}.yaml`): string {
  const path = join(dirs.path, name);
  writeFileSync(path, text);
  return path;
}

function applyFile(text: string): { code: number; stdout: string; stderr: string; file: string } {
  const file = manifest(text);
  return { ...cli(hub, ['apply', '-f', file]), file };
}

function pod(name: string, containerYaml: string, extraSpec = ''): string {
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
spec:
${extraSpec}  containers:
${containerYaml}`;
}

function daemonSet(name: string, containerYaml: string): string {
  return `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ${name}
spec:
  selector: {matchLabels: {app: ${name}}}
  template:
    metadata: {labels: {app: ${name}}}
    spec:
      containers:
${containerYaml}`;
}

const GOOD = `apiVersion: flotilla/v1
kind: Namespace
metadata:
  name: keep
---
apiVersion: flotilla/v1
kind: DaemonSet
metadata:
  name: keeper
  namespace: keep
  labels: {app: keeper}
spec:
  selector: {matchLabels: {app: keeper}}
  template:
    metadata: {labels: {app: keeper}}
    spec:
      containers:
        - name: web
          image: flotilla-test/busybox:1
---
apiVersion: v1
kind: Pod
metadata:
  name: keeper-pod
  labels: {app: keeper-pod}
spec:
  containers:
    - name: web
      image: flotilla-test/busybox:1
      ports: [{containerPort: 8080}]
`;

async function api(path: string, init: RequestInit & { token?: string | null } = {}): Promise<{ status: number; body: ApiStatus }> {
  const { token, headers, ...rest } = init;
  const auth: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token ?? hub.adminToken}` };
  const res = await fetch(`${hub.apiUrl}${path}`, { ...rest, headers: { ...auth, ...(headers as Record<string, string> | undefined) } });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as ApiStatus };
}

beforeAll(async () => {
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  const applied = cli(hub, ['apply', '-f', manifest(GOOD, 'good.yaml')]);
  expect(applied.code, applied.stderr).toBe(0);
  expect(applied.stdout).toContain('namespace/keep created');
  expect(applied.stdout).toContain('daemonset/keeper created');
  expect(applied.stdout).toContain('pod/keeper-pod created');
  // Let the controllers write what they write (DaemonSet status, the unschedulable pod's
  // condition), then take the state that every test below must leave as it is.
  let previous = '';
  baseline = await waitFor('the stored state to settle', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const now = await snapshot(hub);
    const text = JSON.stringify(now);
    const settled = text === previous && (now.daemonsets as { items: { status?: unknown }[] }).items[0]?.status !== undefined;
    previous = text;
    return settled ? now : undefined;
  }, 30_000, 0);
  expect((baseline.pods as { items: unknown[] }).items).toHaveLength(1);
});

afterAll(async () => {
  await stopAll();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('bad manifests through the CLI', () => {
  it('refuses malformed YAML, naming the file, line and column', async () => {
    const r = applyFile('apiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\n spec: [\n');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(r.file);
    expect(r.stderr).toMatch(/line \d+, column \d+/);
    expect(r.stderr).toContain('line 5, column 1');
    await expectUnchanged();
  });

  it('refuses an unknown kind, naming kind and the known kinds', async () => {
    const r = applyFile('apiVersion: v1\nkind: Widget\nmetadata:\n  name: gadget\nspec: {}\n');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\bkind\b/);
    expect(r.stderr).toContain('Widget');
    for (const known of ['Namespace', 'Node', 'Pod', 'DaemonSet']) expect(r.stderr).toContain(known);
    await expectUnchanged();
  });

  it('refuses a DaemonSet whose container has no image, naming the field', async () => {
    const r = applyFile(daemonSet('no-image', '        - name: web\n'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('spec.template.spec.containers[0].image');
    await expectUnchanged();
  });

  it('refuses a Pod whose container has no image, naming the field', async () => {
    const r = applyFile(pod('no-image', '    - name: web\n'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('spec.containers[0].image');
    expect(r.stderr).not.toContain('template');
    await expectUnchanged();
  });

  it('refuses an invalid name, naming metadata.name', async () => {
    const r = applyFile(pod('Hello_World', '    - name: web\n      image: flotilla-test/busybox:1\n'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('metadata.name');
    expect(r.stderr).toContain('Hello_World');
    await expectUnchanged();
  });

  it('refuses an invalid label key, naming it under metadata.labels', async () => {
    const r = applyFile(`apiVersion: v1
kind: Pod
metadata:
  name: bad-label-key
  labels: {"bad key!": ok}
spec:
  containers: [{name: web, image: flotilla-test/busybox:1}]
`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('metadata.labels.bad key!');
    await expectUnchanged();
  });

  it('refuses an invalid label value, naming it under metadata.labels', async () => {
    const r = applyFile(`apiVersion: v1
kind: Pod
metadata:
  name: bad-label-value
  labels: {app: "-not valid-"}
spec:
  containers: [{name: web, image: flotilla-test/busybox:1}]
`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('metadata.labels.app');
    expect(r.stderr).toContain('-not valid-');
    await expectUnchanged();
  });

  it('refuses a negative containerPort, naming the field', async () => {
    const r = applyFile(pod('neg-port', '    - name: web\n      image: flotilla-test/busybox:1\n      ports: [{containerPort: -1}]\n'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('spec.containers[0].ports[0].containerPort');
    await expectUnchanged();
  });

  it('refuses a negative terminationGracePeriodSeconds, naming the field', async () => {
    const r = applyFile(pod('neg-grace', '    - name: web\n      image: flotilla-test/busybox:1\n', '  terminationGracePeriodSeconds: -3\n'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('spec.terminationGracePeriodSeconds');
    await expectUnchanged();
  });

  it('refuses a non-numeric containerPort, naming the field', async () => {
    const r = applyFile(pod('word-port', '    - name: web\n      image: flotilla-test/busybox:1\n      ports: [{containerPort: "eighty"}]\n'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('spec.containers[0].ports[0].containerPort');
    expect(r.stderr).toMatch(/number/);
    await expectUnchanged();
  });

  it('writes nothing of a batch that holds one good and one bad document', async () => {
    // The good documents would create a namespace and change the existing DaemonSet's image.
    const r = applyFile(`apiVersion: v1
kind: Namespace
metadata:
  name: batch-ns
---
apiVersion: flotilla/v1
kind: DaemonSet
metadata:
  name: keeper
  namespace: keep
  labels: {app: keeper}
spec:
  selector: {matchLabels: {app: keeper}}
  template:
    metadata: {labels: {app: keeper}}
    spec:
      containers:
        - name: web
          image: flotilla-test/busybox:2
---
${pod('batch-bad', '    - name: web\n')}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(r.file);
    expect(r.stderr).toContain('spec.containers[0].image');
    await expectUnchanged();
    expect(cli(hub, ['get', 'namespace', 'batch-ns']).code).toBe(1);
  });

  it('refuses a manifest path that does not exist, naming it', async () => {
    const missing = join(dirs.path, 'no-such-dir', 'nothing.yaml');
    const r = cli(hub, ['apply', '-f', missing]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(missing);
    await expectUnchanged();
  });
});

describe('bad usage of the CLI', () => {
  it('exits 2 for `get` without a kind', async () => {
    const r = cli(hub, ['get']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/kind/);
    await expectUnchanged();
  });

  it('exits 2 for an unknown output format', async () => {
    const r = cli(hub, ['get', 'pods', '--output', 'bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('bogus');
    await expectUnchanged();
  });

  it('exits 1 with a clear message when there is no admin token at all', async () => {
    const saved = process.env.FLOTILLA_TOKEN;
    delete process.env.FLOTILLA_TOKEN;
    try {
      // No hub given: no FLOTILLA_TOKEN, and a folder with no flotilla-data/admin.token in it.
      const r = cli(undefined, ['--server', hub.apiUrl, 'apply', '-f', manifest(pod('tokenless', '    - name: web\n      image: flotilla-test/busybox:1\n'))], { cwd: dirs.path });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no admin token/);
      expect(r.stderr).toMatch(/--token|FLOTILLA_TOKEN/);
    } finally {
      if (saved !== undefined) process.env.FLOTILLA_TOKEN = saved;
    }
    await expectUnchanged();
  });

  it('exits 1 when the admin token is wrong, and writes nothing', async () => {
    const r = cli({ apiUrl: hub.apiUrl, adminToken: 'abcdef12.not-the-right-secret-at-all' }, ['apply', '-f', manifest(pod('wrong-token', '    - name: web\n      image: flotilla-test/busybox:1\n'))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/admin token/);
    await expectUnchanged();
  });
});

describe('bad requests to the API', () => {
  const applyPath = '/api/v1/apply';
  const podManifest = (name: string, extra: Record<string, unknown> = {}) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, ...extra },
    spec: { containers: [{ name: 'web', image: 'flotilla-test/busybox:1' }] },
  });

  it('refuses a 4 MiB body (over the 3 MiB limit) with 413 HUB_ERR_BODY_TOO_LARGE', async () => {
    // A valid manifest apart from its size: without the limit it would be stored.
    const body = JSON.stringify({ items: [podManifest('too-big', { annotations: { filler: 'x'.repeat(4 * 1024 * 1024) } })] });
    const r = await api(applyPath, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(r.status).toBe(413);
    expect(r.body).toMatchObject({ kind: 'Status', code: 'HUB_ERR_BODY_TOO_LARGE', httpStatus: 413 });
    await expectUnchanged();
  });

  it("refuses a streamed body over the limit with 413, and a keep-alive client's next request still succeeds", async () => {
    // No content-length: the hub can only find out while reading. A client that keeps its
    // connection alive must be able to send its next request afterwards.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const send = (method: string, path: string, chunks: number) =>
      new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
        const req = httpRequest(`${hub.apiUrl}${path}`, { method, agent, headers: { authorization: `Bearer ${hub.adminToken}`, 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body: text }));
        });
        req.on('error', reject);
        for (let i = 0; i < chunks; i++) req.write('x'.repeat(64 * 1024));
        req.end();
      });
    try {
      for (let round = 0; round < 3; round++) {
        const tooLarge = await send('POST', applyPath, 64);
        expect(tooLarge.status).toBe(413);
        expect((JSON.parse(tooLarge.body) as ApiStatus).code).toBe('HUB_ERR_BODY_TOO_LARGE');
        // The hub does not offer a connection for reuse after refusing its request's body.
        expect(tooLarge.connection).toBe('close');
        const next = await send('GET', '/api/v1/namespaces/default/pods', 0);
        expect(next.status).toBe(200);
      }
    } finally {
      agent.destroy();
    }
    await expectUnchanged();
  });

  it('answers 413 to a client still sending a declared 4 MiB body, rather than cutting it off mid-write', async () => {
    // The hub reads and drops the refused body before it answers: were it to answer and close
    // at once, a client still writing (fetch sends the body after the headers) could fail with
    // EPIPE instead of reading the 413. Several rounds, since that was a race.
    const body = JSON.stringify({ items: [podManifest('too-big-again', { annotations: { filler: 'y'.repeat(4 * 1024 * 1024) } })] });
    for (let round = 0; round < 20; round++) {
      const r = await api(applyPath, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(r.status).toBe(413);
      expect(r.body.code).toBe('HUB_ERR_BODY_TOO_LARGE');
    }
    await expectUnchanged();
  });

  it('refuses a request without a bearer token with 401', async () => {
    const r = await api(applyPath, { method: 'POST', token: null, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items: [podManifest('no-token')] }) });
    expect(r.status).toBe(401);
    expect(r.body).toMatchObject({ kind: 'Status', code: 'HUB_ERR_UNAUTHORIZED', httpStatus: 401 });
    expect((await api('/api/v1/pods', { token: null })).status).toBe(401);
    await expectUnchanged();
  });

  it('refuses a request with an invalid bearer token with 401', async () => {
    for (const token of ['nope', `${hub.adminToken}x`, hub.joinToken]) {
      const r = await api(applyPath, { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items: [podManifest('bad-token')] }) });
      expect(r.status, token).toBe(401);
      expect(r.body.code).toBe('HUB_ERR_UNAUTHORIZED');
    }
    // The right token under another scheme is no bearer token.
    const basic = await api('/api/v1/pods', { token: null, headers: { authorization: `Basic ${hub.adminToken}` } });
    expect(basic.status).toBe(401);
    await expectUnchanged();
  });

  it('refuses an unsupported content type with 415', async () => {
    const r = await api(applyPath, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ items: [podManifest('plain-text')] }) });
    expect(r.status).toBe(415);
    expect(r.body).toMatchObject({ kind: 'Status', code: 'HUB_ERR_UNSUPPORTED_MEDIA_TYPE', httpStatus: 415 });
    expect(r.body.message).toContain('text/plain');
    await expectUnchanged();
  });

  it('refuses invalid JSON with 400', async () => {
    const r = await api(applyPath, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"items": [{"apiVersion": "v1", "kind": "Pod",' });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ kind: 'Status', code: 'HUB_ERR_BAD_REQUEST', httpStatus: 400 });
    expect(r.body.message).toMatch(/JSON/);
    await expectUnchanged();
  });

  it('refuses malformed YAML with 400 naming line and column', async () => {
    const r = await api(applyPath, { method: 'POST', headers: { 'content-type': 'application/yaml' }, body: 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: y\n spec: [\n' });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('HUB_ERR_BAD_REQUEST');
    expect(r.body.message).toMatch(/line \d+, column \d+/);
    await expectUnchanged();
  });

  it('refuses an invalid manifest with 422 and names every bad field', async () => {
    const body = JSON.stringify({ items: [podManifest('good-one'), { ...podManifest('Bad_Name'), spec: { containers: [{ name: 'web', ports: [{ containerPort: -1 }] }] } }] });
    const r = await api(applyPath, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('HUB_ERR_INVALID');
    const paths = (r.body.details?.fields ?? []).map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['item 1: metadata.name', 'item 1: spec.containers[0].image', 'item 1: spec.containers[0].ports[0].containerPort']));
    await expectUnchanged();
  });

  it('refuses a label selector that does not parse with 400', async () => {
    for (const selector of ['app in (a,', 'a==b==c', '!']) {
      const r = await api(`/api/v1/namespaces/default/pods?labelSelector=${encodeURIComponent(selector)}`);
      expect(r.status, selector).toBe(400);
      expect(r.body).toMatchObject({ kind: 'Status', code: 'HUB_ERR_BAD_REQUEST', httpStatus: 400 });
      expect(r.body.message).toContain('labelSelector');
    }
    const viaCli = cli(hub, ['get', 'pods', '-l', 'app in (a,']);
    expect(viaCli.code).toBe(2);
    await expectUnchanged();
  });
});
