import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RpcError, RpcServer, type RpcCall, type RpcServerOptions } from '../../agent/link/rpc.js';
import { toHubError } from '../../hub/api/errors.js';
import type { MessageBus } from '../../hub/broker/bus.js';
import { RpcCallError, RpcClient, type RpcTiming } from '../../hub/dispatch/rpc.js';
import { decodePayload, encodePayload } from '../../shared/protocol/messages.js';
import { rpcRequestSchema, type LogsParams, type RpcRequest, type RpcResponse } from '../../shared/protocol/rpc.js';
import { Topics } from '../../shared/protocol/topics.js';
import { createNode, setNodeReady, testHub, type TestHub } from './builders.js';

// The rpc topics end to end without a broker: the hub's RpcClient and a device's RpcServer joined
// by a loop that carries each payload as bytes and validates it as the real boundaries do.

const topics = new Topics();
const NODE = 'edge-1';
const PARAMS: LogsParams = { podUid: 'uid-1', container: 'app', follow: true };
const TIMING: RpcTiming = { firstAnswerMs: 200, idleMs: 200, keepaliveMs: 50 };
const LIMITS: RpcServerOptions = { maxStreams: 2, idleTimeoutMs: 300, maxDurationMs: 60_000 };

/** The device's handler: what each call got, and a way to play its output. */
class FakeDevice {
  readonly calls: RpcCall[] = [];
  readonly requests: RpcRequest[] = [];
  behaviour: (params: LogsParams, call: RpcCall) => Promise<void> = (_, call) => untilAborted(call);
}

function untilAborted(call: RpcCall): Promise<void> {
  return new Promise((_, reject) => call.signal.addEventListener('abort', () => reject(call.signal.reason as Error), { once: true }));
}

const tick = (ms = 10) => new Promise((r) => setTimeout(r, ms));

let hub: TestHub;
let device: FakeDevice;
let server: RpcServer;
let client: RpcClient;
let deviceUp: boolean;
/** Everything the hub sent, delivered or not. */
let hubSent: RpcRequest[];

beforeEach(async () => {
  hub = testHub();
  createNode(hub.store, { name: NODE });
  device = new FakeDevice();
  deviceUp = true;
  hubSent = [];
  let deliverToHub: (topic: string, payload: Buffer) => void = () => {};
  const bus: MessageBus = {
    publish: async (topic, payload) => {
      if (topic !== topics.node(NODE, 'rpc/req')) return;
      const decoded = decodePayload(rpcRequestSchema, payload);
      if (!decoded.ok) throw new Error('the hub sent an invalid request');
      hubSent.push(decoded.value);
      if (!deviceUp) return;
      device.requests.push(decoded.value);
      setImmediate(() => server.handle(decoded.value));
    },
    subscribe: async (_pattern, handler) => {
      deliverToHub = handler;
    },
    disconnectNode: () => {},
    connectedClients: () => 0,
    close: async () => {},
  };
  server = new RpcServer(
    (res: RpcResponse) => {
      setImmediate(() => deliverToHub(topics.node(NODE, 'rpc/res'), encodePayload(res)));
      return true;
    },
    {
      logs: (params, call) => {
        device.calls.push(call);
        return device.behaviour(params, call);
      },
    },
    LIMITS,
    hub.log,
  );
  client = new RpcClient(hub.store, bus, topics, hub.log, TIMING);
  await client.start();
});
afterEach(() => {
  client.stop();
  server.stopAll('test over');
  hub.db.close();
});

function collect(params: LogsParams = PARAMS) {
  const chunks: string[] = [];
  const stream = client.logs(NODE, params, (c) => chunks.push(c));
  return { stream, chunks };
}

