//! The LLM client: streaming chat completions against any OpenAI-compatible
//! server (or OpenAI's Responses API), in our own tolerant types, sent through async-openai's tower
//! middleware and read by our own bounded event reader.
//!
//! Only this module speaks the LLM wire format: messages, tool definitions
//! and tool calls are built here and nowhere else. It parses chunks tolerantly
//! (Ollama, vLLM, llama.cpp and Gemini's endpoint omit `index`, omit the first
//! `id`, send `finish_reason: ""` or put an error object inside the stream),
//! assembles tool-call fragments, retries 429/5xx/connect failures a bounded
//! number of times before the stream starts, and enforces the timeouts the
//! crate leaves unset: connect, first byte, and silence between chunks. A
//! stream that ends without a `finish_reason` is reported as cut, never taken
//! for a complete answer.
//!
//! - `wire`: the serde types of the format, sent and received.
//! - `stream`: [`LlmStream`], reading chunks under the idle timeout.
//! - `sse`: the server-sent events of a streamed answer, read within a bound.
//! - `assemble`: the assembler of chunks into events.
//! - `limits`: the bounds of one answer, and [`StreamLimit`].
//! - `responses`: OpenAI's Responses API (`[llm] api = "responses"`): the
//!   request built from the same messages, its events read into the same
//!   events, within the same bounds.
//! - `hosted`: what OpenAI's hosted tools did as an answer streamed
//!   ([`HostedEvent`]).
//! - `client`: [`LlmClient`], the endpoint's configuration and calls.
//! - `body`: answer bodies read within a bound.
//! - `retry`: the retry policy of the HTTP service.
//!
//! Architecture invariant: nothing here knows ChatKit, the store or MCP;
//! callers hand in [`ChatMessage`]s and [`ToolDefinition`]s and get
//! [`LlmEvent`]s back.

use std::time::Duration;

use async_openai::error::OpenAIError;
use thiserror::Error;

mod assemble;
mod body;
mod client;
mod hosted;
mod limits;
mod responses;
mod retry;
mod sse;
mod stream;
mod wire;

pub use client::{LlmClient, Turn};
pub use hosted::{Citation, HostedEvent, ImageStage, UrlSource};
pub use limits::StreamLimit;
pub use stream::{LlmEvent, LlmStream};
pub use wire::{
    ChatMessage, ContentPart, FileData, FunctionCall, ImageUrl, ListedModel, ModelList, ToolCall,
    ToolDefinition, ToolKind,
};

/// What went wrong talking to the model.
#[derive(Debug, Error)]
pub enum LlmError {
    /// The endpoint needs configuration the daemon does not have.
    #[error("{0}")]
    NotConfigured(String),
    /// The server answered with an error status.
    #[error("the model service answered {status}: {message}")]
    Api { status: u16, message: String },
    /// An error object inside an otherwise healthy stream.
    #[error("the model service reported an error mid-stream: {0}")]
    InStream(String),
    #[error("could not reach the model service: {0}")]
    Transport(String),
    #[error("the model service did not answer within {0:?}")]
    Timeout(Duration),
    /// The stream ended without a `finish_reason`: the answer is incomplete.
    #[error("the model's stream ended before the answer was complete")]
    Cut,
    #[error("the model service sent something unreadable: {0}")]
    Protocol(String),
    /// The streamed answer went beyond one of the daemon's bounds (see
    /// `[llm] max_tool_calls`). Not transient: the same request is likely
    /// to be answered the same way.
    #[error("the model's answer went beyond a limit of this server: {0}")]
    OverLimit(StreamLimit),
    /// The server answered 404 to `GET /models`: it is reachable but cannot
    /// list its models.
    #[error("the model service has no /models route")]
    NoModelsRoute,
}

impl LlmError {
    /// Whether trying the same request again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::NotConfigured(_)
            | LlmError::Protocol(_)
            | LlmError::OverLimit(_)
            | LlmError::NoModelsRoute => false,
            LlmError::Api { status, .. } => *status == 429 || *status >= 500,
            LlmError::InStream(_)
            | LlmError::Transport(_)
            | LlmError::Timeout(_)
            | LlmError::Cut => true,
        }
    }
}

impl From<OpenAIError> for LlmError {
    fn from(error: OpenAIError) -> Self {
        match error {
            OpenAIError::ApiError(api) => LlmError::Api {
                status: api.status_code.as_u16(),
                message: api.api_error.message,
            },
            OpenAIError::Reqwest(e) => LlmError::Transport(e.to_string()),
            OpenAIError::StreamError(e) => LlmError::Transport(e.to_string()),
            OpenAIError::JSONDeserialize(e, _) => LlmError::Protocol(e.to_string()),
            other => LlmError::Transport(other.to_string()),
        }
    }
}
