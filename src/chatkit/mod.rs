//! Dispatch: one function per ChatKit request type, onto the store and the agent.
//! The requests that start a run live in `runs.rs`, widget actions in
//! `actions.rs`, the boundary that
//! catches a panicking run in `panics.rs`; this file holds the
//! dispatcher, the reads and edits answered with one JSON document, and the
//! errors they share.
//!
//! Everything that can fail before the first event (unknown thread, invalid
//! retry target, busy thread) fails here with a [`ChatKitError`], so the HTTP
//! layer can answer with a precise status instead of a cut stream. A streaming
//! request then hands its run to a spawned task: the run goes on, and persists
//! what it produced, even if the client disconnects.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use attachments::Signed;

use crate::agent::{Agent, TranscribeError};
use crate::auth::Identity;
use crate::elicitation::Questions;
use crate::limits::RunSlots;
use crate::protocol::{
    FeedbackParams, ItemsListParams, ListParams, Order, Page, Request, Thread, ThreadStreamEvent,
    ThreadUpdateParams, scrub,
};
use crate::store::{PageRequest, Store, StoreError};
use crate::stream::{CancelOnDrop, StallSignal};

mod actions;
mod admission;
mod attachments;
mod panics;
mod runs;
mod structured_input;

/// Page size when a request gives none (or 0), as the reference does.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest page served; larger requests are capped.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Events buffered between a run and a slow client.
pub const STREAM_BUFFER: usize = 64;
/// How long [`ChatKit::drain`] waits for cancelled runs to store what they have.
pub const CANCELLED_RUNS_WAIT: Duration = Duration::from_secs(5);

/// How much a client may send in one request; more is refused with a
/// `BadRequest` naming the limit, before anything is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// Characters of one user message (see `message_chars`) and of one
    /// client tool output (its JSON text).
    pub max_message_chars: usize,
    /// Item ids in one `items.feedback` request.
    pub max_feedback_items: usize,
}

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
    /// Bytes over a limit (an attachment's upload).
    #[error("{0}")]
    TooLarge(String),
    /// A genuine link that no longer allows what it did (an expired one).
    #[error("{0}")]
    Forbidden(String),
    /// A route that needs credentials got none (an attachment URL without
    /// its signature or a bearer).
    #[error("{0}")]
    Unauthorized(String),
    /// A service the request needed (the transcription model) failed.
    #[error("{0}")]
    Upstream(String),
    /// A widget action's tool answered with an error (its text).
    #[error("{0}")]
    ActionFailed(String),
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
    /// Fires if the client stops taking events: its connection should close.
    pub stall: StallSignal,
    _cancel_on_drop: CancelOnDrop,
}

/// The ChatKit server: the store, the agent, and the runs in flight.
pub struct ChatKit {
    store: Arc<dyn Store>,
    /// The agent new runs use; a configuration reload replaces it, and runs
    /// in flight finish with the one they started with.
    agent: parking_lot::RwLock<Arc<Agent>>,
    runs: TaskTracker,
    /// Answers streaming at once, per user.
    slots: RunSlots,
    sizes: SizeLimits,
    /// Cancelled at shutdown once the grace period is over; every run's token
    /// is a child of it.
    shutdown: CancellationToken,
    /// How long a run waits for its client to take an event before it
    /// treats the client as gone (`[server] stream_write_timeout`).
    stream_write_timeout: Duration,
    /// Tool servers' questions waiting for their users' answers.
    questions: Arc<Questions>,
}

impl std::fmt::Debug for ChatKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatKit").finish_non_exhaustive()
    }
}

impl ChatKit {
    /// A server answering from `store` with `agent`, allowing each user
    /// `max_runs_per_user` answers at once (0: no limit), requests within
    /// `sizes`, and cancelling a run whose client does not take an event
    /// within `stream_write_timeout`.
    pub fn new(
        store: Arc<dyn Store>,
        agent: Arc<Agent>,
        slots: RunSlots,
        sizes: SizeLimits,
        stream_write_timeout: Duration,
    ) -> ChatKit {
        ChatKit {
            store,
            agent: parking_lot::RwLock::new(agent),
            runs: TaskTracker::new(),
            slots,
            sizes,
            shutdown: CancellationToken::new(),
            stream_write_timeout,
            questions: Arc::default(),
        }
    }

    /// The agent new runs use.
    pub fn agent(&self) -> Arc<Agent> {
        self.agent.read().clone()
    }

    /// Makes `agent` the one new runs use (a configuration reload).
    pub fn replace_agent(&self, agent: Arc<Agent>) {
        *self.agent.write() = agent;
    }

    /// Cancelled when the server shuts down, for background work that
    /// should stop with it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Whether requests can be answered now: the store answers. The HTTP
    /// layer's readiness probe asks this, knowing nothing of the store.
    pub async fn ready(&self) -> Result<(), ChatKitError> {
        self.store.ping().await.map_err(ChatKitError::from)
    }

