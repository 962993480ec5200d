//! The SQL for SQLite, on a `rusqlite::Connection`: the blocking store calls these directly,
//! the async store inside tokio-rusqlite's connection thread.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Statistics, StoredSample};
use crate::sample::Sample;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    counter_name TEXT NOT NULL,
    volume INTEGER NOT NULL,
    ts TEXT NOT NULL,
    aggregated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS samples_by_resource ON samples (resource_id, counter_name, ts);
CREATE INDEX IF NOT EXISTS samples_by_project ON samples (project_id);
CREATE INDEX IF NOT EXISTS samples_pending ON samples (aggregated) WHERE aggregated = 0;
CREATE TABLE IF NOT EXISTS aggregates (
    resource_id TEXT NOT NULL,
    counter_name TEXT NOT NULL,
    count INTEGER NOT NULL,
    total INTEGER NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    PRIMARY KEY (resource_id, counter_name)
);";

/// Opens (creating if needed) the database file, in WAL mode so readers never wait for the
/// writer.
pub(super) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    init(&c)?;
    Ok(c)
}

/// WAL, a busy timeout, and the schema.
pub(super) fn init(c: &Connection) -> rusqlite::Result<()> {
    c.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.busy_timeout(Duration::from_secs(10))?;
    c.execute_batch(SCHEMA)
}

pub(super) fn insert(c: &Connection, s: &Sample) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO samples (message_id, project_id, resource_id, counter_name, volume, ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (message_id) DO NOTHING",
        )?
        .execute(params![
            s.message_id,
            s.project_id,
            s.resource_id,
            s.counter_name,
            s.volume,
            s.timestamp
        ])?;
    Ok(n == 1)
}

pub(super) fn samples(
    c: &Connection,
    resource_id: &str,
    counter_name: &str,
    limit: i64,
) -> rusqlite::Result<Vec<StoredSample>> {
    let mut st = c.prepare_cached(
        "SELECT message_id, volume, ts FROM samples WHERE resource_id = ?1 AND counter_name = ?2
         ORDER BY ts, message_id LIMIT ?3",
    )?;
    let rows = st.query_map(params![resource_id, counter_name, limit], |r| {
        Ok(StoredSample {
            message_id: r.get(0)?,
            volume: r.get(1)?,
            timestamp: r.get(2)?,
        })
    })?;
    rows.collect()
}

pub(super) fn statistics(
    c: &Connection,
    resource_id: &str,
    counter_name: &str,
) -> rusqlite::Result<Statistics> {
    let row = c
        .prepare_cached(
            "SELECT count, total, lo, hi FROM aggregates WHERE resource_id = ?1 AND counter_name = ?2",
        )?
        .query_row(params![resource_id, counter_name], |r| {
            Ok(Statistics {
                count: r.get(0)?,
                sum: r.get(1)?,
                min: r.get(2)?,
                max: r.get(3)?,
            })
        })
        .optional()?;
    Ok(row.unwrap_or_default())
}

pub(super) fn count(c: &Connection, project_id: &str) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT COUNT(*) FROM samples WHERE project_id = ?1")?
        .query_row(params![project_id], |r| r.get(0))
}

/// Folds every sample not yet aggregated into `aggregates`, in one transaction (SQLite has one
/// writer at a time, so no sample lands between the two statements).
pub(super) fn aggregate(c: &mut Connection) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO aggregates (resource_id, counter_name, count, total, lo, hi)
         SELECT resource_id, counter_name, COUNT(*), SUM(volume), MIN(volume), MAX(volume)
         FROM samples WHERE aggregated = 0 GROUP BY resource_id, counter_name
         ON CONFLICT (resource_id, counter_name) DO UPDATE SET
             count = count + excluded.count, total = total + excluded.total,
             lo = min(lo, excluded.lo), hi = max(hi, excluded.hi)",
        [],
    )?;
    tx.execute("UPDATE samples SET aggregated = 1 WHERE aggregated = 0", [])?;
    tx.commit()
}
