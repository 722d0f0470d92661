/**
 * The object store's SQL, prepared once per database connection. Parsing SQL costs more than
 * running these statements, and the status path runs them thousands of times a minute.
 */

import type BetterSqlite3 from 'better-sqlite3';
import type { Database } from './db.js';
import type { WatchEventType } from './types.js';

export interface ObjectRow {
  id: number;
  object: string;
}

export interface ChangeRow {
  rv: number;
  type: WatchEventType;
  kind: string;
  namespace: string;
  object: string;
  prev_labels: string | null;
}

export interface ReplayParams {
  from: number;
  to: number;
  kind: string | null;
  namespace: string | null;
}

export class Statements {
  readonly getObject: BetterSqlite3.Statement<[string, string, string], ObjectRow>;
  readonly hasObject: BetterSqlite3.Statement<[string, string, string], number>;
  readonly objectIdentity: BetterSqlite3.Statement<[string, string, string], { id: number; uid: string }>;
  readonly insertObject: BetterSqlite3.Statement<[string, string, string, string, string]>;
  readonly updateObject: BetterSqlite3.Statement<[string, number]>;
  readonly deleteObject: BetterSqlite3.Statement<[number]>;
  readonly insertLabel: BetterSqlite3.Statement<[number, string, string, string]>;
  readonly deleteLabels: BetterSqlite3.Statement<[number]>;
  readonly nextResourceVersion: BetterSqlite3.Statement<[], number>;
  readonly readCounter: BetterSqlite3.Statement<[string], number>;
  readonly raisePrunedThrough: BetterSqlite3.Statement<[number, number]>;
  readonly insertChange: BetterSqlite3.Statement<[number, WatchEventType, string, string, string, string, string | null]>;
  readonly pruneChanges: BetterSqlite3.Statement<[number]>;
  readonly replayChanges: BetterSqlite3.Statement<[ReplayParams], ChangeRow>;
  readonly objectById: BetterSqlite3.Statement<[number], string>;
  /** Every pod's row id and node, read in SQLite (JSON1) rather than by parsing each object. */
  readonly podNodes: BetterSqlite3.Statement<[], { id: number; nodeName: string | null }>;
  readonly podRows: BetterSqlite3.Statement<[], ObjectRow>;

  /** List statements by shape (namespace given or not, number of label equalities); few shapes occur. */
  private readonly lists = new Map<string, BetterSqlite3.Statement<string[], string>>();

  constructor(private readonly db: Database) {
    this.getObject = db.prepare('SELECT id, object FROM objects WHERE kind = ? AND namespace = ? AND name = ?');
    this.objectIdentity = db.prepare('SELECT id, uid FROM objects WHERE kind = ? AND namespace = ? AND name = ?');
    this.hasObject = db.prepare<[string, string, string], number>('SELECT 1 FROM objects WHERE kind = ? AND namespace = ? AND name = ?').pluck();
    this.insertObject = db.prepare('INSERT INTO objects (kind, namespace, name, uid, object) VALUES (?, ?, ?, ?, ?)');
    this.updateObject = db.prepare('UPDATE objects SET object = ? WHERE id = ?');
    this.deleteObject = db.prepare('DELETE FROM objects WHERE id = ?');
    this.insertLabel = db.prepare('INSERT INTO object_labels (object_id, kind, key, value) VALUES (?, ?, ?, ?)');
    this.deleteLabels = db.prepare('DELETE FROM object_labels WHERE object_id = ?');
    this.nextResourceVersion = db.prepare<[], number>("UPDATE counters SET value = value + 1 WHERE name = 'resourceVersion' RETURNING value").pluck();
    this.readCounter = db.prepare<[string], number>('SELECT value FROM counters WHERE name = ?').pluck();
    this.raisePrunedThrough = db.prepare("UPDATE counters SET value = ? WHERE name = 'prunedThrough' AND value < ?");
    this.insertChange = db.prepare('INSERT INTO changes (rv, type, kind, namespace, name, object, prev_labels) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.pruneChanges = db.prepare('DELETE FROM changes WHERE rv <= ?');
    this.objectById = db.prepare<[number], string>('SELECT object FROM objects WHERE id = ?').pluck();
    this.podNodes = db.prepare("SELECT id, json_extract(object, '$.spec.nodeName') AS nodeName FROM objects WHERE kind = 'Pod'");
    this.podRows = db.prepare("SELECT id, object FROM objects WHERE kind = 'Pod'");
    this.replayChanges = db.prepare(
      `SELECT rv, type, kind, namespace, object, prev_labels FROM changes
       WHERE rv > @from AND rv <= @to AND (@kind IS NULL OR kind = @kind) AND (@namespace IS NULL OR namespace = @namespace)
       ORDER BY rv`,
    );
  }

  /**
   * Objects of one kind, optionally in one namespace, that carry every one of `labelCount`
   * key=value labels, in (namespace, name) order. Parameters: kind, [namespace], then
   * (kind, key, value) per label. The label subqueries are answered from the
   * object_labels (kind, key, value) index and intersected before any object row is read.
   */
  list(namespaced: boolean, labelCount: number): BetterSqlite3.Statement<string[], string> {
    const shape = `${namespaced}:${labelCount}`;
    let stmt = this.lists.get(shape);
    if (!stmt) {
      let sql = 'SELECT object FROM objects WHERE kind = ?';
      if (namespaced) sql += ' AND namespace = ?';
      if (labelCount > 0) {
        const one = 'SELECT object_id FROM object_labels WHERE kind = ? AND key = ? AND value = ?';
        sql += ` AND id IN (${Array.from({ length: labelCount }, () => one).join(' INTERSECT ')})`;
      }
      sql += ' ORDER BY namespace, name';
      stmt = this.db.prepare<string[], string>(sql).pluck();
      this.lists.set(shape, stmt);
    }
    return stmt;
  }
}
