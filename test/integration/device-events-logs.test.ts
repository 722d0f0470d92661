import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { joinHub } from '../../agent/link/join.js';
import { PROTOCOL_VERSION, encodePayload, type EventBatch } from '../../shared/protocol/messages.js';
import { Topics, deviceClientId, deviceUsername } from '../../shared/protocol/topics.js';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { BROKEN_IMAGE, TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { BIN, REPO, cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// What a device tells about its pods, and what it shows of their output: pod events from the
// agent reach `get events` and `describe pod`, and `flotilla logs` reads a container's output
// from the device over the rpc topics. Real hub, real agent, real dockerd.

interface EventJson {
  reason: string;
  message: string;
  type: string;
  count: number;
  involvedObject: { kind: string; name: string; uid?: string };
  source?: { component?: string; host?: string };
}
interface PodJson {
  metadata: { name: string; uid: string };
  spec: { nodeName?: string };
  status?: { phase?: string; containerStatuses?: { name: string; ready: boolean; restartCount: number }[] };
}
interface LogEntry {
  msg?: string;
  reason?: string;
  id?: string;
}

const topics = new Topics();
const dirs = tempDir('events-logs');
let dockerd: TestDockerd;
let hub: RunningHub;
let agent: ManagedProcess;

const PODS = `apiVersion: v1
kind: Pod
metadata: {name: chatter}
spec:
  nodeName: alpha
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: ${TEST_IMAGE}
      command: ["sh", "-c", "for i in 1 2 3; do echo line-$i; done; while true; do echo tick; sleep 1; done"]
    - name: side
      image: ${TEST_IMAGE}
      # The engine copies stdout and stderr concurrently: a pause keeps their order known.
      command: ["sh", "-c", "echo side-1; sleep 1; echo side-2 >&2; sleep 1; echo side-3; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: absent-image}
spec:
  nodeName: alpha
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: flotilla-test/absent:1
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {fleet: nowhere}
  containers:
    - name: app
      image: ${TEST_IMAGE}
`;

function events(): EventJson[] {
  return getJson<{ items: EventJson[] }>(hub, ['events']).items;
}

function eventsOf(pod: string): EventJson[] {
  return events().filter((e) => e.involvedObject.kind === 'Pod' && e.involvedObject.name === pod);
}

function pod(name: string): PodJson {
  return getJson<PodJson>(hub, ['pod', name]);
}

function nodeReady(name: string): boolean {
  const node = getJson<{ status?: { conditions?: { type: string; status: string }[] } }>(hub, ['node', name]);
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

function logLines(proc: ManagedProcess): LogEntry[] {
  return proc
    .log()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogEntry);
}

/** `flotilla logs …` left running, as a user following a container. */
function follow(args: string[]): { child: ChildProcess; stdout: () => string; exited: Promise<number | null> } {
  let out = '';
  const child = spawn(process.execPath, [BIN, 'logs', ...args], { cwd: REPO, env: { ...process.env, FLOTILLA_SERVER: hub.apiUrl, FLOTILLA_TOKEN: hub.adminToken }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, stdout: () => out, exited };
}

const ticks = (text: string) => text.split('\n').filter((l) => l === 'tick').length;

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'evlogs' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  agent = startAgent({ hub, name: 'alpha', stateDir: join(dirs.path, 'state-alpha'), dockerHost: dockerd.dockerHost });
  await waitFor('alpha Ready', () => nodeReady('alpha'), 60_000);
  const applied = cli(hub, ['apply', '-f', '-'], { input: PODS });
  expect(applied.code, applied.stderr).toBe(0);
  await waitFor('chatter running', () => {
    const p = pod('chatter');
    return p.status?.phase === 'Running' && p.status.containerStatuses?.length === 2 && p.status.containerStatuses.every((c) => c.ready);
  }, 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('events from the device', () => {
  it('shows the containers created and started, from flotilla-agent on the node', async () => {
    const mine = await waitFor('Created and Started of both containers', () => {
      const found = eventsOf('chatter');
      return found.filter((e) => e.reason === 'Created' || e.reason === 'Started').length === 4 ? found : undefined;
    }, 30_000);
    expect(mine.map((e) => `${e.reason}: ${e.message}`).sort()).toEqual(['Created: Created container main', 'Created: Created container side', 'Started: Started container main', 'Started: Started container side']);
    for (const e of mine) {
      expect(e.source).toEqual({ component: 'flotilla-agent', host: 'alpha' });
      expect(e.involvedObject.uid).toBe(pod('chatter').metadata.uid);
      expect(e.type).toBe('Normal');
    }
    // The pod sandbox is not the user's container: no events about it.
    expect(events().some((e) => e.message.includes('POD'))).toBe(false);
  });

  it('shows a pull, and its failure as a Warning, for an image the device cannot get', async () => {
    const found = await waitFor('Pulling and Failed', () => {
      const e = eventsOf('absent-image');
      return e.some((x) => x.reason === 'Pulling') && e.some((x) => x.reason === 'Failed') ? e : undefined;
    }, 60_000);
    expect(found.find((e) => e.reason === 'Pulling')).toMatchObject({ type: 'Normal', message: 'Pulling image "flotilla-test/absent:1"', source: { component: 'flotilla-agent', host: 'alpha' } });
    expect(found.find((e) => e.reason === 'Failed')).toMatchObject({ type: 'Warning', source: { host: 'alpha' } });
    const table = cli(hub, ['get', 'events']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/Normal\s+Pulling\s+pod\/absent-image\s+Pulling image "flotilla-test\/absent:1"/);
    expect(table.stdout).toMatch(/Normal\s+Started\s+pod\/chatter\s+Started container main/);
  });

  it('lists them under describe pod, from the agent on that node', () => {
    const described = cli(hub, ['describe', 'pod', 'chatter']);
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/Normal\s+Created\s+\S+\s+flotilla-agent, alpha\s+Created container main/);
    expect(described.stdout).toMatch(/Normal\s+Started\s+\S+\s+flotilla-agent, alpha\s+Started container side/);
  });

  it('ignores what a device says about a pod bound to another node', async () => {
    const intruder = await joinHub({ hub: hub.mqttUrl, token: hub.joinToken, name: 'intruder', labels: {}, topics, timeoutMs: 10_000 });
    const client = await mqtt.connectAsync(hub.mqttUrl, { clientId: deviceClientId(intruder.node), username: deviceUsername(intruder.node), password: intruder.password, protocolVersion: 4, reconnectPeriod: 0 });
    onTestFinished(() => client.endAsync());
    const chatter = pod('chatter');
    const forged: EventBatch = {
      v: PROTOCOL_VERSION,
      events: [{ podUid: chatter.metadata.uid, podName: 'chatter', namespace: 'default', container: 'main', type: 'Warning', reason: 'Forged', message: 'this pod is on fire', ts: new Date().toISOString() }],
    };
    // The broker lets it publish on its own events topic: it is the hub that refuses the content.
    await client.publishAsync(topics.node(intruder.node, 'events'), encodePayload(forged), { qos: 1 });
    await waitFor('the hub to ignore the event', () => logLines(hub.process).some((l) => l.msg === 'device event about a pod not bound to that node ignored'), 10_000);
    expect(events().some((e) => e.reason === 'Forged')).toBe(false);
  });

  it('says BackOff once per back-off period of a crash-looping container, not on every reconcile', async () => {
    const applied = cli(hub, ['apply', '-f', '-'], { input: `apiVersion: v1\nkind: Pod\nmetadata: {name: crasher}\nspec:\n  nodeName: alpha\n  terminationGracePeriodSeconds: 1\n  containers: [{name: app, image: "${BROKEN_IMAGE}"}]\n` });
    expect(applied.code, applied.stderr).toBe(0);
    const restarts = await waitFor('two restarts', () => {
      const n = pod('crasher').status?.containerStatuses?.[0]?.restartCount ?? 0;
      return n >= 2 ? n : undefined;
    }, 60_000);
    const backoff = await waitFor('a BackOff event', () => eventsOf('crasher').find((e) => e.reason === 'BackOff'), 10_000);
    expect(backoff).toMatchObject({ type: 'Warning', source: { component: 'flotilla-agent', host: 'alpha' } });
    expect(backoff.message).toMatch(/^Back-off restarting failed container app in pod crasher_default\(/);
    // Between two restarts there is one back-off period, and several reconciles (engine events, resyncs).
    expect(backoff.count).toBeGreaterThanOrEqual(1);
    expect(backoff.count).toBeLessThanOrEqual(restarts);
    expect(cli(hub, ['delete', 'pod', 'crasher']).code).toBe(0);
  });
});

describe('flotilla logs', () => {
  it('prints the last lines of a container, stdout and stderr as the engine recorded them', () => {
    const side = cli(hub, ['logs', 'chatter', '-c', 'side', '--tail', '2']);
    expect(side.code, side.stderr).toBe(0);
    expect(side.stdout).toBe('side-2\nside-3\n');
    const main = cli(hub, ['logs', 'pod/chatter', '-c', 'main', '--tail', '2']);
    expect(main.code, main.stderr).toBe(0);
    // It has been ticking for a while by now.
    expect(main.stdout).toBe('tick\ntick\n');
    const all = cli(hub, ['logs', 'chatter', '-c', 'main']);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout.startsWith('line-1\nline-2\nline-3\ntick\n')).toBe(true);
  });

  it('follows a container until the reader stops, and the device stops streaming then', async () => {
    const before = logLines(agent).filter((l) => l.msg === 'rpc call ended' && l.reason === 'cancelled by the hub').length;
    const f = follow(['chatter', '-c', 'main', '-f', '--tail', '1']);
    const first = await waitFor('the first lines', () => (f.stdout().length > 0 ? f.stdout() : undefined), 20_000);
    await waitFor('two more ticks to arrive', () => ticks(f.stdout()) >= ticks(first) + 2, 20_000);
    expect(f.stdout().split('\n').every((l) => l === '' || l === 'tick' || /^line-\d$/.test(l))).toBe(true);
    f.child.kill('SIGINT');
    await f.exited;
    await waitFor('the agent to end the stream the hub cancelled', () => logLines(agent).filter((l) => l.msg === 'rpc call ended' && l.reason === 'cancelled by the hub').length > before, 15_000);
  });

  it('refuses a container the pod does not have, naming the ones it has', () => {
    const unknown = cli(hub, ['logs', 'chatter', '-c', 'nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('container nope is not valid for pod chatter, choose one of: [main side]');
    const unnamed = cli(hub, ['logs', 'chatter']);
    expect(unnamed.code).toBe(1);
    expect(unnamed.stderr).toContain('a container name must be specified for pod chatter, choose one of: [main side]');
  });

  it('refuses a pod that is not on a node yet, a pod that does not exist, and a bad --tail', () => {
    const unbound = cli(hub, ['logs', 'nowhere']);
    expect(unbound.code).toBe(1);
    expect(unbound.stderr).toContain('pod nowhere does not have a host assigned');
    const missing = cli(hub, ['logs', 'ghost']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('pods "ghost" not found');
    expect(cli(hub, ['logs', 'chatter', '-c', 'main', '--tail', 'many']).code).toBe(2);
  });

  it('says a container not created yet is not there', () => {
    const r = cli(hub, ['logs', 'absent-image']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('container "app" has not been created yet');
  });

  it('says at once that the node is not connected when its agent is stopped', async () => {
    await agent.stop();
    await waitFor('alpha not Ready', () => !nodeReady('alpha'), 30_000);
    const started = Date.now();
    const r = cli(hub, ['logs', 'chatter', '-c', 'main']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('node "alpha" is not connected; logs are unavailable');
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
