import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDeviceAgent, type DeviceAgent } from '../harness/device.js';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, getPod, readyCondition, type PodJson } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { cli, getJson, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// Liveness, readiness and startup probes as Kubernetes runs them, on a device whose agent shares
// its engine's network namespace (as on real hardware) and so reaches its pods' IPs. Short
// periods (1 s) and thresholds (2) keep each case to seconds.

const NODE = 'edge';
let dockerd: TestDockerd;
let hub: RunningHub;
let device: DeviceAgent;
const dirs = tempDir('probes');

interface EventJson {
  type: string;
  reason: string;
  message: string;
  involvedObject: { kind: string; name: string };
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'probes' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  device = await startDeviceAgent({ hub, dockerd, name: NODE, stateDir: join(dirs.path, 'state') });
  await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

/** A pod on the device whose containers are given as YAML, indented for `containers:`. */
function podWith(name: string, containers: string): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 1
  containers:
${containers}`;
}

const HTTPD = `["httpd", "-f", "-p", "8080", "-h", "/www"]`;

function podReady(name: string): string | undefined {
  return getPod(hub, name)?.status?.conditions?.find((c) => c.type === 'Ready')?.status;
}

function app(pod: PodJson | undefined, name = 'app') {
  return pod?.status?.containerStatuses?.find((c) => c.name === name);
}

function eventsOf(pod: string): EventJson[] {
  return getJson<{ items: EventJson[] }>(hub, ['events']).items.filter((e) => e.involvedObject.kind === 'Pod' && e.involvedObject.name === pod);
}

/** Runs a shell command inside the pod's app container, through the engine. */
async function shellIn(containerID: string, script: string): Promise<void> {
  const exec = await dockerd.docker.getContainer(containerID.replace('docker://', '')).exec({ Cmd: ['sh', '-c', script], AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({});
  await new Promise((resolve) => {
    stream.on('end', resolve);
    stream.resume();
  });
  expect((await exec.inspect()).ExitCode).toBe(0);
}

describe('readiness', () => {
  it('an httpGet probe on the pod IP makes the pod Ready, and a 404 takes Ready away without a restart', async () => {
    apply(hub, podWith('web', `    - name: app
      image: ${TEST_IMAGE}
      command: ${HTTPD}
      readinessProbe:
        httpGet: {path: /, port: 8080}
        periodSeconds: 1
        failureThreshold: 2
`));
    const ready = await waitFor('web Ready', () => (podReady('web') === 'True' ? getPod(hub, 'web') : undefined), 30_000);
    expect(ready.status?.podIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    const before = app(ready)!;
    expect(before.ready).toBe(true);
    expect(cli(hub, ['describe', 'pod', 'web']).stdout).toMatch(/Readiness: +http-get http:\/\/:8080\/ delay=0s timeout=1s period=1s #success=1 #failure=2/);

    // Without its index, busybox httpd answers GET / with 404.
    await shellIn(before.containerID!, 'rm /www/index.html');
    const unready = await waitFor('web not Ready', () => (podReady('web') === 'False' ? getPod(hub, 'web') : undefined), 15_000);
    const after = app(unready)!;
    expect(after.ready).toBe(false);
    expect(after.state.running).toBeDefined();
    expect(after.containerID).toBe(before.containerID);
    expect(after.restartCount).toBe(before.restartCount);
    expect(unready.status?.phase).toBe('Running');
    await waitFor('an Unhealthy readiness event', () => eventsOf('web').some((e) => e.reason === 'Unhealthy' && e.message === 'Readiness probe failed: HTTP probe failed with statuscode: 404'), 15_000);

    // Readiness comes back as soon as the probe passes again (successThreshold 1).
    await shellIn(before.containerID!, 'echo back > /www/index.html');
    await waitFor('web Ready again', () => podReady('web') === 'True', 15_000);
    expect(app(getPod(hub, 'web'))!.restartCount).toBe(before.restartCount);
  });

  it('a tcpSocket probe passes on a listening port and fails on a closed one', async () => {
    apply(hub, podWith('ports', `    - name: app
      image: ${TEST_IMAGE}
      command: ${HTTPD}
      ports: [{name: http, containerPort: 8080}]
      readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1, failureThreshold: 2}
    - name: closed
      image: ${TEST_IMAGE}
      command: ["sleep", "3600"]
      readinessProbe: {tcpSocket: {port: 8081}, periodSeconds: 1, failureThreshold: 2}
`));
    const pod = await waitFor('app ready and closed probed', () => {
      const p = getPod(hub, 'ports');
      return app(p)?.ready && eventsOf('ports').some((e) => e.reason === 'Unhealthy') ? p : undefined;
    }, 30_000);
    expect(app(pod, 'closed')).toMatchObject({ ready: false, restartCount: 0 });
    expect(app(pod, 'closed')!.state.running).toBeDefined();
    expect(pod.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('False');
    expect(eventsOf('ports').find((e) => e.reason === 'Unhealthy')?.message).toMatch(/^Readiness probe failed: dial tcp [\d.]+:8081: .*ECONNREFUSED/);
  });
});

describe('liveness', () => {
  it('an exec probe that starts failing restarts the container, with Unhealthy and Killing events', async () => {
    apply(hub, podWith('mortal', `    - name: app
      image: ${TEST_IMAGE}
      command: ["sh", "-c", "touch /tmp/healthy; sleep 4; rm /tmp/healthy; sleep 3600"]
      livenessProbe:
        exec: {command: ["cat", "/tmp/healthy"]}
        periodSeconds: 1
        failureThreshold: 2
`));
    const restarted = await waitFor('mortal restarted', () => {
      const c = app(getPod(hub, 'mortal'));
      return c && c.restartCount >= 1 ? c : undefined;
    }, 40_000);
    expect(restarted.lastState?.terminated).toBeDefined();
    const events = eventsOf('mortal');
    expect(events.find((e) => e.reason === 'Unhealthy')).toMatchObject({ type: 'Warning', message: expect.stringMatching(/^Liveness probe failed: cat: can't open '\/tmp\/healthy'/) });
    expect(events.find((e) => e.reason === 'Killing')).toMatchObject({ type: 'Normal', message: 'Container app failed liveness probe, will be restarted' });
  });
});

describe('startup', () => {
  it('holds liveness back until the startup probe passes', async () => {
    // Liveness alone would kill this container before its file exists; the startup probe
    // (up to 10 × 1 s) waits for it, and readiness follows once it has started.
    apply(hub, podWith('slow', `    - name: app
      image: ${TEST_IMAGE}
      command: ["sh", "-c", "sleep 4; touch /tmp/started; sleep 3600"]
      startupProbe: {exec: {command: ["cat", "/tmp/started"]}, periodSeconds: 1, failureThreshold: 10}
      livenessProbe: {exec: {command: ["cat", "/tmp/started"]}, periodSeconds: 1, failureThreshold: 1}
`));
    await waitFor('slow Ready', () => podReady('slow') === 'True', 30_000);
    const c = app(getPod(hub, 'slow'))!;
    expect(c.restartCount).toBe(0);
    expect(eventsOf('slow').filter((e) => e.message.startsWith('Liveness probe failed'))).toEqual([]);
    expect(eventsOf('slow').some((e) => e.message.startsWith('Startup probe failed'))).toBe(true);
  });
});

describe('a startup probe that never passes', () => {
  it('kills and restarts the container, and runs neither liveness nor readiness meanwhile', async () => {
    // Liveness would fail at once and readiness pass at once, if either ran before startup passed.
    apply(hub, podWith('never', `    - name: app
      image: ${TEST_IMAGE}
      command: ["sleep", "3600"]
      startupProbe: {exec: {command: ["cat", "/tmp/never"]}, periodSeconds: 1, failureThreshold: 2}
      livenessProbe: {exec: {command: ["false"]}, periodSeconds: 1, failureThreshold: 1}
      readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
`));
    let everReady = false;
    const restarted = await waitFor('never restarted twice', () => {
      const pod = getPod(hub, 'never');
      const c = app(pod);
      everReady ||= Boolean(c?.ready) || pod?.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') === true;
      return c && c.restartCount >= 2 ? c : undefined;
    }, 60_000, 250);
    expect(everReady).toBe(false);
    expect(restarted.ready).toBe(false);
    expect(restarted.lastState?.terminated).toBeDefined();
    const events = await waitFor('the Killing event', () => {
      const e = eventsOf('never');
      return e.some((x) => x.reason === 'Killing') ? e : undefined;
    }, 10_000);
    expect(events.find((e) => e.reason === 'Unhealthy')).toMatchObject({ type: 'Warning', message: expect.stringMatching(/^Startup probe failed: cat: can't open '\/tmp\/never'/) });
    expect(events.find((e) => e.reason === 'Killing')).toMatchObject({ type: 'Normal', message: 'Container app failed startup probe, will be restarted' });
    expect(events.filter((e) => /^(Liveness|Readiness) probe/.test(e.message))).toEqual([]);
    expect(cli(hub, ['delete', 'pod', 'never']).code).toBe(0);
  });
});

describe('a host-network pod', () => {
  it('is probed on 127.0.0.1 of the device, by httpGet and tcpSocket, and becomes Ready', async () => {
    // Both servers listen on the loopback of the engine's network namespace only: nothing else
    // could answer the probes.
    apply(hub, `apiVersion: v1
kind: Pod
metadata: {name: onhost}
spec:
  nodeName: ${NODE}
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: ${TEST_IMAGE}
      command: ["httpd", "-f", "-p", "127.0.0.1:18080", "-h", "/www"]
      readinessProbe: {httpGet: {path: /, port: 18080}, periodSeconds: 1, failureThreshold: 2}
      livenessProbe: {httpGet: {path: /, port: 18080, host: 127.0.0.1}, periodSeconds: 1, failureThreshold: 2}
    - name: raw
      image: ${TEST_IMAGE}
      command: ["httpd", "-f", "-p", "127.0.0.1:18081", "-h", "/www"]
      readinessProbe: {tcpSocket: {port: 18081, host: 127.0.0.1}, periodSeconds: 1, failureThreshold: 2}
      livenessProbe: {tcpSocket: {port: 18081}, periodSeconds: 1, failureThreshold: 2}
`);
    const pod = await waitFor('onhost Ready', () => (podReady('onhost') === 'True' ? getPod(hub, 'onhost') : undefined), 30_000);
    expect(app(pod, 'web')).toMatchObject({ ready: true, restartCount: 0 });
    expect(app(pod, 'raw')).toMatchObject({ ready: true, restartCount: 0 });
    // A few more periods: liveness keeps passing, nothing restarts, nothing is Unhealthy.
    await new Promise((r) => setTimeout(r, 3_000));
    const later = getPod(hub, 'onhost');
    expect(app(later, 'web')?.restartCount).toBe(0);
    expect(app(later, 'raw')?.restartCount).toBe(0);
    expect(eventsOf('onhost').filter((e) => e.reason === 'Unhealthy')).toEqual([]);
    expect(cli(hub, ['delete', 'pod', 'onhost']).code).toBe(0);
  });
});

describe('a device cut off by a network partition', () => {
  it('goes Unknown at the hub, and Ready again when the link heals', async () => {
    await device.partition();
    const cut = await waitFor('the node not Ready', () => {
      const ready = readyCondition(hub, NODE);
      return ready?.status !== 'True' ? ready : undefined;
    }, 20_000);
    expect(cut).toMatchObject({ status: 'Unknown', reason: 'NodeStatusUnknown' });
    await device.heal();
    await waitFor('the node Ready again', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
  });
});
