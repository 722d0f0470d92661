// Stands in, inside the agent bundle, for modules that dockerode loads but the agent never
// uses: gRPC for BuildKit sessions (image builds) and ssh2 for ssh:// engine URLs. Leaving
// them out saves the device tens of MB of memory. Using one fails with a clear message.
'use strict';
function unsupported(what) {
  const fail = () => {
    throw new Error(`${what} is not supported by the flotilla agent`);
  };
  return new Proxy(fail, { get: (_t, key) => (key === '__esModule' ? false : key === 'default' ? unsupported(what) : fail), apply: fail, construct: fail });
}
module.exports = unsupported('this engine feature (BuildKit sessions or ssh:// engine URLs)');
