//! Attachment records and, unless a directory holds them, their bytes:
//! [`AttachmentRecords`] and its implementation on [`SqlStore`], with its SQL
//! texts (one table, the same statements on both databases but for the JSON
//! parameter).
//!
//! Like every store call these are scoped by user, except [`AttachmentRecords::find`],
//! which serves the signed URLs: their signature, checked by the caller
//! against the owner it returns, is the credential.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Connection, Row};

use super::dialect::Dialect;
use super::queries::query;
use super::{SqlStore, StoreError, StoreResult};
use crate::protocol::Attachment;

/// An attachment as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttachment {
    /// The record, `thread_id` set once a message used it.
    pub attachment: Attachment,
    /// The user who created it.
    pub owner: String,
    /// The size declared at `attachments.create`, which the upload must match.
    pub size: u64,
    /// Whether its bytes arrived.
    pub uploaded: bool,
    /// When it was created, in seconds since the Unix epoch.
    pub created_unix: i64,
}

/// Attachment records, scoped by user.
#[async_trait]
pub trait AttachmentRecords: Send + Sync + 'static {
    /// Inserts a new record, bytes not uploaded yet.
    async fn insert_attachment(&self, record: &StoredAttachment) -> StoreResult<()>;

    /// One of `user`'s attachments.
    async fn load_attachment(&self, user: &str, id: &str) -> StoreResult<StoredAttachment>;

    /// Any user's attachment, for a signed URL (whose signature names the
    /// owner, which the caller checks).
    async fn find_attachment(&self, id: &str) -> StoreResult<StoredAttachment>;

    /// Marks the attachment uploaded, keeping `bytes` with it (`None` when a
    /// directory holds them). False when it was uploaded already.
    async fn set_uploaded(&self, user: &str, id: &str, bytes: Option<&[u8]>) -> StoreResult<bool>;

    /// The stored bytes (`None` when a directory holds them).
    async fn attachment_bytes(&self, user: &str, id: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Up to `len` of the stored bytes from byte `offset`, one statement per
    /// call, so that a preview holds one chunk at a time whatever the size
    /// (`None` when the record is gone or a directory holds the bytes).
    async fn attachment_chunk(
        &self,
        user: &str,
        id: &str,
        offset: u64,
        len: u32,
    ) -> StoreResult<Option<Vec<u8>>>;

    /// The length of the chunks [`AttachmentRecords::attachment_chunk`]
    /// reads best: small where the database reads only the slice asked for,
    /// larger where each read costs the whole value.
    fn chunk_len(&self) -> u32;

    /// Gives the attachment to `thread_id` unless another thread has it;
    /// true when it now belongs to `thread_id`.
    async fn claim_attachment(&self, user: &str, id: &str, thread_id: &str) -> StoreResult<bool>;

    /// Deletes the record and its bytes; false when there was none.
    async fn delete_attachment(&self, user: &str, id: &str) -> StoreResult<bool>;

    /// Ids of a thread's attachments (deleted with the thread).
    async fn thread_attachments(&self, user: &str, thread_id: &str) -> StoreResult<Vec<String>>;

    /// Deletes up to `limit` attachments no message used, created before
    /// `before_unix`; returns their ids.
    async fn sweep_unused(&self, before_unix: i64, limit: u32) -> StoreResult<Vec<String>>;
}

/// The columns of a record; `uploaded` as a number, which sqlx's `Any`
/// driver decodes on both databases (it cannot decode SQLite's booleans).
const COLUMNS: &str = "id, user_id, thread_id, created_unix, size, \
     CAST(CASE WHEN uploaded THEN 1 ELSE 0 END AS BIGINT) AS uploaded";

fn record_from_row(row: &AnyRow, body: &str) -> StoreResult<StoredAttachment> {
    let id: String = row.try_get("id")?;
    let mut attachment: Attachment =
        serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
            id: id.clone(),
            message: e.to_string(),
        })?;
    attachment.thread_id = row.try_get("thread_id")?;
    let size: i64 = row.try_get("size")?;
    Ok(StoredAttachment {
        attachment,
        owner: row.try_get("user_id")?,
        size: u64::try_from(size).unwrap_or_default(),
        uploaded: row.try_get::<i64, _>("uploaded")? != 0,
        created_unix: row.try_get("created_unix")?,
    })
}

impl SqlStore {
    async fn one_attachment(&self, sql: &str, binds: &[&str]) -> StoreResult<StoredAttachment> {
        let body = self.dialect.body_text();
        let text = format!("SELECT {COLUMNS}, {body} AS body FROM attachments WHERE {sql}");
        let mut statement = query(&text);
        for bind in binds {
            statement = statement.bind(bind.to_string());
        }
        let row = statement.fetch_optional(&self.pool).await?;
        match row {
            Some(row) => {
                let body: String = row.try_get("body")?;
                record_from_row(&row, &body)
            }
            None => Err(StoreError::NotFound(format!(
                "attachment {}",
                binds.first().copied().unwrap_or_default()
            ))),
        }
    }
}

