import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AGENT_BUNDLE, cli, tempDir } from '../harness/processes.js';

// The agent ships as one JavaScript file that runs with plain node on a device that has no
// node_modules and no compiler (docs/ARCHITECTURE.md, 'Rules of the house').

const dir = tempDir('bundle');
afterAll(() => dir.remove());

function hasNodeModulesAbove(path: string): boolean {
  for (let d = path; d !== dirname(d); d = dirname(d)) if (existsSync(join(d, 'node_modules'))) return true;
  return false;
}

describe('the bundled agent', () => {
  const bundle = join(dir.path, 'flotilla-agent.cjs');
  copyFileSync(AGENT_BUNDLE, bundle);

  it('starts with plain node from a folder with no node_modules', () => {
    expect(hasNodeModulesAbove(dir.path)).toBe(false);
    const r = spawnSync(process.execPath, [bundle, '--help'], { cwd: dir.path, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('Usage: flotilla agent --hub mqtt://HOST:PORT --token JOIN_TOKEN');
    expect(r.stdout).toContain('--state-dir DIR');
  });

  it('carries no native add-on', () => {
    const text = readFileSync(bundle, 'utf8');
    // Only the optional ssh2 helpers are left out, and ssh2 loads them inside try/catch.
    const nativeRequires = [...text.matchAll(/require\(["']([^"']+\.node)["']\)/g)].map((m) => m[1]);
    expect(nativeRequires.every((p) => p?.includes('sshcrypto'))).toBe(true);
    expect(text).not.toContain('better-sqlite3');
  });

  it('refuses bad arguments with exit status 2 and says which', () => {
    const r = spawnSync(process.execPath, [bundle, '--hub', 'http://nope', '--token', 'x'], { cwd: dir.path, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("--hub: 'http://nope' is not an mqtt:// or mqtts:// URL");
    const unknown = spawnSync(process.execPath, [bundle, '--bogus'], { cwd: dir.path, encoding: 'utf8' });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/--bogus/);
  });

  it('refuses to start without credentials or a join token, with exit status 1', () => {
    const r = spawnSync(process.execPath, [bundle, '--state-dir', join(dir.path, 'state')], { cwd: dir.path, encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('give --hub and --token to join');
  });
});

describe('the flotilla command', () => {
  it('prints its help, listing every command of the contract', () => {
    const r = cli(undefined, ['--help']);
    expect(r.code).toBe(0);
    for (const command of ['hub', 'agent', 'token', 'apply', 'get', 'describe', 'delete', 'label']) expect(r.stdout).toMatch(new RegExp(`\\n  ${command}\\b`));
  });

  it('runs the agent through `flotilla agent`', () => {
    const r = cli(undefined, ['agent', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: flotilla agent');
  });

  it('answers an unknown command with exit status 2', () => {
    const r = cli(undefined, ['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
  });
});
