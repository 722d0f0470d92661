import { randomBytes } from 'node:crypto';
import { copyFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, engineContainers, logCount, podManifest, podRunning, readyCondition, type NodeJson } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// A damaged state file must never take a device back to an older revision (removing the pods of
// the one it runs), and damaged credentials must never leave it unable to rejoin for ever. Each
// case stops the agent with the hub away, damages the files, and starts the agent again: the pods
// must stay exactly as they were, and the agent must take the hub's set once the hub is back.

const NODE = 'edge';
const RESERVED_LABEL = 'node-restriction.flotilla.io/vault';
let dockerd: TestDockerd;
let hub: RunningHub;
let agent: ManagedProcess;
const dirs = tempDir('devstate');
const stateDir = join(dirs.path, 'state');
const stateFile = (name: string) => join(stateDir, name);
/** desired.json as it was one revision ago (only the pod `first`). */
const olderCopy = join(dirs.path, 'desired-older.json');

function runAgent(): ManagedProcess {
  return startAgent({ hub, name: NODE, stateDir, dockerHost: dockerd.dockerHost });
}

function tear(name: string): void {
  truncateSync(stateFile(name), Math.floor(statSync(stateFile(name)).size / 2));
}

async function containers(): Promise<string[]> {
  return (await engineContainers(dockerd.docker, { 'flotilla.node': NODE })).map((c) => `${c.name} ${c.id} ${c.state}`);
}

function desiredOnDisk(): { rev: number; pods: { name: string }[] } {
  return JSON.parse(readFileSync(stateFile('desired.json'), 'utf8')) as { rev: number; pods: { name: string }[] };
}

/** The agent started on damaged files has made its first decision: a reconcile, or none for want of a set. */
async function settled(proc: ManagedProcess): Promise<'reconciled' | 'left alone'> {
  return waitFor('the agent\'s first reconcile', () => {
    if (proc.exitCode !== undefined) throw new Error(`agent exited with ${proc.exitCode}: ${proc.log().slice(-2000)}`);
    if (logCount(proc, 'reconciled') > 0) return 'reconciled' as const;
    return logCount(proc, 'no desired set yet; containers left as they are') > 0 ? ('left alone' as const) : undefined;
  }, 30_000);
}

/** Restarts the agent (hub away) after `damage`; the containers must be exactly as before. */
async function restartAfter(damage: () => void): Promise<'reconciled' | 'left alone'> {
  const before = await containers();
  expect(before.filter((c) => c.endsWith(' running'))).toHaveLength(4);
  await agent.stop();
  damage();
  agent = runAgent();
  const outcome = await settled(agent);
  expect(await containers()).toEqual(before);
  expect(agent.exitCode).toBeUndefined();
  return outcome;
}

async function hubBack(): Promise<void> {
  hub = await startHub({ dataDir: hub.dataDir, apiPort: hub.apiPort, mqttPort: hub.mqttPort });
  await waitFor('the node Ready and in sync', () => {
    const node = getJson<NodeJson>(hub, ['node', NODE]);
    return readyCondition(hub, NODE)?.status === 'True' && node.status?.observedRevision === node.status?.desiredRevision;
  }, 60_000);
  await waitFor('both pods reported Running', () => podRunning(hub, 'first') && podRunning(hub, 'second'), 30_000);
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'devstate' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  agent = runAgent();
  await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
  apply(hub, podManifest({ name: 'first', node: NODE, image: TEST_IMAGE, command: ['sleep', '3600'] }));
  await waitFor('first running', () => podRunning(hub, 'first'), 30_000);
  await waitFor('the revision with first on disk', () => desiredOnDisk().pods.length === 1, 10_000);
  copyFileSync(stateFile('desired.json'), olderCopy);
  apply(hub, podManifest({ name: 'second', node: NODE, image: TEST_IMAGE, command: ['sleep', '3600'] }));
  await waitFor('second running', () => podRunning(hub, 'second'), 30_000);
  await waitFor('the revision with both pods on disk', () => desiredOnDisk().pods.length === 2, 10_000);
  await hub.process.stop();
}, 180_000);

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a damaged desired.json, with the hub away', () => {
  it.each([
    ['truncated to nothing', () => truncateSync(stateFile('desired.json'), 0)],
    ['filled with garbage', () => writeFileSync(stateFile('desired.json'), randomBytes(4096))],
    ['torn in half', () => tear('desired.json')],
    ['valid JSON of the wrong shape', () => writeFileSync(stateFile('desired.json'), JSON.stringify({ v: 1, rev: 'seven', pods: { first: true } }))],
  ])('%s: the pods of the current revision keep running', async (_case, damage) => {
    expect(await restartAfter(damage)).toBe('reconciled');
    expect(agent.log()).toContain('desired.json');
    // The second copy holds the same revision, and is written back over the damaged one.
    expect(desiredOnDisk().pods.map((p) => p.name).sort()).toEqual(['first', 'second']);
  });

  it('the revision record damaged (both copies): the main copy of the set runs, and the record is written again', async () => {
    expect(
      await restartAfter(() => {
        writeFileSync(stateFile('desired-revision.json'), randomBytes(16));
        writeFileSync(stateFile('desired-revision.json.bak'), '{"rev":"x"}');
      }),
    ).toBe('reconciled');
    expect(JSON.parse(readFileSync(stateFile('desired-revision.json'), 'utf8'))).toEqual({ rev: desiredOnDisk().rev });
  });

  it('refuses a .bak of an older revision (the main copy torn): no pod is removed', async () => {
    expect(
      await restartAfter(() => {
        tear('desired.json');
        copyFileSync(olderCopy, stateFile('desired.json.bak'));
      }),
    ).toBe('left alone');
    expect(agent.log()).toMatch(/desired\.json\.bak holds revision \d+, older than revision \d+ that this device last took/);
  });

  it('refuses an older revision put back as the main copy, the .bak damaged too: no pod is removed', async () => {
    expect(
      await restartAfter(() => {
        copyFileSync(olderCopy, stateFile('desired.json'));
        writeFileSync(stateFile('desired.json.bak'), '{"v":1,"rev":');
      }),
    ).toBe('left alone');
  });

  it('both copies damaged: no pod is removed, and the hub\'s set is taken when the hub is back', async () => {
    expect(
      await restartAfter(() => {
        writeFileSync(stateFile('desired.json'), randomBytes(100));
        writeFileSync(stateFile('desired.json.bak'), '[]');
      }),
    ).toBe('left alone');
    expect(agent.log()).toContain('every container is left as it is until the hub sends the desired set');
    const before = await containers();
    await hubBack();
    expect(await containers()).toEqual(before);
    expect(desiredOnDisk().rev).toBe(getJson<NodeJson>(hub, ['node', NODE]).status?.desiredRevision);
    // The device told the hub why it had waited.
    await waitFor('the DesiredStateUnreadable event', () => cli(hub, ['get', 'events']).stdout.includes('DesiredStateUnreadable'), 15_000);
    // It follows the hub from then on.
    const deleted = cli(hub, ['delete', 'pod', 'second']);
    expect(deleted.code, deleted.stderr).toBe(0);
    await waitFor('second gone from the engine', async () => (await containers()).every((c) => !c.includes('second')), 30_000);
    apply(hub, podManifest({ name: 'second', node: NODE, image: TEST_IMAGE, command: ['sleep', '3600'] }));
    await waitFor('second running again', () => podRunning(hub, 'second'), 30_000);
  });
});

