import { describe, expect, it } from 'vitest';
import type { ZodType } from 'zod';
import {
  PROTOCOL_VERSION,
  decodePayload,
  desiredStateSchema,
  encodePayload,
  joinRequestSchema,
  joinResponseSchema,
  presenceSchema,
  statusReportSchema,
  type DecodeResult,
} from '../../shared/protocol/messages.js';
import {
  DEFAULT_TOPIC_PREFIX,
  HUB_USERNAME,
  JOIN_USERNAME,
  Topics,
  deviceClientId,
  deviceUsername,
  joinClientId,
  nodeFromUsername,
  type NodeChannel,
} from '../../shared/protocol/topics.js';

// ---------------------------------------------------------------------------------------------
// Builders: valid payloads of each message, with the fields a test is about overridden.

type Fields = Record<string, unknown>;

function desiredPod(fields: Fields = {}): Fields {
  return { uid: 'uid-1', name: 'web', namespace: 'default', labels: { app: 'web' }, spec: { containers: [{ name: 'app', image: 'nginx:1.27' }] }, ...fields };
}

function desiredMessage(fields: Fields = {}): Fields {
  return { v: PROTOCOL_VERSION, rev: 3, pods: [desiredPod()], ...fields };
}

function nodeReport(fields: Fields = {}): Fields {
  return {
    info: { hostname: 'pi-01', operatingSystem: 'linux', architecture: 'arm64', agentVersion: '0.1.0' },
    capacity: { cpu: '4', memory: '1Gi', pods: '110' },
    engineReady: true,
    ...fields,
  };
}

function podReport(fields: Fields = {}): Fields {
  return {
    uid: 'uid-1',
    name: 'web',
    namespace: 'default',
    phase: 'Running',
    containerStatuses: [{ name: 'app', image: 'nginx:1.27', ready: true, restartCount: 0, state: { running: { startedAt: '2024-01-01T00:00:00Z' } } }],
    ...fields,
  };
}

function statusMessage(fields: Fields = {}): Fields {
  return { v: PROTOCOL_VERSION, ts: '2024-01-01T00:00:01Z', observedRev: 3, node: nodeReport(), pods: [podReport()], ...fields };
}

function presenceMessage(fields: Fields = {}): Fields {
  return { v: PROTOCOL_VERSION, state: 'online', ts: '2024-01-01T00:00:00Z', session: 1, ...fields };
}

function joinMessage(fields: Fields = {}): Fields {
  return { v: PROTOCOL_VERSION, name: 'pi-01', labels: { fleet: 'sensors' }, ...fields };
}

const bytes = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

function expectErrors<T>(result: DecodeResult<T>): { path: string; message: string }[] {
  expect(result.ok).toBe(false);
  return result.ok ? [] : result.errors;
}

function expectValue<T>(result: DecodeResult<T>): T {
  if (!result.ok) expect.fail(`expected a valid payload, got ${JSON.stringify(result.errors)}`);
  return result.value;
}

// ---------------------------------------------------------------------------------------------

