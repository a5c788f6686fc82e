//! Dispatch: one function per ChatKit request type, onto the store and the agent.
//!
//! Everything that can fail before the first event (unknown thread, invalid
//! retry target, busy thread) fails here with a [`ChatKitError`], so the HTTP
//! layer can answer with a precise status instead of a cut stream. A streaming
//! request then hands its run to a spawned task: the run goes on, and persists
//! what it produced, even if the client disconnects.

use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::agent::{Agent, EventSink, RunInput, RunOutcome};
use crate::auth::Identity;
use crate::limits::{RunSlot, RunSlots};
use crate::protocol::{
    ActionParams, ClientToolCallStatus, FeedbackParams, IdKind, ItemKind, ItemsListParams,
    ListParams, Page, Request, RetryParams, Thread, ThreadItem, ThreadMetadata, ThreadStatus,
    ThreadStreamEvent, ThreadUpdateParams, Timestamp, UserMessage, UserMessageInput, new_id, text,
};
use crate::store::{PageRequest, RunLock, Store, StoreError};

/// Page size when a request gives none (or 0), as the reference does.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest page served; larger requests are capped.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Events buffered between a run and a slow client.
const STREAM_BUFFER: usize = 64;

/// A request refused before any event was streamed.
#[derive(Debug, Error)]
pub enum ChatKitError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The thread is locked or closed, or busy beyond the lock timeout.
    #[error("{0}")]
    Conflict(String),
    /// The user already has as many answers streaming as allowed.
    #[error("{0}")]
    TooManyRuns(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ChatKitError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ChatKitError::NotFound(what),
            StoreError::InvalidCursor(why) => {
                ChatKitError::BadRequest(format!("invalid `after`: {why}"))
            }
            StoreError::Busy(thread) => ChatKitError::Conflict(format!(
                "thread {thread} is still busy with another response; try again shortly"
            )),
            other => ChatKitError::Internal(other.to_string()),
        }
    }
}

/// The answer to a request.
#[derive(Debug)]
pub enum Response {
    /// One serialized JSON document (field order as declared, as the reference writes it).
    Json(String),
    Stream(EventStream),
}

/// The events of a streaming response. Dropping it (the client went away)
/// cancels the run, which then persists what it has.
#[derive(Debug)]
pub struct EventStream {
    pub events: mpsc::Receiver<ThreadStreamEvent>,
    _cancel_on_drop: DropGuard,
}

/// The ChatKit server: the store, the agent, and the runs in flight.
pub struct ChatKit {
    store: Arc<dyn Store>,
    agent: Arc<Agent>,
    runs: TaskTracker,
    /// Answers streaming at once, per user.
    slots: RunSlots,
    /// Cancelled at shutdown once the grace period is over; every run's token
    /// is a child of it.
    shutdown: CancellationToken,
}

impl std::fmt::Debug for ChatKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatKit").finish_non_exhaustive()
    }
}

impl ChatKit {
    /// A server answering from `store` with `agent`, allowing each user
    /// `max_runs_per_user` answers at once (0: no limit).
    pub fn new(store: Arc<dyn Store>, agent: Arc<Agent>, max_runs_per_user: u32) -> ChatKit {
        ChatKit {
            store,
            agent,
            runs: TaskTracker::new(),
            slots: RunSlots::new(max_runs_per_user),
            shutdown: CancellationToken::new(),
        }
    }

    /// The store, for readiness checks.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Refuses new runs, waits up to `grace` for runs in flight, then cancels
    /// the rest (they persist their partial answers) and waits for them.
    pub async fn drain(&self, grace: std::time::Duration) {
        self.runs.close();
        if tokio::time::timeout(grace, self.runs.wait()).await.is_err() {
            tracing::warn!(
                runs = self.runs.len(),
                "cancelling runs still going after the shutdown grace"
            );
            self.shutdown.cancel();
            self.runs.wait().await;
        }
    }

