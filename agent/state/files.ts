import { closeSync, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type * as z from 'zod';

/**
 * The agent's state directory: small JSON files written atomically (write a temporary file,
 * fsync it, rename it over the old one, fsync the folder), with the previous good copy kept as
 * `.bak`. A device can lose power at any moment; a torn or corrupt file must never stop the
 * agent, so a read falls back to the last good copy, and then to nothing.
 */
export class StateFiles {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  write(name: string, value: unknown): void {
    const file = this.path(name);
    const tmp = `${file}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(value, null, 1));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (existsSync(file) && this.readValid(file) !== undefined) copyFileSync(file, `${file}.bak`);
    renameSync(tmp, file);
    syncDir(dirname(file));
  }

  /** Reads and validates a file; on any problem tries the `.bak` copy; undefined when neither is good. */
  read<T>(name: string, schema: z.ZodType<T>, onProblem?: (message: string) => void): T | undefined {
    for (const file of [this.path(name), `${this.path(name)}.bak`]) {
      if (!existsSync(file)) continue;
      const raw = this.readValid(file);
      if (raw === undefined) {
        onProblem?.(`${file} is not valid JSON; ignoring it`);
        continue;
      }
      const parsed = schema.safeParse(raw);
      if (parsed.success) return parsed.data;
      onProblem?.(`${file} does not hold what it should (${parsed.error.issues[0]?.message ?? 'invalid'}); ignoring it`);
    }
    return undefined;
  }

  private readValid(file: string): unknown {
    try {
      return JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      return undefined;
    }
  }
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic there.
  }
}
