import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Topics } from '../../shared/protocol/topics.js';
import { Credentials } from '../../hub/auth/credentials.js';
import { DynsecControl, DynsecError, type ControlLink, type DynsecCommand } from '../../hub/broker/dynsec.js';
import { topicMatches } from '../../hub/broker/external.js';
import { MosquittoAccounts } from '../../hub/broker/mosquitto-accounts.js';
import { DYNSEC_REQUEST_TOPIC, DYNSEC_RESPONSE_TOPIC, deviceRole } from '../../hub/broker/mosquitto-acl.js';
import type { Database } from '../../hub/store/db.js';
import { openHubDatabase } from '../../hub/store/schema.js';

const log = pino({ level: 'silent' });
const topics = new Topics();

describe('topicMatches (MQTT 3.1.1 section 4.7)', () => {
  it.each([
    ['flotilla/v1/nodes/+/status', 'flotilla/v1/nodes/pi-1/status', true],
    ['flotilla/v1/nodes/+/status', 'flotilla/v1/nodes/pi-1/metrics', false],
    ['flotilla/v1/nodes/+/rpc/res', 'flotilla/v1/nodes/pi-1/rpc/res', true],
    ['flotilla/v1/nodes/+/status', 'flotilla/v1/nodes/pi-1/status/x', false],
    ['flotilla/v1/#', 'flotilla/v1/join/join-1/req', true],
    ['flotilla/v1/#', 'flotilla/v1', true],
    ['#', '$SYS/broker/clients/connected', false],
    ['+/broker/clients/connected', '$SYS/broker/clients/connected', false],
    ['$SYS/broker/clients/connected', '$SYS/broker/clients/connected', true],
    ['a/b', 'a/b/c', false],
  ])('%s matches %s: %s', (pattern, topic, expected) => {
    expect(topicMatches(pattern, topic)).toBe(expected);
  });
});

/**
 * The broker's side of the control topic, reduced to what the hub relies on: clients (with a
 * password, text name and disabled flag) and roles, answering in the plugin's shape and words.
 */
class PluginDouble implements ControlLink {
  readonly commands: DynsecCommand[] = [];
  readonly clients = new Map<string, { password?: string; textname?: string; disabled: boolean; clientid?: string }>();
  readonly roles = new Map<string, unknown[]>();
  silent = false;
  private handler?: (topic: string, payload: Buffer) => void;

  async subscribe(pattern: string, handler: (topic: string, payload: Buffer) => void): Promise<void> {
    expect(pattern).toBe(DYNSEC_RESPONSE_TOPIC);
    this.handler = handler;
  }

  async publish(topic: string, payload: Buffer): Promise<void> {
    expect(topic).toBe(DYNSEC_REQUEST_TOPIC);
    const { commands } = JSON.parse(payload.toString()) as { commands: (DynsecCommand & { correlationData: string })[] };
    if (this.silent) return;
    const responses = commands.map((c) => ({ command: c.command, correlationData: c.correlationData, ...this.apply(c) }));
    // Another admin client's answer on the shared topic comes first, and must be ignored.
    this.handler!(DYNSEC_RESPONSE_TOPIC, Buffer.from(JSON.stringify({ responses: [{ command: 'listClients', correlationData: 'someone-else-1' }] })));
    setImmediate(() => this.handler!(DYNSEC_RESPONSE_TOPIC, Buffer.from(JSON.stringify({ responses }))));
  }

  private apply(c: DynsecCommand): { error?: string; data?: unknown } {
    this.commands.push(c);
    const username = c.username as string;
    const client = this.clients.get(username);
    switch (c.command) {
      case 'getClient':
        return client ? { data: { client: { username, textname: client.textname, ...(client.disabled ? { disabled: true } : {}) } } } : { error: 'Client not found' };
      case 'listClients':
        return { data: { clients: [...this.clients.keys()] } };
      case 'createClient':
        if (client) return { error: 'Client already exists' };
        this.clients.set(username, { password: c.password as string, textname: c.textname as string, disabled: false, clientid: c.clientid as string });
        return {};
      case 'modifyClient':
        if (!client) return { error: 'Client not found' };
        Object.assign(client, { ...(c.password ? { password: c.password } : {}), ...(c.textname ? { textname: c.textname } : {}) });
        return {};
      case 'deleteClient':
        return this.clients.delete(username) ? {} : { error: 'Client not found' };
      case 'enableClient':
      case 'disableClient':
        if (!client) return { error: 'Client not found' };
        client.disabled = c.command === 'disableClient';
        return {};
      case 'getRole':
        return this.roles.has(c.rolename as string) ? { data: { role: { rolename: c.rolename, acls: this.roles.get(c.rolename as string) } } } : { error: 'Role not found' };
      case 'createRole':
        this.roles.set(c.rolename as string, (c.acls as unknown[]) ?? []);
        return {};
      case 'deleteRole':
        return this.roles.delete(c.rolename as string) ? {} : { error: 'Role not found' };
      default:
        return { error: 'Unknown command' };
    }
  }
}