async function expectRpcError(p: Promise<unknown>, code: string, message: string | RegExp): Promise<void> {
  const err = await p.then(
    () => expect.fail('expected an RpcCallError'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RpcCallError);
  expect((err as RpcCallError).code).toBe(code);
  expect((err as RpcCallError).message).toMatch(message);
}

describe('rpc: logs from a device', () => {
  it('streams the chunks a device sends, in order, to the end', async () => {
    device.behaviour = async (_, call) => {
      call.send('line-1\n');
      call.send('line-2\n');
    };
    const { stream, chunks } = collect({ ...PARAMS, follow: false, tail: 2 });
    await stream.started;
    await stream.finished;
    expect(chunks).toEqual(['line-1\n', 'line-2\n']);
    expect(device.requests[0]).toMatchObject({ method: 'logs', params: { podUid: 'uid-1', container: 'app', follow: false, tail: 2 } });
    expect(client.active).toBe(0);
    expect(server.active).toBe(0);
  });

  it('refuses at once when the node is not connected', () => {
    setNodeReady(hub.store, NODE, false);
    expect(() => collect()).toThrow(new RpcCallError('RpcNodeUnavailable', `node "${NODE}" is not connected; logs are unavailable`));
    expect(device.requests).toEqual([]);
  });

  it('turns a device\'s refusal into the API\'s answer', async () => {
    device.behaviour = async () => {
      throw new RpcError('NotFound', 'container "app" has not been created yet');
    };
    await expectRpcError(collect().stream.started, 'RpcNotFound', 'container "app" has not been created yet');
  });

  it('says Busy past the device\'s stream limit', async () => {
    device.behaviour = async (_, call) => {
      call.send('started\n');
      await untilAborted(call);
    };
    const first = collect();
    const second = collect();
    await Promise.all([first.stream.started, second.stream.started]);
    await expectRpcError(collect().stream.started, 'RpcBusy', /too many streams on this device \(at most 2\)/);
  });

  it('cancels the device\'s stream when the reader goes away', async () => {
    device.behaviour = async (_, call) => {
      call.send('tick\n');
      await untilAborted(call);
    };
    const { stream, chunks } = collect();
    await stream.started;
    stream.cancel();
    await stream.finished;
    await tick(30);
    expect(device.requests.map((r) => r.method)).toContain('cancel');
    expect(device.calls[0]!.signal.aborted).toBe(true);
    expect(String(device.calls[0]!.signal.reason)).toContain('cancelled by the hub');
    expect(server.active).toBe(0);
    expect(chunks).toEqual(['tick\n']);
  });

  it('gives up on a device that does not answer, and tells it to stop should it start later', async () => {
    deviceUp = false;
    const { stream } = collect();
    await expectRpcError(stream.started, 'RpcTimeout', `node "${NODE}" did not answer within 0.2s`);
    expect(client.active).toBe(0);
    expect(hubSent.filter((r) => r.method !== 'keepalive').map((r) => [r.method, r.id])).toEqual([['logs', stream.id], ['cancel', stream.id]]);
  });

  it('gives up on a stream that does not follow and stops coming, and cancels it on the device', async () => {
    device.behaviour = async (_, call) => {
      call.send('line-1\n');
      await untilAborted(call);
    };
    const { stream, chunks } = collect({ ...PARAMS, follow: false });
    await stream.started;
    await expectRpcError(stream.finished, 'RpcTimeout', `node "${NODE}" stopped sending for 0.2s`);
    expect(chunks).toEqual(['line-1\n']);
    await tick(30);
    expect(String(device.calls[0]!.signal.reason)).toContain('cancelled by the hub');
  });

  it('ends a stream whose node goes offline midway', async () => {
    device.behaviour = async (_, call) => {
      call.send('tick\n');
      await untilAborted(call);
    };
    const { stream } = collect();
    await stream.started;
    setNodeReady(hub.store, NODE, false);
    await expectRpcError(stream.finished, 'RpcNodeUnavailable', `node "${NODE}" is not connected; the stream ended`);
  });

  it('keeps a follow alive with keepalives, and the device ends one the hub stopped keeping alive', async () => {
    device.behaviour = async (_, call) => {
      call.send('tick\n');
      await untilAborted(call);
    };
    const { stream } = collect();
    await stream.started;
    await tick(LIMITS.idleTimeoutMs + 100);
    expect(device.calls[0]!.signal.aborted).toBe(false);
    expect(device.requests.filter((r) => r.method === 'keepalive').length).toBeGreaterThan(2);
    // The hub vanishes without a word (no cancel): the device stops on its own.
    deviceUp = false;
    client.stop();
    await tick(LIMITS.idleTimeoutMs + 100);
    expect(String(device.calls[0]!.signal.reason)).toContain('no keepalive from the hub');
    expect(server.active).toBe(0);
    void stream;
  });

  it('serves a request delivered twice (QoS 1) once', async () => {
    const req: RpcRequest = { v: 1, id: 'same', method: 'logs', params: PARAMS };
    server.handle(req);
    server.handle(req);
    expect(server.active).toBe(1);
    expect(device.calls).toHaveLength(1);
  });
});

describe('rpc failures as API answers', () => {
  it.each([
    ['RpcNodeUnavailable', 503],
    ['RpcTimeout', 504],
    ['RpcNotFound', 400],
    ['RpcBadRequest', 400],
    ['RpcBusy', 429],
    ['RpcFailed', 502],
  ] as const)('answers %s with HTTP %i and the device\'s words', (code, status) => {
    const answer = toHubError(new RpcCallError(code, 'what the device said'));
    expect(answer.httpStatus).toBe(status);
    expect(answer.message).toBe('what the device said');
  });
});
