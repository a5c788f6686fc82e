//! [`SqlStore`]: the [`Store`] on PostgreSQL or SQLite through sqlx's `Any`
//! driver. The SQL is written once; [`Dialect`] supplies the few fragments
//! that differ.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe};

use super::advisory::LockSession;
use super::dialect::Dialect;
use super::locks::{LocalLocks, RunLock};
use super::queries::{Queries, order_index, query};
use super::rows::{bind_item, bind_thread, parse_body, row_bytes, thread_body, thread_from_row};
use super::{Appended, PageRequest, Store, StoreError, StoreResult};
use crate::config::{LimitsConfig, StoreConfig, StoreUrl, StoreUrlError};
use crate::protocol::{FeedbackKind, Page, ThreadItem, ThreadMetadata, Timestamp};

/// Pool sizes and timeouts of a [`SqlStore`]; the defaults are `[store]`'s.
#[derive(Debug, Clone)]
pub struct SqlStoreOptions {
    pub max_connections: u32,
    pub lock_timeout: Duration,
    /// Bytes of stored JSON one listing page may hold (`[limits] max_list_bytes`).
    pub max_page_bytes: usize,
}

impl From<&StoreConfig> for SqlStoreOptions {
    fn from(config: &StoreConfig) -> Self {
        SqlStoreOptions {
            max_connections: config.max_connections,
            lock_timeout: config.lock_timeout,
            max_page_bytes: LimitsConfig::default().max_list_bytes,
        }
    }
}

impl Default for SqlStoreOptions {
    fn default() -> Self {
        SqlStoreOptions::from(&StoreConfig::default())
    }
}

/// Connections of a store's query pool by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub idle: usize,
    pub in_use: usize,
}

/// The replica's lock session, opened once on first use.
#[derive(Debug)]
struct LockSessionCell {
    url: String,
    session: tokio::sync::OnceCell<LockSession>,
}

/// Threads and items in a SQL database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(super) pool: AnyPool,
    /// Postgres only: the replica's lock session, opened at the first run
    /// (a store that only reads or migrates never needs it).
    lock_session: Option<Arc<LockSessionCell>>,
    /// SQLite only: writes take turns here rather than on the file's lock,
    /// whose busy handler sleeps (up to 100 ms a time) while another
    /// connection writes; the busy timeout still covers other processes.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    local_locks: LocalLocks,
    lock_timeout: Duration,
    max_page_bytes: usize,
    pub(super) dialect: Dialect,
    pub(super) sql: Queries,
}

impl SqlStore {
    /// Connects without touching the schema. `url` is a store URL as in
    /// `[store] url`, its SQLite path already resolved.
    pub async fn connect(url: &str, options: &SqlStoreOptions) -> StoreResult<SqlStore> {
        let url: StoreUrl = url
            .parse()
            .map_err(|e: StoreUrlError| sqlx::Error::Configuration(e.into()))?;
        let dialect = Dialect::of(&url);
        let pool = dialect.connect(&url, options.max_connections).await?;
        let lock_session = match dialect {
            Dialect::Postgres => Some(Arc::new(LockSessionCell {
                url: url.connect_url(),
                session: tokio::sync::OnceCell::new(),
            })),
            Dialect::Sqlite => None,
        };
        Ok(SqlStore {
            pool,
            lock_session,
            writer: (dialect == Dialect::Sqlite).then(Default::default),
            local_locks: LocalLocks::default(),
            lock_timeout: options.lock_timeout,
            max_page_bytes: options.max_page_bytes,
            dialect,
            sql: Queries::new(dialect),
        })
    }

    /// The one writer SQLite admits, waited for (`None` on Postgres, whose
    /// writers do not exclude each other).
    pub(super) async fn sqlite_writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writer {
            Some(writer) => Some(writer.lock().await),
            None => None,
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        super::schema::migrate(self.dialect, &self.pool).await
    }

