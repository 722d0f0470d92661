// An MQTT relay on loopback that rewrites what the broker sends to a device:
// `node rewrite-relay.mjs BROKER_PORT '{"from":"to",...}'`. In every packet from the broker, each
// `from` becomes `to` (of the same length, so that no packet length changes). It lets a test hand
// a device a spec that the hub itself would refuse, exactly as the device would get it from a hub
// that let it through. Packets are cut by MQTT's fixed header (type byte, remaining length), so a
// string split across TCP segments is still found. A process of its own, so that a test's
// synchronous CLI calls never hold back the device's keepalive. Prints one JSON line
// `{"listening": <port>}` once it accepts connections.
import net from 'node:net';

const [brokerPort, rewritesJson] = process.argv.slice(2);
if (!brokerPort || !rewritesJson) {
  console.error('usage: rewrite-relay.mjs BROKER_PORT REWRITES_JSON');
  process.exit(2);
}
const pairs = Object.entries(JSON.parse(rewritesJson)).map(([from, to]) => {
  if (Buffer.byteLength(from) !== Buffer.byteLength(to)) throw new Error(`rewrite of "${from}" must keep its length`);
  return [Buffer.from(from), Buffer.from(to)];
});

/**
 * The whole length of the packet at the start of `buf` (fixed header included); undefined if its
 * header is not all here yet, null if it is no MQTT header.
 */
function packetLength(buf) {
  let remaining = 0;
  for (let i = 1; i <= 4; i++) {
    if (buf.length <= i) return undefined;
    const byte = buf[i];
    remaining += (byte & 0x7f) * 128 ** (i - 1);
    if ((byte & 0x80) === 0) return 1 + i + remaining;
  }
  return null;
}

const server = net.createServer((device) => {
  const broker = net.connect({ host: '127.0.0.1', port: Number(brokerPort) });
  const end = () => {
    device.destroy();
    broker.destroy();
  };
  device.on('error', end).on('close', end);
  broker.on('error', end).on('close', end);
  device.pipe(broker);
  let pending = Buffer.alloc(0);
  broker.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      const length = packetLength(pending);
      if (length === null) return end();
      if (length === undefined || pending.length < length) break;
      const packet = Buffer.from(pending.subarray(0, length));
      pending = pending.subarray(length);
      for (const [from, to] of pairs) for (let at = packet.indexOf(from); at >= 0; at = packet.indexOf(from, at + to.length)) to.copy(packet, at);
      device.write(packet);
    }
  });
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ listening: server.address().port })));
server.on('error', (err) => {
  console.error(err.message);
  process.exit(1);
});
process.on('SIGTERM', () => process.exit(0));
