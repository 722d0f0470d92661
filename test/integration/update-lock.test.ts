import { existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { buildTestImages, TEST_IMAGE, TEST_IMAGE_V2 } from '../harness/images.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';
import { UPDATE_LOCK_FILE, UPDATE_LOCK_MOUNT_PATH, UPDATE_LOCK_OVERRIDE_ANNOTATION, UPDATE_LOCKED_CONDITION } from '../../shared/protocol/update-lock.js';

// The device veto of an update (balena's update lock), on a real agent and engine: a container
// that writes /run/flotilla/update.lock keeps its pod on the old spec until the lock goes or the
// pod's override annotation covers it.

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}
interface PodJson {
  metadata: { name: string; uid: string; annotations?: Record<string, string> };
  spec: { nodeName?: string };
  status?: { conditions?: Condition[]; containerStatuses?: { ready: boolean; state: { waiting?: { reason?: string } } }[] };
}
interface EventJson {
  reason: string;
  type: string;
  message: string;
  involvedObject: { kind: string; name: string };
}
interface AppContainer {
  id: string;
  image: string;
  state: string;
  command: string;
}

const NODE = 'solo';
let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('update-lock');
const stateDir = join(dirs.path, `state-${NODE}`);

function daemonSet(image: string, sleep: number): string {
  return `apiVersion: flotilla/v1
kind: DaemonSet
metadata: {name: locker}
spec:
  selector: {matchLabels: {app: locker}}
  updateStrategy: {type: RollingUpdate}
  template:
    metadata: {labels: {app: locker}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: ${image}
          command: ["sh", "-c", "touch ${UPDATE_LOCK_MOUNT_PATH}/${UPDATE_LOCK_FILE}; exec sleep ${sleep}"]
`;
}

function apply(manifest: string): void {
  const file = join(dirs.path, `locker-${Date.now()}.yaml`);
  writeFileSync(file, manifest);
  const r = cli(hub, ['apply', '-f', file]);
  expect(r.code, r.stderr).toBe(0);
}

function thePod(): PodJson | undefined {
  return getJson<{ items: PodJson[] }>(hub, ['pods']).items.find((p) => p.spec.nodeName === NODE);
}

function lockCondition(pod: PodJson | undefined): Condition | undefined {
  return pod?.status?.conditions?.find((c) => c.type === UPDATE_LOCKED_CONDITION);
}

function podEvents(name: string, reason: string): EventJson[] {
  return getJson<{ items: EventJson[] }>(hub, ['events']).items.filter((e) => e.involvedObject.kind === 'Pod' && e.involvedObject.name === name && e.reason === reason);
}

/** The pod's app containers on the engine, newest first. */
async function appContainers(): Promise<AppContainer[]> {
  const list = await dockerd.docker.listContainers({ all: true, filters: { label: [`flotilla.node=${NODE}`, 'flotilla.container=app'] } });
  return list.sort((a, b) => b.Created - a.Created).map((c) => ({ id: c.Id, image: c.Image, state: c.State, command: c.Command }));
}

async function runningApp(): Promise<AppContainer | undefined> {
  return (await appContainers()).find((c) => c.state === 'running');
}

/** The lock file as the agent sees it on the device, and its time as the condition shows it. */
function lockOnDevice(uid: string): { path: string; time: string } | undefined {
  const path = join(stateDir, 'pods', uid, 'flotilla', UPDATE_LOCK_FILE);
  return existsSync(path) ? { path, time: new Date(Math.trunc(statSync(path).mtimeMs)).toISOString() } : undefined;
}

