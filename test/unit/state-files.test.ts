import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
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

  it('keeps a second copy of the same value as .bak and leaves no .tmp behind', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    files.write('counter.json', { n: 2 });
    expect(readdirSync(dir).sort()).toEqual(['counter.json', 'counter.json.bak']);
    expect(JSON.parse(readFileSync(join(dir, 'counter.json.bak'), 'utf8'))).toEqual({ n: 2 });
  });

  it('falls back to the .bak copy when the main file is torn', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    files.write('counter.json', { n: 2 });
    tear(files.path('counter.json'));
    const problems: string[] = [];
    expect(files.read('counter.json', counterSchema, (m) => problems.push(m))).toEqual({ n: 2 });
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
    expect(files.read('counter.json', counterSchema, (m) => problems.push(m))).toEqual({ n: 2 });
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

  it('returns undefined when the only copy left is bad', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    rmSync(`${files.path('counter.json')}.bak`);
    tear(files.path('counter.json'));
    expect(files.read('counter.json', counterSchema)).toBeUndefined();
  });

  it('writes both copies whole over torn ones', () => {
    const files = new StateFiles(dir);
    files.write('counter.json', { n: 1 });
    tear(files.path('counter.json'));
    tear(`${files.path('counter.json')}.bak`);
    files.write('counter.json', { n: 3 });
    expect(JSON.parse(readFileSync(`${files.path('counter.json')}.bak`, 'utf8'))).toEqual({ n: 3 });
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

  it('runs the same revision from .bak when the main copy is torn, and writes it back whole', () => {
    const problems: string[] = [];
    const state = new AgentState(dir, (m) => problems.push(m));
    state.saveDesired(desiredSet(1));
    state.saveDesired(desiredSet(2));
    tear(join(dir, 'desired.json'));
    expect(state.desired()?.rev).toBe(2);
    expect(problems).toEqual([expect.stringContaining('desired.json is not valid JSON')]);
    const quiet: string[] = [];
    expect(new AgentState(dir, (m) => quiet.push(m)).desired()?.rev).toBe(2);
    expect(quiet).toEqual([]);
  });

  it('never goes back to an older revision: an older copy is refused and nothing is restored', () => {
    const state = new AgentState(dir, () => undefined);
    state.saveDesired(desiredSet(1));
    const older = readFileSync(join(dir, 'desired.json'), 'utf8');
    state.saveDesired(desiredSet(2));
    writeFileSync(join(dir, 'desired.json'), JSON.stringify({ v: 1, rev: 'two', pods: {} }));
    writeFileSync(join(dir, 'desired.json.bak'), older);
    const problems: string[] = [];
    const restored = new AgentState(dir, (m) => problems.push(m)).restoreDesired();
    expect(restored.desired).toBeUndefined();
    expect(restored.lost).toContain('revision 2');
    expect(problems).toEqual([expect.stringContaining('desired.json does not hold what it should (rev:'), expect.stringContaining('holds revision 1, older than revision 2')]);
  });

  it('refuses a .bak that cannot be checked against the newest revision (the revision file is gone)', () => {
    const state = new AgentState(dir, () => undefined);
    state.saveDesired(desiredSet(4));
    rmSync(join(dir, 'desired-revision.json'));
    rmSync(join(dir, 'desired-revision.json.bak'));
    tear(join(dir, 'desired.json'));
    expect(new AgentState(dir, () => undefined).restoreDesired().lost).toBeDefined();
  });

  it('takes the main copy when the revision file is gone (an agent that kept none), and records its revision', () => {
    const state = new AgentState(dir, () => undefined);
    state.saveDesired(desiredSet(4));
    rmSync(join(dir, 'desired-revision.json'));
    rmSync(join(dir, 'desired-revision.json.bak'));
    expect(new AgentState(dir, () => undefined).desired()?.rev).toBe(4);
    expect(JSON.parse(readFileSync(join(dir, 'desired-revision.json'), 'utf8'))).toEqual({ rev: 4 });
  });

  it('says nothing is lost on a first start', () => {
    expect(new AgentState(dir, () => undefined).restoreDesired()).toEqual({});
  });

  it('removes the copies it can no longer keep current, so a restart waits for the hub', () => {
    const state = new AgentState(dir, () => undefined);
    state.saveDesired(desiredSet(1));
    // A directory where the revision's temporary file goes makes the write fail, as a full disk would.
    mkdirSync(join(dir, 'desired-revision.json.tmp'));
    expect(() => state.saveDesired(desiredSet(2))).toThrow();
    rmSync(join(dir, 'desired-revision.json.tmp'), { recursive: true });
    const restored = new AgentState(dir, () => undefined).restoreDesired();
    expect(restored.desired).toBeUndefined();
    expect(restored.lost).toBeDefined();
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
    expect(readdirSync(dir).sort()).toEqual(['credentials.json', 'credentials.json.bak', 'desired-revision.json', 'desired-revision.json.bak', 'desired.json', 'desired.json.bak']);
    expect(state.desired()?.rev).toBe(5);
  });
});
