//! The SQL for PostgreSQL, shared by the blocking (`postgres`) and async (`tokio-postgres`)
//! stores, which prepare each statement once per connection.

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS samples (
    id BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    counter_name TEXT NOT NULL,
    volume BIGINT NOT NULL,
    ts TEXT NOT NULL,
    aggregated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS samples_by_resource ON samples (resource_id, counter_name, ts);
CREATE INDEX IF NOT EXISTS samples_by_project ON samples (project_id);
CREATE INDEX IF NOT EXISTS samples_pending ON samples (aggregated) WHERE aggregated = 0;
CREATE TABLE IF NOT EXISTS aggregates (
    resource_id TEXT NOT NULL,
    counter_name TEXT NOT NULL,
    count BIGINT NOT NULL,
    total BIGINT NOT NULL,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL,
    PRIMARY KEY (resource_id, counter_name)
);";

pub(super) const INSERT: &str =
    "INSERT INTO samples (message_id, project_id, resource_id, counter_name, volume, ts)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING";

pub(super) const SAMPLES: &str =
    "SELECT message_id, volume, ts FROM samples WHERE resource_id = $1 AND counter_name = $2
     ORDER BY ts, message_id LIMIT $3";

pub(super) const STATISTICS: &str =
    "SELECT count, total, lo, hi FROM aggregates WHERE resource_id = $1 AND counter_name = $2";

pub(super) const COUNT: &str = "SELECT COUNT(*) FROM samples WHERE project_id = $1";

/// One statement: the rows marked aggregated are exactly the rows folded in, even with
/// writers committing beside it.
pub(super) const AGGREGATE: &str = "
WITH done AS (
    UPDATE samples SET aggregated = 1 WHERE aggregated = 0
    RETURNING resource_id, counter_name, volume
)
INSERT INTO aggregates (resource_id, counter_name, count, total, lo, hi)
SELECT resource_id, counter_name, COUNT(*), SUM(volume), MIN(volume), MAX(volume)
FROM done GROUP BY resource_id, counter_name
ON CONFLICT (resource_id, counter_name) DO UPDATE SET
    count = aggregates.count + excluded.count, total = aggregates.total + excluded.total,
    lo = LEAST(aggregates.lo, excluded.lo), hi = GREATEST(aggregates.hi, excluded.hi)";

use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::{Statistics, StoredSample};
use crate::sample::Sample;

/// The statements, prepared once per connection (the blocking driver's `Statement` is
/// tokio-postgres's).
pub(super) struct Statements {
    pub(super) insert: Statement,
    pub(super) samples: Statement,
    pub(super) statistics: Statement,
    pub(super) count: Statement,
    pub(super) aggregate: Statement,
}

impl Statements {
    /// On a blocking connection.
    pub(super) fn prepare_blocking(
        c: &mut postgres::Client,
    ) -> Result<Self, tokio_postgres::Error> {
        Ok(Statements {
            insert: c.prepare(INSERT)?,
            samples: c.prepare(SAMPLES)?,
            statistics: c.prepare(STATISTICS)?,
            count: c.prepare(COUNT)?,
            aggregate: c.prepare(AGGREGATE)?,
        })
    }

    /// On an async connection.
    pub(super) async fn prepare(c: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Statements {
            insert: c.prepare(INSERT).await?,
            samples: c.prepare(SAMPLES).await?,
            statistics: c.prepare(STATISTICS).await?,
            count: c.prepare(COUNT).await?,
            aggregate: c.prepare(AGGREGATE).await?,
        })
    }
}

/// [`INSERT`]'s parameters for `s`.
pub(super) fn insert_params(s: &Sample) -> [&(dyn ToSql + Sync); 6] {
    [
        &s.message_id,
        &s.project_id,
        &s.resource_id,
        &s.counter_name,
        &s.volume,
        &s.timestamp,
    ]
}

pub(super) fn stored_sample(
    r: &tokio_postgres::Row,
) -> Result<StoredSample, tokio_postgres::Error> {
    Ok(StoredSample {
        message_id: r.try_get(0)?,
        volume: r.try_get(1)?,
        timestamp: r.try_get(2)?,
    })
}

pub(super) fn statistics(
    r: Option<&tokio_postgres::Row>,
) -> Result<Statistics, tokio_postgres::Error> {
    let Some(r) = r else {
        return Ok(Statistics::default());
    };
    Ok(Statistics {
        count: r.try_get(0)?,
        sum: r.try_get(1)?,
        min: r.try_get(2)?,
        max: r.try_get(3)?,
    })
}
