//! The store through async drivers (tokio-rusqlite, tokio-postgres): what stages 2 and 3 use,
//! awaited from async code or, from a green thread, through `osier_bridge::yield_future`.

use std::sync::Arc;

use super::{postgres as pg, sqlite, DbUrl, Statistics, StoreError, StoredSample};
use crate::sample::Sample;

/// A cheap-to-clone handle. SQLite: tokio-rusqlite's connection thread, which takes calls in
/// turn; PostgreSQL: one pipelined tokio-postgres connection, many queries in flight at once.
#[derive(Clone)]
pub struct AsyncStore {
    db: Db,
}

#[derive(Clone)]
enum Db {
    Sqlite(tokio_rusqlite::Connection),
    Postgres(Arc<Pg>),
}

struct Pg {
    client: tokio_postgres::Client,
    st: pg::Statements,
}

impl std::fmt::Debug for AsyncStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        };
        f.debug_struct("AsyncStore").field("db", &kind).finish()
    }
}

fn sqlite_error(e: tokio_rusqlite::Error<rusqlite::Error>) -> StoreError {
    match e {
        tokio_rusqlite::Error::Error(e) => StoreError::Sqlite(e),
        _ => StoreError::Closed,
    }
}

impl AsyncStore {
    /// Connects and creates the schema (on the tokio runtime in force).
    pub async fn open(url: &DbUrl) -> Result<AsyncStore, StoreError> {
        let db = match url {
            DbUrl::Sqlite(path) => {
                let c = tokio_rusqlite::Connection::open(path).await?;
                c.call(|c| sqlite::init(c)).await.map_err(sqlite_error)?;
                Db::Sqlite(c)
            }
            DbUrl::Postgres(conn) => {
                let (client, connection) =
                    tokio_postgres::connect(conn, tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::error!(error = %e, "the PostgreSQL connection failed; the metering store answers errors until restarted");
                    }
                });
                client.batch_execute(pg::SCHEMA).await?;
                let st = pg::Statements::prepare(&client).await?;
                Db::Postgres(Arc::new(Pg { client, st }))
            }
        };
        Ok(AsyncStore { db })
    }

    /// Stores `s`; false if a sample with its `message_id` is already there.
    pub async fn insert(&self, s: Sample) -> Result<bool, StoreError> {
        match &self.db {
            Db::Sqlite(c) => c
                .call(move |c| sqlite::insert(c, &s))
                .await
                .map_err(sqlite_error),
            Db::Postgres(p) => {
                let n = p
                    .client
                    .execute(&p.st.insert, &pg::insert_params(&s))
                    .await?;
                Ok(n == 1)
            }
        }
    }

    /// The first `limit` samples of a resource's counter, in time order.
    pub async fn samples(
        &self,
        resource_id: String,
        counter_name: String,
        limit: i64,
    ) -> Result<Vec<StoredSample>, StoreError> {
        let limit = limit.clamp(0, super::MAX_SAMPLES_PER_QUERY);
        match &self.db {
            Db::Sqlite(c) => c
                .call(move |c| sqlite::samples(c, &resource_id, &counter_name, limit))
                .await
                .map_err(sqlite_error),
            Db::Postgres(p) => {
                let rows = p
                    .client
                    .query(&p.st.samples, &[&resource_id, &counter_name, &limit])
                    .await?;
                Ok(rows
                    .iter()
                    .map(pg::stored_sample)
                    .collect::<Result<_, _>>()?)
            }
        }
    }

    /// What the periodic task has folded for a resource's counter.
    pub async fn statistics(
        &self,
        resource_id: String,
        counter_name: String,
    ) -> Result<Statistics, StoreError> {
        match &self.db {
            Db::Sqlite(c) => c
                .call(move |c| sqlite::statistics(c, &resource_id, &counter_name))
                .await
                .map_err(sqlite_error),
            Db::Postgres(p) => {
                let row = p
                    .client
                    .query_opt(&p.st.statistics, &[&resource_id, &counter_name])
                    .await?;
                Ok(pg::statistics(row.as_ref())?)
            }
        }
    }

    /// How many samples a project has stored.
    pub async fn count(&self, project_id: String) -> Result<i64, StoreError> {
        match &self.db {
            Db::Sqlite(c) => c
                .call(move |c| sqlite::count(c, &project_id))
                .await
                .map_err(sqlite_error),
            Db::Postgres(p) => Ok(p
                .client
                .query_one(&p.st.count, &[&project_id])
                .await?
                .try_get(0)?),
        }
    }

    /// The periodic task's work: folds new samples into `aggregates`.
    pub async fn aggregate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(c) => c.call(sqlite::aggregate).await.map_err(sqlite_error),
            Db::Postgres(p) => {
                p.client.execute(&p.st.aggregate, &[]).await?;
                Ok(())
            }
        }
    }
}
