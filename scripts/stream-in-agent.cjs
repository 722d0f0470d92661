// The agent bundle's readable-stream: Node's own stream module, of which readable-stream is a
// copy for browsers and old Node releases. One implementation instead of three copies keeps the
// single-file agent smaller to load.
'use strict';
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a CommonJS shim for the bundler
module.exports = require('node:stream');
