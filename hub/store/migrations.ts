/**
 * The hub database's schema, as an ordered list of migrations. db.ts applies, in one transaction
 * each, every migration whose version is above the database's `PRAGMA user_version`, then sets
 * user_version to it.
 *
 * To change the schema, append a migration with the next version number. Never edit or reorder a
 * migration that has shipped: databases in the field have already run it and will not run it again.
 */

export interface Migration {
  /** 1, 2, 3, ...: strictly increasing, one above the previous entry. */
  version: number;
  /** A short description, used in error messages. */
  name: string;
  /** SQL run with `db.exec` (several statements allowed). */
  up: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'object store',
    up: `
      -- Single-row counters. 'resourceVersion' is the global write counter, as etcd's revision:
      -- every create, update, status update and delete takes the next value. 'prunedThrough' is
      -- the newest resourceVersion whose change record has been discarded (0 = none), which tells
      -- a watch resuming from an older version that it has missed events (Kubernetes' 410 Gone).
      CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
      INSERT INTO counters (name, value) VALUES ('resourceVersion', 0), ('prunedThrough', 0);

      -- The objects themselves. The whole object is kept as one JSON document so that a read is
      -- one row fetch and one JSON.parse; the other columns exist only for lookups.
      -- Cluster-scoped kinds are stored with namespace ''.
      CREATE TABLE objects (
        id        INTEGER PRIMARY KEY,
        kind      TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name      TEXT NOT NULL,
        uid       TEXT NOT NULL UNIQUE,
        object    TEXT NOT NULL,
        UNIQUE (kind, namespace, name)
      );

      -- One row per label, so that a selector's key=value requirements narrow a list through an
      -- index instead of parsing every object of the kind.
      CREATE TABLE object_labels (
        object_id INTEGER NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
        kind      TEXT NOT NULL,
        key       TEXT NOT NULL,
        value     TEXT NOT NULL,
        PRIMARY KEY (object_id, key)
      ) WITHOUT ROWID;
      CREATE INDEX object_labels_by_label ON object_labels (kind, key, value, object_id);

      -- The recent history of writes, from which a watch resumes (Kubernetes' watch cache plays
      -- this role, backed by etcd's history). prev_labels holds the labels the object had before
      -- the change (NULL for ADDED), so that a selector watch can tell when an object stopped or
      -- started matching.
      CREATE TABLE changes (
        rv          INTEGER PRIMARY KEY,
        type        TEXT NOT NULL CHECK (type IN ('ADDED', 'MODIFIED', 'DELETED')),
        kind        TEXT NOT NULL,
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        object      TEXT NOT NULL,
        prev_labels TEXT
      );
    `,
  },
];
