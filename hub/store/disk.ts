import { randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, openSync, statfsSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { WAL_AUTOCHECKPOINT_PAGES, type Database } from './db.js';
import { isDiskFull } from './errors.js';

/** The reserve file in the data directory: space held back for the day the disk fills up. */
export const DISK_RESERVE_FILE = 'disk-reserve';

const MiB = 1024 * 1024;
/** The reserve is 1/64 of the file system, within these bounds. */
const RESERVE_MIN_BYTES = 1 * MiB;
const RESERVE_MAX_BYTES = 16 * MiB;
/** Below this much free space, writes are failing (or about to): the disk is full. */
const FULL_FREE_BYTES = 64 * 1024;
const POLL_MS = 1_000;
/** After a reserve that could not be made for another reason than space (permissions), the next try. */
const RESERVE_RETRY_MS = 60_000;
/**
 * The change history (the store's `changes` table, from which a watch resumes) kept while the
 * disk is full. It holds a whole copy of the object for every change, a delete included, so a
 * delete frees nothing until its change is pruned: on a full disk it is compacted to this many,
 * as etcd's history is compacted; a watch that resumes from before gets 410 Gone and lists again.
 */
const CHANGES_KEPT_WHEN_FULL = 10;

/** What /healthz and the metrics say of the data directory's disk. */
export interface DiskHealth {
  full: boolean;
  /** When the disk filled up (ISO 8601), while it is full. */
  since?: string;
  freeBytes: number;
  /** The reserve held now: 0 once it has been spent. */
  reserveBytes: number;
  message?: string;
}

/**
 * Keeps a full disk from locking the store. SQLite in WAL mode appends every write, deletes
 * included, to the log, and can only reuse the log once a checkpoint has copied it into the
 * database file, which may have to grow for it: with the disk full, neither can happen, and
 * every write fails for good, the deletes that would free space first among them.
 *
 * So the guard keeps a reserve file (as CockroachDB keeps its emergency ballast) and, when a
 * write fails for lack of space (or free space runs out, checked every second):
 * 1. deletes the reserve (when a write of the hub's own failed), which makes room for a checkpoint;
 * 2. checkpoints with TRUNCATE, which gives the log's space back;
 * 3. compacts the change history (see CHANGES_KEPT_WHEN_FULL), every second while it lasts,
 *    so that what deletes remove is really freed;
 * 4. caps the database at its size (max_page_count, plus a little slack), so that only writes
 *    that reuse pages freed by deletes succeed: the room made is kept for deleting, rather
 *    than taken by the next writer that grows the store (new objects, events, metrics).
 * While the disk is low, the log is checkpointed every reserve/4 of pages rather than every
 * WAL_AUTOCHECKPOINT_PAGES, so that a checkpoint never needs more room than the reserve.
 * When free space is back (twice the reserve: freed by the operator, or by a larger disk), the
 * reserve is made again and the cap lifted.
 */
export class DiskGuard {
  private reserveBytes = RESERVE_MIN_BYTES;
  private reservePresent = false;
  private fullSince: Date | undefined;
  private lowDisk = false;
  /** False on a file system that tells nothing of its space (statfs gives 0 blocks): the guard stands aside. */
  private measurable = true;
  private nextReserveAttempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly pageSize: number;
  private readonly unlimitedPages: number;
  private readonly reserveFile: string;

  constructor(
    private readonly db: Database,
    private readonly dataDir: string,
    private readonly log: Logger,
  ) {
    this.reserveFile = join(dataDir, DISK_RESERVE_FILE);
    this.pageSize = db.pragma('page_size', { simple: true }) as number;
    this.unlimitedPages = db.pragma('max_page_count', { simple: true }) as number;
  }

  /** Finds or makes the reserve, and checks the disk every second from now on. */
  start(): void {
    const fs = statfsSync(this.dataDir);
    const total = fs.blocks * fs.bsize;
    if (total === 0) {
      this.measurable = false;
      this.log.warn({ dataDir: this.dataDir }, 'the file system of the data directory does not tell its size: no disk reserve, and a full disk is not detected');
      return;
    }
    this.reserveBytes = Math.min(RESERVE_MAX_BYTES, Math.max(RESERVE_MIN_BYTES, Math.floor(total / 64 / MiB) * MiB));
    this.reservePresent = sizeOf(this.reserveFile) >= this.reserveBytes;
    const free = this.freeBytes();
    if (!this.reservePresent) {
      if (free < 2 * this.reserveBytes) this.enterFull(`${free} bytes free: not enough for the reserve of ${this.reserveBytes} bytes`);
      else this.makeReserve();
    }
    this.adjustCheckpoints(free);
    this.timer = setInterval(() => this.check(), POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * A write failed with `err`. When it is for lack of space, makes room for deletes (see the
   * class) and returns true when it freed some (a write may then be tried once more).
   */
  storeFull(err: unknown): boolean {
    if (!isDiskFull(err) || !this.measurable) return false;
    return this.enterFull(`a write failed: ${err instanceof Error ? err.message : String(err)}`, { releaseReserve: true });
  }

  health(): DiskHealth {
    if (!this.measurable) return { full: false, freeBytes: 0, reserveBytes: 0 };
    const base = { freeBytes: this.freeBytes(), reserveBytes: this.reservePresent ? this.reserveBytes : 0 };
    if (!this.fullSince) return { full: false, ...base };
    return {
      full: true,
      since: this.fullSince.toISOString(),
      ...base,
      message: `the disk of the data directory ${this.dataDir} is full: writes that need space fail (503), deletes work; free disk space there`,
    };
  }

  /**
   * The reserve is released only for a write of the hub's own that failed: when another
   * program filled the disk, releasing it at once would only hand it that program too.
   */
  private enterFull(reason: string, opts: { releaseReserve: boolean } = { releaseReserve: false }): boolean {
    const released = opts.releaseReserve && this.releaseReserve();
    const checkpointed = this.checkpoint();
    const compacted = this.compactChanges();
    if (!this.fullSince) {
      this.fullSince = new Date();
      // Once, as the disk fills: capping again at each failure would let the store creep into the room made.
      this.capStore();
      this.log.error({ dataDir: this.dataDir, reason, freeBytes: this.freeBytes() }, 'the disk of the data directory is full: writes that need space fail; deleting objects still works');
    }
    return released || checkpointed || compacted;
  }

  private check(): void {
    const free = this.freeBytes();
    this.adjustCheckpoints(free);
    if (!this.fullSince) {
      // Another program, or a background writer of the hub's (status, events, metrics), ran the disk out.
      if (free < FULL_FREE_BYTES) this.enterFull(`${free} bytes free`);
      else if (!this.reservePresent && free >= 2 * this.reserveBytes && Date.now() >= this.nextReserveAttempt) this.makeReserve();
      return;
    }
    this.compactChanges();
    this.checkpoint();
    const room = this.freeBytes() >= (this.reservePresent ? 1 : 2) * this.reserveBytes;
    if (room && (this.reservePresent || (Date.now() >= this.nextReserveAttempt && this.makeReserve()))) {
      this.db.pragma(`max_page_count = ${this.unlimitedPages}`);
      this.log.info({ dataDir: this.dataDir, freeBytes: this.freeBytes(), fullSince: this.fullSince.toISOString() }, 'disk space is back: the reserve is made again and writes may grow the store');
      this.fullSince = undefined;
    }
  }

  /** Checkpoints often while the disk is low, so that no checkpoint needs more room than the reserve. */
  private adjustCheckpoints(free: number): void {
    const low = free < 4 * this.reserveBytes + WAL_AUTOCHECKPOINT_PAGES * this.pageSize;
    if (low === this.lowDisk) return;
    this.lowDisk = low;
    const pages = low ? Math.max(16, Math.floor(this.reserveBytes / 4 / this.pageSize)) : WAL_AUTOCHECKPOINT_PAGES;
    this.db.pragma(`wal_autocheckpoint = ${pages}`);
    this.log.info({ freeBytes: free, walAutocheckpointPages: pages }, low ? 'the disk is low: checkpointing the store more often' : 'the disk has room again: checkpointing the store as usual');
  }

  /** Lets the store grow by an eighth of the reserve at most: deletes may need a page or two for their change records. */
  private capStore(): void {
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const slack = Math.max(8, Math.floor(this.reserveBytes / 8 / this.pageSize));
    this.db.pragma(`max_page_count = ${Math.min(this.unlimitedPages, pages + slack)}`);
  }

  /** Copies the log into the database and truncates it; true when that gave space back. */
  private checkpoint(): boolean {
    const walBefore = sizeOf(`${this.db.name}-wal`);
    try {
      const [result] = this.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[];
      return walBefore > 0 && result?.busy === 0 && sizeOf(`${this.db.name}-wal`) < walBefore;
    } catch (err) {
      // Expected, every second, while the disk stays full: not worth a warning each time.
      this.log[isDiskFull(err) ? 'debug' : 'warn']({ err }, 'checkpoint failed');
      return false;
    }
  }

  /** Prunes the change history to the newest CHANGES_KEPT_WHEN_FULL, as the store's own pruning does; true when it pruned any. */
  private compactChanges(): boolean {
    try {
      return this.db.transaction(() => {
        const newest = (this.db.prepare("SELECT value FROM counters WHERE name = 'resourceVersion'").pluck().get() as number | undefined) ?? 0;
        const cutoff = newest - CHANGES_KEPT_WHEN_FULL;
        if (cutoff <= 0) return false;
        const pruned = this.db.prepare('DELETE FROM changes WHERE rv <= ?').run(cutoff).changes;
        if (pruned > 0) this.db.prepare("UPDATE counters SET value = ? WHERE name = 'prunedThrough' AND value < ?").run(cutoff, cutoff);
        return pruned > 0;
      })();
    } catch (err) {
      this.log[isDiskFull(err) ? 'debug' : 'warn']({ err }, 'could not compact the change history');
      return false;
    }
  }

  private releaseReserve(): boolean {
    if (!this.reservePresent) return false;
    this.reservePresent = false;
    try {
      unlinkSync(this.reserveFile);
      this.log.warn({ file: this.reserveFile, bytes: this.reserveBytes }, 'the disk reserve is released to make room for deletes and a checkpoint');
      return true;
    } catch (err) {
      this.log.warn({ err, file: this.reserveFile }, 'could not remove the disk reserve');
      return false;
    }
  }

  /**
   * Writes the reserve: random bytes, which a compressing file system must store in full. The
   * blocks are taken at write time, so ENOSPC shows here (and the partial file is removed).
   */
  private makeReserve(): boolean {
    let fd: number | undefined;
    try {
      fd = openSync(this.reserveFile, 'w', 0o600);
      const chunk = Buffer.alloc(Math.min(MiB, this.reserveBytes));
      for (let written = 0; written < this.reserveBytes; written += chunk.length) writeSync(fd, randomFillSync(chunk));
      fsyncSync(fd);
      closeSync(fd);
      this.reservePresent = true;
      this.log.info({ file: this.reserveFile, bytes: this.reserveBytes }, 'disk reserve made');
      return true;
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(this.reserveFile);
      } catch {
        // Nothing was made.
      }
      if (!isDiskFull(err)) {
        this.log.warn({ err, file: this.reserveFile, retryInMs: RESERVE_RETRY_MS }, 'could not make the disk reserve');
        this.nextReserveAttempt = Date.now() + RESERVE_RETRY_MS;
      }
      return false;
    }
  }

  /** Free bytes for the hub's writes (root may use the blocks kept for root). */
  private freeBytes(): number {
    const fs = statfsSync(this.dataDir);
    return (process.getuid?.() === 0 ? fs.bfree : fs.bavail) * fs.bsize;
  }
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
