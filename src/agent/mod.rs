//! The agent: one run answers one user turn.
//!
//! A run (`run.rs`) builds the model's input from the stored thread
//! (`history.rs`), streams the model's answer as ChatKit events (`draft.rs`),
//! runs the tool calls the model asks for (`tools.rs`, stored as the typed
//! records of `records.rs`), stores each item before its `thread.item.done`
//! goes out, and generates a title for a new thread (`title.rs`). It knows
//! nothing of HTTP or SQL: it yields protocol events into an [`EventSink`]
//! and calls the [`Store`] trait.
//!
//! Failure rules (design decision 7): a model error keeps the partial answer
//! and ends with an `error` event, and so does a panic inside the run; a cancelled run (the client went away, or
//! shutdown) keeps the non-blank partial answer plus a hidden marker telling
//! the next turn that the user stopped this one.

mod actions;
mod approvals;
mod asking;
mod choices;
mod draft;
mod elicit;
mod history;
mod interactions;
mod media;
#[cfg(test)]
mod panic_tests;
mod questions;
mod records;
mod run;
mod sink;
mod submission;
mod title;
mod tools;
mod voice;
mod widgets;

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;

use tokio_util::sync::CancellationToken;

use run::Run;

use crate::attachments::Attachments;

pub use actions::{ActionError, ToolAction};
pub use approvals::{DENIED, Settle};
pub use elicit::Form;
pub use history::build_messages;
pub use interactions::{Action, Interactions, action_text};
pub use media::user_text;
pub use questions::{Claimed, Questions};
pub use records::UiRecord;
pub use sink::{CancelOnDrop, Disconnected, EventSink, NextStream, StallSignal};
pub use submission::{Answer, Submission};
pub use voice::TranscribeError;

use crate::auth::Identity;
use crate::config::AgentConfig;
use crate::llm::LlmClient;
use crate::mcp::McpManager;
use crate::protocol::{ThreadItem, ThreadMetadata};
use crate::store::Store;

/// What the reference stores when a run is cancelled, so the next model turn
/// does not try to continue the abandoned answer.
pub const CANCELLED_MARKER: &str =
    "The user cancelled the stream. Stop responding to the prior request.";

/// What the client reads when its run stopped on a panic (a defect).
pub const PANIC_MESSAGE: &str =
    "The assistant stopped because of an internal error; what was written so far is kept.";

/// Everything a run needs to know about its request.
#[derive(Debug, Clone)]
pub struct RunInput {
    /// The authenticated user (never from the request body or the model),
    /// with the display claims offered to the system prompt as
    /// `{{user.name}}` and `{{user.email}}`.
    pub identity: Identity,
    /// The thread as loaded before the run (after the user message was stored).
    pub thread: ThreadMetadata,
    /// The thread's stored items when the caller already knows them (a new
    /// thread: just its first message), so the run need not read them back;
    /// `None` to load them.
    pub history: Option<Vec<ThreadItem>>,
    /// An approval card to settle before the model answers (the run is the
    /// `tool.approve` / `tool.deny` action's).
    pub settle: Option<Settle>,
    /// Where a tool server's questions to the user wait for their answers
    /// (shared by every run of the process, across reloads).
    pub questions: Arc<Questions>,
}

/// The assistant: the model, the prompt and the limits of a run.
pub struct Agent {
    store: Arc<dyn Store>,
    llm: LlmClient,
    /// The tool servers; `None` when none are configured.
    mcp: Option<Arc<McpManager>>,
    /// Attachments the model reads, and where tools' images are kept.
    attachments: Arc<Attachments>,
    /// Widgets, actions and client tools.
    interactions: Arc<Interactions>,
    system_prompt: String,
    config: AgentConfig,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// How a run ended, for the caller's logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Completed,
    Failed,
    Cancelled,
}

impl Agent {
    /// An agent answering with `llm` under `system_prompt`.
    pub fn new(
        store: Arc<dyn Store>,
        llm: LlmClient,
        mcp: Option<Arc<McpManager>>,
        interactions: Interactions,
        attachments: Arc<Attachments>,
        system_prompt: String,
        config: AgentConfig,
    ) -> Agent {
        Agent {
            store,
            llm,
            mcp,
            attachments,
            interactions: Arc::new(interactions),
            system_prompt,
            config,
        }
    }

    /// Attachments: what the model reads of them, and images from tools.
    pub fn attachments(&self) -> &Arc<Attachments> {
        &self.attachments
    }

    /// Widgets, actions and client tools, as configured.
    pub fn interactions(&self) -> &Interactions {
        &self.interactions
    }

    /// How many of a thread's newest items a run reads as its history
    /// (`[agent] history_max_items`), for callers that hand it in.
    pub fn history_limit(&self) -> u32 {
        self.config.history_max_items
    }

    /// Runs one turn: `stream_options`, the answer, the title. Never returns
    /// an error: failures become `error` events, and what was produced is kept.
    pub async fn run(
        &self,
        input: RunInput,
        sink: &EventSink,
        cancel: &CancellationToken,
    ) -> RunOutcome {
        let started = Instant::now();
        let mut run = Run::new(self, input, sink, cancel, started);
        // A panic is a defect, but the text the user already saw is theirs:
        // caught here, where the run's state outlives the unwinding, it is
        // kept like any failure's. `AssertUnwindSafe` is sound because the
        // only state read afterwards is the draft's text and the open calls,
        // which are valid whatever line panicked.
        let caught = AssertUnwindSafe(run.execute()).catch_unwind().await;
        let outcome = match caught {
            Ok(outcome) => outcome,
            Err(panic) => {
                run.fail_panicked(&panic_message(panic.as_ref())).await;
                RunOutcome::Failed
            }
        };
        if outcome == RunOutcome::Cancelled {
            run.persist_cancellation().await;
        }
        let label = match outcome {
            RunOutcome::Completed => "completed",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
        };
        crate::metrics::get().run(label, started.elapsed());
        outcome
    }
}

/// The text of a panic's payload, for the log.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
