import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeAtomically } from '../../agent/volumes/atomic.js';
import { VolumeManager } from '../../agent/volumes/manager.js';
import type { DesiredConfig, DesiredPod } from '../../shared/protocol/messages.js';
import type { Volume } from '../../shared/resources/volumes.js';
import { container, desiredPod } from './builders.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flt-vol-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const file = (path: string, text: string, mode = 0o644) => ({ path, content: Buffer.from(text), mode });

describe('writeAtomically', () => {
  it('lays out the files behind a ..data symlink, each name a link through it', () => {
    const vol = join(dir, 'vol');
    expect(writeAtomically(vol, [file('app.conf', 'v=1'), file('nested/a.txt', 'a', 0o600)])).toBe(true);
    expect(readlinkSync(join(vol, 'app.conf'))).toBe('..data/app.conf');
    expect(readlinkSync(join(vol, 'nested'))).toBe('..data/nested');
    expect(readlinkSync(join(vol, '..data'))).toMatch(/^\.\.\d/);
    expect(readFileSync(join(vol, 'app.conf'), 'utf8')).toBe('v=1');
    expect(statSync(join(vol, 'nested', 'a.txt')).mode & 0o777).toBe(0o600);
  });

  it('updates in place: the folder stays the same, the new set appears at once, and the old one is removed', () => {
    const vol = join(dir, 'vol');
    writeAtomically(vol, [file('a', '1'), file('b', '1')]);
    const inode = statSync(vol).ino;
    const before = readlinkSync(join(vol, '..data'));
    expect(writeAtomically(vol, [file('a', '2'), file('c', '2')])).toBe(true);
    expect(statSync(vol).ino).toBe(inode);
    expect(readFileSync(join(vol, 'a'), 'utf8')).toBe('2');
    expect(readFileSync(join(vol, 'c'), 'utf8')).toBe('2');
    expect(existsSync(join(vol, 'b'))).toBe(false);
    expect(existsSync(join(vol, before))).toBe(false);
    expect(readdirSync(vol).filter((n) => n.startsWith('..')).length).toBe(2);
  });

  it('clears data folders left behind by an interrupted write', () => {
    const vol = join(dir, 'vol');
    writeAtomically(vol, [file('a', '1')]);
    mkdirSync(join(vol, '..2020_01_01_interrupted'));
    writeAtomically(vol, [file('a', '2')]);
    expect(readdirSync(vol).sort()).toEqual(['..data', readlinkSync(join(vol, '..data')), 'a'].sort());
  });

  it('writes nothing when the content is the same', () => {
    const vol = join(dir, 'vol');
    writeAtomically(vol, [file('a', '1')]);
    const before = readlinkSync(join(vol, '..data'));
    expect(writeAtomically(vol, [file('a', '1')])).toBe(false);
    expect(readlinkSync(join(vol, '..data'))).toBe(before);
    // A mode change is a change.
    expect(writeAtomically(vol, [file('a', '1', 0o600)])).toBe(true);
  });
});

function podWith(volumes: Volume[], uid = 'u1'): DesiredPod {
  const pod = desiredPod({ name: 'p', uid, containers: [container({ name: 'app', image: 'x:1', volumeMounts: [{ name: volumes[0]!.name, mountPath: '/m', subPath: 'sub' }] })] });
  return { ...pod, spec: { ...pod.spec, volumes } };
}

function cfg(name: string, data: Record<string, string>): DesiredConfig {
  return { namespace: 'default', name, data, resourceVersion: '1' };
}

