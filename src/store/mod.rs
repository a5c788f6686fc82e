//! Persistence of threads, items and feedback.
//!
//! [`Store`] is what the rest of the daemon sees; [`SqlStore`] implements it on
//! PostgreSQL or SQLite. Every method takes the caller's user id and scopes by
//! it: another user's thread is indistinguishable from a missing one.
//!
//! Items are stored whole (their JSON) plus the columns queries need, ordered by
//! a store-wide monotonic sequence rather than by timestamps. Listings use
//! keyset pagination on that sequence.
//!
//! Files: `sql.rs` (the implementation), `queries.rs` (its SQL texts),
//! `rows.rs` (what threads and items are stored as, and read back from),
//! `combined.rs` (writes done together with another write or a
//! read),
//! `attachments.rs` (attachment records and their bytes),
//! `dialect.rs` (what differs between the databases), `locks.rs` (one run per
//! thread), `advisory.rs` (the replica's lock session on Postgres, which
//! holds every run's lock across replicas on one connection), `schema.rs`
//! (migrations and their status). Only this module knows SQL, the migrations and sqlx.

mod advisory;
mod attachments;
mod combined;
mod dialect;
mod locks;
mod queries;
mod rows;
pub mod schema;
pub mod sql;

use async_trait::async_trait;
use thiserror::Error;

use crate::protocol::{FeedbackKind, Order, Page, ThreadItem, ThreadMetadata};

pub use attachments::{AttachmentRecords, StoredAttachment};
pub use locks::RunLock;
pub use schema::SchemaStatus;
pub use sql::{ConnectionCounts, SqlStore};

/// What can go wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The thread or item does not exist, or belongs to someone else.
    #[error("{0} not found")]
    NotFound(String),
    /// A pagination cursor that names no record of this listing.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// Another run on this thread did not finish within the lock timeout.
    #[error("thread {0} is busy with another run")]
    Busy(String),
    /// Stored JSON that no longer parses.
    #[error("corrupt record {id}: {message}")]
    Corrupt { id: String, message: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database could not be reached or does not answer.
    #[error("{0}")]
    Unavailable(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which part of a listing to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Records per page, already validated (1..=max).
    pub limit: u32,
    pub order: Order,
    /// Id of the last record of the previous page.
    pub after: Option<String>,
}

/// What [`Store::append_to_open_thread`] did.
#[derive(Debug)]
pub enum Appended {
    /// The message is stored; `history` ends with it.
    Added {
        thread: ThreadMetadata,
        history: Vec<ThreadItem>,
    },
    /// The thread is locked or closed: nothing was stored.
    NotOpen(ThreadMetadata),
}

/// [`Store::append_to_open_thread`] in three calls: the thread, the item,
/// the history. Callers hold the thread's run lock, so nothing changes the
/// thread in between.
async fn append_step_by_step<S: Store + ?Sized>(
    store: &S,
    user: &str,
    item: &ThreadItem,
    limit: u32,
) -> StoreResult<Appended> {
    let thread = store.load_thread(user, &item.thread_id).await?;
    if !thread.takes_messages() {
        return Ok(Appended::NotOpen(thread));
    }
    store.add_item(user, item).await?;
    let history = store.load_history(user, &item.thread_id, limit).await?;
    Ok(Appended::Added { thread, history })
}

/// The persistence interface of the daemon.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Inserts a new thread owned by `user`.
    async fn create_thread(&self, user: &str, thread: &ThreadMetadata) -> StoreResult<()>;

    /// Inserts a new thread owned by `user` with its first item, both or
    /// neither. The default writes them one after the other and removes the
    /// thread if the item fails; [`SqlStore`] does it in one statement on
    /// Postgres and one transaction on SQLite.
    async fn create_thread_with_item(
        &self,
        user: &str,
        thread: &ThreadMetadata,
        item: &ThreadItem,
    ) -> StoreResult<()> {
        self.create_thread(user, thread).await?;
        if let Err(e) = self.add_item(user, item).await {
            if let Err(cleanup) = self.delete_thread(user, &thread.id).await {
                tracing::warn!(error = %cleanup, thread_id = %thread.id, "could not remove a thread whose first message failed");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Loads a thread's metadata.
    async fn load_thread(&self, user: &str, thread_id: &str) -> StoreResult<ThreadMetadata>;

    /// Saves the metadata fields (title, status, metadata, image domains).
    async fn save_thread(&self, user: &str, thread: &ThreadMetadata) -> StoreResult<()>;

    /// Sets the title only if the thread has none; true when it was set.
    async fn set_title_if_unset(
        &self,
        user: &str,
        thread_id: &str,
        title: &str,
    ) -> StoreResult<bool>;

    /// The user's threads, by creation order. Like every listing, a page ends
    /// early (with `has_more`) rather than pass the store's byte cap, and
    /// always holds at least one record.
    async fn list_threads(
        &self,
        user: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ThreadMetadata>>;

    /// Deletes a thread with its items and feedback; false when it did not exist.
    async fn delete_thread(&self, user: &str, thread_id: &str) -> StoreResult<bool>;

    /// Visible items of a thread (hidden ones are skipped before the limit),
    /// capped in bytes like [`Store::list_threads`].
    async fn list_items(
        &self,
        user: &str,
        thread_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ThreadItem>>;

    /// The newest `limit` items, hidden ones included, oldest first: the
    /// material the model's history is built from.
    async fn load_history(
        &self,
        user: &str,
        thread_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<ThreadItem>>;

    /// Appends an item at the end of its thread.
    async fn add_item(&self, user: &str, item: &ThreadItem) -> StoreResult<()>;

    /// Appends a message to a thread that takes new messages (an active
    /// one) and returns the thread with the history a run reads after it:
    /// the thread's newest `limit` items, the new one included, oldest
    /// first. A locked or closed thread stores nothing and is returned as
    /// [`Appended::NotOpen`]. [`SqlStore`] does it all in one statement on
    /// Postgres.
    async fn append_to_open_thread(
        &self,
        user: &str,
        item: &ThreadItem,
        limit: u32,
    ) -> StoreResult<Appended> {
        append_step_by_step(self, user, item, limit).await
    }

    /// Replaces the item with the same id in place, or appends it if new.
    async fn save_item(&self, user: &str, item: &ThreadItem) -> StoreResult<()>;

    /// Loads one item.
    async fn load_item(
        &self,
        user: &str,
        thread_id: &str,
        item_id: &str,
    ) -> StoreResult<ThreadItem>;

    /// Deletes every item that comes after `item_id`; returns how many.
    async fn delete_items_after(
        &self,
        user: &str,
        thread_id: &str,
        item_id: &str,
    ) -> StoreResult<u64>;

    /// Records a user's feedback on items of their thread. Unknown item ids
    /// are refused with `NotFound`, and nothing is stored then.
    async fn add_feedback(
        &self,
        user: &str,
        thread_id: &str,
        item_ids: &[String],
        kind: FeedbackKind,
    ) -> StoreResult<()>;

    /// Waits until no other run holds the thread (in this process or, on
    /// Postgres, in any replica), then holds it until the guard is dropped.
    async fn lock_thread(&self, thread_id: &str) -> StoreResult<RunLock>;

    /// [`Store::lock_thread`], waiting at most `wait` (not the configured
    /// lock timeout) before [`StoreError::Busy`].
    async fn lock_thread_within(
        &self,
        thread_id: &str,
        wait: std::time::Duration,
    ) -> StoreResult<RunLock>;
}