    /// Answers one request.
    pub async fn handle(&self, ctx: &Identity, request: Request) -> Result<Response, ChatKitError> {
        let user = ctx.user_id.as_str();
        match request {
            Request::ThreadsCreate(params) => self.create(ctx, params.input).await,
            Request::ThreadsAddUserMessage(params) => {
                let thread_id = params.thread_id.ok_or_else(|| {
                    ChatKitError::BadRequest(
                        "invalid params for threads.add_user_message: missing field `thread_id`"
                            .into(),
                    )
                })?;
                self.add_user_message(ctx, &thread_id, params.input).await
            }
            Request::ThreadsRetryAfterItem(params) => self.retry(ctx, params).await,
            Request::ThreadsAddClientToolOutput(params) => {
                self.client_tool_output(ctx, &params.thread_id, params.result)
                    .await
            }
            Request::ThreadsAddStructuredInput(params) => {
                let thread = self.store.load_thread(user, &params.thread_id).await?;
                let item = self
                    .store
                    .load_item(user, &thread.id, &params.item_id)
                    .await?;
                match item.kind {
                    ItemKind::StructuredInput { ref status, .. } if status == "pending" => {
                        Err(ChatKitError::NotImplemented(
                            "structured input is not supported by this server yet".into(),
                        ))
                    }
                    _ => Err(ChatKitError::BadRequest(format!(
                        "item {} is not a pending structured input",
                        item.id
                    ))),
                }
            }
            Request::ThreadsCustomAction(params) | Request::ThreadsSyncCustomAction(params) => {
                self.custom_action(ctx, params).await
            }
            Request::ThreadsGetById(params) => {
                let thread = self.store.load_thread(user, &params.thread_id).await?;
                let page = PageRequest {
                    limit: DEFAULT_PAGE_SIZE,
                    order: crate::protocol::Order::Asc,
                    after: None,
                };
                let items = self.store.list_items(user, &thread.id, &page).await?;
                json(&Thread::from_metadata(&thread, items))
            }
            Request::ThreadsList(ListParams {
                limit,
                order,
                after,
            }) => {
                let page = PageRequest {
                    limit: page_size(limit)?,
                    order,
                    after,
                };
                let threads = self.store.list_threads(user, &page).await?;
                json(&threads.map(|t| Thread::from_metadata(&t, Page::default())))
            }
            Request::ThreadsUpdate(ThreadUpdateParams { thread_id, title }) => {
                if title.chars().count() > 1000 {
                    return Err(ChatKitError::BadRequest(
                        "a title is at most 1000 characters".into(),
                    ));
                }
                let mut thread = self.store.load_thread(user, &thread_id).await?;
                thread.title = Some(text::scrub(&title).into_owned());
                self.store.save_thread(user, &thread).await?;
                json(&Thread::from_metadata(&thread, Page::default()))
            }
            Request::ThreadsDelete(params) => {
                if !self.store.delete_thread(user, &params.thread_id).await? {
                    return Err(ChatKitError::NotFound(format!(
                        "thread {}",
                        params.thread_id
                    )));
                }
                Ok(Response::Json("{}".to_owned()))
            }
            Request::ItemsList(ItemsListParams {
                thread_id,
                limit,
                order,
                after,
            }) => {
                let page = PageRequest {
                    limit: page_size(limit)?,
                    order,
                    after,
                };
                json(&self.store.list_items(user, &thread_id, &page).await?)
            }
            Request::ItemsFeedback(FeedbackParams {
                thread_id,
                item_ids,
                kind,
            }) => {
                self.store
                    .add_feedback(user, &thread_id, &item_ids, kind)
                    .await?;
                Ok(Response::Json("{}".to_owned()))
            }
            Request::AttachmentsCreate(_) | Request::AttachmentsDelete(_) => Err(
                ChatKitError::NotImplemented("attachments are not enabled on this server".into()),
            ),
            Request::InputTranscribe(_) => Err(ChatKitError::NotImplemented(
                "voice transcription is not enabled on this server".into(),
            )),
        }
    }

    async fn create(
        &self,
        ctx: &Identity,
        input: UserMessageInput,
    ) -> Result<Response, ChatKitError> {
        check_input(&input)?;
        let slot = self.run_slot(ctx)?;
        let thread = ThreadMetadata::new(new_id(IdKind::Thread), Timestamp::now());
        self.store.create_thread(&ctx.user_id, &thread).await?;
        let lock = self.store.lock_thread(&thread.id).await?;
        let created = ThreadStreamEvent::ThreadCreated {
            thread: Thread::from_metadata(&thread, Page::default()),
        };
        let user_item = match self.store_user_message(ctx, &thread, input).await {
            Ok(event) => event,
            Err(e) => {
                // Leave no empty thread behind a request that failed.
                if let Err(cleanup) = self.store.delete_thread(&ctx.user_id, &thread.id).await {
                    tracing::warn!(error = %cleanup, thread_id = %thread.id, "could not remove a thread whose first message failed");
                }
                return Err(e);
            }
        };
        Ok(self.start_run(ctx, thread, (lock, slot), vec![created, user_item]))
    }