describe('VolumeManager', () => {
  const warnings: string[] = [];
  const manager = () => new VolumeManager(dir, (_uid, reason, message) => warnings.push(`${reason}: ${message}`));
  const volumeDir = (uid: string, name: string) => join(dir, 'pods', uid, 'volumes', name);

  it('writes ConfigMap files 0644 and Secret files 0600 under <state>/pods/<uid>/volumes/<name>', () => {
    const pod = podWith([{ name: 'cfg', configMap: { name: 'app' } }, { name: 'creds', secret: { secretName: 'creds', items: [{ key: 'password', path: 'db/pw' }] } }]);
    const blocked = manager().sync([pod], { configs: [cfg('app', { 'app.conf': 'v=1' })], secrets: [cfg('creds', { password: Buffer.from('pw').toString('base64'), other: 'eA==' })] });
    expect(blocked.size).toBe(0);
    expect(readFileSync(join(volumeDir('u1', 'cfg'), 'app.conf'), 'utf8')).toBe('v=1');
    expect(statSync(join(volumeDir('u1', 'cfg'), 'app.conf')).mode & 0o777).toBe(0o644);
    expect(readFileSync(join(volumeDir('u1', 'creds'), 'db', 'pw'), 'utf8')).toBe('pw');
    expect(statSync(join(volumeDir('u1', 'creds'), 'db', 'pw')).mode & 0o777).toBe(0o600);
    expect(existsSync(join(volumeDir('u1', 'creds'), 'other'))).toBe(false);
  });

  it('gives a Secret\'s files to the user the containers that mount it run as', () => {
    const base = podWith([{ name: 'creds', secret: { secretName: 'creds' } }]);
    const pod = { ...base, spec: { ...base.spec, containers: [{ ...base.spec.containers[0]!, securityContext: { runAsUser: 1000, runAsGroup: 2000 } }] } };
    manager().sync([pod], { configs: [], secrets: [cfg('creds', { password: 'eA==' })] });
    const st = statSync(join(volumeDir('u1', 'creds'), 'password'));
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([1000, 2000, 0o600]);
    // The hidden data folder must be passable by that user.
    expect(statSync(join(volumeDir('u1', 'creds'), '..data')).mode & 0o777).toBe(0o755);
  });

  it('makes emptyDir folders (and their subPaths) writable by any user', () => {
    manager().sync([podWith([{ name: 'scratch', emptyDir: {} }])], { configs: [], secrets: [] });
    expect(statSync(volumeDir('u1', 'scratch')).mode & 0o777).toBe(0o777);
    expect(lstatSync(join(volumeDir('u1', 'scratch'), 'sub')).isDirectory()).toBe(true);
  });

  it('blocks a pod whose ConfigMap, Secret or key is missing, unless optional', () => {
    const m = manager();
    const missing = m.sync([podWith([{ name: 'cfg', configMap: { name: 'nope' } }])], { configs: [], secrets: [] });
    expect(missing.get('u1')).toEqual({ reason: 'ContainerCreating', message: 'MountVolume.SetUp failed for volume "cfg": configmap "nope" not found' });
    const missingKey = m.sync([podWith([{ name: 'creds', secret: { secretName: 's', items: [{ key: 'k', path: 'k' }] } }])], { configs: [], secrets: [cfg('s', {})] });
    expect(missingKey.get('u1')?.message).toContain('secret "s" references non-existent key: k');
    expect(m.sync([podWith([{ name: 'cfg', configMap: { name: 'nope', optional: true } }])], { configs: [], secrets: [] }).size).toBe(0);
    expect(readdirSync(volumeDir('u1', 'cfg')).filter((n) => !n.startsWith('..'))).toEqual([]);
  });

  it('checks host paths by type, creates them for DirectoryOrCreate, and warns once about a missing untyped one', () => {
    warnings.length = 0;
    const m = manager();
    const created = join(dir, 'made', 'here');
    expect(m.sync([podWith([{ name: 'h', hostPath: { path: created, type: 'DirectoryOrCreate' } }])], { configs: [], secrets: [] }).size).toBe(0);
    expect(statSync(created).isDirectory()).toBe(true);
    const strict = m.sync([podWith([{ name: 'h', hostPath: { path: join(dir, 'absent'), type: 'Directory' } }])], { configs: [], secrets: [] });
    expect(strict.get('u1')?.message).toContain('hostPath type check failed');
    const untyped = podWith([{ name: 'h', hostPath: { path: join(dir, 'absent') } }]);
    m.sync([untyped], { configs: [], secrets: [] });
    m.sync([untyped], { configs: [], secrets: [] });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^HostPathMissing: hostPath .*absent of volume "h" does not exist/);
  });

  it('removes the folders of pods that are gone', () => {
    const m = manager();
    m.sync([podWith([{ name: 'scratch', emptyDir: {} }], 'u1'), podWith([{ name: 'scratch', emptyDir: {} }], 'u2')], { configs: [], secrets: [] });
    m.cleanup(new Set(['u2']));
    expect(readdirSync(join(dir, 'pods'))).toEqual(['u2']);
  });
});
