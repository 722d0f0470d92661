import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinHub } from '../../agent/link/join.js';
import { PROTOCOL_VERSION, decodePayload, encodePayload, joinResponseSchema } from '../../shared/protocol/messages.js';
import { JOIN_USERNAME, Topics, deviceClientId, deviceUsername, joinClientId } from '../../shared/protocol/topics.js';
import { startMosquitto } from '../harness/mosquitto.js';
import { cli, getJson, startHub, stopAll, tempDir, type RunningHub } from '../harness/processes.js';

// Labels decide which pods, and so which Secrets, a node receives. A device holding a join token
// may claim only the labels its token allows, never the operator-only prefix, which only
// `flotilla label` sets; through the embedded broker and through Mosquitto alike.

const topics = new Topics();
const dirs = tempDir('joinlabels');
const RESERVED = 'node-restriction.flotilla.io/secrets';

interface NodeJson {
  metadata: { labels?: Record<string, string> };
}

function labelsOf(hub: RunningHub, node: string): Record<string, string> {
  return getJson<NodeJson>(hub, ['node', node]).metadata.labels ?? {};
}

function createToken(hub: RunningHub, flags: string[]): string {
  const created = cli(hub, ['token', 'create', ...flags]);
  expect(created.code, created.stderr).toBe(0);
  return created.stdout.trim();
}

function joinAs(url: string, token: string, name: string, labels: Record<string, string>) {
  return joinHub({ hub: url, token, name, labels, topics, timeoutMs: 10_000 });
}