/** Runs a command in a container, as its own process would, and returns its exit code. */
async function execIn(id: string, cmd: string[]): Promise<number> {
  const exec = await dockerd.docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({});
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('error', reject);
    stream.resume();
  });
  return (await exec.inspect()).ExitCode ?? -1;
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'update-lock' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  startAgent({ hub, name: NODE, stateDir, dockerHost: dockerd.dockerHost });
  await waitFor('the node Ready', () => getJson<{ status?: { conditions?: Condition[] } }>(hub, ['node', NODE]).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'), 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('an update lock on a real device', () => {
  let locked: AppContainer;
  let lockTime = '';
  let podName = '';

  it('starts the pod despite the lock its container writes, with the lock folder mounted read-write', async () => {
    apply(daemonSet(TEST_IMAGE, 3600));
    const pod = await waitFor('the pod running', () => {
      const p = thePod();
      return p?.status?.containerStatuses?.every((c) => c.ready) ? p : undefined;
    }, 60_000);
    podName = pod.metadata.name;
    locked = (await waitFor('the app container', runningApp, 30_000))!;
    await waitFor('the lock file on the device', () => lockOnDevice(pod.metadata.uid), 30_000);
    const mounts = (await dockerd.docker.getContainer(locked.id).inspect()).Mounts;
    expect(mounts.find((m) => m.Destination === UPDATE_LOCK_MOUNT_PATH)).toMatchObject({ RW: true, Source: join(stateDir, 'pods', pod.metadata.uid, 'flotilla') });
    // A lock that defers nothing is no condition.
    expect(lockCondition(thePod())).toBeUndefined();
  });

  it('keeps the old container running while the lock is held, and says so in the pod\'s status', async () => {
    const applied = Date.now();
    apply(daemonSet(TEST_IMAGE_V2, 3600));
    const pod = await waitFor('the UpdateLocked condition', () => {
      const p = thePod();
      return lockCondition(p)?.status === 'True' ? p : undefined;
    }, 60_000);
    console.log(`apply -> UpdateLocked in the pod's status: ${Date.now() - applied} ms`);
    const lock = lockOnDevice(pod.metadata.uid)!;
    lockTime = lock.time;
    expect(lockCondition(pod)).toEqual({ type: UPDATE_LOCKED_CONDITION, status: 'True', reason: 'UpdateLockHeld', message: `update deferred by ${UPDATE_LOCK_MOUNT_PATH}/${UPDATE_LOCK_FILE}`, lastTransitionTime: lockTime });
    expect(pod.status?.containerStatuses?.[0]).toMatchObject({ ready: true, state: { waiting: { reason: 'UpdateLocked' } } });
    // Held across the agent's resyncs (every 10 s): the same container, untouched.
    await new Promise((r) => setTimeout(r, 11_000));
    const apps = await appContainers();
    expect(apps.map((c) => c.id)).toEqual([locked.id]);
    expect(apps[0]).toMatchObject({ state: 'running', image: TEST_IMAGE });
    expect(lockCondition(thePod())?.lastTransitionTime).toBe(lockTime);
    expect(podEvents(podName, 'UpdateLockHeld')).toHaveLength(1);
    const table = cli(hub, ['get', 'pods']);
    expect(table.stdout).toMatch(/locker-\w+\s+1\/1\s+UpdateLocked/);
  });

  it('replaces the containers once the pod\'s override annotation covers the lock, with an event', async () => {
    const res = await fetch(`${hub.apiUrl}/api/v1/namespaces/default/pods/${podName}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${hub.adminToken}`, 'content-type': 'application/merge-patch+json' },
      body: JSON.stringify({ metadata: { annotations: { [UPDATE_LOCK_OVERRIDE_ANNOTATION]: lockTime } } }),
    });
    expect(res.status, await res.text()).toBe(200);
    const updated = await waitFor('the new container running', async () => {
      const app = await runningApp();
      return app && app.id !== locked.id ? app : undefined;
    }, 60_000);
    expect(updated.image).toBe(TEST_IMAGE_V2);
    expect((await appContainers()).some((c) => c.id === locked.id)).toBe(false);
    await waitFor('the condition gone', () => !lockCondition(thePod()), 30_000);
    const overridden = await waitFor('the UpdateLockOverridden event', () => podEvents(podName, 'UpdateLockOverridden')[0], 30_000);
    expect(overridden.type).toBe('Warning');
    expect(overridden.message).toContain(lockTime);
    locked = updated;
  });

  it('holds a lock written after the override, and proceeds by itself when the container removes it', async () => {
    // The new container wrote its lock when it started, after the override's time.
    apply(daemonSet(TEST_IMAGE_V2, 3601));
    const pod = await waitFor('the UpdateLocked condition again', () => {
      const p = thePod();
      return lockCondition(p)?.status === 'True' ? p : undefined;
    }, 60_000);
    expect(Date.parse(lockCondition(pod)!.lastTransitionTime!)).toBeGreaterThan(Date.parse(lockTime));
    expect(pod.metadata.annotations?.[UPDATE_LOCK_OVERRIDE_ANNOTATION]).toBe(lockTime);
    expect((await runningApp())?.id).toBe(locked.id);
    expect(await execIn(locked.id, ['rm', `${UPDATE_LOCK_MOUNT_PATH}/${UPDATE_LOCK_FILE}`])).toBe(0);
    const released = Date.now();
    const updated = await waitFor('the new container running', async () => {
      const app = await runningApp();
      return app && app.id !== locked.id ? app : undefined;
    }, 30_000);
    console.log(`update lock removed -> container replaced: ${Date.now() - released} ms`);
    expect(updated.command).toContain('3601');
    await waitFor('the condition gone', () => !lockCondition(thePod()), 30_000);
    expect(podEvents(podName, 'UpdateLockOverridden')).toHaveLength(1);
    locked = updated;
  });

  it('notices a lock that goes without any engine event, between reconciles', async () => {
    apply(daemonSet(TEST_IMAGE_V2, 3602));
    const pod = await waitFor('the UpdateLocked condition again', () => {
      const p = thePod();
      return lockCondition(p)?.status === 'True' ? p : undefined;
    }, 60_000);
    // As an app that deletes its own lock file: the engine sees nothing of it.
    rmSync(lockOnDevice(pod.metadata.uid)!.path);
    const released = Date.now();
    const updated = await waitFor('the new container running', async () => {
      const app = await runningApp();
      return app && app.id !== locked.id ? app : undefined;
    }, 30_000);
    console.log(`update lock removed on the device -> container replaced: ${Date.now() - released} ms`);
    expect(updated.command).toContain('3602');
    await waitFor('the condition gone', () => !lockCondition(thePod()), 30_000);
  });

  it('does not hold back the pod\'s deletion', async () => {
    expect(existsSync(join(stateDir, 'pods', thePod()!.metadata.uid, 'flotilla', UPDATE_LOCK_FILE))).toBe(true);
    const uid = thePod()!.metadata.uid;
    const del = cli(hub, ['delete', 'daemonset', 'locker']);
    expect(del.code, del.stderr).toBe(0);
    await waitFor('the containers removed', async () => (await appContainers()).length === 0, 60_000);
    await waitFor('the pod\'s lock folder removed', () => !existsSync(join(stateDir, 'pods', uid)), 30_000);
  });
});