describe('Topics: builders', () => {
  const topics = new Topics();

  it('uses flotilla/v1 as the default prefix', () => {
    expect(DEFAULT_TOPIC_PREFIX).toBe('flotilla/v1');
    expect(topics.prefix).toBe('flotilla/v1');
  });

  it('builds the node topics of docs/PROTOCOL.md', () => {
    expect(topics.desired('pi-01')).toBe('flotilla/v1/nodes/pi-01/desired');
    expect(topics.status('pi-01')).toBe('flotilla/v1/nodes/pi-01/status');
    expect(topics.presence('pi-01')).toBe('flotilla/v1/nodes/pi-01/presence');
    expect(topics.node('pi-01', 'metrics')).toBe('flotilla/v1/nodes/pi-01/metrics');
    expect(topics.node('pi-01', 'rpc/req')).toBe('flotilla/v1/nodes/pi-01/rpc/req');
    expect(topics.node('pi-01', 'rpc/res')).toBe('flotilla/v1/nodes/pi-01/rpc/res');
  });

  it('builds the wildcard of one channel of every node, the peer table and the join topics', () => {
    expect(topics.allNodes('status')).toBe('flotilla/v1/nodes/+/status');
    expect(topics.allPeers()).toBe('flotilla/v1/network/peers/+');
    expect(topics.peer('pi-1')).toBe('flotilla/v1/network/peers/pi-1');
    expect(topics.parsePeerTopic('flotilla/v1/network/peers/pi-1')).toBe('pi-1');
    expect(topics.relay()).toBe('flotilla/v1/network/relay');
    expect(topics.joinRequest('join-abc')).toBe('flotilla/v1/join/join-abc/req');
    expect(topics.joinResponse('join-abc')).toBe('flotilla/v1/join/join-abc/res');
    expect(topics.allJoinRequests()).toBe('flotilla/v1/join/+/req');
  });

  it('puts every topic under a custom prefix', () => {
    const custom = new Topics('fleets/berlin');
    expect(custom.desired('pi-01')).toBe('fleets/berlin/nodes/pi-01/desired');
    expect(custom.allNodes('presence')).toBe('fleets/berlin/nodes/+/presence');
    expect(custom.allPeers()).toBe('fleets/berlin/network/peers/+');
    expect(custom.joinRequest('join-x')).toBe('fleets/berlin/join/join-x/req');
  });

  it.each(['', 'flotilla/#', 'flotilla/+/v1', '#', 'flotilla/v1/'])('refuses the invalid prefix %j', (prefix) => {
    expect(() => new Topics(prefix)).toThrow(`invalid topic prefix '${prefix}'`);
  });
});

describe('Topics: parseNodeTopic', () => {
  const topics = new Topics();
  const channels: NodeChannel[] = ['desired', 'status', 'presence', 'metrics', 'events', 'rpc/req', 'rpc/res'];

  it.each(channels)('round-trips the %s channel', (channel) => {
    expect(topics.parseNodeTopic(topics.node('pi-01', channel))).toEqual({ node: 'pi-01', channel });
  });

  it('keeps dots and dashes of a node name', () => {
    expect(topics.parseNodeTopic('flotilla/v1/nodes/pi-01.site-a/status')).toEqual({ node: 'pi-01.site-a', channel: 'status' });
  });

  it.each([
    ['an unknown channel', 'flotilla/v1/nodes/pi-01/secrets'],
    ['an unknown rpc direction', 'flotilla/v1/nodes/pi-01/rpc/other'],
    ['an extra level', 'flotilla/v1/nodes/pi-01/status/extra'],
    ['no channel', 'flotilla/v1/nodes/pi-01'],
    ['an empty channel', 'flotilla/v1/nodes/pi-01/'],
    ['an empty node', 'flotilla/v1/nodes//status'],
    ['another prefix', 'other/v1/nodes/pi-01/status'],
    ['a prefix that only starts the same', 'flotilla/v10/nodes/pi-01/status'],
    ['the prefix nested deeper', 'x/flotilla/v1/nodes/pi-01/status'],
    ['a join topic', 'flotilla/v1/join/join-abc/req'],
    ['the peer table', 'flotilla/v1/network/peers'],
  ])('rejects %s', (_what, topic) => {
    expect(topics.parseNodeTopic(topic)).toBeUndefined();
  });

  it('only accepts topics under its own prefix', () => {
    const custom = new Topics('fleets/berlin');
    expect(custom.parseNodeTopic('fleets/berlin/nodes/a/status')).toEqual({ node: 'a', channel: 'status' });
    expect(custom.parseNodeTopic('flotilla/v1/nodes/a/status')).toBeUndefined();
    expect(topics.parseNodeTopic('fleets/berlin/nodes/a/status')).toBeUndefined();
  });
});

