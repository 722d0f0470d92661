import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { PassThrough } from 'node:stream';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, engineContainers, getPod, podRunning } from '../harness/fleet.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { MAX_CONFIG_BYTES } from '../../shared/resources/config.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// ConfigMaps and Secrets end to end: a real hub seals the Secret, dispatches each object only to
// the nodes whose pods use it, and real agents hand them to containers on a real engine as env
// and as files that change in place.

const PASSWORD = 'pl41ntext-S3cret-value';

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('cfg');
const stateDir = (node: string) => join(dirs.path, `state-${node}`);

function configMap(name: string, data: Record<string, string>): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data });
}

const SECRET = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'app-secret' }, stringData: { password: PASSWORD } });

const CONSUMER = `apiVersion: v1
kind: Pod
metadata: {name: consumer}
spec:
  nodeName: alpha
  terminationGracePeriodSeconds: 1
  volumes:
    - {name: files, configMap: {name: app-files}}
    - {name: creds, secret: {secretName: app-secret}}
    - {name: scratch, emptyDir: {}}
  containers:
    - name: app
      image: ${TEST_IMAGE}
      command: ["sh", "-c", "env > /scratch/env && exec sleep 3600"]
      env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: app-env, key: greeting}}
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: app-secret, key: password}}
      envFrom:
        - {configMapRef: {name: app-env}, prefix: CFG_}
      volumeMounts:
        - {name: files, mountPath: /etc/app}
        - {name: creds, mountPath: /etc/creds}
        - {name: scratch, mountPath: /scratch}
      securityContext: {runAsUser: 1000, runAsGroup: 1000, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`;

function plainPod(name: string, configMapName: string): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  nodeName: beta
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ${TEST_IMAGE}
      command: ["sleep", "3600"]
      env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: ${configMapName}, key: greeting}}
`;
}

/** Runs a command in a container through the engine's exec API; its stdout. */
async function execIn(docker: Dockerode, id: string, cmd: string[]): Promise<string> {
  const exec = await docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  docker.modem.demuxStream(stream, out, new PassThrough());
  await new Promise((r) => stream.on('end', r));
  return Buffer.concat(chunks).toString('utf8');
}

async function appContainer(pod: string): Promise<{ id: string }> {
  const list = await engineContainers(dockerd.docker, { 'flotilla.pod': pod, 'flotilla.container': 'app' });
  const running = list.filter((c) => c.state === 'running');
  if (running.length !== 1) throw new Error(`expected one running app container of ${pod}, found ${running.length}`);
  return running[0]!;
}

interface DesiredFile {
  configs: { name: string }[];
  secrets: { name: string; data: Record<string, string> }[];
}

function desiredOf(node: string): DesiredFile {
  return JSON.parse(readFileSync(join(stateDir(node), 'desired.json'), 'utf8')) as DesiredFile;
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'cfg' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  for (const node of ['alpha', 'beta']) startAgent({ hub, name: node, stateDir: stateDir(node), dockerHost: dockerd.dockerHost });
  await waitFor('both nodes', () => getJson<{ items: unknown[] }>(hub, ['nodes']).items.length === 2, 60_000);
  apply(hub, configMap('app-env', { greeting: 'hello' }));
  apply(hub, configMap('app-files', { 'app.conf': 'version=1\n' }));
  apply(hub, SECRET);
  apply(hub, CONSUMER);
  apply(hub, plainPod('plain', 'app-env'));
  await waitFor('consumer running', () => podRunning(hub, 'consumer'), 60_000);
  await waitFor('plain running', () => podRunning(hub, 'plain'), 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('ConfigMaps and Secrets on real agents and a real engine', () => {
  it('gives a container env from a ConfigMap and a Secret', async () => {
    const uid = getPod(hub, 'consumer')!.metadata.uid;
    const env = readFileSync(join(stateDir('alpha'), 'pods', uid, 'volumes', 'scratch', 'env'), 'utf8').split('\n');
    expect(env).toContain('GREETING=hello');
    expect(env).toContain(`PASSWORD=${PASSWORD}`);
    expect(env).toContain('CFG_greeting=hello');
  });

  it('mounts ConfigMap and Secret keys as files, readable by the container\'s own user', async () => {
    const { id } = await appContainer('consumer');
    expect((await execIn(dockerd.docker, id, ['id', '-u'])).trim()).toBe('1000');
    expect(await execIn(dockerd.docker, id, ['cat', '/etc/app/app.conf'])).toBe('version=1\n');
    expect(await execIn(dockerd.docker, id, ['cat', '/etc/creds/password'])).toBe(PASSWORD);
    const uid = getPod(hub, 'consumer')!.metadata.uid;
    const secretFile = join(stateDir('alpha'), 'pods', uid, 'volumes', 'creds', '..data', 'password');
    expect(readFileSync(secretFile, 'utf8')).toBe(PASSWORD);
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
  });

  it('passes the binds and the security context to the engine', async () => {
    const info = await dockerd.docker.getContainer((await appContainer('consumer')).id).inspect();
    expect(info.Config.User).toBe('1000:1000');
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.HostConfig.CapDrop).toEqual(['ALL']);
    // The volumes, the update lock's folder, and the pod's managed hosts file (as the kubelet binds it).
    expect(info.HostConfig.Binds?.map((b) => b.split(':').slice(1).join(':')).sort()).toEqual(['/etc/app:ro', '/etc/creds:ro', '/etc/hosts', '/run/flotilla', '/scratch']);
  });

  it('updates a mounted ConfigMap inside the running container, without a restart', async () => {
    const before = await appContainer('consumer');
    apply(hub, configMap('app-files', { 'app.conf': 'version=2\n' }));
    await waitFor('the new file content in the container', async () => (await execIn(dockerd.docker, before.id, ['cat', '/etc/app/app.conf'])) === 'version=2\n', 15_000, 200);
    expect((await appContainer('consumer')).id).toBe(before.id);
  });

  it('replaces the container when a value it takes as env changes', async () => {
    const before = await appContainer('consumer');
    apply(hub, configMap('app-env', { greeting: 'bonjour' }));
    const after = await waitFor('a new consumer container', async () => {
      const c = await appContainer('consumer').catch(() => undefined);
      return c && c.id !== before.id ? c : undefined;
    }, 30_000, 200);
    await waitFor('the new env', async () => (await execIn(dockerd.docker, after.id, ['cat', '/scratch/env'])).includes('GREETING=bonjour'), 15_000, 200);
  });

  it('sends a Secret only to the node whose pods use it', () => {
    const alpha = desiredOf('alpha');
    const beta = desiredOf('beta');
    expect(alpha.secrets.map((s) => s.name)).toEqual(['app-secret']);
    expect(Buffer.from(alpha.secrets[0]!.data.password!, 'base64').toString()).toBe(PASSWORD);
    expect(alpha.configs.map((c) => c.name)).toEqual(['app-env', 'app-files']);
    expect(beta.secrets).toEqual([]);
    expect(beta.configs.map((c) => c.name)).toEqual(['app-env']);
  });

  it('keeps the Secret encrypted in the database file, and decoded in the API', () => {
    const encoded = Buffer.from(PASSWORD).toString('base64');
    expect(statSync(join(hub.dataDir, 'secret.key')).mode & 0o777).toBe(0o600);
    let sealed = false;
    for (const file of ['flotilla.db', 'flotilla.db-wal']) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(join(hub.dataDir, file));
      } catch {
        continue;
      }
      expect(bytes.includes(PASSWORD), file).toBe(false);
      expect(bytes.includes(encoded), file).toBe(false);
      sealed ||= bytes.includes('flotilla:enc:aesgcm:v1:');
    }
    expect(sealed).toBe(true);
    const secret = getJson<{ data: Record<string, string>; type: string }>(hub, ['secret', 'app-secret']);
    expect(secret.type).toBe('Opaque');
    expect(Buffer.from(secret.data.password!, 'base64').toString()).toBe(PASSWORD);
  });

  it('lists ConfigMaps and Secrets with their key counts, never a Secret value', () => {
    const cms = cli(hub, ['get', 'configmaps']);
    expect(cms.code, cms.stderr).toBe(0);
    expect(cms.stdout).toMatch(/NAME\s+DATA\s+AGE/);
    expect(cms.stdout).toMatch(/app-files\s+1\s+/);
    const secrets = cli(hub, ['get', 'secrets']);
    expect(secrets.code, secrets.stderr).toBe(0);
    expect(secrets.stdout).toMatch(/app-secret\s+Opaque\s+1\s+/);
    expect(secrets.stdout).not.toContain(Buffer.from(PASSWORD).toString('base64'));
  });

  it('takes a Secret of 1 MiB of data, over MQTT to the device and whole into the container, and refuses one byte more', async () => {
    // Kubernetes' limit, exactly: 1 MiB of data (1.4 MB in base64, in the API body and in the
    // node's desired set on MQTT).
    const blob = randomBytes(MAX_CONFIG_BYTES);
    const secret = (data: Buffer) => JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'big-secret' }, data: { 'blob.bin': data.toString('base64') } });
    apply(hub, secret(blob));
    apply(hub, `apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  nodeName: alpha
  terminationGracePeriodSeconds: 1
  volumes: [{name: blob, secret: {secretName: big-secret}}]
  containers:
    - name: app
      image: ${TEST_IMAGE}
      command: ["sleep", "3600"]
      volumeMounts: [{name: blob, mountPath: /etc/big}]