    async fn add_user_message(
        &self,
        ctx: &Identity,
        thread_id: &str,
        input: UserMessageInput,
    ) -> Result<Response, ChatKitError> {
        check_input(&input)?;
        let thread = self.open_thread(ctx, thread_id).await?;
        let slot = self.run_slot(ctx)?;
        let lock = self.store.lock_thread(&thread.id).await?;
        let user_item = self.store_user_message(ctx, &thread, input).await?;
        Ok(self.start_run(ctx, thread, (lock, slot), vec![user_item]))
    }

    async fn retry(&self, ctx: &Identity, params: RetryParams) -> Result<Response, ChatKitError> {
        let thread = self.open_thread(ctx, &params.thread_id).await?;
        let slot = self.run_slot(ctx)?;
        let lock = self.store.lock_thread(&thread.id).await?;
        let item = self
            .store
            .load_item(&ctx.user_id, &thread.id, &params.item_id)
            .await?;
        if !matches!(item.kind, ItemKind::UserMessage(_)) {
            return Err(ChatKitError::BadRequest(format!(
                "item {} is a {}, not a user message: only a user message can be answered again",
                item.id,
                item.type_name()
            )));
        }
        self.store
            .delete_items_after(&ctx.user_id, &thread.id, &item.id)
            .await?;
        Ok(self.start_run(ctx, thread, (lock, slot), Vec::new()))
    }

    /// Protocol 4.3: completes the pending client tool call that ends the
    /// thread and runs the agent again.
    async fn client_tool_output(
        &self,
        ctx: &Identity,
        thread_id: &str,
        result: Value,
    ) -> Result<Response, ChatKitError> {
        let thread = self.open_thread(ctx, thread_id).await?;
        let slot = self.run_slot(ctx)?;
        let lock = self.store.lock_thread(&thread.id).await?;
        let newest = PageRequest {
            limit: 1,
            order: crate::protocol::Order::Desc,
            after: None,
        };
        let last = self
            .store
            .list_items(&ctx.user_id, &thread.id, &newest)
            .await?;
        let Some(mut item) = last.data.into_iter().next() else {
            return Err(no_pending_call(thread_id));
        };
        match &mut item.kind {
            ItemKind::ClientToolCall(call) if call.status == ClientToolCallStatus::Pending => {
                call.status = ClientToolCallStatus::Completed;
                call.output = Some(result);
            }
            _ => return Err(no_pending_call(thread_id)),
        }
        self.store.save_item(&ctx.user_id, &item).await?;
        Ok(self.start_run(ctx, thread, (lock, slot), Vec::new()))
    }

    async fn custom_action(
        &self,
        ctx: &Identity,
        params: ActionParams,
    ) -> Result<Response, ChatKitError> {
        let thread = self
            .store
            .load_thread(&ctx.user_id, &params.thread_id)
            .await?;
        if let Some(item_id) = &params.item_id {
            let item = self
                .store
                .load_item(&ctx.user_id, &thread.id, item_id)
                .await?;
            if !matches!(item.kind, ItemKind::Widget { .. }) {
                return Err(ChatKitError::BadRequest(format!(
                    "item {item_id} is a {}, not a widget: only widgets send actions",
                    item.type_name()
                )));
            }
        }
        Err(ChatKitError::NotImplemented(format!(
            "no handler is configured for the widget action {:?}",
            params.action.kind
        )))
    }

    /// One of the user's answer slots, or a refusal before anything is stored.
    fn run_slot(&self, ctx: &Identity) -> Result<RunSlot, ChatKitError> {
        self.slots.try_acquire(&ctx.user_id).ok_or_else(|| {
            ChatKitError::TooManyRuns(
                "you already have as many answers in progress as allowed; wait for one to finish"
                    .to_owned(),
            )
        })
    }

    /// Loads a thread that accepts new runs.
    async fn open_thread(
        &self,
        ctx: &Identity,
        thread_id: &str,
    ) -> Result<ThreadMetadata, ChatKitError> {
        let thread = self.store.load_thread(&ctx.user_id, thread_id).await?;
        match &thread.status {
            ThreadStatus::Active => Ok(thread),
            ThreadStatus::Locked { reason } | ThreadStatus::Closed { reason } => {
                Err(ChatKitError::Conflict(format!(
                    "thread {thread_id} does not accept messages{}",
                    reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )))
            }
        }
    }

