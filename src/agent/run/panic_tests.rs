//! Tests of a run that panics: the agent catches the panic, ends the stream
//! with an `error` event and keeps what the user already saw. A store that
//! panics stands in for the defect; nothing here is reachable outside tests.

use std::sync::Arc;

use async_trait::async_trait;
use pretty_assertions::assert_eq;
use tokio::sync::mpsc;

use super::*;
use crate::agent::{AgentSpec, Interactions, PANIC_MESSAGE, Roster, RunInput};
use crate::attachments::Attachments;
use crate::auth::Identity;
use crate::config::AgentConfig;
use crate::config::AttachmentsConfig;
use crate::config::LlmConfig;
use crate::llm::LlmClient;
use crate::protocol::ThreadMetadata;
use crate::protocol::ThreadStreamEvent;
use crate::protocol::{
    FeedbackKind, IdKind, ItemKind, ItemUpdate, Page, StreamOptions, ThreadItem, Timestamp, new_id,
};
use crate::store::Store;
use crate::store::sql::SqlStoreOptions;
use crate::store::{PageRequest, RunLock, SqlStore, StoreResult};

const USER: &str = "u";

/// A SQLite store with one thread.
async fn store_with_thread(dir: &std::path::Path) -> (SqlStore, ThreadMetadata) {
    let url = format!("sqlite://{}", dir.join("t.db").display());
    let store = SqlStore::connect(&url, &SqlStoreOptions::default())
        .await
        .expect("store connects");
    store.migrate().await.expect("migrates");
    let thread = ThreadMetadata::new(new_id(IdKind::Thread), Timestamp::now());
    store.create_thread(USER, &thread).await.expect("thread");
    (store, thread)
}

fn agent(store: Arc<dyn Store>, records: SqlStore) -> Agent {
    let config = AgentConfig {
        title_generation: false,
        ..AgentConfig::default()
    };
    let llm = LlmClient::new(&LlmConfig::default()).expect("a client");
    let spec = AgentSpec {
        interactions: Interactions::default(),
        llm,
        roster: Roster::single("You help.".to_owned(), &config),
        guardrails: Default::default(),
        config,
        has_tool_servers: false,
    };
    Agent::new(
        store,
        None,
        Arc::new(Attachments::new(
            &AttachmentsConfig::default(),
            std::path::Path::new("."),
            "/api/chatkit",
            Arc::new(records),
        )),
        spec,
    )
}

fn input(thread: &ThreadMetadata) -> RunInput {
    RunInput {
        identity: Identity::user(USER),
        thread: thread.clone(),
        history: None,
        settle: None,
        questions: Default::default(),
    }
}

fn drain(events: &mut mpsc::Receiver<ThreadStreamEvent>) -> Vec<ThreadStreamEvent> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        out.push(event);
    }
    out
}

#[tokio::test]
async fn a_panic_inside_a_run_ends_it_with_an_error_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, thread) = store_with_thread(dir.path()).await;
    let agent = agent(Arc::new(PanicsOnHistory(store.clone())), store);
    let (sink, mut events) = EventSink::channel(16, std::time::Duration::from_secs(30));
    let outcome = agent
        .run(input(&thread), &sink, &CancellationToken::new())
        .await;
    assert_eq!(outcome, RunOutcome::Failed);
    assert_eq!(
        drain(&mut events),
        vec![
            ThreadStreamEvent::StreamOptions {
                stream_options: StreamOptions { allow_cancel: true }
            },
            ThreadStreamEvent::custom_error(PANIC_MESSAGE, true),
        ]
    );
}

