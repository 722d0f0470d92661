import { execFile } from 'node:child_process';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { joinHub, JoinRefused } from '../../agent/link/join.js';
import type { DeviceCredentials } from '../../agent/state/state.js';
import { PROTOCOL_VERSION, statusReportSchema, type StatusReport } from '../../shared/protocol/messages.js';
import { JOIN_USERNAME, Topics, deviceClientId, deviceUsername, joinClientId } from '../../shared/protocol/topics.js';
import { requireTool } from '../harness/dockerd.js';
import { cli, getJson, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// The broker's door, end to end on a real hub: who may connect, what a device may read and
// write, what a malformed message does (nothing, but a log line), and how an operator cuts a
// device off and lets it back in. Devices are played by MQTT.js (what the agent uses) and by
// Debian's mosquitto clients, a third-party MQTT 3.1.1 implementation.

const MOSQUITTO_SUB = '/usr/bin/mosquitto_sub';
const MOSQUITTO_PUB = '/usr/bin/mosquitto_pub';

// MQTT 3.1.1 CONNACK return codes and the SUBACK failure code.
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;
const SUBACK_FAILURE = 0x80;

const topics = new Topics();
const dirs = tempDir('mqtt-auth');
let hub: RunningHub;
let alpha: DeviceCredentials;
let beta: DeviceCredentials;
let clients: MqttClient[] = [];

interface NodeJson {
  metadata: { name: string; uid: string; labels?: Record<string, string> };
  status?: { desiredRevision?: number; nodeInfo?: { agentVersion?: string } };
}

interface TokenJson {
  id: string;
  kind: string;
  node: string | null;
  revokedAt: string | null;
}

/** A Debian tool the test needs: missing is a failure (with the package to install), never a skip. */
function requireMosquittoClients(): void {
  for (const tool of [MOSQUITTO_SUB, MOSQUITTO_PUB]) {
    try {
      requireTool(tool);
    } catch (err) {
      throw new Error(`${(err as Error).message} (Debian package: mosquitto-clients)`);
    }
  }
}

function run(file: string, args: string[], timeoutMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** mosquitto_sub/pub arguments for a device: MQTT 3.1.1, its user name and its client id. */
function mosquittoArgs(node: string, password: string): string[] {
  return ['-h', '127.0.0.1', '-p', String(hub.mqttPort), '-V', 'mqttv311', '-u', deviceUsername(node), '-P', password, '-i', deviceClientId(node)];
}

async function connect(opts: IClientOptions): Promise<MqttClient> {
  const client = await mqtt.connectAsync(hub.mqttUrl, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

function deviceOptions(creds: { node: string; password: string }): IClientOptions {
  return { clientId: deviceClientId(creds.node), username: deviceUsername(creds.node), password: creds.password };
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

/** The granted QoS codes of the SUBACK for one subscription, whether granted or refused. */
function suback(client: MqttClient, topic: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(topic, { qos: 1 }, (err, _granted, packet) => {
      if (packet && 'granted' in packet) resolve(packet.granted as number[]);
      else reject(err ?? new Error('no SUBACK'));
    });
  });
}

function node(name: string): NodeJson {
  return getJson<NodeJson>(hub, ['node', name]);
}

function tokens(): TokenJson[] {
  const r = cli(hub, ['token', 'list', '-o', 'json']);
  if (r.code !== 0) throw new Error(`flotilla token list failed (${r.code}): ${r.stderr}`);
  return (JSON.parse(r.stdout) as { items: TokenJson[] }).items;
}

/** The hub's log lines that say it dropped a malformed payload of this node. */
function dropsLogged(nodeName: string, channel = 'status'): number {
  return hub.process
    .log()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg?: string; node?: string; channel?: string })
    .filter((e) => e.msg === 'malformed payload dropped' && e.node === nodeName && e.channel === channel).length;
}

function statusReport(agentVersion: string): StatusReport {
  return statusReportSchema.parse({
    v: PROTOCOL_VERSION,
    ts: new Date().toISOString(),
    observedRev: null,
    node: {
      info: { hostname: 'alpha', operatingSystem: 'linux', architecture: 'arm64', agentVersion },
      capacity: { cpu: '4', memory: '1Gi', pods: '110' },
      engineReady: true,
    },
    pods: [],
  });
}

function join_(name: string, token = hub.joinToken): Promise<DeviceCredentials> {
  return joinHub({ hub: hub.mqttUrl, token, name, labels: { fleet: 'auth-test' }, topics, timeoutMs: 10_000 });
}

beforeAll(async () => {
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  alpha = await join_('alpha');
  beta = await join_('beta');
  // Both desired sets are published (retained) once the nodes exist.
  await waitFor('the desired sets of both nodes', () => node('alpha').status?.desiredRevision !== undefined && node('beta').status?.desiredRevision !== undefined, 30_000);
});

afterEach(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  clients = [];
});