#[async_trait]
impl AttachmentRecords for SqlStore {
    async fn insert_attachment(&self, record: &StoredAttachment) -> StoreResult<()> {
        let body = serde_json::to_string(&record.attachment).map_err(|e| StoreError::Corrupt {
            id: record.attachment.id.clone(),
            message: e.to_string(),
        })?;
        let text = format!(
            "INSERT INTO attachments (id, user_id, thread_id, created_unix, size, uploaded, body) \
             VALUES ($1, $2, NULL, $3, $4, FALSE, {})",
            self.dialect.json_param(5)
        );
        let _writer = self.sqlite_writer().await;
        query(&text)
            .bind(record.attachment.id.clone())
            .bind(record.owner.clone())
            .bind(record.created_unix)
            .bind(i64::try_from(record.size).unwrap_or(i64::MAX))
            .bind(body)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn load_attachment(&self, user: &str, id: &str) -> StoreResult<StoredAttachment> {
        self.one_attachment("id = $1 AND user_id = $2", &[id, user])
            .await
    }

    async fn find_attachment(&self, id: &str) -> StoreResult<StoredAttachment> {
        self.one_attachment("id = $1", &[id]).await
    }

    async fn set_uploaded(&self, user: &str, id: &str, bytes: Option<&[u8]>) -> StoreResult<bool> {
        let _writer = self.sqlite_writer().await;
        let mut conn = self.pool.acquire().await?;
        let done = query(
            "UPDATE attachments SET uploaded = TRUE, bytes = $3 \
             WHERE id = $1 AND user_id = $2 AND NOT uploaded",
        )
        .bind(id.to_owned())
        .bind(user.to_owned())
        .bind(bytes.map(<[u8]>::to_vec))
        .execute(&mut *conn)
        .await?;
        // The connection's write buffer grew to the bytes; it would keep
        // that size as long as the connection lives.
        conn.shrink_buffers();
        Ok(done.rows_affected() > 0)
    }

    async fn attachment_bytes(&self, user: &str, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut conn = self.pool.acquire().await?;
        let row = query("SELECT bytes FROM attachments WHERE id = $1 AND user_id = $2")
            .bind(id.to_owned())
            .bind(user.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
        // Its read buffer grew to the bytes: give that back.
        conn.shrink_buffers();
        match row {
            Some(row) => Ok(row.try_get::<Option<Vec<u8>>, _>("bytes")?),
            None => Err(StoreError::NotFound(format!("attachment {id}"))),
        }
    }

    async fn attachment_chunk(
        &self,
        user: &str,
        id: &str,
        offset: u64,
        len: u32,
    ) -> StoreResult<Option<Vec<u8>>> {
        // Both databases count from 1. Postgres reads only the TOAST chunks
        // of the slice (the bytes of images do not compress, so they are
        // stored uncompressed); SQLite reads the blob from its pages.
        let text = format!(
            "SELECT {} AS chunk FROM attachments WHERE id = $1 AND user_id = $2",
            self.dialect.bytes_slice("bytes", 3, 4)
        );
        let row = query(&text)
            .bind(id.to_owned())
            .bind(user.to_owned())
            .bind(i64::try_from(offset).unwrap_or(i64::MAX).saturating_add(1))
            .bind(i64::from(len))
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(row.try_get::<Option<Vec<u8>>, _>("chunk")?),
            None => Ok(None),
        }
    }

    fn chunk_len(&self) -> u32 {
        match self.dialect {
            // A slice reads only the TOAST chunks it covers.
            Dialect::Postgres => 64 * 1024,
            // `substr` on a blob reads the whole blob from its pages first
            // (about 5 ms for 10 MiB): 64 KiB slices made a 10 MiB preview
            // cost 160 whole reads, 1 MiB ones cost 10.
            Dialect::Sqlite => 1024 * 1024,
        }
    }

    async fn claim_attachment(&self, user: &str, id: &str, thread_id: &str) -> StoreResult<bool> {
        let _writer = self.sqlite_writer().await;
        let done = query(
            "UPDATE attachments SET thread_id = $3 \
             WHERE id = $1 AND user_id = $2 AND (thread_id IS NULL OR thread_id = $3) \
             AND EXISTS (SELECT 1 FROM threads WHERE id = $3 AND user_id = $2)",
        )
        .bind(id.to_owned())
        .bind(user.to_owned())
        .bind(thread_id.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_attachment(&self, user: &str, id: &str) -> StoreResult<bool> {
        let _writer = self.sqlite_writer().await;
        let done = query("DELETE FROM attachments WHERE id = $1 AND user_id = $2")
            .bind(id.to_owned())
            .bind(user.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn thread_attachments(&self, user: &str, thread_id: &str) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(
            "SELECT id FROM attachments WHERE thread_id = $1 AND user_id = $2",
        ))
        .bind(thread_id.to_owned())
        .bind(user.to_owned())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn sweep_unused(&self, before_unix: i64, limit: u32) -> StoreResult<Vec<String>> {
        let _writer = self.sqlite_writer().await;
        // `RETURNING` runs on both (SQLite since 3.35).
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(
            "DELETE FROM attachments WHERE id IN (SELECT id FROM attachments \
             WHERE thread_id IS NULL AND created_unix < $1 ORDER BY created_unix LIMIT $2) \
             RETURNING id",
        ))
        .bind(before_unix)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }
}
