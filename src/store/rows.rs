//! Rows and the protocol's types: what a thread or an item is stored as
//! (its JSON body and the columns queries need), how a statement's
//! parameters are bound from one, and how a row is read back.

use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::any::{AnyArguments, AnyRow};

use super::{StoreError, StoreResult};
use crate::protocol::{ThreadItem, ThreadMetadata, scrub};

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, AnyArguments>;

/// Binds `$1`..`$5` of a thread insert: id, user, created_at, title, body.
pub(super) fn bind_thread<'q>(
    query: AnyQuery<'q>,
    user: &str,
    thread: &ThreadMetadata,
) -> AnyQuery<'q> {
    query
        .bind(thread.id.clone())
        .bind(user.to_owned())
        .bind(thread.created_at.to_string())
        .bind(thread.title.clone())
        .bind(thread_body(thread))
}

/// Binds `$1`..`$7` of an item insert: id, thread, user, type, hidden,
/// created_at, body.
pub(super) fn bind_item<'q>(
    query: AnyQuery<'q>,
    user: &str,
    item: &ThreadItem,
) -> StoreResult<AnyQuery<'q>> {
    Ok(query
        .bind(item.id.clone())
        .bind(item.thread_id.clone())
        .bind(user.to_owned())
        .bind(item.type_name())
        .bind(item.is_hidden())
        .bind(item.created_at.to_string())
        .bind(item_body(item)?))
}

pub(super) fn parse_body<T: DeserializeOwned>(row: &AnyRow) -> StoreResult<T> {
    let id: String = row.try_get("id")?;
    let body: String = row.try_get("body")?;
    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
        id,
        message: e.to_string(),
    })
}

pub(super) fn thread_from_row(row: &AnyRow) -> StoreResult<ThreadMetadata> {
    let mut thread: ThreadMetadata = parse_body(row)?;
    thread.title = row.try_get("title")?;
    Ok(thread)
}

/// The stored body of a thread: everything but the title, which has a column
/// of its own so that it can be set conditionally.
pub(super) fn thread_body(thread: &ThreadMetadata) -> String {
    let mut body = thread.clone();
    body.title = None;
    let mut value = serde_json::to_value(&body).unwrap_or_default();
    scrub::scrub_value(&mut value);
    value.to_string()
}

pub(super) fn item_body(item: &ThreadItem) -> StoreResult<String> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt {
        id: item.id.clone(),
        message: e.to_string(),
    };
    let body = serde_json::to_string(item).map_err(corrupt)?;
    // Callers scrub U+0000 where text enters; this catches the rest, so a
    // write never fails on Postgres for it (see protocol::scrub).
    if !body.contains("\\u0000") {
        return Ok(body);
    }
    let mut value: serde_json::Value = serde_json::from_str(&body).map_err(corrupt)?;
    scrub::scrub_value(&mut value);
    serde_json::to_string(&value).map_err(corrupt)
}

/// The bytes a listed row stands for: its stored JSON and its title.
pub(super) fn row_bytes(row: &AnyRow) -> StoreResult<usize> {
    let body: String = row.try_get("body")?;
    let title = match row.try_get::<Option<String>, _>("title") {
        Ok(title) => title.map_or(0, |t| t.len()),
        // Item rows have no title column.
        Err(sqlx::Error::ColumnNotFound(_)) => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(body.len() + title)
}
