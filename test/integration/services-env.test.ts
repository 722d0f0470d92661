import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceAnnouncement } from '../../shared/protocol/services.js';
import { HUB_USERNAME, Topics } from '../../shared/protocol/topics.js';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, engineContainers, getPod, podRunning } from '../harness/fleet.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { startMosquitto, type TestMosquitto } from '../harness/mosquitto.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// A pod's environment on a real agent and engine: the downward API's values (the pod's own IP
// among them) in env and in a downwardAPI volume that follows the pod's labels, and the Service
// environment variables of a Service the device knows when the container is made, without
// restarting the pods that ran before it.

const NODE = 'edge';
const SERVICE_IP = '10.43.200.10';
let dockerd: TestDockerd;
let mosquitto: TestMosquitto;
let hub: RunningHub;
const dirs = tempDir('svcenv');
const hubDir = join(dirs.path, 'hub');
const stateDir = join(dirs.path, 'state');

const DAPI = `apiVersion: v1
kind: Pod
metadata:
  name: dapi
  labels: {app: dapi, tier: front}
  annotations: {example.com/note: hello}
spec:
  nodeName: ${NODE}
  serviceAccountName: runner
  terminationGracePeriodSeconds: 1
  volumes:
    - name: info
      downwardAPI:
        items:
          - {path: labels, fieldRef: {fieldPath: metadata.labels}}
          - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
          - {path: name, fieldRef: {fieldPath: metadata.name}}
          - {path: mem, resourceFieldRef: {containerName: app, resource: limits.memory, divisor: 1Mi}}
  containers:
    - name: app
      image: ${TEST_IMAGE}
      command: ["sh", "-c", "echo $(POD_NAME) at $(SELF) > /tmp/started && exec sleep 3600"]
      resources: {limits: {cpu: 250m, memory: 64Mi}}
      volumeMounts: [{name: info, mountPath: /etc/podinfo}]
      env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: POD_UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
        - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
        - {name: NOTE, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['example.com/note']"}}}
        - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
        - {name: CPU_MILLI, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
        - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
        - {name: SELF, value: "$(POD_IP):8080"}
        - {name: LITERAL, value: "$$(POD_IP)"}
`;

function plainPod(name: string, extra = ''): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 1
${extra}  containers:
    - name: app
      image: ${TEST_IMAGE}
      command: ["sleep", "3600"]
      env: [{name: STORE_SERVICE_PORT_HTTP, value: "own"}]
`;
}

const STORE = `apiVersion: v1
kind: Service
metadata: {name: store}
spec:
  selector: {app: store}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: metrics, port: 9100, targetPort: 9100, protocol: TCP}]