    /// Which database this is.
    pub fn is_postgres(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// Connections of the query pool now, for the metrics.
    pub fn connections(&self) -> ConnectionCounts {
        let open = self.pool.size() as usize;
        let idle = self.pool.num_idle().min(open);
        ConnectionCounts {
            idle,
            in_use: open - idle,
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(session) = self.lock_session.as_ref().and_then(|c| c.session.get()) {
            session.close().await;
        }
    }

    async fn thread_seq(&self, user: &str, thread_id: &str) -> StoreResult<Option<i64>> {
        Ok(
            sqlx::query_scalar(AssertSqlSafe(self.sql.thread_seq.as_str()))
                .bind(thread_id)
                .bind(user)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn require_thread(&self, user: &str, thread_id: &str) -> StoreResult<()> {
        match self.thread_seq(user, thread_id).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(format!("thread {thread_id}"))),
        }
    }
}

impl SqlStore {
    /// Reads a page of at most `limit` records from a query that asks for
    /// `limit + 1` rows (the extra row only says that more remain). Rows are
    /// read one at a time and the page ends early, with `has_more`, before
    /// the record that would take it past `max_page_bytes`; the first record
    /// is always served, alone if it is that large, so every page makes
    /// progress and its `after` names its last record.
    async fn fetch_page<T>(
        &self,
        query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
        limit: u32,
        parse: impl Fn(&AnyRow) -> StoreResult<T>,
        id_of: impl Fn(&T) -> &str,
    ) -> StoreResult<Page<T>> {
        let mut rows = query.fetch(&self.pool);
        let mut data = Vec::new();
        let mut bytes = 0usize;
        let mut has_more = false;
        while let Some(row) = rows.try_next().await? {
            let size = row_bytes(&row)?;
            if data.len() >= limit as usize
                || (!data.is_empty() && bytes.saturating_add(size) > self.max_page_bytes)
            {
                has_more = true;
                break;
            }
            bytes = bytes.saturating_add(size);
            data.push(parse(&row)?);
        }
        let after = if has_more {
            data.last().map(|last| id_of(last).to_owned())
        } else {
            None
        };
        Ok(Page {
            data,
            has_more,
            after,
        })
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await?;
        debug_assert_eq!(one, 1);
        Ok(())
    }

    async fn create_thread(&self, user: &str, thread: &ThreadMetadata) -> StoreResult<()> {
        let _writer = self.sqlite_writer().await;
        bind_thread(query(&self.sql.insert_thread), user, thread)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_thread_with_item(
        &self,
        user: &str,
        thread: &ThreadMetadata,
        item: &ThreadItem,
    ) -> StoreResult<()> {
        self.insert_thread_with_item(user, thread, item).await
    }

    async fn load_thread(&self, user: &str, thread_id: &str) -> StoreResult<ThreadMetadata> {
        let row = query(&self.sql.load_thread)
            .bind(thread_id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("thread {thread_id}")))?;
        thread_from_row(&row)
    }

    async fn save_thread(&self, user: &str, thread: &ThreadMetadata) -> StoreResult<()> {
        let _writer = self.sqlite_writer().await;
        let done = query(&self.sql.update_thread)
            .bind(&thread.id)
            .bind(user)
            .bind(thread.title.as_deref())
            .bind(thread_body(thread))
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("thread {}", thread.id)));
        }
        Ok(())
    }

    async fn set_title_if_unset(
        &self,
        user: &str,
        thread_id: &str,
        title: &str,
    ) -> StoreResult<bool> {
        let _writer = self.sqlite_writer().await;
        let done = query(&self.sql.set_title)
            .bind(thread_id)
            .bind(user)
            .bind(title)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_threads(
        &self,
        user: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ThreadMetadata>> {
        let cursor = match &page.after {
            None => None,
            Some(after) => Some(
                self.thread_seq(user, after)
                    .await?
                    .ok_or_else(|| StoreError::InvalidCursor(format!("no thread {after}")))?,
            ),
        };
        let sql = &self.sql.list_threads[order_index(page.order)][usize::from(cursor.is_some())];
        let mut query = query(sql).bind(user).bind(i64::from(page.limit) + 1);
        if let Some(seq) = cursor {
            query = query.bind(seq);
        }
        self.fetch_page(query, page.limit, thread_from_row, |t| &t.id)
            .await
    }

    async fn delete_thread(&self, user: &str, thread_id: &str) -> StoreResult<bool> {
        let _writer = self.sqlite_writer().await;
        // Items and feedback go with the thread (ON DELETE CASCADE).
        let done = query(&self.sql.delete_thread)
            .bind(thread_id)
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_items(
        &self,
        user: &str,
        thread_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ThreadItem>> {
        self.require_thread(user, thread_id).await?;
        let cursor = match &page.after {
            None => None,
            Some(after) => Some(
                sqlx::query_scalar::<_, i64>(AssertSqlSafe(self.sql.item_seq.as_str()))
                    .bind(after)
                    .bind(thread_id)
                    .bind(user)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| StoreError::InvalidCursor(format!("no item {after}")))?,
            ),
        };
        let sql = &self.sql.list_items[order_index(page.order)][usize::from(cursor.is_some())];
        let mut query = query(sql)
            .bind(thread_id)
            .bind(user)
            .bind(i64::from(page.limit) + 1);
        if let Some(seq) = cursor {
            query = query.bind(seq);
        }
        self.fetch_page(query, page.limit, parse_body::<ThreadItem>, |i| &i.id)
            .await
    }

    async fn load_history(
        &self,
        user: &str,
        thread_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<ThreadItem>> {
        let rows = query(&self.sql.history)
            .bind(thread_id)
            .bind(user)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut items = rows
            .iter()
            .map(parse_body::<ThreadItem>)
            .collect::<StoreResult<Vec<_>>>()?;
        items.reverse();
        Ok(items)
    }

    async fn append_to_open_thread(
        &self,
        user: &str,
        item: &ThreadItem,
        limit: u32,
    ) -> StoreResult<Appended> {
        self.insert_into_open_thread(user, item, limit).await
    }

    async fn add_item(&self, user: &str, item: &ThreadItem) -> StoreResult<()> {
        self.write_item(&self.sql.insert_item, user, item).await
    }

    async fn save_item(&self, user: &str, item: &ThreadItem) -> StoreResult<()> {
        self.write_item(&self.sql.upsert_item, user, item).await
    }

    async fn load_item(
        &self,
        user: &str,
        thread_id: &str,
        item_id: &str,
    ) -> StoreResult<ThreadItem> {
        let row = query(&self.sql.load_item)
            .bind(item_id)
            .bind(thread_id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("item {item_id}")))?;
        parse_body(&row)
    }

    async fn delete_items_after(
        &self,
        user: &str,
        thread_id: &str,
        item_id: &str,
    ) -> StoreResult<u64> {
        let _writer = self.sqlite_writer().await;
        let seq: i64 = sqlx::query_scalar(AssertSqlSafe(self.sql.item_seq.as_str()))
            .bind(item_id)
            .bind(thread_id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("item {item_id}")))?;
        let done = query(&self.sql.delete_after)
            .bind(thread_id)
            .bind(user)
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn add_feedback(
        &self,
        user: &str,
        thread_id: &str,
        item_ids: &[String],
        kind: FeedbackKind,
    ) -> StoreResult<()> {
        let _writer = self.sqlite_writer().await;
        self.require_thread(user, thread_id).await?;
        let mut tx = self
            .pool
            .begin_with(AssertSqlSafe(self.dialect.begin_read_write()))
            .await?;
        for item_id in item_ids {
            let found: i64 = sqlx::query_scalar(AssertSqlSafe(self.sql.count_items.as_str()))
                .bind(thread_id)
                .bind(user)
                .bind(item_id)
                .fetch_one(&mut *tx)
                .await?;
            if found == 0 {
                return Err(StoreError::NotFound(format!("item {item_id}")));
            }
            query(&self.sql.insert_feedback)
                .bind(thread_id)
                .bind(item_id)
                .bind(user)
                .bind(kind.as_str())
                .bind(Timestamp::now().to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn lock_thread(&self, thread_id: &str) -> StoreResult<RunLock> {
        self.lock_thread_within(thread_id, self.lock_timeout).await
    }

    async fn lock_thread_within(&self, thread_id: &str, wait: Duration) -> StoreResult<RunLock> {
        let started = tokio::time::Instant::now();
        let local = self.local_locks.acquire(thread_id, wait).await?;
        let remote = match &self.lock_session {
            Some(cell) => {
                let session = cell
                    .session
                    .get_or_try_init(|| LockSession::start(&cell.url))
                    .await?;
                let left = wait.saturating_sub(started.elapsed());
                Some(session.acquire(thread_id, left).await?)
            }
            None => None,
        };
        Ok(RunLock::new(local, remote))
    }
}

impl SqlStore {
    async fn write_item(&self, sql: &str, user: &str, item: &ThreadItem) -> StoreResult<()> {
        let _writer = self.sqlite_writer().await;
        let done = bind_item(query(sql), user, item)?
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("thread {}", item.thread_id)));
        }
        Ok(())
    }
}
