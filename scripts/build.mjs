// Builds the two programs:
//  dist/flotilla.js        the CLI and hub (ESM; npm dependencies stay external: better-sqlite3 is native)
//  dist/flotilla-agent.cjs the agent as ONE file with every dependency inside and no native add-on,
//                          so it runs with plain `node` on a device that has no node_modules.
import { build } from 'esbuild';
import { mkdirSync } from 'node:fs';

mkdirSync('dist', { recursive: true });

await build({
  entryPoints: ['hub/cli/main.ts'],
  outfile: 'dist/flotilla.js',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
});

await build({
  entryPoints: ['agent/main.ts'],
  outfile: 'dist/flotilla-agent.cjs',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // ssh2 (under dockerode) loads optional native helpers inside try/catch; leaving them out
  // keeps the bundle free of native add-ons, and ssh2 falls back to pure JavaScript.
  external: ['cpu-features', '*.node'],
  // dockerode loads gRPC and protobufjs (BuildKit sessions) and ssh2 (ssh:// engines) at start,
  // and mqtt loads its WebSocket (ws), SOCKS proxy (socks) and browser timer (worker-timers)
  // support; the agent uses none of them (it speaks mqtt:// and mqtts:// only), and parsing them
  // costs a small device ~25 MB of memory.
  alias: {
    '@grpc/grpc-js': './scripts/unsupported-in-agent.cjs',
    '@grpc/proto-loader': './scripts/unsupported-in-agent.cjs',
    protobufjs: './scripts/unsupported-in-agent.cjs',
    ssh2: './scripts/unsupported-in-agent.cjs',
    ws: './scripts/unsupported-in-agent.cjs',
    socks: './scripts/unsupported-in-agent.cjs',
    'worker-timers': './scripts/unsupported-in-agent.cjs',
    // mqtt and bl carry their own copies of readable-stream; Node's stream is the same code.
    'readable-stream': './scripts/stream-in-agent.cjs',
  },
  minify: true,
  sourcemap: false,
  legalComments: 'linked',
  logLevel: 'warning',
});