afterAll(async () => {
  await stopAll();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('MQTT authentication and authorisation on a real hub', () => {
  it('gives a joining device credentials of its own, which let it read its retained desired set', async () => {
    expect(alpha).toMatchObject({ node: 'alpha', username: deviceUsername('alpha') });
    expect(alpha.password.length).toBeGreaterThanOrEqual(32);
    expect(node('alpha').metadata.labels).toEqual({ fleet: 'auth-test', 'kubernetes.io/hostname': 'alpha' });
    const a = await connect(deviceOptions(alpha));
    const received = new Promise<Buffer>((resolve) => a.once('message', (_t, payload) => resolve(payload)));
    expect(await suback(a, topics.desired('alpha'))).toEqual([1]);
    const desired = JSON.parse((await received).toString('utf8')) as { v: number; rev: number; pods: unknown[] };
    expect(desired).toMatchObject({ v: PROTOCOL_VERSION, rev: node('alpha').status?.desiredRevision, pods: [] });
  });

  it('refuses a client with no credentials', async () => {
    expect(await refusal({ clientId: 'anonymous' })).toBe(NOT_AUTHORIZED);
    expect(await refusal({ clientId: deviceClientId('alpha') })).toBe(NOT_AUTHORIZED);
    expect(await refusal({ clientId: deviceClientId('alpha'), username: deviceUsername('alpha') })).toBe(NOT_AUTHORIZED);
  });

  it('refuses a device with a wrong password', async () => {
    expect(await refusal(deviceOptions({ node: 'alpha', password: 'not-the-password' }))).toBe(BAD_USERNAME_OR_PASSWORD);
    // Another device's password is as wrong as any other.
    expect(await refusal(deviceOptions({ node: 'alpha', password: beta.password }))).toBe(BAD_USERNAME_OR_PASSWORD);
  });

  it('refuses a join with a wrong join token', async () => {
    const [id] = hub.joinToken.split('.');
    for (const token of [`${id}.wrongwrongwrongwrongwrong`, 'abcdef12.0123456789abcdefghij', 'not a token', hub.adminToken]) {
      expect(await refusal({ clientId: joinClientId('wrongtoken'), username: JOIN_USERNAME, password: token }), token).toBe(BAD_USERNAME_OR_PASSWORD);
    }
    await expect(join_('intruder', `${id}.wrongwrongwrongwrongwrong`)).rejects.toBeInstanceOf(JoinRefused);
    expect(cli(hub, ['get', 'node', 'intruder']).code).toBe(1);
  });

  it('refuses mosquitto_sub with a wrong password', async () => {
    requireMosquittoClients();
    const r = await run(MOSQUITTO_SUB, [...mosquittoArgs('alpha', 'WRONG'), '-t', topics.desired('alpha'), '-C', '1', '-W', '5']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not authori[sz]ed|bad user name or password/i);
    expect(r.stdout).toBe('');
  });

  it("lets mosquitto_sub with a device's credentials read that device's retained desired set", async () => {
    requireMosquittoClients();
    const r = await run(MOSQUITTO_SUB, [...mosquittoArgs('alpha', alpha.password), '-t', topics.desired('alpha'), '-C', '1', '-W', '5']);
    expect(r.code, r.stderr).toBe(0);
    const desired = JSON.parse(r.stdout) as { v: number; rev: number; pods: unknown[] };
    expect(desired).toMatchObject({ v: PROTOCOL_VERSION, rev: node('alpha').status?.desiredRevision, pods: [] });
  });

  it("gives mosquitto_sub with one device's credentials nothing of another device's desired set", async () => {
    requireMosquittoClients();
    const r = await run(MOSQUITTO_SUB, [...mosquittoArgs('alpha', alpha.password), '-t', topics.desired('beta'), '-C', '1', '-W', '5']);
    expect(r.stdout).toBe('');
    expect(r.code !== 0 || /denied/i.test(r.stderr), `exit ${r.code}: ${r.stderr}`).toBe(true);
  });

  it("answers SUBACK 0x80 when a device subscribes to another device's desired set", async () => {
    const a = await connect(deviceOptions(alpha));
    const messages: string[] = [];
    a.on('message', (topic) => messages.push(topic));
    expect(await suback(a, topics.desired('beta'))).toEqual([SUBACK_FAILURE]);
    expect(await suback(a, topics.node('beta', 'rpc/req'))).toEqual([SUBACK_FAILURE]);
    expect(await suback(a, topics.allNodes('desired'))).toEqual([SUBACK_FAILURE]);
    // Beta's desired set is retained: a granted subscription would have delivered it by now.
    expect(await suback(a, topics.desired('alpha'))).toEqual([1]);
    await waitFor("alpha's own desired set", () => messages.includes(topics.desired('alpha')), 5_000);
    expect(messages).toEqual([topics.desired('alpha')]);
    expect(a.connected).toBe(true);
  });

  it('drops a payload that is not JSON (from mosquitto_pub), logs it and keeps serving', async () => {
    requireMosquittoClients();
    const before = dropsLogged('alpha');
    const r = await run(MOSQUITTO_PUB, [...mosquittoArgs('alpha', alpha.password), '-t', topics.status('alpha'), '-q', '1', '-m', 'not json']);
    expect(r.code, r.stderr).toBe(0);
    await waitFor('the hub to log the dropped payload', () => dropsLogged('alpha') > before, 10_000);
    expect(hub.process.exitCode).toBeUndefined();
    expect(cli(hub, ['get', 'nodes']).code).toBe(0);
  });

  it('drops JSON with the wrong fields, then applies the next valid status report', async () => {
    const a = await connect(deviceOptions(alpha));
    const before = dropsLogged('alpha');
    await a.publishAsync(topics.status('alpha'), JSON.stringify({ v: PROTOCOL_VERSION, hello: 'world', node: { info: 'none' } }), { qos: 1 });
    await a.publishAsync(topics.status('alpha'), JSON.stringify({ ...statusReport('0.0.0-wrong-version'), v: 99 }), { qos: 1 });
    await waitFor('the hub to log both dropped payloads', () => dropsLogged('alpha') >= before + 2, 10_000);
    expect(node('alpha').status?.nodeInfo).toBeUndefined();
    await a.publishAsync(topics.status('alpha'), JSON.stringify(statusReport('0.0.0-auth-test')), { qos: 1 });
    await waitFor('the valid status report to be applied', () => node('alpha').status?.nodeInfo?.agentVersion === '0.0.0-auth-test', 10_000);
    expect(hub.process.exitCode).toBeUndefined();
  });

  it("never lets a device write another device's status", async () => {
    const forger = await connect(deviceOptions(alpha));
    // MQTT 3.1.1 has no negative PUBACK: the broker refuses the publish by closing the connection.
    const gone = new Promise<boolean>((resolve) => forger.once('close', () => resolve(true)));
    forger.publish(topics.status('beta'), JSON.stringify(statusReport('0.0.0-forged')), { qos: 0 });
    // aedes closes the connection of a client whose publish is refused; what matters is that the
    // forged report never lands, so a slow close is waited for only so long.
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5_000))]);
    // A report of alpha's own, sent afterwards, shows that the hub has handled what came before.
    const a = await connect(deviceOptions(alpha));
    await a.publishAsync(topics.status('alpha'), JSON.stringify(statusReport('0.0.0-after-forgery')), { qos: 1 });
    await waitFor("alpha's own report to be applied", () => node('alpha').status?.nodeInfo?.agentVersion === '0.0.0-after-forgery', 10_000);
    expect(node('beta').status?.nodeInfo).toBeUndefined();
  });

  it("lists a device's credential, never its secret", () => {
    const listed = tokens();
    const mine = listed.filter((t) => t.kind === 'device' && t.node === 'alpha');
    expect(mine).toHaveLength(1);
    expect(mine[0]!.revokedAt).toBeNull();
    expect(listed.some((t) => t.kind === 'device' && t.node === 'beta')).toBe(true);
    const table = cli(hub, ['token', 'list']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`${mine[0]!.id}\\s+device\\s+alpha`));
    for (const secret of [alpha.password, beta.password, hub.joinToken.split('.')[1]!, hub.adminToken.split('.')[1]!]) {
      expect(table.stdout).not.toContain(secret);
      expect(JSON.stringify(listed)).not.toContain(secret);
    }
  });

  it('cuts a device off when its credential is revoked, and refuses its reconnect', async () => {
    const a = await connect(deviceOptions(alpha));
    expect(await suback(a, topics.desired('alpha'))).toEqual([1]);
    const closed = new Promise<void>((resolve) => a.once('close', () => resolve()));
    const id = tokens().find((t) => t.kind === 'device' && t.node === 'alpha')!.id;
    const revoked = cli(hub, ['token', 'revoke', id]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain(id);
    await closed;
    expect(a.connected).toBe(false);
    expect(await refusal(deviceOptions(alpha))).toBe(BAD_USERNAME_OR_PASSWORD);
    requireMosquittoClients();
    const r = await run(MOSQUITTO_SUB, [...mosquittoArgs('alpha', alpha.password), '-t', topics.desired('alpha'), '-C', '1', '-W', '5']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not authori[sz]ed|bad user name or password/i);
    expect(tokens().find((t) => t.id === id)?.revokedAt).not.toBeNull();
    // Beta is not touched by alpha's revocation.
    const b = await connect(deviceOptions(beta));
    expect(b.connected).toBe(true);
  });

  it('lets a revoked device join again only after its node is deleted', async () => {
    // A leaked join token must not take over an existing device's identity.
    await expect(join_('alpha')).rejects.toThrow(/already taken/);
    const uid = node('alpha').metadata.uid;
    const deleted = cli(hub, ['delete', 'node', 'alpha']);
    expect(deleted.code, deleted.stderr).toBe(0);
    const again = await join_('alpha');
    expect(again.password).not.toBe(alpha.password);
    expect(node('alpha').metadata.uid).not.toBe(uid);
    const a = await connect(deviceOptions(again));
    expect(await suback(a, topics.desired('alpha'))).toEqual([1]);
    expect(await refusal(deviceOptions(alpha))).toBe(BAD_USERNAME_OR_PASSWORD);
    alpha = again;
  });

  it('refuses a join with a join token that was revoked', async () => {
    const created = cli(hub, ['token', 'create', '--description', 'auth test']);
    expect(created.code, created.stderr).toBe(0);
    const token = created.stdout.trim();
    const id = token.split('.')[0]!;
    expect(tokens().find((t) => t.id === id)).toMatchObject({ kind: 'join', revokedAt: null });
    // The new token works...
    await join_('gamma', token);
    expect(node('gamma').metadata.name).toBe('gamma');
    // ...until it is revoked.
    const revoked = cli(hub, ['token', 'revoke', id]);
    expect(revoked.code, revoked.stderr).toBe(0);
    await expect(join_('delta', token)).rejects.toBeInstanceOf(JoinRefused);
    expect(await refusal({ clientId: joinClientId('revoked'), username: JOIN_USERNAME, password: token })).toBe(BAD_USERNAME_OR_PASSWORD);
    expect(cli(hub, ['get', 'node', 'delta']).code).toBe(1);
    // The default join token still works.
    await join_('epsilon');
  });
});
