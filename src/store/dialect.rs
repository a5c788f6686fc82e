//! What differs between PostgreSQL and SQLite: connection set-up and how JSON
//! and timestamps are written (migrations: `schema.rs`; run locks: `locks.rs`).
//!
//! Everything else is one SQL text that both accept (`$N` placeholders work
//! in both), run through sqlx's `Any` driver by [`super::SqlStore`].

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Connection, Executor};

use super::StoreResult;
use crate::config::StoreUrl;

/// How long a pooled connection may sit idle and still be handed out without
/// a ping first. A connection in steady use skips the ping, which would cost
/// a round trip per statement; one idle for longer (the database may have
/// restarted, a firewall may have dropped it) is checked, and replaced if it
/// does not answer.
const TRUST_IDLE_FOR: Duration = Duration::from_secs(5);

/// Set on every Postgres session: plan each statement once per connection.
///
/// Postgres plans a prepared statement afresh on each of its first five
/// executions and afterwards only keeps the generic plan if it does not
/// estimate it dearer than the custom ones. For statements whose parameters
/// are JSON documents it never does, so every execution was planned again:
/// a tenth of the database's time per turn. Every statement the store runs
/// looks rows up by key or by owner and order, for which the generic plan is
/// the same index scan whatever the values.
const POSTGRES_SESSION: &str = "SET plan_cache_mode = force_generic_plan";

/// The database behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The dialect a URL names.
    pub fn of(url: &StoreUrl) -> Dialect {
        match url {
            StoreUrl::Postgres(_) => Dialect::Postgres,
            StoreUrl::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    /// A placeholder for a JSON value bound as text.
    pub fn json_param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}::jsonb"),
            Dialect::Sqlite => format!("${n}"),
        }
    }

    /// A placeholder for a timestamp bound as RFC 3339 text.
    pub fn time_param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}::timestamptz"),
            Dialect::Sqlite => format!("${n}"),
        }
    }

    /// The `body` column read back as text.
    pub fn body_text(self) -> &'static str {
        match self {
            Dialect::Postgres => "body::text",
            Dialect::Sqlite => "body",
        }
    }

    /// `len` bytes of a `bytea` / blob column from byte `from` (1-based),
    /// both bound as 64-bit integers: Postgres' `substring` wants `integer`
    /// positions, SQLite's `substr` counts bytes on a blob.
    pub fn bytes_slice(self, column: &str, from: usize, len: usize) -> String {
        match self {
            Dialect::Postgres => {
                format!("substring({column} FROM ${from}::integer FOR ${len}::integer)")
            }
            Dialect::Sqlite => format!("substr({column}, ${from}, ${len})"),
        }
    }

    /// The statement that opens a transaction which reads and then writes.
    /// SQLite's default `BEGIN` is deferred: it takes the write lock only at
    /// the first write, and if another writer committed since the read, that
    /// upgrade fails at once with `SQLITE_BUSY_SNAPSHOT`, which
    /// `busy_timeout` does not wait out. `BEGIN IMMEDIATE` takes the write
    /// lock first, so concurrent writers queue on the busy timeout instead.
    pub fn begin_read_write(self) -> &'static str {
        match self {
            Dialect::Postgres => "BEGIN",
            Dialect::Sqlite => "BEGIN IMMEDIATE",
        }
    }

    /// Opens a pool of `max` connections, creating a SQLite file if missing.
    pub async fn connect(self, url: &StoreUrl, max: u32) -> StoreResult<AnyPool> {
        install_default_drivers();
        let options = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(Duration::from_secs(300))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > TRUST_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            });
        let pool = match self {
            Dialect::Postgres => {
                options
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(POSTGRES_SESSION).await?;
                            Ok(())
                        })
                    })
                    .connect(&url.connect_url())
                    .await?
            }
            Dialect::Sqlite => {
                // A missing file is created, unless the URL brings options of its own.
                let url = match url {
                    StoreUrl::Sqlite { query: None, .. } if url.sqlite_file().is_some() => {
                        format!("{}?mode=rwc", url.connect_url())
                    }
                    _ => url.connect_url(),
                };
                options
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // WAL lets readers run beside the writer; the busy
                            // timeout makes concurrent writers wait, not fail.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
        };
        Ok(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_postgres_session_plans_statements_once() {
        let url = chatkitd_testkit::shared_server()
            .await
            .fresh_database()
            .await;
        let url: StoreUrl = url.parse().expect("a store URL");
        let pool = Dialect::Postgres.connect(&url, 2).await.expect("pool");
        // Two connections held at once: both were set up, not just the first.
        let mut first = pool.acquire().await.expect("first connection");
        let mut second = pool.acquire().await.expect("second connection");
        for conn in [&mut first, &mut second] {
            let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
                .fetch_one(&mut **conn)
                .await
                .expect("shown");
            assert_eq!(mode, "force_generic_plan");
        }
        drop((first, second));
        pool.close().await;
    }
}
