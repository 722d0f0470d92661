// A byte relay between two stream endpoints, for a device that lives in its own network
// namespace: `node relay.mjs LISTEN CONNECT`, each `unix:/path` or `tcp:HOST:PORT` (port 0 for
// any free port). Unix sockets are file system objects, visible from every network namespace,
// so two of these (one each side) join a device's loopback to the hub's without any address or
// route on the host. Plain JavaScript, so plain `node` runs it inside `ip netns exec`.
// Prints one JSON line `{"listening": <port or path>}` once it accepts connections.
import fs from 'node:fs';
import net from 'node:net';

/** `unix:/path` or `tcp:host:port` as net's options. */
function endpoint(spec) {
  if (spec.startsWith('unix:')) return { path: spec.slice('unix:'.length) };
  const m = /^tcp:(.+):(\d+)$/.exec(spec);
  if (!m) throw new Error(`bad endpoint ${spec}: use unix:/path or tcp:host:port`);
  return { host: m[1], port: Number(m[2]) };
}

const [listenSpec, connectSpec] = process.argv.slice(2);
if (!listenSpec || !connectSpec) {
  console.error('usage: relay.mjs LISTEN CONNECT (unix:/path | tcp:host:port)');
  process.exit(2);
}
const listen = endpoint(listenSpec);
const target = endpoint(connectSpec);

const server = net.createServer((inbound) => {
  const outbound = net.connect(target);
  // Either side going away ends the other, as a broken link does: nothing is buffered for later.
  const end = () => {
    inbound.destroy();
    outbound.destroy();
  };
  inbound.on('error', end).on('close', end);
  outbound.on('error', end).on('close', end);
  inbound.pipe(outbound);
  outbound.pipe(inbound);
});

// A socket file left by an earlier relay on the same path would make listen fail.
if (listen.path) fs.rmSync(listen.path, { force: true });
server.listen(listen, () => {
  const address = server.address();
  console.log(JSON.stringify({ listening: typeof address === 'string' ? address : address?.port }));
});
server.on('error', (err) => {
  console.error(err.message);
  process.exit(1);
});
process.on('SIGTERM', () => process.exit(0));