#[tokio::test]
async fn after_a_panic_the_streamed_text_is_stored_before_the_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, thread) = store_with_thread(dir.path()).await;
    let agent = agent(Arc::new(store.clone()), store.clone());
    let (sink, mut events) = EventSink::channel(16, std::time::Duration::from_secs(30));
    let cancel = CancellationToken::new();
    let mut run = Run::new(&agent, input(&thread), &sink, &cancel, Instant::now());
    assert!(run.push_text("Half an ans".to_owned()).await.is_ok());
    let streamed = drain(&mut events);
    assert_eq!(streamed.len(), 3, "added, part added, delta: {streamed:?}");

    run.fail_panicked("a defect").await;
    let stored = store
        .load_history(USER, &thread.id, 10)
        .await
        .expect("history");
    assert_eq!(stored.len(), 1, "{stored:?}");
    let ItemKind::AssistantMessage(message) = &stored[0].kind else {
        panic!("an assistant message: {stored:?}");
    };
    assert_eq!(message.content[0].text, "Half an ans");
    let after = drain(&mut events);
    assert!(
        matches!(
            &after[0],
            ThreadStreamEvent::ItemUpdated {
                update: ItemUpdate::ContentPartDone { .. },
                ..
            }
        ),
        "{after:?}"
    );
    assert_eq!(
        after[1],
        ThreadStreamEvent::ItemDone {
            item: stored[0].clone()
        }
    );
    assert_eq!(
        after[2],
        ThreadStreamEvent::custom_error(PANIC_MESSAGE, true)
    );
    assert_eq!(after.len(), 3);
}

/// A store whose `load_history` panics, the rest delegated.
struct PanicsOnHistory(SqlStore);

#[async_trait]
impl Store for PanicsOnHistory {
    async fn ping(&self) -> StoreResult<()> {
        self.0.ping().await
    }
    async fn create_thread(&self, user: &str, thread: &ThreadMetadata) -> StoreResult<()> {
        self.0.create_thread(user, thread).await
    }
    async fn load_thread(&self, user: &str, thread_id: &str) -> StoreResult<ThreadMetadata> {
        self.0.load_thread(user, thread_id).await
    }
    async fn save_thread(&self, user: &str, thread: &ThreadMetadata) -> StoreResult<()> {
        self.0.save_thread(user, thread).await
    }
    async fn set_title_if_unset(&self, user: &str, id: &str, title: &str) -> StoreResult<bool> {
        self.0.set_title_if_unset(user, id, title).await
    }
    async fn list_threads(
        &self,
        user: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ThreadMetadata>> {
        self.0.list_threads(user, page).await
    }
    async fn delete_thread(&self, user: &str, thread_id: &str) -> StoreResult<bool> {
        self.0.delete_thread(user, thread_id).await
    }
    async fn list_items(
        &self,
        user: &str,
        thread_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ThreadItem>> {
        self.0.list_items(user, thread_id, page).await
    }
    async fn load_history(&self, _: &str, _: &str, _: u32) -> StoreResult<Vec<ThreadItem>> {
        panic!("a defect in the store")
    }
    async fn add_item(&self, user: &str, item: &ThreadItem) -> StoreResult<()> {
        self.0.add_item(user, item).await
    }
    async fn save_item(&self, user: &str, item: &ThreadItem) -> StoreResult<()> {
        self.0.save_item(user, item).await
    }
    async fn load_item(&self, user: &str, thread_id: &str, id: &str) -> StoreResult<ThreadItem> {
        self.0.load_item(user, thread_id, id).await
    }
    async fn delete_items_after(&self, user: &str, thread_id: &str, id: &str) -> StoreResult<u64> {
        self.0.delete_items_after(user, thread_id, id).await
    }
    async fn add_feedback(
        &self,
        user: &str,
        thread_id: &str,
        ids: &[String],
        kind: FeedbackKind,
    ) -> StoreResult<()> {
        self.0.add_feedback(user, thread_id, ids, kind).await
    }
    async fn lock_thread(&self, thread_id: &str) -> StoreResult<RunLock> {
        self.0.lock_thread(thread_id).await
    }
    async fn lock_thread_within(
        &self,
        thread_id: &str,
        wait: std::time::Duration,
    ) -> StoreResult<RunLock> {
        self.0.lock_thread_within(thread_id, wait).await
    }
}