describe('Topics: parseJoinTopic', () => {
  const topics = new Topics();

  it('parses requests and responses', () => {
    expect(topics.parseJoinTopic(topics.joinRequest('join-abc'))).toEqual({ clientId: 'join-abc', direction: 'req' });
    expect(topics.parseJoinTopic(topics.joinResponse('join-abc'))).toEqual({ clientId: 'join-abc', direction: 'res' });
  });

  it.each([
    ['an unknown direction', 'flotilla/v1/join/join-abc/other'],
    ['an empty client id', 'flotilla/v1/join//req'],
    ['an extra level', 'flotilla/v1/join/join-abc/req/more'],
    ['no direction', 'flotilla/v1/join/join-abc'],
    ['another prefix', 'other/v1/join/join-abc/req'],
    ['a node topic', 'flotilla/v1/nodes/pi-01/status'],
  ])('rejects %s', (_what, topic) => {
    expect(topics.parseJoinTopic(topic)).toBeUndefined();
  });

  it('only accepts topics under its own prefix', () => {
    const custom = new Topics('fleets/berlin');
    expect(custom.parseJoinTopic('fleets/berlin/join/join-a/req')).toEqual({ clientId: 'join-a', direction: 'req' });
    expect(custom.parseJoinTopic('flotilla/v1/join/join-a/req')).toBeUndefined();
  });
});

describe('MQTT identities', () => {
  it('derives a device user name and client id from its node name', () => {
    expect(deviceUsername('pi-01')).toBe('node:pi-01');
    expect(deviceClientId('pi-01')).toBe('node:pi-01');
    expect(nodeFromUsername(deviceUsername('pi-01'))).toBe('pi-01');
  });

  it('does not take the node of a user name that is not a device', () => {
    expect(nodeFromUsername('node:')).toBeUndefined();
    expect(nodeFromUsername(JOIN_USERNAME)).toBeUndefined();
    expect(nodeFromUsername(HUB_USERNAME)).toBeUndefined();
    expect(nodeFromUsername('nodes:pi-01')).toBeUndefined();
  });

  it('names joining clients join-<nonce>', () => {
    expect(JOIN_USERNAME).toBe('join');
    expect(joinClientId('abc123')).toBe('join-abc123');
  });
});

