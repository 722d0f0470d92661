import mqtt from 'mqtt';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { Credentials } from '../../hub/auth/credentials.js';
import { BrokerAuth } from '../../hub/broker/auth.js';
import { EmbeddedBroker } from '../../hub/broker/embedded.js';
import { openHubDatabase } from '../../hub/store/schema.js';
import { Topics, deviceClientId, deviceUsername } from '../../shared/protocol/topics.js';

// The embedded broker hands what devices send together to the hub in batches (one store
// transaction each). A batch still pending when the broker closes is handled by close() itself,
// while the hub's store is open; nothing is handled after close() has returned.

const topics = new Topics();
const log = pino({ level: 'silent' });

it('handles the batches pending at close before close returns, and none after', async () => {
  const db = openHubDatabase(':memory:');
  const credentials = new Credentials(db);
  const broker = await EmbeddedBroker.start({ host: '127.0.0.1', port: 0, auth: new BrokerAuth(credentials, topics, log), log });
  let closed = false;
  let afterClose = 0;
  let handled = 0;
  let batches = 0;
  broker.deliverInBatches((run) => {
    if (closed) afterClose++;
    batches++;
    run();
  });
  await broker.subscribe(topics.allNodes('status'), () => handled++);

  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { protocolVersion: 4, reconnectPeriod: 0, clientId: deviceClientId('a'), username: deviceUsername('a'), password: credentials.issueDevicePassword('a') });
  client.on('error', () => {});
  const sent = 3_000;
  await Promise.all(Array.from({ length: sent }, (_, i) => client.publishAsync(topics.node('a', 'status'), JSON.stringify({ v: 1, i }), { qos: 1 })));
  for (let i = 0; i < sent; i++) client.publish(topics.node('a', 'status'), JSON.stringify({ v: 1, i }), { qos: 0 });
  await new Promise((r) => setImmediate(r));
  await broker.close();
  closed = true;
  const handledAtClose = handled;
  await new Promise((r) => setTimeout(r, 100));
  await client.endAsync(true);
  db.close();

  expect(handledAtClose).toBeGreaterThanOrEqual(sent);
  expect(batches).toBeGreaterThan(1);
  expect(afterClose).toBe(0);
  expect(handled).toBe(handledAtClose);
});
