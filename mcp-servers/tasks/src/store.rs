//! The task store: one `tasks` table in SQLite or Postgres through sqlx's Any driver.
//!
//! Every query is scoped by `user_id`, so another user's task is indistinguishable from one
//! that does not exist. The SQL text is shared by both backends (`$N` placeholders, TEXT
//! columns, timestamps as RFC 3339 text in UTC with microseconds so they sort as text).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::config::{Backend, DbConfig};

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    notes TEXT,
    due TEXT,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    completed_at TEXT
)";
const CREATE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS tasks_user_status ON tasks (user_id, status, created_at)";

/// A stored task as the model sees it (the owner is deliberately left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    /// The task id, `task_` followed by 12 hex digits.
    pub id: String,
    /// The title.
    pub title: String,
    /// Free-form notes, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The due date as `YYYY-MM-DD`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// `open` or `done`.
    pub status: String,
    /// When the task was created (RFC 3339, UTC).
    pub created_at: String,
    /// When the task last changed (RFC 3339, UTC).
    pub updated_at: String,
    /// When the task was completed (RFC 3339, UTC), if it is done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

impl Task {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            title: row.try_get("title")?,
            notes: row.try_get("notes")?,
            due: row.try_get("due")?,
            status: row.try_get("status")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            completed_at: row.try_get("completed_at")?,
        })
    }
}

/// Which tasks `list` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Only open tasks.
    Open,
    /// Only completed tasks.
    Done,
    /// Every task.
    All,
}

/// The fields an update may change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskChanges {
    /// A new title.
    pub title: Option<String>,
    /// New notes, or `Some(None)` to clear them.
    pub notes: Option<Option<String>>,
    /// A new due date, or `Some(None)` to clear it.
    pub due: Option<Option<String>>,
}

/// Store failures. All of them are internal: "not found" is an `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// A handle on the task table, cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Connects and creates the schema if it is missing.
    pub async fn open(config: &DbConfig) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let mut options = AnyPoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10));
        if config.backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Wait for other server instances instead of failing with SQLITE_BUSY.
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&config.url).await?;
        let store = Self { pool };
        store.create_schema(config.backend).await?;
        Ok(store)
    }

    async fn create_schema(&self, backend: Backend) -> Result<(), StoreError> {
        match backend {
            Backend::Sqlite => {
                // Switching to WAL needs a lock that busy_timeout does not wait for: retry.
                let mut attempt = 0;
                loop {
                    match self.pool.execute("PRAGMA journal_mode = WAL").await {
                        Ok(_) => break,
                        Err(err) if attempt < 50 => {
                            tracing::debug!(%err, "setting WAL mode, retrying");
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
                self.pool.execute(CREATE_TABLE).await?;
                self.pool.execute(CREATE_INDEX).await?;
            }
            Backend::Postgres => {
                // Concurrent CREATE TABLE IF NOT EXISTS can race in Postgres: serialize it.
                let mut tx = self.pool.begin().await?;
                tx.execute("SELECT pg_advisory_xact_lock(7320111413)")
                    .await?;
                tx.execute(CREATE_TABLE).await?;
                tx.execute(CREATE_INDEX).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates an open task and returns it.
    pub async fn add(
        &self,
        user_id: &str,
        title: &str,
        notes: Option<&str>,
        due: Option<&str>,
    ) -> Result<Task, StoreError> {
        let now = now();
        let task = Task {
            id: new_task_id(),
            title: title.to_owned(),
            notes: notes.map(str::to_owned),
            due: due.map(str::to_owned),
            status: "open".to_owned(),
            created_at: now.clone(),
            updated_at: now,
            completed_at: None,
        };
        sqlx::query(
            "INSERT INTO tasks (id, user_id, title, notes, due, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'open', $6, $6)",
        )
        .bind(&task.id)
        .bind(user_id)
        .bind(&task.title)
        .bind(&task.notes)
        .bind(&task.due)
        .bind(&task.created_at)
        .execute(&self.pool)
        .await?;
        Ok(task)
    }

    /// Lists a user's tasks, oldest first, at most 200.
    pub async fn list(&self, user_id: &str, filter: StatusFilter) -> Result<Vec<Task>, StoreError> {
        let query = match filter {
            StatusFilter::All => sqlx::query(
                "SELECT id, title, notes, due, status, created_at, updated_at, completed_at
                 FROM tasks WHERE user_id = $1 ORDER BY created_at, id LIMIT 200",
            )
            .bind(user_id),
            StatusFilter::Open | StatusFilter::Done => sqlx::query(
                "SELECT id, title, notes, due, status, created_at, updated_at, completed_at
                 FROM tasks WHERE user_id = $1 AND status = $2 ORDER BY created_at, id LIMIT 200",
            )
            .bind(user_id)
            .bind(if filter == StatusFilter::Open {
                "open"
            } else {
                "done"
            }),
        };
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(Task::from_row)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Fetches one of the user's tasks.
    pub async fn get(&self, user_id: &str, task_id: &str) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query(
            "SELECT id, title, notes, due, status, created_at, updated_at, completed_at
             FROM tasks WHERE user_id = $1 AND id = $2",
        )
        .bind(user_id)
        .bind(task_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(Task::from_row)
            .transpose()
            .map_err(Into::into)
    }

    /// Applies changes to one of the user's tasks; `None` if the user has no such task.
    pub async fn update(
        &self,
        user_id: &str,
        task_id: &str,
        changes: &TaskChanges,
    ) -> Result<Option<Task>, StoreError> {
        // One statement: a flag per field says whether to take the new value.
        let result = sqlx::query(
            "UPDATE tasks SET
                 title = CASE WHEN $3 = 1 THEN $4 ELSE title END,
                 notes = CASE WHEN $5 = 1 THEN $6 ELSE notes END,
                 due = CASE WHEN $7 = 1 THEN $8 ELSE due END,
                 updated_at = $9
             WHERE user_id = $1 AND id = $2",
        )
        .bind(user_id)
        .bind(task_id)
        .bind(i32::from(changes.title.is_some()))
        .bind(changes.title.clone())
        .bind(i32::from(changes.notes.is_some()))
        .bind(changes.notes.clone().flatten())
        .bind(i32::from(changes.due.is_some()))
        .bind(changes.due.clone().flatten())
        .bind(now())
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Ok(None);
        }
        self.get(user_id, task_id).await
    }

    /// Marks one of the user's tasks done (a done task keeps its completion time).
    pub async fn complete(&self, user_id: &str, task_id: &str) -> Result<Option<Task>, StoreError> {
        let now = now();
        sqlx::query(
            "UPDATE tasks SET status = 'done', completed_at = $3, updated_at = $3
             WHERE user_id = $1 AND id = $2 AND status = 'open'",
        )
        .bind(user_id)
        .bind(task_id)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        self.get(user_id, task_id).await
    }

    /// Deletes one of the user's tasks; `false` if the user has no such task.
    pub async fn delete(&self, user_id: &str, task_id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM tasks WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(task_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

/// The current time as sortable RFC 3339 text.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A fresh id: `task_` and 12 hex digits from the std library's randomly keyed hasher.
fn new_task_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_i64(Utc::now().timestamp_nanos_opt().unwrap_or_default());
    format!("task_{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_right_and_differ() {
        let a = new_task_id();
        let b = new_task_id();
        assert_eq!(a.len(), 17);
        assert!(a.starts_with("task_"));
        assert!(a[5..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
