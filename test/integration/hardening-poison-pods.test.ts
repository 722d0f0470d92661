import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, engineContainers, getPod, logCount, podRunning, readyCondition, type ContainerStatusJson } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { REPO, getJson, spawnLogged, startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// One bad pod must not stop a device: each pod whose spec the engine refuses fails alone, with
// the kubelet's reason in its status, and is retried with back-off, while every other pod on the
// device (and a DaemonSet applied afterwards) runs. The hub may refuse a malformed image
// reference itself; the agent must not rely on that, so a relay between the two turns a valid
// reference into one the engine cannot parse (`Flotilla-Test/…`: "repository name must be
// lowercase") in what the hub sends.

const NODE = 'edge';
const POISON_IMAGE = 'flotilla-test/poison-name:1';
const INVALID_IMAGE = 'Flotilla-Test/Poison-Name:1';
// An env var name the hub takes, which reaches the device as one that no pod may have ('=' in it).
const UNREADABLE_ENV = 'UNREADABLE_NAME';
const INVALID_ENV = 'UNREADABLE=NAME';
let dockerd: TestDockerd;
let hub: RunningHub;
let agent: ManagedProcess;
const dirs = tempDir('poison');

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'poison' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  const relay = spawnLogged([join(REPO, 'test', 'harness', 'rewrite-relay.mjs'), String(hub.mqttPort), JSON.stringify({ [POISON_IMAGE]: INVALID_IMAGE, [UNREADABLE_ENV]: INVALID_ENV })], join(dirs.path, 'relay.log'), REPO);
  const relayPort = await waitFor('the rewriting relay', () => {
    if (relay.exitCode !== undefined) throw new Error(`relay exited with ${relay.exitCode}: ${relay.log()}`);
    const line = relay.log().split('\n').find((l) => l.startsWith('{"listening"'));
    return line ? (JSON.parse(line) as { listening: number }).listening : undefined;
  }, 10_000, 50);
  agent = startAgent({ hub, hubUrl: `mqtt://127.0.0.1:${relayPort}`, name: NODE, labels: { fleet: 'poison' }, stateDir: join(dirs.path, 'state'), dockerHost: dockerd.dockerHost });
  await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

/** A bare Pod on the device whose containers are given as YAML (indented for `containers:`). */
function pod(name: string, containers: string, extra = ''): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 1
${extra}  containers:
${containers}`;
}

const sleeper = (name: string, image = TEST_IMAGE, more = '') => `    - name: ${name}
      image: ${image}
      command: [sleep, "3600"]
${more}`;

function containerStatus(name: string, container: string): ContainerStatusJson | undefined {
  return getPod(hub, name)?.status?.containerStatuses?.find((c) => c.name === container);
}

/** When the engine refused a step of this pod, as the agent logged it (ms since the epoch). */
function refusals(podName: string): number[] {
  return agent
    .log()
    .split('\n')
    .filter((line) => line.includes('"msg":"pod step failed"') && line.includes(`"pod":"${podName}"`))
    .map((line) => (JSON.parse(line) as { time: number }).time);
}

const gapsSeconds = (times: number[]) => times.slice(1).map((t, i) => (t - times[i]!) / 1000);

const POISON = ['bad-name', 'never-pull', 'no-registry', 'tiny-memory', 'bad-mount', 'no-binary'] as const;

describe('poison pods beside a healthy one on one device', () => {
  it('runs the healthy pod and a DaemonSet applied afterwards, and each poison pod reports its own reason', async () => {
    const hostFile = join(dirs.path, 'a-file');
    writeFileSync(hostFile, 'not a directory\n');
    apply(hub, pod('healthy', sleeper('app')));
    // It holds a host port that a poison pod asks for too.
    apply(hub, pod('port-holder', sleeper('app', TEST_IMAGE, '      ports: [{containerPort: 80, hostPort: 18080}]\n')));
    await waitFor('the port holder running', () => podRunning(hub, 'port-holder'), 45_000);
    // Every poison pod in one apply.
    apply(
      hub,
      [
        // An image reference the engine cannot parse (rewritten on its way to the device).
        pod('bad-name', sleeper('app', POISON_IMAGE)),
        // An image that is not on the device, with a pull policy that forbids pulling it.
        pod('never-pull', sleeper('app', 'flotilla-test/absent:1', '      imagePullPolicy: Never\n')),
        // An image that no registry the device can reach has.
        pod('no-registry', sleeper('app', 'flotilla-test/not-anywhere:1')),
        // A memory limit below the engine's minimum (6 MB): refused at create.
        pod('tiny-memory', sleeper('app', TEST_IMAGE, '      resources: {limits: {memory: 1Ki}}\n')),
        // A file bound over a directory of the image: refused at start.
        pod('bad-mount', sleeper('app', TEST_IMAGE, '      volumeMounts: [{name: f, mountPath: /bin}]\n'), `  volumes: [{name: f, hostPath: {path: ${hostFile}, type: File}}]\n`),
        // An entrypoint that does not exist: refused at start.
        pod('no-binary', `    - name: app\n      image: ${TEST_IMAGE}\n      command: [/no/such/binary]\n`),
        // A host port that another pod on the device holds: the engine cannot start the pod's sandbox.
        pod('port-clash', sleeper('app', TEST_IMAGE, '      ports: [{containerPort: 80, hostPort: 18080}]\n')),
        // One good container and one with a malformed image in the same pod.
        pod('mixed', sleeper('good') + sleeper('bad', POISON_IMAGE)),
      ].join('---\n'),
    );

    await waitFor('the healthy pod running', () => podRunning(hub, 'healthy'), 45_000);
    await waitFor('the good container of the mixed pod running', () => containerStatus('mixed', 'good')?.state.running, 30_000);

    const reasons: Record<(typeof POISON)[number], RegExp> = {
      'bad-name': /^InvalidImageName$/,
      'never-pull': /^ErrImageNeverPull$/,
      'no-registry': /^(ErrImagePull|ImagePullBackOff)$/,
      'tiny-memory': /^CreateContainerError$/,
      'bad-mount': /^(RunContainerError|CrashLoopBackOff)$/,
      'no-binary': /^(RunContainerError|CrashLoopBackOff)$/,
    };
    for (const name of POISON) {
      const status = await waitFor(`${name} to report its reason`, () => {
        const s = containerStatus(name, 'app');
        return s?.state.waiting?.reason && reasons[name].test(s.state.waiting.reason) ? s : undefined;
      }, 30_000);
      expect(status.ready).toBe(false);
      expect(getPod(hub, name)?.status?.message).toMatch(/^app: /);
    }
    expect(containerStatus('bad-name', 'app')!.state.waiting!.message).toContain(`"${INVALID_IMAGE}"`);
    expect(containerStatus('bad-name', 'app')!.state.waiting!.message).toMatch(/invalid reference format: repository name must be lowercase/);
    expect(containerStatus('never-pull', 'app')!.state.waiting!.message).toBe('Container image "flotilla-test/absent:1" is not present with pull policy of Never');
    expect(containerStatus('tiny-memory', 'app')!.state.waiting!.message).toMatch(/Minimum memory limit/);
    // The kubelet shows the containers of a pod without a sandbox as ContainerCreating; the message says why.
    const clash = await waitFor('port-clash to say why it has no sandbox', () => {
      const s = containerStatus('port-clash', 'app');
      return s?.state.waiting?.message ? s : undefined;
    }, 30_000);
    expect(clash.state.waiting).toMatchObject({ reason: 'ContainerCreating' });
    expect(clash.state.waiting!.message).toMatch(/^Failed to create pod sandbox: .*18080/);
    expect(getPod(hub, 'port-clash')?.status?.phase).toBe('Pending');
    expect(podRunning(hub, 'port-holder')).toBeDefined();
    // A container that could not start is a failed attempt (the kubelet's StartError), retried as a crash.
    for (const name of ['bad-mount', 'no-binary']) {
      const s = await waitFor(`${name}'s StartError as its last state`, () => {
        const c = containerStatus(name, 'app');
        return c?.state.waiting?.reason === 'CrashLoopBackOff' && c.lastState?.terminated ? c : undefined;
      }, 30_000);
      expect(s.lastState!.terminated).toMatchObject({ reason: 'StartError' });
      expect(s.restartCount).toBeGreaterThanOrEqual(1);
    }
    expect((containerStatus('no-binary', 'app')!.lastState!.terminated as { message?: string }).message).toMatch(/\/no\/such\/binary/);
    expect((containerStatus('bad-mount', 'app')!.lastState!.terminated as { message?: string }).message).toMatch(/not a directory/);
    const mixedBad = containerStatus('mixed', 'bad')!;
    expect(mixedBad.state.waiting?.reason).toBe('InvalidImageName');

    // The engine: the healthy pod and the good container run; the malformed image never became a
    // container, but its pod's sandbox runs (as the kubelet's does) for the containers that can.
    const running = async (podName: string) => (await engineContainers(dockerd.docker, { 'flotilla.pod': podName })).filter((c) => c.state === 'running').map((c) => c.labels['flotilla.container']).sort();
    expect(await running('healthy')).toEqual(['POD', 'app']);
    expect(await running('mixed')).toEqual(['POD', 'good']);
    expect((await engineContainers(dockerd.docker, { 'flotilla.pod': 'bad-name', 'flotilla.container': 'app' }))).toEqual([]);
    expect((await engineContainers(dockerd.docker, { 'flotilla.pod': 'tiny-memory', 'flotilla.container': 'app' }))).toEqual([]);

    // A DaemonSet applied after the poison pods runs on the device.
    apply(hub, `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: after}
spec:
  selector: {matchLabels: {app: after}}
  template:
    metadata: {labels: {app: after}}
    spec:
      nodeSelector: {fleet: poison}
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: ${TEST_IMAGE}
          command: [sleep, "3600"]
`);
    await waitFor('the DaemonSet pod running on the device', () => {
      const pods = getJson<{ items: { metadata: { name: string } }[] }>(hub, ['pods']).items.filter((p) => p.metadata.name.startsWith('after-'));
      return pods.length === 1 && podRunning(hub, pods[0]!.metadata.name);
    }, 30_000);
    expect(podRunning(hub, 'healthy')).toBeDefined();
    expect(logCount(agent, 'reconcile failed')).toBe(0);
  });

  it('retries each poison pod with back-off rather than on every pass', async () => {
    // The third attempt to create tiny-memory's container comes 10 s, then 20 s after the first.
    await waitFor('three attempts at tiny-memory', () => refusals('tiny-memory').length >= 3, 45_000);
    const created = gapsSeconds(refusals('tiny-memory'));
    // A container that cannot start is restarted at once, then after 10 s, 20 s… (crash-loop back-off).
    const started = gapsSeconds(refusals('no-binary'));
    const mounted = gapsSeconds(refusals('bad-mount'));
    const sandbox = gapsSeconds(refusals('port-clash'));
    console.log(`poison pods: seconds between engine refusals: tiny-memory ${created.map((g) => g.toFixed(1)).join(', ')}; no-binary ${started.map((g) => g.toFixed(1)).join(', ')}; bad-mount ${mounted.map((g) => g.toFixed(1)).join(', ')}; port-clash ${sandbox.map((g) => g.toFixed(1)).join(', ')}; ${logCount(agent, 'reconciled')} reconciles in all`);
    for (const gaps of [created, sandbox]) {
      expect(gaps[0]).toBeGreaterThan(9);
      for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThan(gaps[i - 1]! * 1.5);
    }
    for (const gaps of [started, mounted]) {
      expect(gaps.length).toBeGreaterThanOrEqual(1);
      expect(gaps.slice(1).every((g) => g > 9)).toBe(true);
    }
    // Nothing is asked of the engine for what no attempt can fix.
    expect(refusals('bad-name')).toEqual([]);
    expect(refusals('never-pull')).toEqual([]);
    // A crash-looping container keeps its current attempt and the one before, no more.
    expect((await engineContainers(dockerd.docker, { 'flotilla.pod': 'no-binary', 'flotilla.container': 'app' })).length).toBeLessThanOrEqual(2);
    expect(logCount(agent, 'reconcile failed')).toBe(0);
    // The kubelet's events reach the hub: Failed ("Error: …") for a container, FailedCreatePodSandBox for a sandbox.
    const events = getJson<{ items: { reason: string; message: string; type: string; involvedObject: { name: string } }[] }>(hub, ['events']).items;
    const eventsOf = (name: string) => events.filter((e) => e.involvedObject.name === name && e.type === 'Warning');
    expect(eventsOf('tiny-memory').some((e) => e.reason === 'Failed' && /^Error: Minimum memory limit/.test(e.message))).toBe(true);
    expect(eventsOf('no-binary').some((e) => e.reason === 'Failed' && e.message.includes('/no/such/binary'))).toBe(true);
    expect(eventsOf('port-clash').some((e) => e.reason === 'FailedCreatePodSandBox' && e.message.includes('18080'))).toBe(true);
    // Each poison pod still says why it waits; the healthy one still runs.
    expect(containerStatus('tiny-memory', 'app')?.state.waiting?.reason).toBe('CreateContainerError');
    expect(containerStatus('bad-name', 'app')?.state.waiting?.reason).toBe('InvalidImageName');
    expect(podRunning(hub, 'healthy')).toBeDefined();
  });

  it('leaves a running pod whose changed spec it cannot read exactly as it is, and says why in an event', async () => {
    const keeper = (envName: string) => pod('keeper', `    - name: app\n      image: ${TEST_IMAGE}\n      command: [sleep, "3600"]\n      env: [{name: ${envName}, value: "1"}]\n`);
    apply(hub, keeper('READABLE_NAME'));
    await waitFor('keeper running', () => podRunning(hub, 'keeper'), 45_000);
    const before = await engineContainers(dockerd.docker, { 'flotilla.pod': 'keeper' });
    expect(before.map((c) => c.state)).toEqual(['running', 'running']);
    // The change reaches the device with an env var name its schema refuses: the pod is refused
    // alone, and its containers are neither replaced nor removed.
    apply(hub, keeper(UNREADABLE_ENV));
    const event = await waitFor('an InvalidPodSpec event for keeper', () => getJson<{ items: { reason: string; message: string; involvedObject: { name: string } }[] }>(hub, ['events']).items.find((e) => e.reason === 'InvalidPodSpec' && e.involvedObject.name === 'keeper'), 30_000);
    expect(event.message).toMatch(/spec\.containers\[0\]\.env\[0\]\.name/);
    // The rest of each set that carries the unreadable pod is reconciled: a pod applied now runs.
    apply(hub, pod('beside-keeper', sleeper('app')));
    await waitFor('beside-keeper running', () => podRunning(hub, 'beside-keeper'), 45_000);
    // A later reconcile (the healthy pods' status, a DaemonSet) does not touch it either.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await engineContainers(dockerd.docker, { 'flotilla.pod': 'keeper' })).toEqual(before);
    expect(podRunning(hub, 'beside-keeper')).toBeDefined();
    expect(logCount(agent, 'reconcile failed')).toBe(0);
  });
});
