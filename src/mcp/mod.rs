//! Tools on MCP servers: spawned as child processes or reached over
//! streamable HTTP, pooled, and called for the agent with the caller's
//! identity injected.
//!
//! - `endpoint.rs`: where a server is: a program to spawn, or a streamable
//!   HTTP `url`.
//! - [`process`]: spawning a server that cannot outlive the daemon.
//! - [`instance`]: one server and its rmcp client session, with timeouts.
//! - [`pool`]: leasing instances per server (and per user), replacing broken
//!   ones with back-off, stopping idle ones.
//! - [`server`]: one configured server: its pools and its tool list.
//! - [`manager`]: [`McpManager`], every configured server: start, the tools
//!   offered, shutdown, counts; `call.rs` (the call path), `upkeep.rs`
//!   (background refresh and reaping) and `reload.rs` (a new configuration
//!   applied to running pools) add to it.
//! - [`tools`]: the names and schemas the model sees; `media.rs`: what it
//!   reads of a result (text, images decoded, resources and audio described).
//!
//! Identity never comes from the model: a parameter named in a server's
//! `inject` is hidden from the model's schema and overwritten with the
//! authenticated user on every call. This module is the only one that spawns
//! processes; it knows nothing of ChatKit, the store or the model's wire
//! format.

mod call;
mod endpoint;
pub mod instance;
mod manager;
mod media;
pub mod pool;
pub mod process;
mod reload;
mod server;
pub mod tools;
mod upkeep;
pub mod user_questions;

use std::time::Duration;

use thiserror::Error;

pub use call::Call;
pub use endpoint::{Endpoint, Remote};
pub use manager::McpManager;
pub use media::{OutputLimits, ResultContent, ToolImage, result_content};
pub use reload::Reconfigured;
pub use tools::ModelTool;

/// Failures of the tool layer. During a run they become tool errors the
/// model reads; the conversation goes on.
#[derive(Debug, Error)]
pub enum McpError {
    #[error("the {server} tool server could not be started: {message}")]
    Spawn { server: String, message: String },
    #[error("the {server} tool server failed: {message}")]
    Call { server: String, message: String },
    #[error("every instance of the {server} tool server stayed busy for the whole call timeout")]
    Busy { server: String },
    #[error(
        "the {server} tool server already runs its limit of {max} instances across users (max_total_instances), and none stopped within the call timeout"
    )]
    AtCapacity { server: String, max: usize },
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// What a tool call produced, as the model will read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The result text (or the error message), already truncated.
    pub output: String,
    /// Images of the result the model is shown (named in `output`).
    pub images: Vec<ToolImage>,
    /// The result as data, for a widget: its `structuredContent`, or its
    /// text when that is one JSON object (see [`tools::result_data`]).
    pub structured: Option<serde_json::Value>,
    pub is_error: bool,
    /// Which server and tool ran it (empty for an unknown tool).
    pub server: String,
    pub tool: String,
    pub elapsed: Duration,
}

impl ToolOutcome {
    /// An error result the model reads: `output` says what went wrong.
    pub fn error(
        server: impl Into<String>,
        tool: impl Into<String>,
        output: String,
        elapsed: Duration,
    ) -> Self {
        Self {
            output,
            images: Vec::new(),
            structured: None,
            is_error: true,
            server: server.into(),
            tool: tool.into(),
            elapsed,
        }
    }
}

/// How far a running call has got, as its server reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolProgress {
    pub progress: f64,
    /// The total `progress` counts towards, when the server knows it.
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// Receives a call's progress notifications, on the session's task: it
/// must not block.
pub type ProgressReporter = std::sync::Arc<dyn Fn(ToolProgress) + Send + Sync>;

/// A running call's server asks the user something (MCP elicitation, form
/// mode).
#[derive(Debug, Clone, PartialEq)]
pub struct ElicitationRequest {
    /// The server asking, by its `[mcp_servers]` name.
    pub server: String,
    pub message: String,
    /// The requested schema: a flat object of primitive fields.
    pub schema: serde_json::Value,
}

/// The user's reply to an [`ElicitationRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum ElicitationAnswer {
    /// The content, checked against the requested schema.
    Accept(serde_json::Map<String, serde_json::Value>),
    /// The user chose not to answer.
    Decline,
    /// No answer came (timeout, the run ended).
    Cancel,
}

/// Asks the user on behalf of a running call; the answer comes later.
pub type Elicitor = std::sync::Arc<
    dyn Fn(ElicitationRequest) -> futures::future::BoxFuture<'static, ElicitationAnswer>
        + Send
        + Sync,
>;

/// The instances of one server's pools, for metrics and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolCounts {
    pub server: String,
    pub idle: usize,
    pub busy: usize,
    /// Instances replaced after a crash or hang since start.
    pub replaced: u64,
}
