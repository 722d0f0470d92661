import { copyFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, engineContainers, logCount, podManifest, podRunning, readyCondition, type NodeJson } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { getJson, startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// A device loses power at any moment: a state file may be torn or corrupt. The agent must start
// anyway, from the last good copy or from the hub's retained desired set, and must not take a
// missing desired set for an empty one (that would remove every pod it runs).

const NODE = 'edge';
let dockerd: TestDockerd;
let hub: RunningHub;
let agent: ManagedProcess;
const dirs = tempDir('state');
const stateDir = join(dirs.path, 'state');
const stateFile = (name: string) => join(stateDir, name);

function runAgent(): ManagedProcess {
  return startAgent({ hub, name: NODE, stateDir, dockerHost: dockerd.dockerHost });
}

/** Cuts a file in half, as a power loss in the middle of a non-atomic write would. */
function tear(name: string): void {
  truncateSync(stateFile(name), Math.floor(statSync(stateFile(name)).size / 2));
}

function isJson(name: string): boolean {
  try {
    JSON.parse(readFileSync(stateFile(name), 'utf8'));
    return true;
  } catch {
    return false;
  }
}

async function containerIds(): Promise<string[]> {
  return (await engineContainers(dockerd.docker, { 'flotilla.node': NODE })).map((c) => `${c.name} ${c.id} ${c.state}`);
}

async function hubBack(): Promise<void> {
  hub = await startHub({ dataDir: hub.dataDir, apiPort: hub.apiPort, mqttPort: hub.mqttPort });
  await waitFor('the node Ready and in sync', () => {
    const node = getJson<NodeJson>(hub, ['node', NODE]);
    return readyCondition(hub, NODE)?.status === 'True' && node.status?.observedRevision === node.status?.desiredRevision;
  }, 60_000);
  await waitFor('the pod reported Running', () => podRunning(hub, 'kept'), 30_000);
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'state' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  agent = runAgent();
  await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
  apply(hub, podManifest({ name: 'kept', node: NODE, image: TEST_IMAGE, command: ['sleep', '3600'] }));
  await waitFor('kept running', () => podRunning(hub, 'kept'), 30_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('torn and corrupt state files', () => {
  it('starts with both desired copies unreadable, leaves the pods alone, and takes the hub\'s set when it is back', async () => {
    const before = await containerIds();
    await agent.stop();
    await hub.process.stop();
    tear('desired.json');
    writeFileSync(stateFile('desired.json.bak'), '{"v":1,"rev":');
    writeFileSync(stateFile('credentials.json.bak'), '\u0000\u0000\u0000');
    writeFileSync(stateFile('desired.json.tmp'), '{"v":1,"rev":9,"pods":[{"uid"');

    agent = runAgent();
    await waitFor('a reconcile with nothing desired known', () => logCount(agent, 'no desired set yet; containers left as they are') >= 1, 30_000);
    expect(agent.exitCode).toBeUndefined();
    expect(agent.log()).toContain('desired.json is not valid JSON');
    expect(await containerIds()).toEqual(before);

    await hubBack();
    expect(await containerIds()).toEqual(before);
    expect(isJson('desired.json')).toBe(true);
  });

  it('falls back to the .bak copies of a torn desired set and torn credentials, with the hub away', async () => {
    const before = await containerIds();
    await agent.stop();
    await hub.process.stop();
    copyFileSync(stateFile('desired.json'), stateFile('desired.json.bak'));
    copyFileSync(stateFile('credentials.json'), stateFile('credentials.json.bak'));
    tear('desired.json');
    tear('credentials.json');

    agent = runAgent();
    await waitFor('a first reconcile of the set restored from disk', () => logCount(agent, 'restored the last desired set from disk') === 1 && logCount(agent, 'reconciled') >= 1, 30_000);
    expect(await containerIds()).toEqual(before);
    // Read from .bak, written back whole.
    expect(isJson('desired.json')).toBe(true);
    expect(isJson('credentials.json')).toBe(true);

    // The credentials from .bak are the device's own: the hub lets it in.
    await hubBack();
    expect(await containerIds()).toEqual(before);
  });
});
