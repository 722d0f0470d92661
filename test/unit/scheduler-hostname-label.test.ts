import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Credentials } from '../../hub/auth/credentials.js';
import type { MessageBus } from '../../hub/broker/bus.js';
import { JoinService } from '../../hub/broker/join.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.js';
import { Topics } from '../../shared/protocol/topics.js';
import { HOSTNAME_LABEL } from '../../shared/resources/scheduling.js';
import { testHub, type TestHub } from './builders.js';

// The join gives every node the well-known hostname label, the topology key the scheduler
// spreads replicas over devices with.

let hub: TestHub;
let join: JoinService;
let token: string;
beforeEach(() => {
  hub = testHub();
  const credentials = new Credentials(hub.db);
  token = credentials.createToken('join').token;
  // handle() is the exchange without MQTT: the bus is never used by it.
  join = new JoinService(hub.store, credentials, {} as MessageBus, new Topics(), hub.events, hub.log);
});
afterEach(() => hub.db.close());

function request(name: string, labels?: Record<string, string>): Buffer {
  return Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, name, token, ...(labels ? { labels } : {}) }));
}

const labelsOf = (name: string) => hub.store.get('Node', '', name)?.metadata.labels;

describe('the hostname label at join', () => {
  it('labels a new node with its own name, beside the labels the device asked for', () => {
    expect(join.handle(request('pi-7', { fleet: 'sensors' })).ok).toBe(true);
    expect(labelsOf('pi-7')).toEqual({ fleet: 'sensors', [HOSTNAME_LABEL]: 'pi-7' });
  });

  it('overrides a hostname label the device sends with the node name', () => {
    expect(join.handle(request('pi-8', { [HOSTNAME_LABEL]: 'someone-else' })).ok).toBe(true);
    expect(labelsOf('pi-8')).toEqual({ [HOSTNAME_LABEL]: 'pi-8' });
  });

  it('adds it to a node registered ahead of the device, keeping the labels the operator set', () => {
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'gw-1', labels: { site: 'north' } }, spec: {} });
    expect(join.handle(request('gw-1', { site: 'south', arch: 'arm64' })).ok).toBe(true);
    expect(labelsOf('gw-1')).toEqual({ [HOSTNAME_LABEL]: 'gw-1', site: 'north', arch: 'arm64' });
  });

  it('leaves it off a name too long for a label value (the scheduler takes the name itself then)', () => {
    const name = `${'a'.repeat(60)}.${'b'.repeat(10)}`;
    expect(join.handle(request(name)).ok).toBe(true);
    expect(labelsOf(name)).toBeUndefined();
  });
});
