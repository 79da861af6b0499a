/**
 * node:sqlite, opened the way every Holdfast database is: WAL with synchronous FULL, so a
 * committed transaction survives a crash or power cut, and a busy timeout so a reader never
 * fails on a writer.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite'

/** How long a statement waits for another connection's lock before SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5000

export function openDatabase (file: string): DatabaseSync {
  const db = new DatabaseSync(file)
  db.exec('PRAGMA journal_mode = WAL')
  db.exec('PRAGMA synchronous = FULL')
  db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
  db.exec('PRAGMA foreign_keys = ON')
  return db
}

/** Runs `fn` in one transaction; rolls back if it throws. */
export function transaction<T> (db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE')
  try {
    const result = fn()
    db.exec('COMMIT')
    return result
  } catch (err) {
    db.exec('ROLLBACK')
    throw err
  }
}

export type { DatabaseSync }

/**
 * Prepared statements, prepared once per database: preparing costs more than running a
 * point lookup, and hot paths (a chunk lookup per chunk) run them tens of thousands of times.
 * Not for statements that are iterated: two iterations of one statement would collide.
 */
export function statementCache (db: DatabaseSync): (sql: string) => StatementSync {
  const cache = new Map<string, StatementSync>()
  return (sql) => {
    let stmt = cache.get(sql)
    if (stmt === undefined) {
      stmt = db.prepare(sql)
      cache.set(sql, stmt)
    }
    return stmt
  }
}

/**
 * Adds a column to a table made by an older version (CREATE TABLE IF NOT EXISTS leaves an
 * existing table as it was). The declaration must allow existing rows (NULL or a DEFAULT).
 */
export function ensureColumn (db: DatabaseSync, table: string, column: string, declaration: string): void {
  const columns = db.prepare(`PRAGMA table_info(${table})`).all().map(r => r.name as string)
  if (!columns.includes(column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${declaration}`)
}