`;

async function appContainer(pod: string): Promise<{ id: string }> {
  const running = (await engineContainers(dockerd.docker, { 'flotilla.pod': pod, 'flotilla.container': 'app' })).filter((c) => c.state === 'running');
  if (running.length !== 1) throw new Error(`expected one running app container of ${pod}, found ${running.length}`);
  return running[0]!;
}

/** Runs a command in the pod's app container; its stdout. */
async function execIn(pod: string, cmd: string[]): Promise<string> {
  const { id } = await appContainer(pod);
  const exec = await dockerd.docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  dockerd.docker.modem.demuxStream(stream, out, new PassThrough());
  await new Promise((r) => stream.on('end', r));
  return Buffer.concat(chunks).toString('utf8');
}

/** The environment the container's process has, read inside it. */
async function envOf(pod: string): Promise<Record<string, string>> {
  const text = await execIn(pod, ['cat', '/proc/1/environ']);
  return Object.fromEntries(text.split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'svcenv' });
  await buildTestImages(dockerd.docker);
  // An external Mosquitto, so that this test can write a Service as the hub does (with the hub's
  // account) when the hub itself publishes none.
  mosquitto = await startMosquitto({ dir: join(dirs.path, 'broker'), hubDataDir: hubDir });
  hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url] });
  startAgent({ hub, name: NODE, stateDir, dockerHost: dockerd.dockerHost });
  await waitFor('the node', () => getJson<{ items: unknown[] }>(hub, ['nodes']).items.length === 1, 60_000);
  apply(hub, DAPI);
  await waitFor('dapi running', () => podRunning(hub, 'dapi'), 60_000);
}, 180_000);

afterAll(async () => {
  await stopAll();
  await mosquitto?.stop();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a pod\'s environment on a real agent and engine', () => {
  it('gives the downward API\'s values in env, status.podIP being the pod\'s reported IP', async () => {
    const pod = await waitFor('dapi\'s pod IP', () => (getPod(hub, 'dapi')?.status?.podIP ? getPod(hub, 'dapi') : undefined));
    const env = await envOf('dapi');
    const node = getJson<{ status: { addresses: { type: string; address: string }[] } }>(hub, ['node', NODE]);
    expect(env).toMatchObject({
      POD_NAME: 'dapi',
      POD_NAMESPACE: 'default',
      POD_UID: pod!.metadata.uid,
      TIER: 'front',
      NOTE: 'hello',
      NODE_NAME: NODE,
      SA: 'runner',
      POD_IP: pod!.status!.podIP,
      HOST_IP: node.status.addresses.find((a) => a.type === 'InternalIP')!.address,
      CPU_MILLI: '250',
      MEM_MI: '64',
    });
    // $(NAME) in env and in the command is expanded, as the kubelet does.
    expect(env.SELF).toBe(`${pod!.status!.podIP}:8080`);
    expect(env.LITERAL).toBe('$(POD_IP)');
    expect(await execIn('dapi', ['cat', '/tmp/started'])).toBe(`dapi at ${pod!.status!.podIP}:8080\n`);
    // The address the process sees on its own interface is the one it was told.
    expect(await execIn('dapi', ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).toContain(`inet ${env.POD_IP}/`);
  });

  it('writes a downwardAPI volume and updates its labels file in place after `flotilla label`, without a restart', async () => {
    expect(await execIn('dapi', ['cat', '/etc/podinfo/labels'])).toBe('app="dapi"\ntier="front"\n');
    expect(await execIn('dapi', ['cat', '/etc/podinfo/annotations'])).toBe('example.com/note="hello"\n');
    expect(await execIn('dapi', ['cat', '/etc/podinfo/name'])).toBe('dapi');
    expect(await execIn('dapi', ['cat', '/etc/podinfo/mem'])).toBe('64');
    const before = await appContainer('dapi');
    const r = cli(hub, ['label', 'pod', 'dapi', 'tier=back', 'zone=lab', '--overwrite']);
    expect(r.stderr).toBe('');
    await waitFor('the new labels in the running container', async () => (await execIn('dapi', ['cat', '/etc/podinfo/labels'])) === 'app="dapi"\ntier="back"\nzone="lab"\n', 30_000, 200);
    // The same container: env is fixed at its creation, the files follow.
    expect((await appContainer('dapi')).id).toBe(before.id);
    expect((await envOf('dapi')).TIER).toBe('front');
  });

  it('gives a new pod the Service environment variables of a Service the device knows, and restarts no running pod', async () => {
    const running = await appContainer('dapi');
    apply(hub, STORE);
    const svc = getJson<{ metadata: { uid: string }; spec: { clusterIP?: string } }>(hub, ['service', 'store']);
    let clusterIP = svc.spec.clusterIP;
    if (!clusterIP || clusterIP === 'None') {
      // This hub publishes no Services: write the one it would, retained, with the hub's account.
      clusterIP = SERVICE_IP;
      const announcement: ServiceAnnouncement = {
        v: 1,
        namespace: 'default',
        name: 'store',
        uid: svc.metadata.uid,
        type: 'ClusterIP',
        clusterIP,
        ports: [
          { name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 },
          { name: 'metrics', protocol: 'TCP', port: 9100, targetPort: 9100 },
        ],
        generation: 1,
      };
      const writer = await mqtt.connectAsync(mosquitto.url, { clientId: 'test-service-writer', username: HUB_USERNAME, password: readFileSync(join(hubDir, 'broker.password'), 'utf8').trim(), protocolVersion: 4, reconnectPeriod: 0 });
      await writer.publishAsync(new Topics().service('default', 'store'), Buffer.from(JSON.stringify(announcement)), { qos: 1, retain: true });
      await writer.endAsync();
    }
    await waitFor('the Service in the device\'s book', () => {
      try {
        return readFileSync(join(stateDir, 'services.json'), 'utf8').includes(clusterIP);
      } catch {
        return false;
      }
    }, 30_000, 200);
    apply(hub, plainPod('linked'));
    apply(hub, plainPod('unlinked', '  enableServiceLinks: false\n'));
    await waitFor('linked and unlinked running', () => podRunning(hub, 'linked') && podRunning(hub, 'unlinked'), 60_000);
    const env = await envOf('linked');
    expect(env).toMatchObject({
      STORE_SERVICE_HOST: clusterIP,
      STORE_SERVICE_PORT: '80',
      // The pod's own env overrides a Service's variable.
      STORE_SERVICE_PORT_HTTP: 'own',
      STORE_SERVICE_PORT_METRICS: '9100',
      STORE_PORT: `tcp://${clusterIP}:80`,
      STORE_PORT_80_TCP: `tcp://${clusterIP}:80`,
      STORE_PORT_80_TCP_PROTO: 'tcp',
      STORE_PORT_80_TCP_PORT: '80',
      STORE_PORT_80_TCP_ADDR: clusterIP,
      STORE_PORT_9100_TCP_ADDR: clusterIP,
    });
    expect(Object.keys(await envOf('unlinked')).filter((k) => k.startsWith('STORE_'))).toEqual(['STORE_SERVICE_PORT_HTTP']);
    // The pod that ran before the Service keeps its container, without the variables.
    expect((await appContainer('dapi')).id).toBe(running.id);
    expect(getPod(hub, 'dapi')!.status!.containerStatuses!.find((c) => c.name === 'app')!.restartCount).toBe(0);
    expect(Object.keys(await envOf('dapi')).filter((k) => k.startsWith('STORE_'))).toEqual([]);
  });
});
