//! The store through blocking drivers (rusqlite, postgres): what stages 0 and 1 use, from a
//! green thread through `osier_green::tpool` or from async code through
//! `Bridge::run_blocking`, never on a hub or a tokio worker itself.

use std::sync::Mutex;

use super::{postgres as pg, sqlite, DbUrl, Statistics, StoreError, StoredSample};
use crate::locked;
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
    st: pg::Statements,
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

impl BlockingStore {
    /// Connects and creates the schema. Call it where the blocking calls go: off the hubs and
    /// off tokio's workers (`tpool`, `Bridge::run_blocking`, a plain thread); the `postgres`
    /// driver runs a runtime of its own, which cannot start on a tokio worker.
    pub fn open(url: &DbUrl) -> Result<BlockingStore, StoreError> {
        let db = match url {
            DbUrl::Sqlite(path) => Db::Sqlite(Mutex::new(sqlite::open(path)?)),
            DbUrl::Postgres(conn) => {
                let mut client = postgres::Client::connect(conn, postgres::NoTls)?;
                client.batch_execute(pg::SCHEMA)?;
                let st = pg::Statements::prepare_blocking(&mut client)?;
                Db::Postgres(Box::new(Mutex::new(Pg { client, st })))
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
                let n = p.client.execute(&p.st.insert, &pg::insert_params(s))?;
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
                    .query(&p.st.samples, &[&resource_id, &counter_name, &limit])?;
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
                    .query_opt(&p.st.statistics, &[&resource_id, &counter_name])?;
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
                Ok(p.client
                    .query_one(&p.st.count, &[&project_id])?
                    .try_get(0)?)
            }
        }
    }

    /// The periodic task's work: folds new samples into `aggregates`.
    pub fn aggregate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(c) => Ok(sqlite::aggregate(&mut locked(c))?),
            Db::Postgres(p) => {
                let p = &mut *locked(p);
                p.client.execute(&p.st.aggregate, &[])?;
                Ok(())
            }
        }
    }
}