afterAll(async () => {
  await stopAll();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('join tokens and labels (embedded broker)', () => {
  let hub: RunningHub;
  let berlin: string;
  beforeAll(async () => {
    hub = await startHub({ dataDir: join(dirs.path, 'hub') });
    berlin = createToken(hub, ['--description', 'berlin devices', '--labels', 'fleet=berlin', '--label-prefix', 'site.example.com/']);
  });

  it('refuses a label the token does not allow, naming the label and the rule', async () => {
    await expect(joinAs(hub.mqttUrl, berlin, 'b-wrong-fleet', { fleet: 'munich' })).rejects.toThrow(/label fleet=munich is not allowed by join token [a-z0-9]+, which allows fleet=berlin, keys starting with 'site\.example\.com\/'/);
    await expect(joinAs(hub.mqttUrl, berlin, 'b-other-key', { team: 'payments' })).rejects.toThrow(/label team=payments is not allowed/);
    // Nothing was made of the refused joins.
    expect(cli(hub, ['get', 'node', 'b-wrong-fleet']).code).not.toBe(0);
    expect(cli(hub, ['get', 'node', 'b-other-key']).code).not.toBe(0);
  });

  it('gives the token\'s labels and takes the allowed ones', async () => {
    const creds = await joinAs(hub.mqttUrl, berlin, 'b-1', { 'site.example.com/room': '12', fleet: 'berlin' });
    expect(creds.node).toBe('b-1');
    expect(labelsOf(hub, 'b-1')).toMatchObject({ fleet: 'berlin', 'site.example.com/room': '12' });
    await joinAs(hub.mqttUrl, berlin, 'b-2', {});
    expect(labelsOf(hub, 'b-2')).toMatchObject({ fleet: 'berlin' });
  });

  it('never lets a device claim the operator-only prefix, whatever the token', async () => {
    await expect(joinAs(hub.mqttUrl, hub.joinToken, 'thief', { [RESERVED]: 'true' })).rejects.toThrow(/label node-restriction\.flotilla\.io\/secrets: the prefix node-restriction\.flotilla\.io\/ is reserved for operators/);
    await expect(joinAs(hub.mqttUrl, berlin, 'thief', { [RESERVED]: 'true' })).rejects.toThrow(/reserved for operators/);
    // A token without a rule still lets devices pick other labels (the five-minute tour).
    await joinAs(hub.mqttUrl, hub.joinToken, 'free', { fleet: 'demo' });
    expect(labelsOf(hub, 'free')).toMatchObject({ fleet: 'demo' });
  });

  it('does not let a token join a node registered ahead with an operator-only label', async () => {
    const applied = cli(hub, ['apply', '-f', '-'], { input: `apiVersion: v1\nkind: Node\nmetadata:\n  name: vault-1\n  labels: {${RESERVED}: "true"}\n` });
    expect(applied.code, applied.stderr).toBe(0);
    await expect(joinAs(hub.mqttUrl, hub.joinToken, 'vault-1', {})).rejects.toThrow(/node 'vault-1' was registered with label node-restriction\.flotilla\.io\/secrets, which join token [a-z0-9]+ cannot grant/);
    expect(labelsOf(hub, 'vault-1')).toEqual({ [RESERVED]: 'true' });
  });

  it('lets operators set the reserved prefix with flotilla label, and refuses it in a token', () => {
    const labelled = cli(hub, ['label', 'node', 'b-1', `${RESERVED}=true`]);
    expect(labelled.code, labelled.stderr).toBe(0);
    expect(labelsOf(hub, 'b-1')[RESERVED]).toBe('true');
    const withLabel = cli(hub, ['token', 'create', '--labels', `${RESERVED}=true`]);
    expect(withLabel.code).toBe(1);
    expect(withLabel.stderr).toContain(`labels.${RESERVED}: keys under node-restriction.flotilla.io/ are set by operators only`);
    const withPrefix = cli(hub, ['token', 'create', '--label-prefix', 'node-']);
    expect(withPrefix.code).toBe(1);
    expect(withPrefix.stderr).toContain('labelPrefixes[0]: \'node-\' would cover node-restriction.flotilla.io/');
    const badLabel = cli(hub, ['token', 'create', '--labels', 'fleet=no spaces']);
    expect(badLabel.code).toBe(1);
    expect(badLabel.stderr).toContain('labels.fleet');
  });

  it('shows each join token\'s rule in token list', () => {
    const list = cli(hub, ['token', 'list']);
    expect(list.code, list.stderr).toBe(0);
    const row = list.stdout.split('\n').find((l) => l.startsWith(berlin.split('.')[0]!));
    expect(row).toContain('fleet=berlin,site.example.com/*');
  });

  it('refuses a join request that does not carry its token, whatever token opened the connection', async () => {
    const clientId = joinClientId('notoken01');
    const client = await mqtt.connectAsync(hub.mqttUrl, { clientId, username: JOIN_USERNAME, password: berlin, protocolVersion: 4, reconnectPeriod: 0 });
    try {
      const answer = new Promise<Buffer>((resolve) => client.on('message', (_t, payload) => resolve(payload)));
      await client.subscribeAsync(topics.joinResponse(clientId), { qos: 1 });
      await client.publishAsync(topics.joinRequest(clientId), encodePayload({ v: PROTOCOL_VERSION, name: 'sneaky', labels: { team: 'payments' } }), { qos: 1 });
      const decoded = decodePayload(joinResponseSchema, await answer);
      expect(decoded.ok && decoded.value).toMatchObject({ ok: false, error: expect.stringContaining('carries no join token') });
    } finally {
      await client.endAsync(true);
    }
    expect(cli(hub, ['get', 'node', 'sneaky']).code).not.toBe(0);
  });

  it('does not let a join token take over a node that joined with another token', async () => {
    await expect(joinAs(hub.mqttUrl, hub.joinToken, 'b-2', {})).rejects.toThrow(/node name 'b-2' is already taken: it joined with another join token/);
  });
});

describe('join tokens and labels through Mosquitto', () => {
  it('applies the token\'s rule although the hub never sees the CONNECT, and lets the same token recover a device', async () => {
    const hubDir = join(dirs.path, 'hub-ext');
    const mosquitto = await startMosquitto({ dir: join(dirs.path, 'broker'), hubDataDir: hubDir });
    try {
      const hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url] });
      // The newest join token is the one Mosquitto accepts.
      const token = createToken(hub, ['--labels', 'fleet=lab']);
      await expect(joinAs(mosquitto.url, token, 'm-1', { fleet: 'prod' })).rejects.toThrow(/label fleet=prod is not allowed by join token/);
      await expect(joinAs(mosquitto.url, token, 'm-1', { [RESERVED]: 'x' })).rejects.toThrow(/reserved for operators/);
      const first = await joinAs(mosquitto.url, token, 'm-1', {});
      expect(labelsOf(hub, 'm-1')).toMatchObject({ fleet: 'lab' });
      // A device that lost its credentials joins again with the same token; Mosquitto takes the
      // new password and refuses the old one.
      const again = await joinAs(mosquitto.url, token, 'm-1', {});
      const connectWith = (password: string) =>
        mqtt.connectAsync(mosquitto.url, { clientId: deviceClientId('m-1'), username: deviceUsername('m-1'), password, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000 });
      const ok = await connectWith(again.password);
      await ok.endAsync(true);
      await expect(connectWith(first.password)).rejects.toMatchObject({ code: 5 });
    } finally {
      await stopAll();
      await mosquitto.stop();
    }
  });
});
