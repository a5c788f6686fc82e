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

mod composer;
mod guardrails;
mod interactions;
mod roster;
mod run;
mod tool_action;
mod transcript;
mod transcription;

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;

use tokio_util::sync::CancellationToken;

use run::Run;

use crate::attachments::Attachments;
use crate::elicitation::Questions;
use crate::stream::EventSink;

pub use guardrails::{Decision, Guardrail, Guardrails, Trip};
pub use interactions::{Action, Interactions, action_text};
pub use roster::{Profile, Roster};
pub use run::{DENIED, Settle};
pub use tool_action::{ActionError, ToolAction};
pub use transcript::{UiRecord, build_messages, user_text};
pub use transcription::TranscribeError;

use crate::auth::Identity;
use crate::config::{AgentConfig, Config, ConfigError};
use crate::llm::{LlmClient, LlmError};
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

/// Why an agent could not be built from `agent.toml`.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("widgets: {0}")]
    Widget(#[from] crate::widgets::WidgetError),
    #[error("llm: {0}")]
    Llm(#[from] LlmError),
}

/// The running services every agent uses: one store, one set of tool
/// servers and one attachment service for the daemon's life, across reloads.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    /// The tool servers (an empty manager when none are configured).
    pub mcp: Arc<McpManager>,
    pub attachments: Arc<Attachments>,
}

/// An agent as `agent.toml` describes it, read and checked whole (widget
/// templates, the model client, the system prompt) but not yet given its
/// services: the daemon reads it before it connects anything, a reload
/// before it changes anything, so a broken file is refused first.
pub struct AgentSpec {
    interactions: Interactions,
    llm: LlmClient,
    roster: Roster,
    guardrails: Guardrails,
    config: AgentConfig,
    /// Whether any tool server is configured.
    has_tool_servers: bool,
}

impl std::fmt::Debug for AgentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSpec")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl AgentSpec {
    /// Reads the agent of `config`: its widgets, actions and client tools,
    /// its model client and its system prompt.
    pub fn from_config(config: &Config) -> Result<AgentSpec, AgentError> {
        Ok(AgentSpec {
            interactions: Interactions::load(config)?,
            llm: LlmClient::new(&config.llm)?,
            roster: Roster::load(config, config.system_prompt()?)?,
            guardrails: Guardrails::load(config)?,
            config: config.agent.clone(),
            has_tool_servers: !config.mcp_servers.is_empty(),
        })
    }
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
    /// The entry agent and the specialists it can hand off to.
    roster: Arc<Roster>,
    /// The checks of the user's message and of the answer.
    guardrails: Arc<Guardrails>,
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
    /// The agent `spec` describes, using `services`: the one way the daemon
    /// and a reload build one.
    pub fn from_spec(spec: AgentSpec, services: &Services) -> Agent {
        Agent::new(
            services.store.clone(),
            spec.has_tool_servers.then(|| services.mcp.clone()),
            services.attachments.clone(),
            spec,
        )
    }

    /// The agent `spec` describes, with its store, tool servers and
    /// attachments.
    fn new(
        store: Arc<dyn Store>,
        mcp: Option<Arc<McpManager>>,
        attachments: Arc<Attachments>,
        spec: AgentSpec,
    ) -> Agent {
        Agent {
            store,
            llm: spec.llm,
            mcp,
            attachments,
            interactions: Arc::new(spec.interactions),
            roster: Arc::new(spec.roster),
            guardrails: Arc::new(spec.guardrails),
            config: spec.config,
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