    /// Stores the user's message before anything reaches the model.
    async fn store_user_message(
        &self,
        ctx: &Identity,
        thread: &ThreadMetadata,
        input: UserMessageInput,
    ) -> Result<ThreadStreamEvent, ChatKitError> {
        let mut item = ThreadItem {
            id: new_id(IdKind::Message),
            thread_id: thread.id.clone(),
            created_at: Timestamp::now(),
            kind: ItemKind::UserMessage(UserMessage {
                content: input.content,
                attachments: Vec::new(),
                quoted_text: input.quoted_text,
                inference_options: input.inference_options,
            }),
        };
        // What the stream echoes must be exactly what every store keeps.
        scrub_item(&mut item);
        self.store.add_item(&ctx.user_id, &item).await?;
        Ok(ThreadStreamEvent::ItemDone { item })
    }

    /// Spawns the run; its events follow `first` on the returned stream.
    fn start_run(
        &self,
        ctx: &Identity,
        thread: ThreadMetadata,
        (lock, slot): (RunLock, RunSlot),
        first: Vec<ThreadStreamEvent>,
    ) -> Response {
        let (sink, events) = EventSink::channel(STREAM_BUFFER);
        let cancel = self.shutdown.child_token();
        let agent = self.agent.clone();
        let input = RunInput {
            identity: ctx.clone(),
            thread,
        };
        let run_cancel = cancel.clone();
        let shutdown = self.shutdown.clone();
        // A child of the request's span: the run's log lines carry the
        // request id and the thread id.
        let span = tracing::info_span!("run", thread_id = %input.thread.id);
        let run = async move {
            // Held until the run has persisted everything, cancellation included.
            let _lock = lock;
            let _slot = slot;
            for event in first {
                if sink.send(event).await.is_err() {
                    run_cancel.cancel();
                    break;
                }
            }
            let thread_id = input.thread.id.clone();
            let outcome = agent.run(input, &sink, &run_cancel).await;
            match outcome {
                RunOutcome::Completed => tracing::debug!(%thread_id, "run completed"),
                RunOutcome::Failed => tracing::info!(%thread_id, "run ended with an error event"),
                RunOutcome::Cancelled => {
                    tracing::info!(%thread_id, "run cancelled; partial answer kept")
                }
            }
            if outcome == RunOutcome::Cancelled && shutdown.is_cancelled() {
                // Still connected: end the stream with a reason, not a cut.
                let _ = sink
                    .send(ThreadStreamEvent::custom_error(
                        "The server is restarting and stopped this answer; what was written so far is kept.",
                        true,
                    ))
                    .await;
            }
        };
        self.runs.spawn(run.instrument(span));
        Response::Stream(EventStream {
            events,
            _cancel_on_drop: cancel.drop_guard(),
        })
    }
}

/// Replaces U+0000 in an item's text (see [`text`]).
fn scrub_item(item: &mut ThreadItem) {
    if let Ok(mut value) = serde_json::to_value(&*item) {
        text::scrub_value(&mut value);
        if let Ok(clean) = serde_json::from_value(value) {
            *item = clean;
        }
    }
}

fn check_input(input: &UserMessageInput) -> Result<(), ChatKitError> {
    if !input.attachments.is_empty() {
        return Err(ChatKitError::BadRequest(
            "attachments are not enabled on this server; send the message without them".into(),
        ));
    }
    Ok(())
}

fn no_pending_call(thread_id: &str) -> ChatKitError {
    ChatKitError::BadRequest(format!(
        "thread {thread_id} has no pending client tool call to complete"
    ))
}

/// Validates a requested page size: absent or 0 means the default; negative
/// is refused; large ones are capped.
fn page_size(limit: Option<i64>) -> Result<u32, ChatKitError> {
    match limit {
        None | Some(0) => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if n < 0 => Err(ChatKitError::BadRequest(format!(
            "`limit` must not be negative (got {n})"
        ))),
        Some(n) => Ok(u32::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE)),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<Response, ChatKitError> {
    serde_json::to_string(value)
        .map(Response::Json)
        .map_err(|e| ChatKitError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None).ok(), Some(20));
        assert_eq!(page_size(Some(0)).ok(), Some(20));
        assert_eq!(page_size(Some(7)).ok(), Some(7));
        assert_eq!(page_size(Some(10_000)).ok(), Some(100));
        assert!(page_size(Some(-1)).is_err());
    }
}
