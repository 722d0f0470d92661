#!/usr/bin/env node
// The `flotilla` command. `flotilla agent …` runs the agent from its own single-file bundle
// (the same file a device runs with plain node); every other command is the CLI and hub.
// Keeping the two apart here is what lets hub/ and agent/ never import each other.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);

if (args[0] === 'agent') {
  const require = createRequire(import.meta.url);
  const agent = require(join(here, '..', 'dist', 'flotilla-agent.cjs'));
  process.exitCode = await agent.main(args.slice(1));
} else {
  const { main } = await import(join(here, '..', 'dist', 'flotilla.js'));
  process.exitCode = await main(args);
}
