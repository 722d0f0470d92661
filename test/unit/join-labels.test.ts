import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { Credentials } from '../../hub/auth/credentials.js';
import { openDatabase } from '../../hub/store/db.js';
import { hubMigrations, openHubDatabase } from '../../hub/store/schema.js';
import { firstLabelBeyondRule, isReservedLabel, joinLabelsRefusal, validateLabelRule } from '../../hub/auth/join-labels.js';
import type { MessageBus } from '../../hub/broker/bus.js';
import { JoinService } from '../../hub/broker/join.js';
import { PROTOCOL_VERSION, type JoinResponse } from '../../shared/protocol/messages.js';
import { Topics, joinClientId } from '../../shared/protocol/topics.js';
import { testHub, type TestHub } from './builders.js';

const berlin = { labels: { fleet: 'berlin' }, prefixes: ['site.example.com/'] };

describe('the label rule of a join token', () => {
  it('reserves node-restriction.flotilla.io/ and its subdomains, and nothing else', () => {
    expect(isReservedLabel('node-restriction.flotilla.io/vault')).toBe(true);
    expect(isReservedLabel('eu.node-restriction.flotilla.io/vault')).toBe(true);
    expect(isReservedLabel('node-restriction.flotilla.io.example.com/vault')).toBe(false);
    expect(isReservedLabel('fleet')).toBe(false);
    expect(isReservedLabel('flotilla.io/fleet')).toBe(false);
  });

  it('allows the token\'s labels with their values, keys under its prefixes, and nothing else', () => {
    expect(joinLabelsRefusal({ fleet: 'berlin', 'site.example.com/room': '12' }, berlin, 'tok1')).toBeUndefined();
    expect(joinLabelsRefusal({}, berlin, 'tok1')).toBeUndefined();
    expect(joinLabelsRefusal({ fleet: 'munich' }, berlin, 'tok1')).toBe("label fleet=munich is not allowed by join token tok1, which allows fleet=berlin, keys starting with 'site.example.com/'");
    expect(joinLabelsRefusal({ team: 'x' }, berlin, 'tok1')).toMatch(/^label team=x is not allowed/);
    expect(joinLabelsRefusal({ team: 'x' }, { labels: {}, prefixes: [] }, 'tok1')).toContain("which allows no labels of the device's own");
  });

  it('allows any label but the reserved ones to a token without a rule', () => {
    expect(joinLabelsRefusal({ fleet: 'anything', 'example.com/x': 'y' }, undefined, 'tok1')).toBeUndefined();
    expect(joinLabelsRefusal({ 'node-restriction.flotilla.io/vault': 'true' }, undefined, 'tok1')).toMatch(/^label node-restriction\.flotilla\.io\/vault: the prefix node-restriction\.flotilla\.io\/ is reserved for operators/);
    // Not even through a prefix that happens to cover it.
    expect(joinLabelsRefusal({ 'eu.node-restriction.flotilla.io/v': 'x' }, { labels: {}, prefixes: ['eu.'] }, 'tok1')).toMatch(/reserved for operators/);
  });

  it('refuses rules that are invalid or reach into the reserved prefix, naming the field', () => {
    expect(validateLabelRule(berlin)).toEqual([]);
    expect(validateLabelRule({ labels: { 'node-restriction.flotilla.io/v': 'x' }, prefixes: [] }).map((p) => p.path)).toEqual(['labels.node-restriction.flotilla.io/v']);
    expect(validateLabelRule({ labels: { fleet: 'a b' }, prefixes: [] }).map((p) => p.path)).toEqual(['labels.fleet']);
    expect(validateLabelRule({ labels: {}, prefixes: ['', 'node-', 'node-restriction.flotilla.io/x', 'a.node-restriction.flotilla.io/', '/x', 'ok.example/'] }).map((p) => p.path)).toEqual([
      'labelPrefixes[0]',
      'labelPrefixes[1]',
      'labelPrefixes[2]',
      'labelPrefixes[3]',
      'labelPrefixes[4]',
    ]);
  });

  it('finds the first label of a node the token could not have given, the hostname label aside', () => {
    expect(firstLabelBeyondRule({ 'kubernetes.io/hostname': 'pi-1', fleet: 'berlin' }, berlin)).toBeUndefined();
    expect(firstLabelBeyondRule({ fleet: 'berlin', channel: 'canary' }, berlin)).toBe('channel');
    expect(firstLabelBeyondRule({ channel: 'canary' }, undefined)).toBeUndefined();
    expect(firstLabelBeyondRule({ 'node-restriction.flotilla.io/vault': 'true' }, undefined)).toBe('node-restriction.flotilla.io/vault');
  });
});