    /// Refuses new runs, waits up to `grace` for runs in flight, then cancels
    /// the rest (they persist their partial answers) and waits for them, at
    /// most [`CANCELLED_RUNS_WAIT`] more: a cancelled run stops at once, even
    /// one waiting on a client that does not read, so only its store writes
    /// remain, and a store that hangs must not hold the exit forever.
    pub async fn drain(&self, grace: Duration) {
        self.runs.close();
        if tokio::time::timeout(grace, self.runs.wait()).await.is_err() {
            tracing::warn!(
                runs = self.runs.len(),
                "cancelling runs still going after the shutdown grace"
            );
            self.shutdown.cancel();
            if tokio::time::timeout(CANCELLED_RUNS_WAIT, self.runs.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    runs = self.runs.len(),
                    "runs still storing their partial answers; giving up on them"
                );
            }
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
            Request::ThreadsAddStructuredInput(params) => self.structured_input(ctx, params).await,
            Request::ThreadsCustomAction(params) => self.custom_action(ctx, params, false).await,
            Request::ThreadsSyncCustomAction(params) => self.custom_action(ctx, params, true).await,
            Request::ThreadsGetById(params) => {
                let thread = self.store.load_thread(user, &params.thread_id).await?;
                let page = PageRequest {
                    limit: DEFAULT_PAGE_SIZE,
                    order: Order::Asc,
                    after: None,
                };
                let mut items = self.store.list_items(user, &thread.id, &page).await?;
                self.fresh_urls(ctx, &mut items);
                json(&Thread::from_metadata(&thread, items))
            }
            Request::ThreadsList(ListParams {
                limit,
                order,
                after,
            }) => {
                let page = page_request(limit, order, after)?;
                let threads = self.store.list_threads(user, &page).await?;
                json(&threads.map(|t| Thread::from_metadata(&t, Page::default())))
            }
            Request::ThreadsUpdate(ThreadUpdateParams { thread_id, title }) => {
                at_most("a title", title.chars().count(), 1000)?;
                let mut thread = self.store.load_thread(user, &thread_id).await?;
                thread.title = Some(scrub::scrub(&title).into_owned());
                self.store.save_thread(user, &thread).await?;
                json(&Thread::from_metadata(&thread, Page::default()))
            }
            Request::ThreadsDelete(params) => self.delete_thread(ctx, &params.thread_id).await,
            Request::ItemsList(ItemsListParams {
                thread_id,
                limit,
                order,
                after,
            }) => {
                let page = page_request(limit, order, after)?;
                let mut items = self.store.list_items(user, &thread_id, &page).await?;
                self.fresh_urls(ctx, &mut items);
                json(&items)
            }
            Request::ItemsFeedback(FeedbackParams {
                thread_id,
                item_ids,
                kind,
            }) => {
                let most = self.sizes.max_feedback_items;
                if item_ids.len() > most {
                    return Err(ChatKitError::BadRequest(format!(
                        "items.feedback takes at most {most} item ids at once (got {}); send them in smaller batches",
                        item_ids.len()
                    )));
                }
                self.store
                    .add_feedback(user, &thread_id, &item_ids, kind)
                    .await?;
                Ok(Response::Json("{}".to_owned()))
            }
            Request::AttachmentsCreate(params) => self.create_attachment(ctx, &params).await,
            Request::AttachmentsDelete(params) => {
                self.delete_attachment(ctx, &params.attachment_id).await
            }
            Request::InputTranscribe(params) => match self.agent().transcribe(&params).await {
                Ok(text) => json(&serde_json::json!({ "text": text })),
                Err(e @ TranscribeError::NotEnabled) => {
                    Err(ChatKitError::NotImplemented(e.to_string()))
                }
                Err(TranscribeError::Refused(message)) => Err(ChatKitError::BadRequest(message)),
                Err(e @ TranscribeError::Service(_)) => Err(ChatKitError::Upstream(e.to_string())),
            },
        }
    }
}

/// The page a listing request asks for, its size validated by [`page_size`].
fn page_request(
    limit: Option<i64>,
    order: Order,
    after: Option<String>,
) -> Result<PageRequest, ChatKitError> {
    Ok(PageRequest {
        limit: page_size(limit)?,
        order,
        after,
    })
}

/// Refuses `what` when its `chars` characters are more than `most`, before
/// anything is loaded or stored: every length limit on what a request
/// carries, in one wording.
fn at_most(what: impl std::fmt::Display, chars: usize, most: usize) -> Result<(), ChatKitError> {
    if chars > most {
        return Err(ChatKitError::BadRequest(format!(
            "{what} is at most {most} characters (got {chars})"
        )));
    }
    Ok(())
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
