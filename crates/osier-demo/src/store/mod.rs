//! Where samples are kept: SQLite (a file; the embedded default) or PostgreSQL, each through a
//! blocking driver ([`BlockingStore`]: rusqlite, postgres) and an async one ([`AsyncStore`]:
//! tokio-rusqlite, tokio-postgres). Both give the same answers from the same schema: that is
//! what lets a fleet mix the demo's stages.
//!
//! | table | holds |
//! |---|---|
//! | `samples` | one row per sample, unique by `message_id`; `aggregated` says whether the periodic task has folded it in yet |
//! | `aggregates` | per resource and counter: count, sum, min, max of the folded samples (what `statistics` answers) |

mod blocking;
mod nonblocking;
mod postgres;
mod sqlite;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use blocking::BlockingStore;
pub use nonblocking::AsyncStore;

/// The most samples one `get_samples` answer holds, whatever the caller asks.
pub const MAX_SAMPLES_PER_QUERY: i64 = 1000;

/// Which database, from `--db`: `sqlite:PATH` (or a bare path) or `postgres://...`.
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgres://user:pass@host:port/db`).
    Postgres(String),
}

impl DbUrl {
    /// Reads `--db`.
    pub fn parse(s: &str) -> Result<DbUrl, StoreError> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            s.parse::<tokio_postgres::Config>()
                .map_err(|e| StoreError::BadUrl(format!("not a PostgreSQL URL: {e}")))?;
            return Ok(DbUrl::Postgres(s.to_string()));
        }
        let path = s.strip_prefix("sqlite:").unwrap_or(s);
        if path.is_empty() || s.contains("://") {
            return Err(StoreError::BadUrl(
                "--db takes sqlite:PATH or postgres://user@host/db".into(),
            ));
        }
        Ok(DbUrl::Sqlite(PathBuf::from(path)))
    }

    /// A SQLite file of its own in the temporary directory.
    pub fn temporary() -> DbUrl {
        DbUrl::Sqlite(std::env::temp_dir().join(format!(
            "osier-demo-{}.sqlite",
            uuid::Uuid::new_v4().simple()
        )))
    }

    /// The URL as `--db` takes it, password included: for a child process's environment,
    /// never for output (which uses `Display`).
    pub fn to_arg(&self) -> String {
        match self {
            DbUrl::Sqlite(p) => format!("sqlite:{}", p.display()),
            DbUrl::Postgres(u) => u.clone(),
        }
    }

    /// Removes a SQLite database's files (the file, its write-ahead log and shared-memory
    /// index), whatever is left of them; does nothing for PostgreSQL.
    pub fn remove(&self) {
        if let DbUrl::Sqlite(path) = self {
            for suffix in ["", "-wal", "-shm"] {
                let mut f = path.clone().into_os_string();
                f.push(suffix);
                let _ = std::fs::remove_file(f);
            }
        }
    }

    /// `sqlite` or `postgres`, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            DbUrl::Sqlite(_) => "sqlite",
            DbUrl::Postgres(_) => "postgres",
        }
    }
}

/// The URL with any password replaced by `***`: what logs, errors and reports show.
impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            DbUrl::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({self})")
    }
}

/// `scheme://user:secret@host` -> `scheme://user:***@host`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// A stored sample, as `get_samples` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSample {
    /// The sample's id.
    pub message_id: String,
    /// Its value.
    pub volume: i64,
    /// Its time.
    pub timestamp: String,
}

/// What `statistics` answers for one resource and counter: the samples folded so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statistics {
    /// How many samples.
    pub count: i64,
    /// Their sum.
    pub sum: i64,
    /// The smallest (absent while `count` is 0).
    pub min: Option<i64>,
    /// The largest.
    pub max: Option<i64>,
}

/// A database operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `--db` is not a database this demo knows.
    #[error("{0}")]
    BadUrl(String),
    /// SQLite said no.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no, or cannot be reached.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The async SQLite handle's thread is gone.
    #[error("the SQLite connection is closed")]
    Closed,
    /// A blocking call's thread panicked or was cancelled.
    #[error("the database call did not finish: {0}")]
    Interrupted(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_password_never_shows() {
        let url = DbUrl::parse("postgres://meter:s3cret@127.0.0.1:5432/test").unwrap();
        assert_eq!(url.to_string(), "postgres://meter:***@127.0.0.1:5432/test");
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn a_bare_path_is_sqlite() {
        assert_eq!(
            DbUrl::parse("/tmp/m.sqlite").unwrap(),
            DbUrl::Sqlite("/tmp/m.sqlite".into())
        );
        assert_eq!(
            DbUrl::parse("sqlite:m.db").unwrap(),
            DbUrl::Sqlite("m.db".into())
        );
    }

    #[test]
    fn an_unknown_scheme_is_refused() {
        assert!(matches!(
            DbUrl::parse("mysql://root@localhost/x"),
            Err(StoreError::BadUrl(_))
        ));
    }
}
