import { chmodSync, closeSync, fchmodSync, fchownSync, existsSync, fsyncSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** A file of a projected volume: its path inside the volume, its bytes and mode. */
export interface VolumeFile {
  path: string;
  content: Buffer;
  mode: number;
}

const DATA_LINK = '..data';

/**
 * Writes a ConfigMap or Secret volume the way the kubelet's AtomicWriter does: the files go into
 * a fresh hidden directory `..<timestamp>`, the `..data` symlink is swapped to it with one
 * rename, and each visible name is a symlink through `..data`. A container that has the volume
 * directory bound sees the old set or the new set, never a mix, and a running container sees the
 * new content without a restart (renaming files one by one would show a half-updated set, and
 * binding single files would pin the old inode). Returns whether anything changed.
 */
export function writeAtomically(dir: string, files: readonly VolumeFile[], owner?: { uid: number; gid: number }): boolean {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  if (sameContent(dir, files, owner)) return false;
  const stamp = new Date().toISOString().replace(/[-:.TZ]/g, '_');
  const next = mkdtempSync(join(dir, `..${stamp}`));
  // mkdtemp makes it 0700; the container's user must be able to pass through it.
  chmodSync(next, 0o755);
  for (const f of files) {
    const target = join(next, f.path);
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    const fd = openSync(target, 'w', f.mode);
    try {
      // The mode exactly as asked, whatever the agent's umask.
      fchmodSync(fd, f.mode);
      if (owner) fchownSync(fd, owner.uid, owner.gid);
      writeSync(fd, f.content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  const nextName = next.slice(dir.length + 1);
  const tmpLink = join(dir, `${DATA_LINK}_tmp`);
  rmSync(tmpLink, { force: true });
  symlinkSync(nextName, tmpLink);
  renameSync(tmpLink, join(dir, DATA_LINK));
  const visible = new Set(files.map((f) => f.path.split('/')[0]!));
  for (const name of visible) {
    const link = join(dir, name);
    if (!isSymlink(link)) {
      rmSync(link, { recursive: true, force: true });
      symlinkSync(join(DATA_LINK, name), link);
    }
  }
  // The previous data folder goes, and any left by a write that a power cut interrupted.
  for (const name of readdirSync(dir)) {
    if (name === DATA_LINK || name === nextName || visible.has(name)) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
  }
  return true;
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function currentDataDir(dir: string): string | undefined {
  try {
    return readlinkSync(join(dir, DATA_LINK));
  } catch {
    return undefined;
  }
}

function sameContent(dir: string, files: readonly VolumeFile[], owner: { uid: number; gid: number } | undefined): boolean {
  const current = currentDataDir(dir);
  if (!current) return false;
  const base = join(dir, current);
  const listed = listFiles(base);
  if (listed.length !== files.length) return false;
  for (const f of files) {
    const path = join(base, f.path);
    if (!existsSync(path)) return false;
    const st = lstatSync(path);
    if ((st.mode & 0o777) !== f.mode || !readFileSync(path).equals(f.content)) return false;
    if (owner && (st.uid !== owner.uid || st.gid !== owner.gid)) return false;
  }
  return true;
}

function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...listFiles(join(dir, e.name), `${prefix}${e.name}/`));
    else out.push(`${prefix}${e.name}`);
  }
  return out;
}