describe('damaged credentials', () => {
  it('runs the pods from disk with the hub away, and joins again under its name when the hub is back', async () => {
    await hub.process.stop();
    const before = await containers();
    await agent.stop();
    writeFileSync(stateFile('credentials.json'), randomBytes(64));
    writeFileSync(stateFile('credentials.json.bak'), JSON.stringify({ hub: hub.mqttUrl }));
    agent = runAgent();
    expect(await settled(agent)).toBe('reconciled');
    await waitFor('a join attempt', () => logCount(agent, 'could not join yet') > 0, 30_000);
    expect(await containers()).toEqual(before);
    await hubBack();
    expect(await containers()).toEqual(before);
    expect(agent.exitCode).toBeUndefined();
    expect(JSON.parse(readFileSync(stateFile('credentials.json'), 'utf8'))).toMatchObject({ node: NODE });
    // The credentials it had are revoked; the hub recorded why.
    const list = cli(hub, ['token', 'list', '-o', 'json']);
    expect(list.code, list.stderr).toBe(0);
    const devices = (JSON.parse(list.stdout) as { items: { kind: string; node: string | null; revokedAt: string | null }[] }).items.filter((t) => t.kind === 'device' && t.node === NODE);
    expect(devices.length).toBe(2);
    expect(devices.filter((t) => t.revokedAt === null)).toHaveLength(1);
    expect(cli(hub, ['get', 'events']).stdout).toContain('Rejoined');
  });

  it('joins again when the hub refuses credentials that are whole but wrong, its pods untouched', async () => {
    const before = await containers();
    await agent.stop();
    const creds = JSON.parse(readFileSync(stateFile('credentials.json'), 'utf8')) as { password: string };
    const wrong = JSON.stringify({ ...creds, password: `${creds.password.slice(0, -2)}xx` });
    writeFileSync(stateFile('credentials.json'), wrong);
    writeFileSync(stateFile('credentials.json.bak'), wrong);
    agent = runAgent();
    await waitFor('joined again', () => logCount(agent, 'joined the fleet') > 0, 60_000);
    expect(logCount(agent, 'the hub refused this device\'s credentials; joining again with the join token')).toBe(1);
    await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 30_000);
    await waitFor('both pods reported Running', () => podRunning(hub, 'first') && podRunning(hub, 'second'), 30_000);
    expect(await containers()).toEqual(before);
    expect(JSON.parse(readFileSync(stateFile('credentials.json'), 'utf8'))).not.toEqual(JSON.parse(wrong));
  });

  it('keeps its pods running when the hub refuses the rejoin, says why, and gets in once the operator acts', async () => {
    const labelled = cli(hub, ['label', 'node', NODE, `${RESERVED_LABEL}=true`]);
    expect(labelled.code, labelled.stderr).toBe(0);
    const before = await containers();
    await agent.stop();
    writeFileSync(stateFile('credentials.json'), '');
    writeFileSync(stateFile('credentials.json.bak'), '');
    agent = runAgent();
    await waitFor('the refusal logged', () => logCount(agent, `the hub refused to let this device join again; its pods keep running from the desired set on disk. To let it in: put its credentials.json back in ${stateDir}, or run \`flotilla delete node ${NODE}\` on the hub`) > 0, 30_000);
    expect(agent.log()).toContain(`the node carries label ${RESERVED_LABEL}`);
    expect(agent.exitCode).toBeUndefined();
    expect(await containers()).toEqual(before);
    const unlabelled = cli(hub, ['label', 'node', NODE, `${RESERVED_LABEL}-`]);
    expect(unlabelled.code, unlabelled.stderr).toBe(0);
    await waitFor('joined again', () => logCount(agent, 'joined the fleet') > 0, 60_000);
    await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 30_000);
    await waitFor('both pods reported Running', () => podRunning(hub, 'first') && podRunning(hub, 'second'), 30_000);
    expect(await containers()).toEqual(before);
  });
});