describe('joining again under a name that has joined', () => {
  let hub: TestHub;
  let credentials: Credentials;
  let join: JoinService;
  let connected: Set<string>;
  let disconnected: string[];
  let token: string;

  beforeEach(() => {
    hub = testHub();
    credentials = new Credentials(hub.db);
    token = credentials.createToken('join').token;
    connected = new Set();
    disconnected = [];
    const bus = { nodeConnected: (node: string) => connected.has(node), disconnectNode: (node: string) => disconnected.push(node) } as unknown as MessageBus;
    join = new JoinService(hub.store, credentials, bus, new Topics(), hub.events, hub.log);
  });
  afterEach(() => hub.db.close());

  const request = (name: string, with_ = token, labels: Record<string, string> = {}) => join.handle(Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, name, token: with_, labels })));
  const error = (r: JoinResponse) => (r.ok ? undefined : r.error);

  it('lets the same token recover a node whose device is gone, revoking the old credentials', () => {
    const first = request('pi-1');
    expect(first.ok).toBe(true);
    const again = request('pi-1');
    expect(again.ok).toBe(true);
    expect(first.ok && again.ok && first.password !== again.password).toBe(true);
    expect(first.ok && credentials.verifyDevice('pi-1', first.password)).toBe(false);
    expect(again.ok && credentials.verifyDevice('pi-1', again.password)).toBe(true);
    expect(disconnected).toEqual(['pi-1']);
    expect(hub.store.list('Event').items.map((e) => (e as unknown as { reason: string }).reason)).toContain('Rejoined');
  });

  it('refuses while a device is connected under the name', () => {
    request('pi-1');
    connected.add('pi-1');
    expect(error(request('pi-1'))).toBe("node name 'pi-1' is already taken: a device is connected under that name; a join token cannot take over a connected node");
  });

  it('refuses another join token', () => {
    request('pi-1');
    const other = credentials.createToken('join').token;
    expect(error(request('pi-1', other))).toMatch(/already taken: it joined with another join token; join with that token, or delete the node first \(flotilla delete node pi-1\)/);
  });

  it('refuses a node whose credentials the operator revoked', () => {
    request('pi-1');
    credentials.revokeNode('pi-1');
    expect(error(request('pi-1'))).toMatch(/already taken: its credentials were revoked/);
  });

  it('refuses a node an operator gave a label the token cannot grant', () => {
    request('pi-1');
    const node = hub.store.get('Node', '', 'pi-1')!;
    hub.store.update({ ...node, metadata: { ...node.metadata, labels: { ...node.metadata.labels, 'node-restriction.flotilla.io/vault': 'true' } } });
    expect(error(request('pi-1'))).toMatch(/the node carries label node-restriction\.flotilla\.io\/vault, which join token [a-z0-9]+ cannot grant .*remove the label \(flotilla label node pi-1 node-restriction\.flotilla\.io\/vault-\)/);
  });

  it('refuses a node registered ahead of its device with a label the token cannot grant', () => {
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'gw-1', labels: { 'node-restriction.flotilla.io/vault': 'true', site: 'north' } }, spec: {} });
    expect(error(request('gw-1'))).toMatch(/^node 'gw-1' was registered with label node-restriction\.flotilla\.io\/vault, which join token [a-z0-9]+ cannot grant/);
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'gw-2', labels: { site: 'north' } }, spec: {} });
    expect(request('gw-2').ok).toBe(true);
  });

  it('goes by the Ready condition when the broker cannot tell who is connected', () => {
    join = new JoinService(hub.store, credentials, { disconnectNode: () => undefined } as unknown as MessageBus, new Topics(), hub.events, hub.log);
    request('pi-1');
    hub.store.updateStatus('Node', '', 'pi-1', { conditions: [{ type: 'Ready', status: 'True' }] });
    expect(error(request('pi-1'))).toMatch(/a device is connected/);
    hub.store.updateStatus('Node', '', 'pi-1', { conditions: [{ type: 'Ready', status: 'Unknown' }] });
    expect(request('pi-1').ok).toBe(true);
  });
});