describe('DynsecControl', () => {
  it('matches answers by correlation id, and turns a refusal into an error that names the command', async () => {
    const plugin = new PluginDouble();
    const control = new DynsecControl(plugin, 1_000);
    await control.start();
    const [listed, missing] = await control.run([{ command: 'listClients' }, { command: 'getClient', username: 'nobody' }]);
    expect(listed).toEqual({ command: 'listClients', data: { clients: [] } });
    expect(missing).toEqual({ command: 'getClient', error: 'Client not found' });
    await expect(control.one({ command: 'deleteClient', username: 'nobody' })).rejects.toEqual(new DynsecError('deleteClient', 'Client not found'));
    await expect(control.one({ command: 'deleteClient', username: 'nobody' }, ['Client not found'])).resolves.toMatchObject({ error: 'Client not found' });
  });

  it('gives up on a broker that does not answer (no plugin loaded)', async () => {
    const plugin = new PluginDouble();
    plugin.silent = true;
    const control = new DynsecControl(plugin, 50);
    await control.start();
    await expect(control.one({ command: 'listClients' })).rejects.toThrow(/did not answer listClients within 0.05s/);
  });
});

describe('MosquittoAccounts', () => {
  let dir: string;
  let db: Database;
  let credentials: Credentials;
  let plugin: PluginDouble;
  let accounts: MosquittoAccounts;
  let fileToken: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'flt-accounts-'));
    db = openHubDatabase(':memory:');
    credentials = new Credentials(db);
    fileToken = credentials.createToken('join').token;
    writeFileSync(join(dir, 'join.token'), `${fileToken}\n`);
    plugin = new PluginDouble();
    const control = new DynsecControl(plugin, 1_000);
    await control.start();
    accounts = new MosquittoAccounts(control, topics, credentials, join(dir, 'join.token'), log);
  });

  afterEach(() => {
    accounts.stop();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the roles and a join account holding the token of join.token', async () => {
    await accounts.start();
    expect([...plugin.roles.keys()]).toEqual(['flotilla-hub', 'flotilla-join']);
    expect(plugin.clients.get('join')).toMatchObject({ password: fileToken, textname: `join token ${fileToken.split('.')[0]}`, disabled: false });
  });

  it('moves the join account to a new token, back to join.token when that one is revoked, and disables it when none is left', async () => {
    await accounts.start();
    const { token, record } = credentials.createToken('join');
    await accounts.joinTokenCreated(token, record);
    expect(plugin.clients.get('join')).toMatchObject({ password: token, disabled: false });
    await accounts.joinTokenRevoked(credentials.revoke(record.id)!);
    expect(plugin.clients.get('join')).toMatchObject({ password: fileToken, disabled: false });
    await accounts.joinTokenRevoked(credentials.revoke(fileToken.split('.')[0]!)!);
    expect(plugin.clients.get('join')!.disabled).toBe(true);
  });

  it('keeps the token a restarted hub finds at the broker while it is valid', async () => {
    const { token, record } = credentials.createToken('join');
    plugin.clients.set('join', { password: token, textname: `join token ${record.id}`, disabled: false });
    await accounts.start();
    expect(plugin.clients.get('join')!.password).toBe(token);
    expect(plugin.commands.some((c) => c.command === 'modifyClient')).toBe(false);
  });

  it('creates a device account bound to its client id with its own role, and deletes it again', async () => {
    await accounts.registerDevice('pi-1', 'device-password');
    expect(plugin.clients.get('node:pi-1')).toMatchObject({ password: 'device-password', clientid: 'node:pi-1' });
    expect(plugin.roles.get('flotilla-node-pi-1')).toEqual(deviceRole(topics, 'pi-1').acls);
    await accounts.removeDevice('pi-1');
    expect(plugin.clients.has('node:pi-1')).toBe(false);
    expect(plugin.roles.has('flotilla-node-pi-1')).toBe(false);
    // Removing what is already gone is not an error.
    await accounts.removeDevice('pi-1');
  });

  it('deletes, at start, the accounts of nodes that hold no credentials at the hub', async () => {
    credentials.issueDevicePassword('alive');
    await accounts.registerDevice('alive', 'p1');
    await accounts.registerDevice('ghost', 'p2');
    await accounts.start();
    expect(plugin.clients.has('node:alive')).toBe(true);
    expect(plugin.clients.has('node:ghost')).toBe(false);
  });
});
