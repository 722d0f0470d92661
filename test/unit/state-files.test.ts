import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as z from 'zod';
import { PROTOCOL_VERSION, type DesiredState } from '../../shared/protocol/messages.js';
import { StateFiles } from '../../agent/state/files.js';
import { AgentState, type DeviceCredentials } from '../../agent/state/state.js';
import { container, desiredPod } from './builders.js';

const counterSchema = z.object({ n: z.number().int() });

function desiredSet(rev: number): DesiredState {
  return {
    v: PROTOCOL_VERSION,
    rev,
    pods: [desiredPod({ name: 'web', containers: [container({ name: 'app', image: `img:${rev}` })] })],
    configs: [],
    secrets: [],
  };
}

const creds: DeviceCredentials = { hub: 'mqtt://hub.example:1883', node: 'edge-1', username: 'node:edge-1', password: 's3cret' };

/** Cuts a file in half, as a power loss in the middle of a non-atomic write would. */
function tear(file: string): void {
  truncateSync(file, Math.floor(statSync(file).size / 2));
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flotilla-state-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('StateFiles', () => {
  it('reads back what it wrote', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    expect(files.read('counter.json', counterSchema)).toEqual({ n: 1 });
    files.write('counter.json', { n: 2 });
    expect(files.read('counter.json', counterSchema)).toEqual({ n: 2 });
  });

  it('reads a file that was never written as undefined, quietly', () => {
    const problems: string[] = [];
    expect(new StateFiles(dir).read('missing.json', counterSchema, (m) => problems.push(m))).toBeUndefined();
    expect(problems).toEqual([]);
  });

  it('keeps the previous good copy as .bak and leaves no .tmp behind', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    files.write('counter.json', { n: 2 });
    expect(readdirSync(dir).sort()).toEqual(['counter.json', 'counter.json.bak']);
    expect(JSON.parse(readFileSync(join(dir, 'counter.json.bak'), 'utf8'))).toEqual({ n: 1 });
  });

  it('falls back to the .bak copy when the main file is torn', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    files.write('counter.json', { n: 2 });
    tear(files.path('counter.json'));
    const problems: string[] = [];
    expect(files.read('counter.json', counterSchema, (m) => problems.push(m))).toEqual({ n: 1 });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(files.path('counter.json'));
    expect(problems[0]).toContain('not valid JSON');
  });

  it('falls back to the .bak copy when the main file holds valid JSON of the wrong shape', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    files.write('counter.json', { n: 2 });
    writeFileSync(files.path('counter.json'), JSON.stringify({ n: 'two' }));
    const problems: string[] = [];
    expect(files.read('counter.json', counterSchema, (m) => problems.push(m))).toEqual({ n: 1 });
    expect(problems).toEqual([expect.stringContaining('does not hold what it should')]);
  });

  it('returns undefined and reports both problems when both copies are bad, without throwing', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    files.write('counter.json', { n: 2 });
    tear(files.path('counter.json'));
    writeFileSync(`${files.path('counter.json')}.bak`, '');
    const problems: string[] = [];
    expect(() => files.read('counter.json', counterSchema, (m) => problems.push(m))).not.toThrow();
    expect(files.read('counter.json', counterSchema)).toBeUndefined();
    expect(problems).toHaveLength(2);
    expect(problems[1]).toContain('.bak');
  });

  it('returns undefined when the only copy is bad (no .bak after a single write)', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    tear(files.path('counter.json'));
    expect(files.read('counter.json', counterSchema)).toBeUndefined();
  });

  it('never copies a torn main file over the good .bak', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    files.write('counter.json', { n: 2 });
    tear(files.path('counter.json'));
    files.write('counter.json', { n: 3 });
    expect(JSON.parse(readFileSync(`${files.path('counter.json')}.bak`, 'utf8'))).toEqual({ n: 1 });
    expect(files.read('counter.json', counterSchema)).toEqual({ n: 3 });
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('makes its directory and files private to the agent', () => {
    const nested = join(dir, 'var', 'lib', 'flotilla');
    const files = new StateFiles(nested);
    files.write('credentials.json', creds);
    files.write('credentials.json', creds);
    expect(statSync(nested).mode & 0o777).toBe(0o700);
    expect(statSync(files.path('credentials.json')).mode & 0o777).toBe(0o600);
    expect(statSync(`${files.path('credentials.json')}.bak`).mode & 0o777).toBe(0o600);
  });
});

describe('AgentState', () => {
  it('round-trips the device credentials and the last desired set', () => {
    const state = new AgentState(dir, () => undefined);
    expect(state.credentials()).toBeUndefined();
    expect(state.desired()).toBeUndefined();
    state.saveCredentials(creds);
    state.saveDesired(desiredSet(7));
    const reopened = new AgentState(dir, () => undefined);
    expect(reopened.credentials()).toEqual(creds);
    expect(reopened.desired()).toEqual(desiredSet(7));
    expect(reopened.dir).toBe(dir);
  });

  it('runs the previous desired set when the newest file was torn by a power loss', () => {
    const problems: string[] = [];
    const state = new AgentState(dir, (m) => problems.push(m));
    state.saveDesired(desiredSet(1));
    state.saveDesired(desiredSet(2));
    tear(join(dir, 'desired.json'));
    expect(state.desired()?.rev).toBe(1);
    expect(problems).toEqual([expect.stringContaining('desired.json is not valid JSON')]);
  });

  it('writes the good copy back over a torn file it fell back from, so the next start reads it quietly', () => {
    const state = new AgentState(dir, () => undefined);
    state.saveDesired(desiredSet(1));
    state.saveDesired(desiredSet(2));
    tear(join(dir, 'desired.json'));
    expect(state.desired()?.rev).toBe(1);
    const problems: string[] = [];
    const reopened = new AgentState(dir, (m) => problems.push(m));
    expect(reopened.desired()?.rev).toBe(1);
    expect(problems).toEqual([]);
    expect(JSON.parse(readFileSync(join(dir, 'desired.json.bak'), 'utf8')).rev).toBe(1);
  });

  it('refuses a desired set that does not match the protocol and falls back to .bak', () => {
    const problems: string[] = [];
    const state = new AgentState(dir, (m) => problems.push(m));
    state.saveDesired(desiredSet(1));
    state.saveDesired(desiredSet(2));
    writeFileSync(join(dir, 'desired.json'), JSON.stringify({ ...desiredSet(3), rev: -1 }));
    expect(state.desired()?.rev).toBe(1);
    expect(problems).toHaveLength(1);
  });

  it('starts with nothing, and says so, when both credential copies are corrupt', () => {
    const problems: string[] = [];
    const state = new AgentState(dir, (m) => problems.push(m));
    state.saveCredentials(creds);
    state.saveCredentials({ ...creds, password: 'rotated' });
    writeFileSync(join(dir, 'credentials.json'), '{"hub": "mqtt://');
    writeFileSync(join(dir, 'credentials.json.bak'), JSON.stringify({ hub: 'mqtt://hub.example:1883' }));
    expect(state.credentials()).toBeUndefined();
    expect(problems).toHaveLength(2);
  });

  it('leaves only the state files and their backups in the directory', () => {
    const state = new AgentState(dir, () => undefined);
    state.saveCredentials(creds);
    for (let rev = 1; rev <= 5; rev++) state.saveDesired(desiredSet(rev));
    expect(readdirSync(dir).sort()).toEqual(['credentials.json', 'desired.json', 'desired.json.bak']);
    expect(state.desired()?.rev).toBe(5);
  });
});
