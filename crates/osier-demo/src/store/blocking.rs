//! The store through blocking drivers (rusqlite, postgres): what stages 0 and 1 use, from a
//! green thread through `osier_green::tpool` or from async code through
//! `Bridge::run_blocking`, never on a hub or a tokio worker itself.

use std::sync::{Mutex, MutexGuard};

use super::{postgres as pg, sqlite, DbUrl, Statistics, StoreError, StoredSample};
use crate::sample::Sample;

/// One connection, taken in turn (SQLite has one writer anyway; the demo's figures say what a
/// single blocking connection gives).
pub struct BlockingStore {
    db: Db,
}

enum Db {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(Box<Mutex<Pg>>),
}

struct Pg {
    client: postgres::Client,
    insert: postgres::Statement,
    samples: postgres::Statement,
    statistics: postgres::Statement,
    count: postgres::Statement,
    aggregate: postgres::Statement,
}

impl std::fmt::Debug for BlockingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        };
        f.debug_struct("BlockingStore").field("db", &kind).finish()
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BlockingStore {
    /// Connects and creates the schema. The `postgres` driver runs a runtime of its own, so
    /// this runs on a thread of its own, wherever it is called from.
    pub fn open(url: &DbUrl) -> Result<BlockingStore, StoreError> {
        let url = url.clone();
        std::thread::scope(|s| {
            s.spawn(move || Self::open_here(&url))
                .join()
                .map_err(|p| StoreError::Interrupted(osier_green::panic_message(&*p)))?
        })
    }

    fn open_here(url: &DbUrl) -> Result<BlockingStore, StoreError> {
        let db = match url {
            DbUrl::Sqlite(path) => Db::Sqlite(Mutex::new(sqlite::open(path)?)),
            DbUrl::Postgres(conn) => {
                let mut client = postgres::Client::connect(conn, postgres::NoTls)?;
                client.batch_execute(pg::SCHEMA)?;
                Db::Postgres(Box::new(Mutex::new(Pg {
                    insert: client.prepare(pg::INSERT)?,
                    samples: client.prepare(pg::SAMPLES)?,
                    statistics: client.prepare(pg::STATISTICS)?,
                    count: client.prepare(pg::COUNT)?,
                    aggregate: client.prepare(pg::AGGREGATE)?,
                    client,
                })))
            }
        };
        Ok(BlockingStore { db })
    }

    /// Stores `s`; false if a sample with its `message_id` is already there.
    pub fn insert(&self, s: &Sample) -> Result<bool, StoreError> {
        match &self.db {
            Db::Sqlite(c) => Ok(sqlite::insert(&locked(c), s)?),
            Db::Postgres(p) => {
                let p = &mut *locked(p);
                let n = p.client.execute(
                    &p.insert,
                    &[
                        &s.message_id,
                        &s.project_id,
                        &s.resource_id,
                        &s.counter_name,
                        &s.volume,
                        &s.timestamp,
                    ],
                )?;
                Ok(n == 1)
            }
        }
    }

    /// The first `limit` samples of a resource's counter, in time order.
    pub fn samples(
        &self,
        resource_id: &str,
        counter_name: &str,
        limit: i64,
    ) -> Result<Vec<StoredSample>, StoreError> {
        let limit = limit.clamp(0, super::MAX_SAMPLES_PER_QUERY);
        match &self.db {
            Db::Sqlite(c) => Ok(sqlite::samples(
                &locked(c),
                resource_id,
                counter_name,
                limit,
            )?),
            Db::Postgres(p) => {
                let p = &mut *locked(p);
                let rows = p
                    .client
                    .query(&p.samples, &[&resource_id, &counter_name, &limit])?;
                Ok(rows
                    .iter()
                    .map(pg::stored_sample)
                    .collect::<Result<_, _>>()?)
            }
        }
    }

    /// What the periodic task has folded for a resource's counter.
    pub fn statistics(
        &self,
        resource_id: &str,
        counter_name: &str,
    ) -> Result<Statistics, StoreError> {
        match &self.db {
            Db::Sqlite(c) => Ok(sqlite::statistics(&locked(c), resource_id, counter_name)?),
            Db::Postgres(p) => {
                let p = &mut *locked(p);
                let row = p
                    .client
                    .query_opt(&p.statistics, &[&resource_id, &counter_name])?;
                Ok(pg::statistics(row.as_ref())?)
            }
        }
    }

    /// How many samples a project has stored.
    pub fn count(&self, project_id: &str) -> Result<i64, StoreError> {
        match &self.db {
            Db::Sqlite(c) => Ok(sqlite::count(&locked(c), project_id)?),
            Db::Postgres(p) => {
                let p = &mut *locked(p);
                Ok(p.client.query_one(&p.count, &[&project_id])?.try_get(0)?)
            }
        }
    }

    /// The periodic task's work: folds new samples into `aggregates`.
    pub fn aggregate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(c) => Ok(sqlite::aggregate(&mut locked(c))?),
            Db::Postgres(p) => {
                let p = &mut *locked(p);
                p.client.execute(&p.aggregate, &[])?;
                Ok(())
            }
        }
    }
}
