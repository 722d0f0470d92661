import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { joinHub } from '../../agent/link/join.js';
import type { DeviceCredentials } from '../../agent/state/state.js';
import { PROTOCOL_VERSION, statusReportSchema } from '../../shared/protocol/messages.js';
import { HUB_USERNAME, JOIN_USERNAME, Topics, deviceClientId, deviceUsername, joinClientId } from '../../shared/protocol/topics.js';
import { requireTool, startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, logCount, podManifest, podRunning, readyCondition } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { startMosquitto, type TestMosquitto } from '../harness/mosquitto.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// The fleet on an external broker: Debian's Mosquitto 2.0, configured by
// `flotilla broker-config mosquitto`, the hub joining it as a client (`--broker`), a real agent
// joining through it and running a pod on a real engine, and the broker, not the hub, holding
// the line: every client authenticated, every topic authorised (docs/PROTOCOL.md, 'Who may publish and subscribe').

const MOSQUITTO_PUB = '/usr/bin/mosquitto_pub';
const NOT_AUTHORIZED = 5;
const SUBACK_FAILURE = 0x80;

const topics = new Topics();
const dirs = tempDir('extbroker');
const hubDir = join(dirs.path, 'hub');
let dockerd: TestDockerd;
let mosquitto: TestMosquitto;
let hub: RunningHub;
let beta: DeviceCredentials;
let clients: MqttClient[] = [];

interface NodeJson {
  status?: { nodeInfo?: { agentVersion?: string } };
}

async function connect(opts: IClientOptions): Promise<MqttClient> {
  const client = await mqtt.connectAsync(mosquitto.url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

/** The CONNACK return code of a refused connection (fails if the connection is accepted). */
async function refusal(opts: IClientOptions): Promise<number> {
  try {
    await connect(opts);
  } catch (err) {
    return (err as { code: number }).code;
  }
  return expect.fail('the connection was accepted');
}

/** The SUBACK return codes for one subscription, granted or refused. */
function suback(client: MqttClient, topic: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(topic, { qos: 1 }, (err, _granted, packet) => {
      if (packet && 'granted' in packet) resolve(packet.granted as number[]);
      else reject(err ?? new Error('no SUBACK'));
    });
  });
}

function deviceOptions(creds: { node: string; password: string }): IClientOptions {
  return { clientId: deviceClientId(creds.node), username: deviceUsername(creds.node), password: creds.password };
}

function statusReport(agentVersion: string): string {
  return JSON.stringify(statusReportSchema.parse({
    v: PROTOCOL_VERSION,
    ts: new Date().toISOString(),
    observedRev: null,
    node: { info: { hostname: 'beta', operatingSystem: 'linux', architecture: 'arm64', agentVersion }, capacity: { cpu: '1', memory: '1Gi', pods: '10' }, engineReady: true },
    pods: [],
  }));
}

function agentVersionOf(name: string): string | undefined {
  return getJson<NodeJson>(hub, ['node', name]).status?.nodeInfo?.agentVersion;
}

function join_(name: string, token: string): Promise<DeviceCredentials> {
  return joinHub({ hub: mosquitto.url, token, name, labels: {}, topics, timeoutMs: 10_000 });
}

function run(file: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 20_000, encoding: 'utf8' }, (err, _stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr }));
  });
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'extbroker' });
  await buildTestImages(dockerd.docker);
  mosquitto = await startMosquitto({ dir: join(dirs.path, 'broker'), hubDataDir: hubDir });
  hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url] });
  startAgent({ hub, name: 'alpha', stateDir: join(dirs.path, 'state-alpha'), dockerHost: dockerd.dockerHost, hubUrl: mosquitto.url });
  beta = await join_('beta', hub.joinToken);
  await waitFor('node alpha Ready', () => readyCondition(hub, 'alpha')?.status === 'True', 60_000);
});