`);
    await waitFor('big running', () => podRunning(hub, 'big'), 60_000);
    const { id } = await appContainer('big');
    expect((await execIn(dockerd.docker, id, ['wc', '-c', '/etc/big/blob.bin'])).trim()).toBe(`${MAX_CONFIG_BYTES} /etc/big/blob.bin`);
    expect((await execIn(dockerd.docker, id, ['sha256sum', '/etc/big/blob.bin'])).split(' ')[0]).toBe(createHash('sha256').update(blob).digest('hex'));
    expect(cli(hub, ['describe', 'secret', 'big-secret']).stdout).toContain(`blob.bin:  ${MAX_CONFIG_BYTES} bytes`);

    const over = cli(hub, ['apply', '-f', '-'], { input: secret(Buffer.concat([blob, Buffer.from([1])])) });
    expect(over.code).toBe(1);
    expect(over.stderr).toContain(`data: Secret data must be no more than ${MAX_CONFIG_BYTES} bytes in total, not ${MAX_CONFIG_BYTES + 1}`);
    expect(cli(hub, ['delete', 'pod', 'big']).code).toBe(0);
  });

  it('holds a container that refers to a missing ConfigMap in CreateContainerConfigError', async () => {
    apply(hub, plainPod('broken', 'nowhere'));
    const pod = await waitFor('CreateContainerConfigError', () => {
      const p = getPod(hub, 'broken');
      return p?.status?.containerStatuses?.[0]?.state.waiting?.reason === 'CreateContainerConfigError' ? p : undefined;
    }, 30_000);
    expect(pod.status!.containerStatuses![0]!.state.waiting!.message).toContain('configmap "nowhere" not found');
    expect(await engineContainers(dockerd.docker, { 'flotilla.pod': 'broken', 'flotilla.container': 'app' })).toEqual([]);
  });
});
