import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type * as z from 'zod';

/** One copy of a state file as read: its value when it is whole and of the right shape, else why not. */
export type StateCopy<T> = { file: string; value: T; problem?: undefined } | { file: string; value?: undefined; problem: string };

/**
 * The agent's state directory: small JSON files written atomically (write a temporary file,
 * fsync it, rename it over the old one, fsync the folder), each kept twice: the file and its
 * `.bak`, both holding the same value once a write is done. A device can lose power at any
 * moment, and a file can be damaged after it was written; a damaged copy never stops the agent,
 * and the other copy holds the same value, never an older one that could take the device back.
 */
export class StateFiles {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  /** Writes both copies of one file. */
  write(name: string, value: unknown): void {
    this.writeAll([[name, value]]);
  }

  /**
   * Writes both copies of each file: every temporary file is written and fsynced, then each is
   * renamed in place (main file, then its `.bak`, in the order given), then the folder is
   * fsynced once. Nothing is durable before the end; a power cut on the way leaves each copy
   * whole, old or new.
   */
  writeAll(files: readonly (readonly [name: string, value: unknown])[]): void {
    this.writeTexts(files.map(([name, value]) => [name, JSON.stringify(value, null, 1)] as const));
  }

  /** writeAll for files that are not JSON (a key in the format its tools read), as they are. */
  writeTexts(files: readonly (readonly [name: string, text: string])[]): void {
    const staged: string[] = [];
    try {
      for (const [name, text] of files) {
        for (const file of [this.path(name), `${this.path(name)}.bak`]) {
          writeSynced(`${file}.tmp`, text);
          staged.push(file);
        }
      }
      for (const file of staged) renameSync(`${file}.tmp`, file);
    } catch (err) {
      // A full disk leaves partial temporary files: they would only take more space.
      for (const file of staged) rmSync(`${file}.tmp`, { force: true });
      throw err;
    }
    syncDir(this.dir);
  }

  /** Both copies, main file first; a missing one is left out quietly, a damaged one says why. */
  copies<T>(name: string, schema: z.ZodType<T>): StateCopy<T>[] {
    const copies: StateCopy<T>[] = [];
    for (const file of [this.path(name), `${this.path(name)}.bak`]) {
      if (!existsSync(file)) continue;
      const raw = readJson(file);
      if (raw === undefined) {
        copies.push({ file, problem: `${file} is not valid JSON` });
        continue;
      }
      const parsed = schema.safeParse(raw);
      if (parsed.success) copies.push({ file, value: parsed.data });
      else copies.push({ file, problem: `${file} does not hold what it should (${parsed.error.issues[0]?.path.join('.') || 'value'}: ${parsed.error.issues[0]?.message ?? 'invalid'})` });
    }
    return copies;
  }

  /** Both copies of a text file, main file first; `problem` says what is wrong with a text (undefined: it is good). */
  textCopies(name: string, problem: (text: string) => string | undefined): StateCopy<string>[] {
    const copies: StateCopy<string>[] = [];
    for (const file of [this.path(name), `${this.path(name)}.bak`]) {
      if (!existsSync(file)) continue;
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        copies.push({ file, problem: `${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
        continue;
      }
      const wrong = problem(text);
      copies.push(wrong === undefined ? { file, value: text } : { file, problem: `${file} ${wrong}` });
    }
    return copies;
  }

  /** Reads a file; on any problem the `.bak` copy; undefined when neither is good. */
  read<T>(name: string, schema: z.ZodType<T>, onProblem?: (message: string) => void): T | undefined {
    for (const copy of this.copies(name, schema)) {
      if (copy.value !== undefined) return copy.value;
      onProblem?.(`${copy.problem}; ignoring it`);
    }
    return undefined;
  }

  /** Removes both copies (and a temporary file left by a cut write). Unlinking needs no free space. */
  remove(name: string): void {
    for (const file of [this.path(name), `${this.path(name)}.bak`, `${this.path(name)}.tmp`, `${this.path(name)}.bak.tmp`]) rmSync(file, { force: true });
    syncDir(this.dir);
  }
}

function writeSynced(file: string, text: string): void {
  try {
    const fd = openSync(file, 'w', 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    rmSync(file, { force: true });
    throw err;
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
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
