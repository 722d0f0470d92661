import BetterSqlite3 from 'better-sqlite3';
import { migrations as defaultMigrations, type Migration } from './migrations.js';

export type Database = BetterSqlite3.Database;

/**
 * A checkpoint (copying the log into the database, with two fsyncs) every 10,000 pages (40 MB)
 * rather than SQLite's 1,000: a fleet-wide change writes megabytes per commit, and a page
 * rewritten many times between two checkpoints is copied once. On a low disk the disk guard
 * checkpoints more often (see disk.ts).
 */
export const WAL_AUTOCHECKPOINT_PAGES = 10_000;

/** How long a statement waits for another connection's lock (a backup, the sqlite3 shell) before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5_000;

/**
 * Opens (creating if needed) the hub's SQLite database and brings its schema up to date.
 * `file` may be `:memory:`. `migrations` defaults to the hub's own list; tests pass another.
 *
 * @throws Error if the database was written by a newer version of the hub (its schema version is
 *   above the newest migration known here): running old code on it could silently drop data.
 */
export function openDatabase(file: string, migrations: readonly Migration[] = defaultMigrations): Database {
  checkMigrationList(migrations);
  const db = new BetterSqlite3(file);
  try {
    // WAL: readers never block the writer, and a commit is one append to the log.
    db.pragma('journal_mode = WAL');
    // In WAL mode, NORMAL writes each commit into the WAL file with write(2) but syncs only at
    // checkpoints. A process crash (kill -9, OOM kill, panic) loses nothing that was committed,
    // because the data is already in the kernel's page cache and reaches the disk regardless.
    // Only a power loss or kernel crash can roll back the last few commits, and even then the
    // database stays consistent. FULL (an fsync per commit) guards against that case alone, at a
    // large cost per write; the hub's state is rebuilt from agents' reports after such an event.
    db.pragma('synchronous = NORMAL');
    db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    // The undo journal of a savepoint (every store write nested in a larger transaction, such as
    // a batch of status reports, opens one) in memory rather than in a temporary file: a write
    // then costs no extra write(2) calls. It is never more than one transaction's changed pages.
    db.pragma('temp_store = MEMORY');
    // SQLite leaves foreign keys off by default, per connection; object_labels relies on ON DELETE CASCADE.
    db.pragma('foreign_keys = ON');
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    migrate(db, migrations);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * Takes SQLite's exclusive lock on `file` (made if missing) and holds it until the returned
 * function is called; undefined when another process holds it. The lock is a POSIX advisory
 * lock, which the kernel releases when the process ends, however it ends (kill -9 included):
 * no stale lock file to clean up after a crash.
 */
export function holdExclusiveLock(file: string): (() => void) | undefined {
  const lock = new BetterSqlite3(file, { timeout: 0 });
  try {
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    lock.close();
    if ((err as { code?: unknown }).code === 'SQLITE_BUSY') return undefined;
    throw err;
  }
  return () => {
    lock.close();
  };
}

function checkMigrationList(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(`schema migration list is malformed: entry ${i} ('${m.name}') has version ${m.version}, expected ${i + 1}`);
    }
  });
}

function migrate(db: Database, migrations: readonly Migration[]): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations.length === 0 ? 0 : migrations[migrations.length - 1]!.version;
  if (current > latest) {
    throw new Error(
      `database ${db.name} has schema version ${current}, newer than the latest this hub knows (${latest}); ` +
        'it was written by a newer Flotilla hub: run that version, or restore a backup taken before the upgrade',
    );
  }
  for (const m of migrations) {
    if (m.version <= current) continue;
    // One transaction per migration, user_version included (it lives in the database header, which
    // is written transactionally): a crash mid-upgrade leaves the database at the previous version.
    try {
      db.transaction(() => {
        db.exec(m.up);
        db.pragma(`user_version = ${m.version}`);
      })();
    } catch (err) {
      throw new Error(`schema migration ${m.version} ('${m.name}') failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
}
