// Stands in, inside the agent bundle, for modules that dockerode and mqtt load but the agent
// never uses: gRPC and protobufjs for BuildKit sessions (image builds), ssh2 for ssh:// engine
// URLs, and mqtt's WebSocket, SOCKS proxy and browser timer support. Leaving them out saves the
// device memory. Using one fails with a clear message.
'use strict';
function unsupported(what) {
  const fail = () => {
    throw new Error(`${what} is not supported by the flotilla agent`);
  };
  return new Proxy(fail, { get: (_t, key) => (key === '__esModule' ? false : key === 'default' ? unsupported(what) : fail), apply: fail, construct: fail });
}
module.exports = unsupported('this feature (BuildKit sessions, ssh:// engine URLs, or MQTT over WebSocket or a SOCKS proxy)');
