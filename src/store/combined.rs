//! Writes combined with another write or a read, on one round
//! trip where the database allows: a new thread with its first message, and
//! a message with the thread it goes to (whose status decides whether it is
//! taken) and the history its run reads. Postgres does each in one
//! statement (a data-modifying `WITH`); SQLite, which has none, in a
//! transaction or two statements, which cost no round trip there.

use sqlx::Row;

use super::queries::query;
use super::rows::{bind_item, bind_thread, item_body, parse_body, thread_from_row};
use super::{Appended, SqlStore, StoreError, StoreResult};
use crate::protocol::{ThreadItem, ThreadMetadata};

impl SqlStore {
    pub(super) async fn insert_thread_with_item(
        &self,
        user: &str,
        thread: &ThreadMetadata,
        item: &ThreadItem,
    ) -> StoreResult<()> {
        let _writer = self.sqlite_writer().await;
        if let Some(sql) = &self.sql.insert_thread_with_item {
            let both = bind_thread(query(sql), user, thread)
                .bind(&item.id)
                .bind(item.type_name())
                .bind(item.is_hidden())
                .bind(item.created_at.to_string())
                .bind(item_body(item)?);
            both.execute(&self.pool).await?;
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        bind_thread(query(&self.sql.insert_thread), user, thread)
            .execute(&mut *tx)
            .await?;
        bind_item(query(&self.sql.insert_item), user, item)?
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn insert_into_open_thread(
        &self,
        user: &str,
        item: &ThreadItem,
        limit: u32,
    ) -> StoreResult<Appended> {
        let Some(sql) = &self.sql.insert_into_open_thread else {
            return super::append_step_by_step(self, user, item, limit).await;
        };
        let rows = bind_item(query(sql), user, item)?
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut thread = None;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<String, _>("kind")? == "thread" {
                thread = Some(thread_from_row(row)?);
            } else {
                items.push((
                    row.try_get::<i64, _>("seq")?,
                    parse_body::<ThreadItem>(row)?,
                ));
            }
        }
        let Some(thread) = thread else {
            return Err(StoreError::NotFound(format!("thread {}", item.thread_id)));
        };
        // The statement's read does not see its own insert: the new row comes
        // from RETURNING, the others are the thread before it.
        if !items.iter().any(|(_, stored)| stored.id == item.id) {
            return Ok(Appended::NotOpen(thread));
        }
        items.sort_unstable_by_key(|(seq, _)| *seq);
        let extra = items.len().saturating_sub(limit as usize);
        let history = items
            .into_iter()
            .skip(extra)
            .map(|(_, item)| item)
            .collect();
        Ok(Appended::Added { thread, history })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ThreadStatus;
    use crate::protocol::{
        IdKind, InferenceOptions, ItemKind, Timestamp, UserContent, UserMessage, new_id,
    };
    use crate::store::Store;
    use crate::store::sql::SqlStoreOptions;

    const USER: &str = "u";

    fn message(thread_id: &str, text: &str) -> ThreadItem {
        ThreadItem::new(
            new_id(IdKind::Message),
            thread_id,
            ItemKind::UserMessage(UserMessage {
                content: vec![UserContent::InputText { text: text.into() }],
                attachments: Vec::new(),
                quoted_text: None,
                inference_options: InferenceOptions::default(),
            }),
        )
    }

    fn ids(items: &[ThreadItem]) -> Vec<&str> {
        items.iter().map(|i| i.id.as_str()).collect()
    }

    /// The combined writes store what the plain ones would and read what
    /// `load_history` reads, on both databases.
    async fn combined_writes_agree_with_plain_ones(url: &str) {
        let store = SqlStore::connect(url, &SqlStoreOptions::default())
            .await
            .expect("store connects");
        store.migrate().await.expect("migrates");
        let thread = ThreadMetadata::new(new_id(IdKind::Thread), Timestamp::now());
        let first = message(&thread.id, "first");
        store
            .create_thread_with_item(USER, &thread, &first)
            .await
            .expect("thread and message");
        assert_eq!(
            store
                .load_thread(USER, &thread.id)
                .await
                .expect("thread")
                .id,
            thread.id
        );
        let history = store
            .load_history(USER, &thread.id, 10)
            .await
            .expect("history");
        assert_eq!(ids(&history), [first.id.as_str()]);

        for n in 0..5 {
            let item = message(&thread.id, &format!("m{n}"));
            let Appended::Added {
                thread: read,
                history: returned,
            } = store
                .append_to_open_thread(USER, &item, 3)
                .await
                .expect("added")
            else {
                panic!("an active thread refused a message");
            };
            assert_eq!(read, thread);
            let loaded = store
                .load_history(USER, &thread.id, 3)
                .await
                .expect("history");
            assert_eq!(ids(&returned), ids(&loaded), "after m{n}");
            assert_eq!(
                returned.last().map(|i| i.id.as_str()),
                Some(item.id.as_str())
            );
            assert_eq!(returned.len(), (n + 2).min(3));
        }

        // Another user's thread is a missing one, and nothing is written.
        let foreign = message(&thread.id, "intruder");
        let refused = store.append_to_open_thread("other", &foreign, 3).await;
        assert!(
            matches!(refused, Err(StoreError::NotFound(_))),
            "{refused:?}"
        );
        // A locked thread is returned as it is, and nothing is written.
        let mut locked = thread.clone();
        locked.status = ThreadStatus::Locked {
            reason: Some("archived".into()),
        };
        store.save_thread(USER, &locked).await.expect("locks");
        let late = message(&thread.id, "too late");
        let refused = store.append_to_open_thread(USER, &late, 3).await;
        assert!(
            matches!(&refused, Ok(Appended::NotOpen(t)) if *t == locked),
            "{refused:?}"
        );
        let all = store
            .load_history(USER, &thread.id, 100)
            .await
            .expect("history");
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|i| i.id != late.id && i.id != foreign.id));
        store.close().await;
    }

    #[tokio::test]
    async fn combined_writes_agree_with_plain_ones_on_sqlite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        combined_writes_agree_with_plain_ones(&url).await;
    }

    #[tokio::test]
    async fn combined_writes_agree_with_plain_ones_on_postgres() {
        let url = chatkitd_testkit::shared_server()
            .await
            .fresh_database()
            .await;
        combined_writes_agree_with_plain_ones(&url).await;
    }
}