describe('decodePayload', () => {
  it('refuses a payload that is not JSON, as bytes or as text', () => {
    for (const payload of [Buffer.from('{not json'), 'online', new Uint8Array([0xff, 0xfe])]) {
      const errors = expectErrors(decodePayload(presenceSchema, payload));
      expect(errors).toHaveLength(1);
      expect(errors[0]!.path).toBe('(payload)');
      expect(errors[0]!.message).toMatch(/^not JSON: /);
    }
  });

  it('refuses JSON that is not an object', () => {
    expect(expectErrors(decodePayload(presenceSchema, '"online"'))[0]!.path).toBe('(root)');
    expect(expectErrors(decodePayload(presenceSchema, 'null'))[0]!.path).toBe('(root)');
  });

  it.each([
    ['desired', desiredStateSchema, desiredMessage],
    ['status', statusReportSchema, statusMessage],
    ['presence', presenceSchema, presenceMessage],
    ['join', joinRequestSchema, joinMessage],
  ] as [string, ZodType<unknown>, (fields?: Fields) => Fields][])('refuses a %s message of another protocol version on path v', (_what, schema, build) => {
    for (const v of [2, 0, '1']) {
      const errors = expectErrors(decodePayload(schema, bytes(build({ v }))));
      expect(errors).toEqual([{ path: 'v', message: 'unsupported protocol version (this side speaks v1)' }]);
    }
    const { v: _v, ...noVersion } = build();
    expect(expectErrors(decodePayload(schema, bytes(noVersion))).map((e) => e.path)).toEqual(['v']);
  });

  it('decodes a valid desired set, defaulting configs and secrets', () => {
    const value = expectValue(decodePayload(desiredStateSchema, bytes(desiredMessage())));
    expect(value).toEqual({ v: 1, rev: 3, pods: [desiredPod()], configs: [], secrets: [] });
  });

  it('decodes an empty desired set (a node with nothing to run)', () => {
    expect(expectValue(decodePayload(desiredStateSchema, bytes(desiredMessage({ rev: 0, pods: [] }))))).toMatchObject({ rev: 0, pods: [] });
  });

  it('names the path of a missing or bad field of a desired set', () => {
    const { rev: _rev, ...noRev } = desiredMessage();
    expect(expectErrors(decodePayload(desiredStateSchema, bytes(noRev))).map((e) => e.path)).toEqual(['rev']);
    expect(expectErrors(decodePayload(desiredStateSchema, bytes(desiredMessage({ rev: -1 })))).map((e) => e.path)).toEqual(['rev']);
  });

  it('refuses one pod of a desired set that it cannot read, alone: the rest of the set is read', () => {
    const { uid: _uid, ...noUid } = desiredPod();
    const noUidSet = expectValue(decodePayload(desiredStateSchema, bytes(desiredMessage({ pods: [desiredPod(), noUid] }))));
    expect(noUidSet.pods).toEqual([desiredPod()]);
    expect(noUidSet.refusedPods).toMatchObject([{ uid: '', name: 'pods[1]', namespace: '', error: expect.stringMatching(/^uid: /) }]);
    const noImage = desiredPod({ uid: 'u-2', name: 'no-image', spec: { containers: [{ name: 'app', image: '' }] } });
    const value = expectValue(decodePayload(desiredStateSchema, bytes(desiredMessage({ pods: [noImage, desiredPod()] }))));
    expect(value.pods).toEqual([desiredPod()]);
    expect(value.refusedPods).toEqual([{ uid: 'u-2', name: 'no-image', namespace: 'default', error: 'spec.containers[0].image: is required' }]);
    // The set as the agent keeps it on disk reads back the same.
    expect(expectValue(decodePayload(desiredStateSchema, JSON.stringify(value)))).toEqual(value);
  });

  it('refuses a pod that is not an object (null, a number, a list) alone, without throwing', () => {
    const value = expectValue(decodePayload(desiredStateSchema, bytes(desiredMessage({ pods: [null, 7, [], desiredPod()] }))));
    expect(value.pods).toEqual([desiredPod()]);
    expect(value.refusedPods?.map((p) => p.name)).toEqual(['pods[0]', 'pods[1]', 'pods[2]']);
  });

  it('reads a pod whose only fault is a malformed image, keeping the image as sent (the agent reports InvalidImageName)', () => {
    const pod = desiredPod({ spec: { containers: [{ name: 'app', image: 'Redteam/BusyBox:1' }, { name: 'ok', image: 'busybox:1' }] } });
    const value = expectValue(decodePayload(desiredStateSchema, bytes(desiredMessage({ pods: [pod] }))));
    expect(value.refusedPods).toBeUndefined();
    expect(value.pods[0]!.spec.containers.map((c) => c.image)).toEqual(['Redteam/BusyBox:1', 'busybox:1']);
    // With another fault beside it, the pod is refused and both faults are named.
    const both = desiredPod({ spec: { containers: [{ name: 'app', image: 'Redteam/BusyBox:1' }, { name: 'app', image: 'busybox:1' }] } });
    const refused = expectValue(decodePayload(desiredStateSchema, bytes(desiredMessage({ pods: [both] })))).refusedPods![0]!;
    expect(refused.error).toMatch(/spec\.containers\[0\]\.image: invalid reference format.*duplicate container name 'app'/);
  });

  it('decodes a valid status report, with or without an observed revision', () => {
    const value = expectValue(decodePayload(statusReportSchema, bytes(statusMessage())));
    expect(value.observedRev).toBe(3);
    expect(value.node.info.architecture).toBe('arm64');
    expect(value.pods[0]!.containerStatuses[0]!.state.running?.startedAt).toBe('2024-01-01T00:00:00Z');
    expect(expectValue(decodePayload(statusReportSchema, bytes(statusMessage({ observedRev: null })))).observedRev).toBeNull();
  });

  it('names the nested path of a missing status field', () => {
    const node = nodeReport();
    const { architecture: _arch, ...info } = node.info as Fields;
    const errors = expectErrors(decodePayload(statusReportSchema, bytes(statusMessage({ node: { ...node, info } }))));
    expect(errors.map((e) => e.path)).toEqual(['node.info.architecture']);

    const { observedRev: _rev, ...noRev } = statusMessage();
    expect(expectErrors(decodePayload(statusReportSchema, bytes(noRev))).map((e) => e.path)).toEqual(['observedRev']);
  });

  it('names the path of a bad pod status in a status report', () => {
    const badPhase = expectErrors(decodePayload(statusReportSchema, bytes(statusMessage({ pods: [podReport({ phase: 'Exploded' })] }))));
    expect(badPhase.map((e) => e.path)).toEqual(['pods[0].phase']);
    const container = { name: 'app', image: 'x', ready: true, restartCount: -1, state: {} };
    const badCount = expectErrors(decodePayload(statusReportSchema, bytes(statusMessage({ pods: [podReport({ containerStatuses: [container] })] }))));
    expect(badCount.map((e) => e.path)).toEqual(['pods[0].containerStatuses[0].restartCount']);
  });

  it('decodes valid presence messages and refuses an unknown state or a missing session', () => {
    expect(expectValue(decodePayload(presenceSchema, bytes(presenceMessage())))).toEqual({ v: 1, state: 'online', ts: '2024-01-01T00:00:00Z', session: 1 });
    expect(expectValue(decodePayload(presenceSchema, bytes(presenceMessage({ state: 'offline' })))).state).toBe('offline');
    expect(expectErrors(decodePayload(presenceSchema, bytes(presenceMessage({ state: 'away' })))).map((e) => e.path)).toEqual(['state']);
    const { session: _session, ...noSession } = presenceMessage();
    expect(expectErrors(decodePayload(presenceSchema, bytes(noSession))).map((e) => e.path)).toEqual(['session']);
  });

  it('decodes a valid join request, labels optional, and refuses an empty name', () => {
    expect(expectValue(decodePayload(joinRequestSchema, bytes(joinMessage())))).toEqual({ v: 1, name: 'pi-01', labels: { fleet: 'sensors' } });
    expect(expectValue(decodePayload(joinRequestSchema, bytes(joinMessage({ labels: undefined }))))).toEqual({ v: 1, name: 'pi-01' });
    expect(expectErrors(decodePayload(joinRequestSchema, bytes(joinMessage({ name: '' })))).map((e) => e.path)).toEqual(['name']);
    expect(expectErrors(decodePayload(joinRequestSchema, bytes(joinMessage({ labels: { fleet: 1 } })))).map((e) => e.path)).toEqual(['labels.fleet']);
  });

  it('decodes both forms of a join response', () => {
    const ok = { v: 1, ok: true, node: 'pi-01', username: 'node:pi-01', password: 'secret' };
    expect(expectValue(decodePayload(joinResponseSchema, bytes(ok)))).toEqual(ok);
    const refused = { v: 1, ok: false, error: 'node name taken' };
    expect(expectValue(decodePayload(joinResponseSchema, bytes(refused)))).toEqual(refused);
    expect(expectErrors(decodePayload(joinResponseSchema, bytes({ v: 1, ok: true, node: 'pi-01' }))).map((e) => e.path).sort()).toEqual(['password', 'username']);
  });

  it('decodes what encodePayload encoded', () => {
    const message = presenceMessage({ state: 'offline', session: 7 });
    const encoded = encodePayload(message);
    expect(Buffer.isBuffer(encoded)).toBe(true);
    expect(expectValue(decodePayload(presenceSchema, encoded))).toEqual(message);
  });
});