describe('an external broker that does not take the account', () => {
  it('forgets a first join, and keeps a rejoin\'s record so that only the same token may try again', async () => {
    const hub = testHub();
    try {
      const credentials = new Credentials(hub.db);
      const token = credentials.createToken('join').token;
      const topics = new Topics();
      let deliver: (topic: string, payload: Buffer) => void = () => undefined;
      const answers: Buffer[] = [];
      const bus = {
        subscribe: (_pattern: string, handler: (topic: string, payload: Buffer) => void) => {
          deliver = handler;
          return Promise.resolve();
        },
        publish: (_topic: string, payload: Buffer) => {
          answers.push(payload);
          return Promise.resolve();
        },
        disconnectNode: () => undefined,
      } as unknown as MessageBus;
      let brokerUp = true;
      const accounts = { registerDevice: () => (brokerUp ? Promise.resolve() : Promise.reject(new Error('dynsec timeout'))) };
      const join = new JoinService(hub.store, credentials, bus, topics, hub.events, hub.log, accounts);
      await join.start();
      const ask = async (name: string) => {
        deliver(topics.joinRequest(joinClientId(name)), Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, name, token })));
        await vi.waitFor(() => expect(answers.length).toBeGreaterThan(0));
        return JSON.parse(answers.splice(0).at(-1)!.toString()) as JoinResponse;
      };
      brokerUp = false;
      expect(await ask('pi-new')).toMatchObject({ ok: false, error: 'join failed: dynsec timeout' });
      expect(credentials.hasEverJoined('pi-new')).toBe(false);
      brokerUp = true;
      expect((await ask('pi-1')).ok).toBe(true);
      brokerUp = false;
      expect((await ask('pi-1')).ok).toBe(false);
      expect(credentials.deviceCredentials('pi-1')?.joinTokenId).toBe(token.split('.')[0]);
      brokerUp = true;
      expect((await ask('pi-1')).ok).toBe(true);
    } finally {
      hub.db.close();
    }
  });
});

describe('a hub database from before join token rules', () => {
  it('keeps its tokens and devices: old tokens have no rule, old devices no join token (so only a deleted node joins again)', () => {
    const dir = mkdtempSync(joinPath(tmpdir(), 'flotilla-upgrade-'));
    try {
      const file = joinPath(dir, 'flotilla.db');
      const before = openDatabase(file, hubMigrations.filter((m) => m.name !== 'join token rules'));
      before.prepare("INSERT INTO credentials (id, kind, secret_hash, node, description, created_at) VALUES ('oldjoin1', 'join', 'x', NULL, '', '2026-01-01T00:00:00Z'), ('dev-1', 'device', 'y', 'pi-1', '', '2026-01-01T00:00:00Z')").run();
      before.close();
      const after = openHubDatabase(file);
      const credentials = new Credentials(after);
      expect(credentials.get('oldjoin1')).toEqual({ id: 'oldjoin1', kind: 'join', node: null, description: '', createdAt: '2026-01-01T00:00:00Z', expiresAt: null, revokedAt: null });
      expect(credentials.deviceCredentials('pi-1')?.joinTokenId).toBeUndefined();
      after.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
