import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MessageBus } from '../../hub/broker/bus.js';
import { Dispatcher } from '../../hub/dispatch/desired.js';
import { decodePayload, desiredStateSchema, type DesiredState } from '../../shared/protocol/messages.js';
import { METRICS_INTERVAL_ANNOTATION } from '../../shared/protocol/metrics.js';
import { Topics } from '../../shared/protocol/topics.js';
import { parseAgentArgs } from '../../agent/main.js';
import { createNode, testHub, type TestHub } from './builders.js';

// A node's metrics interval, set on the hub as an annotation of the Node, travels in the node's
// desired set; the agent's own flag is the fallback.

const topics = new Topics();
let hub: TestHub;
let retained: Buffer | undefined;
let dispatcher: Dispatcher;
const bus: MessageBus = {
  publish: async (topic, payload) => {
    if (topic === topics.desired('edge-1')) retained = payload;
  },
  subscribe: async () => {},
  disconnectNode: () => {},
  connectedClients: () => 0,
  close: async () => {},
};

function desired(): DesiredState {
  const r = decodePayload(desiredStateSchema, retained!);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.value;
}

function annotate(value: string | undefined): void {
  const annotations: Record<string, string> = value === undefined ? {} : { [METRICS_INTERVAL_ANNOTATION]: value };
  hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, metadata: { ...cur.metadata, annotations } }));
}

beforeEach(() => {
  hub = testHub();
  retained = undefined;
  createNode(hub.store, { name: 'edge-1' });
  dispatcher = new Dispatcher(hub.db, hub.store, bus, topics, hub.log);
  dispatcher.start();
});
afterEach(() => {
  dispatcher.stop();
  hub.db.close();
});

describe('the per-node metrics interval', () => {
  it('is sent with the desired set, and a change of it makes a new revision', async () => {
    await dispatcher.queue.idle();
    expect(desired().metrics).toBeUndefined();
    const rev = desired().rev;
    annotate('1m');
    await dispatcher.queue.idle();
    expect(desired()).toMatchObject({ rev: rev + 1, metrics: { intervalSeconds: 60 } });
    annotate(undefined);
    await dispatcher.queue.idle();
    expect(desired().rev).toBe(rev + 2);
    expect(desired().metrics).toBeUndefined();
  });

  it('is left out when the annotation is not an interval', async () => {
    annotate('often');
    await dispatcher.queue.idle();
    expect(desired().metrics).toBeUndefined();
  });

  it('falls back on the agent\'s flag, which may turn metrics off', () => {
    const args = (flag: string[]) => parseAgentArgs(['--hub', 'mqtt://hub:1883', '--name', 'edge-1', ...flag]);
    expect(args(['--metrics-interval', '30s'])).toMatchObject({ config: { metricsIntervalSeconds: 30 } });
    expect(args(['--metrics-interval', '0'])).toMatchObject({ config: { metricsIntervalSeconds: 0 } });
    expect(() => args(['--metrics-interval', '5h'])).toThrow(/--metrics-interval: '5h' is not an interval/);
  });
});
