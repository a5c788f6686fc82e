//! The schema: this build's migrations, applying them, and comparing a
//! database with them without touching it (`chatkitd check`).
//!
//! Only this file knows the migration folders and sqlx's bookkeeping table.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Connection};

use super::dialect::Dialect;
use super::{StoreError, StoreResult};
use crate::config::StoreUrl;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

/// How a database's schema compares with this build's migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Migrations of this build not applied yet.
    pub pending: usize,
    /// Applied migrations this build does not know: a newer chatkitd
    /// migrated the database.
    pub unknown: usize,
}

fn migrator(dialect: Dialect) -> &'static Migrator {
    match dialect {
        Dialect::Postgres => &POSTGRES_MIGRATIONS,
        Dialect::Sqlite => &SQLITE_MIGRATIONS,
    }
}

/// The versions of the up-migrations this build has for `dialect`.
fn known_versions(dialect: Dialect) -> Vec<i64> {
    migrator(dialect)
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect()
}

/// Applies the pending migrations.
pub(super) async fn migrate(dialect: Dialect, pool: &AnyPool) -> StoreResult<()> {
    migrator(dialect).run(pool).await?;
    Ok(())
}

/// How many migrations a new, empty database at `url` would get.
pub fn migrations_for(url: &StoreUrl) -> usize {
    known_versions(Dialect::of(url)).len()
}

/// Compares the database at `url` with this build's migrations through one
/// connection, not a pool: it fails at once with the real reason (a pool
/// retries until its acquire timeout), within `timeout`. Nothing is written;
/// a SQLite file that does not exist is not created.
pub async fn inspect(url: &StoreUrl, timeout: Duration) -> StoreResult<SchemaStatus> {
    sqlx::any::install_default_drivers();
    let dialect = Dialect::of(url);
    let connect_url = url.connect_url();
    let mut connection =
        match tokio::time::timeout(timeout, sqlx::AnyConnection::connect(&connect_url)).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(StoreError::Unavailable(format!("cannot connect: {e}"))),
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot connect: no answer within {}s",
                    timeout.as_secs()
                )));
            }
        };
    if let Err(e) = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut connection)
        .await
    {
        return Err(StoreError::Unavailable(format!("does not answer: {e}")));
    }
    let applied =
        sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut connection)
            .await;
    if let Err(e) = connection.close().await {
        tracing::debug!(error = %e, "closing the inspection's connection");
    }
    // The only error a database that answered `SELECT 1` gives here is the
    // missing table of one never migrated.
    let applied = applied.unwrap_or_default();
    let known = known_versions(dialect);
    Ok(SchemaStatus {
        pending: known.iter().filter(|v| !applied.contains(v)).count(),
        unknown: applied.iter().filter(|v| !known.contains(v)).count(),
    })
}