afterEach(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  clients = [];
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a fleet on an external Mosquitto', () => {
  it('lets a real agent join through Mosquitto and run a pod', async () => {
    // The hub talks to devices only through Mosquitto: it opened no MQTT port of its own.
    expect(hub.mqttUrl).toBe(mosquitto.url);
    expect(mosquitto.log()).toContain(`as ${deviceClientId('alpha')} `);
    apply(hub, podManifest({ name: 'web', node: 'alpha', image: TEST_IMAGE, command: ['httpd', '-f', '-p', '8080'] }));
    const started = Date.now();
    await waitFor('pod web Running on alpha', () => podRunning(hub, 'web'), 60_000);
    console.log(`external broker: apply -> Running in ${Date.now() - started} ms`);
  });

  it("counts connected clients from the broker's own figure, without the hub itself", async () => {
    // The broker publishes $SYS/broker/clients/connected (retained) every sys_interval (10 s), so
    // a figure from when beta was joining may stand for a while: wait for the next one. Connected
    // now: the hub and alpha's agent.
    let last = -1;
    await waitFor('the connected-devices gauge to count alpha alone', async () => {
      const res = await fetch(`${hub.apiUrl}/metrics`, { headers: { authorization: `Bearer ${hub.adminToken}` } });
      last = Number(/^flotilla_connected_devices (\d+)$/m.exec(await res.text())?.[1] ?? -1);
      return last === 1;
    }, 25_000, 500);
    expect(last).toBe(1);
  });

  it("logs the hub in with the password broker-config hashed, and refuses wrong passwords", async () => {
    const hubPassword = readFileSync(join(hubDir, 'broker.password'), 'utf8').trim();
    await connect({ clientId: 'extbroker-test-hub-login', username: HUB_USERNAME, password: hubPassword });
    expect(await refusal({ clientId: 'extbroker-test-hub-wrong', username: HUB_USERNAME, password: `${hubPassword}x` })).toBe(NOT_AUTHORIZED);
    expect(await refusal({ ...deviceOptions(beta), password: 'not-the-password' })).toBe(NOT_AUTHORIZED);
    expect(await refusal({ clientId: joinClientId('wrong'), username: JOIN_USERNAME, password: `${hub.joinToken}x` })).toBe(NOT_AUTHORIZED);
    expect(await refusal({ clientId: 'anonymous' })).toBe(NOT_AUTHORIZED);
  });

  it("gives a device's credentials only its own topics", async () => {
    const b = await connect(deviceOptions(beta));
    const received: string[] = [];
    b.on('message', (topic) => received.push(topic));
    expect(await suback(b, topics.desired('alpha'))).toEqual([SUBACK_FAILURE]);
    expect(await suback(b, topics.node('alpha', 'rpc/req'))).toEqual([SUBACK_FAILURE]);
    expect(await suback(b, topics.allNodes('desired'))).toEqual([SUBACK_FAILURE]);
    expect(await suback(b, topics.status('alpha'))).toEqual([SUBACK_FAILURE]);
    // Its own desired set is retained: granted, it arrives at once; alpha's never did.
    expect(await suback(b, topics.desired('beta'))).toEqual([1]);
    await waitFor("beta's own desired set", () => received.includes(topics.desired('beta')), 10_000);
    expect(received).toEqual([topics.desired('beta')]);
  });

  it("never lets a device write another device's status (mosquitto_pub as the forger)", async () => {
    requireTool(MOSQUITTO_PUB);
    const forged = await run(MOSQUITTO_PUB, ['-h', '127.0.0.1', '-p', String(mosquitto.port), '-V', 'mqttv311', '-u', deviceUsername('beta'), '-P', beta.password, '-i', deviceClientId('beta'), '-q', '1', '-t', topics.status('alpha'), '-m', statusReport('0.0.0-forged')]);
    expect(forged.code, forged.stderr).toBe(0);
    // Beta's own report, sent afterwards through the same broker, shows the hub has seen what came before.
    const b = await connect(deviceOptions(beta));
    await b.publishAsync(topics.status('beta'), statusReport('0.0.0-beta-own'), { qos: 1 });
    await waitFor("beta's own report applied", () => agentVersionOf('beta') === '0.0.0-beta-own', 15_000);
    expect(agentVersionOf('alpha')).not.toBe('0.0.0-forged');
  });

  it('gives the join token only the join exchange', async () => {
    const j = await connect({ clientId: joinClientId('probe1'), username: JOIN_USERNAME, password: hub.joinToken });
    expect(await suback(j, topics.desired('alpha'))).toEqual([SUBACK_FAILURE]);
    expect(await suback(j, topics.allPeers())).toEqual([SUBACK_FAILURE]);
    // Every joining device's answer (its password) would pass through a wildcard.
    expect(await suback(j, topics.joinResponse('+'))).toEqual([SUBACK_FAILURE]);
    expect(await suback(j, `${topics.prefix}/join/#`)).toEqual([SUBACK_FAILURE]);
    expect(await suback(j, topics.joinResponse(joinClientId('probe1')))).toEqual([1]);
    await j.publishAsync(topics.status('beta'), statusReport('0.0.0-from-join'), { qos: 1 });
    const b = await connect(deviceOptions(beta));
    await b.publishAsync(topics.status('beta'), statusReport('0.0.0-beta-after-join'), { qos: 1 });
    await waitFor("beta's own report applied", () => agentVersionOf('beta') === '0.0.0-beta-after-join', 15_000);
  });

  it('hands the hub what devices sent while it was down (persistent session)', async () => {
    await hub.process.stop();
    const b = await connect(deviceOptions(beta));
    await b.publishAsync(topics.status('beta'), statusReport('0.0.0-while-hub-down'), { qos: 1 });
    hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url] });
    await waitFor('the report queued at the broker applied', () => agentVersionOf('beta') === '0.0.0-while-hub-down', 15_000);
    await waitFor('node alpha Ready after the hub restart', () => readyCondition(hub, 'alpha')?.status === 'True', 30_000);
    expect(podRunning(hub, 'web')).toBeDefined();
  });

  it('moves the broker to a newly created join token, and cuts off a revoked device', async () => {
    const created = cli(hub, ['token', 'create', '--description', 'rotation']);
    expect(created.code, created.stderr).toBe(0);
    const newToken = created.stdout.trim();
    expect(await refusal({ clientId: joinClientId('oldtoken'), username: JOIN_USERNAME, password: hub.joinToken })).toBe(NOT_AUTHORIZED);
    const gamma = await join_('gamma', newToken);
    await connect(deviceOptions(gamma));

    const tokens = JSON.parse(cli(hub, ['token', 'list', '-o', 'json']).stdout) as { items: { id: string; kind: string; node: string | null; revokedAt: string | null }[] };
    const betaCredential = tokens.items.find((t) => t.kind === 'device' && t.node === 'beta' && !t.revokedAt)!;
    const b = await connect(deviceOptions(beta));
    const closed = new Promise<void>((resolve) => b.once('close', () => resolve()));
    expect(cli(hub, ['token', 'revoke', betaCredential.id]).code).toBe(0);
    await closed;
    expect(await refusal(deviceOptions(beta))).toBe(NOT_AUTHORIZED);
    // The others are untouched.
    await connect(deviceOptions(gamma));
    expect(readyCondition(hub, 'alpha')?.status).toBe('True');
    await waitFor("the hub to log the account's deletion", () => logCount(hub.process, 'device account deleted at the broker') === 1, 5_000);
  });
});
