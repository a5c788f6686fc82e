//! The LLM client: streaming chat completions against any OpenAI-compatible
//! server, through async-openai's bring-your-own-types path.
//!
//! Only this module speaks the LLM wire format. It parses chunks tolerantly
//! (Ollama, vLLM, llama.cpp and Gemini's endpoint omit `index`, omit the first
//! `id`, send `finish_reason: ""` or put an error object inside the stream),
//! assembles tool-call fragments, retries 429/5xx/connect failures a bounded
//! number of times before the stream starts, and enforces the timeouts the
//! crate leaves unset: connect, first byte, and silence between chunks. A
//! stream that ends without a `finish_reason` is reported as cut, never taken
//! for a complete answer.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::config::{DEFAULT_OPENAI_BASE_URL, LlmConfig};

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
}

impl LlmError {
    /// Whether trying the same request again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::NotConfigured(_) | LlmError::Protocol(_) => false,
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

/// A message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

impl ChatMessage {
    /// A plain assistant answer.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage::Assistant {
            content: Some(content.into()),
            tool_calls: Vec::new(),
        }
    }

    /// Rough size in tokens (four bytes a token plus framing), for budgeting.
    pub fn estimated_tokens(&self) -> usize {
        let bytes = match self {
            ChatMessage::System { content } | ChatMessage::User { content } => content.len(),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                content.as_ref().map_or(0, String::len)
                    + tool_calls
                        .iter()
                        .map(|c| c.function.name.len() + c.function.arguments.len())
                        .sum::<usize>()
            }
            ChatMessage::Tool { content, .. } => content.len(),
        };
        bytes / 4 + 4
    }
}

/// A complete tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

/// The function part of a tool call; `arguments` is JSON text as the model wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// The request body we send (`byot`: our own type, not the crate's).
#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    tools: &'a [Value],
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

/// Asks for a final chunk with token usage (`include_usage`).
#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// Token counts as the model service reports them.
#[derive(Debug, Default, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

impl Usage {
    fn record(&self) {
        crate::metrics::get().tokens(
            self.prompt_tokens.unwrap_or(0),
            self.completion_tokens.unwrap_or(0),
        );
    }
}

/// A streamed chunk, every field optional so that any compatible server's
/// variant parses.
#[derive(Debug, Default, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Default, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Default, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Default, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// A non-streamed completion, as tolerant as [`Chunk`].
#[derive(Debug, Default, Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<CompletionChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionChoice {
    #[serde(default)]
    message: Option<CompletionMessage>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionMessage {
    #[serde(default)]
    content: Option<String>,
}

/// Something the streamed answer produced.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// More answer text.
    Text(String),
    /// The answer is complete. `tool_calls` holds the assembled calls when
    /// the model asked for tools.
    Finished {
        reason: String,
        tool_calls: Vec<ToolCall>,
    },
}

/// How long to wait for the end of a stream after its finish_reason.
const AFTER_FINISH_GRACE: Duration = Duration::from_secs(2);

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, OpenAIError>> + Send>>;

/// A streamed answer in progress.
pub struct LlmStream {
    chunks: ChunkStream,
    idle_timeout: Duration,
    calls: Vec<PartialCall>,
    finished: bool,
    pending_finish: Option<String>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

impl LlmStream {
    /// The next event; `None` after `Finished` or an error.
    pub async fn next(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        if self.finished {
            return None;
        }
        loop {
            // After a finish_reason only `[DONE]` or trailing usage should come;
            // a server that then keeps the stream open is not waited for long.
            let wait = if self.pending_finish.is_some() {
                AFTER_FINISH_GRACE
            } else {
                self.idle_timeout
            };
            let chunk = match tokio::time::timeout(wait, self.chunks.next()).await {
                Err(_) => {
                    return match self.pending_finish.take() {
                        Some(reason) => self.finish(reason),
                        None => self.fail(LlmError::Timeout(self.idle_timeout)),
                    };
                }
                Ok(None) => {
                    // `[DONE]` or the end of the body. Only a finish_reason
                    // tells a complete answer from a cut one.
                    return match self.pending_finish.take() {
                        Some(reason) => self.finish(reason),
                        None => self.fail(LlmError::Cut),
                    };
                }
                // One chunk that is not even our tolerant shape: skip it. A
                // broken stream still shows as a missing finish_reason.
                Ok(Some(Err(OpenAIError::JSONDeserialize(e, content)))) => {
                    tracing::warn!(error = %e, chunk = %content.chars().take(200).collect::<String>(), "skipping an unreadable chunk");
                    continue;
                }
                Ok(Some(Err(e))) => return self.fail(e.into()),
                Ok(Some(Ok(chunk))) => chunk,
            };
            if let Some(usage) = &chunk.usage {
                usage.record();
            }
            if let Some(error) = chunk.error {
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| error.to_string());
                return self.fail(LlmError::InStream(message));
            }
            let mut text = String::new();
            for choice in chunk.choices.unwrap_or_default() {
                if let Some(delta) = choice.delta {
                    if let Some(content) = delta.content {
                        text.push_str(&content);
                    }
                    for fragment in delta.tool_calls.unwrap_or_default() {
                        self.absorb(fragment);
                    }
                }
                if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                    self.pending_finish = Some(reason);
                }
            }
            if !text.is_empty() {
                return Some(Ok(LlmEvent::Text(text)));
            }
        }
    }

    /// Adds one tool-call fragment. Servers that omit `index` send each call
    /// whole or in order, so a fragment without index that carries an `id`
    /// starts a new call and one without continues the last.
    fn absorb(&mut self, fragment: ToolCallDelta) {
        let index = match fragment.index {
            Some(index) => index,
            None if fragment.id.is_some() || self.calls.is_empty() => self.calls.len(),
            None => self.calls.len() - 1,
        };
        if self.calls.len() <= index {
            self.calls.resize_with(index + 1, PartialCall::default);
        }
        let call = &mut self.calls[index];
        if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name {
                call.name.push_str(&name);
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }

    fn finish(&mut self, reason: String) -> Option<Result<LlmEvent, LlmError>> {
        self.finished = true;
        let tool_calls = std::mem::take(&mut self.calls)
            .into_iter()
            .enumerate()
            .filter(|(_, call)| !call.name.is_empty())
            .map(|(i, call)| ToolCall {
                // Some servers never send an id; the model needs one to pair
                // the call with its result.
                id: if call.id.is_empty() {
                    format!("call_{i}")
                } else {
                    call.id
                },
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: call.name,
                    arguments: call.arguments,
                },
            })
            .collect();
        Some(Ok(LlmEvent::Finished { reason, tool_calls }))
    }

    fn fail(&mut self, error: LlmError) -> Option<Result<LlmEvent, LlmError>> {
        self.finished = true;
        Some(Err(error))
    }
}

/// A client for one configured endpoint and model.
#[derive(Clone)]
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    model: String,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    request_timeout: Duration,
    idle_timeout: Duration,
    missing_key: bool,
    stream_usage: bool,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// Builds the client; nothing is sent until the first call.
    pub fn new(config: &LlmConfig) -> Result<LlmClient, LlmError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        let service = tower::ServiceBuilder::new()
            .retry(RetryPolicy::new(config.max_retries, config.max_retry_after))
            .service(ReqwestService::new(http));
        let openai = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(config.api_key.clone().unwrap_or_default());
        let client = Client::with_config(openai).with_http_service(service);
        Ok(LlmClient {
            client,
            model: config.model.clone(),
            temperature: config.temperature,
            max_tokens: config.max_tokens,
            request_timeout: config.request_timeout,
            idle_timeout: config.idle_timeout,
            missing_key: config.api_key.is_none()
                && config.base_url.trim_end_matches('/') == DEFAULT_OPENAI_BASE_URL,
            stream_usage: config.stream_usage,
        })
    }

    /// The configured model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// False when a call would fail for want of configuration (no API key
    /// for OpenAI's own endpoint).
    pub fn is_configured(&self) -> bool {
        !self.missing_key
    }

    fn check_configured(&self) -> Result<(), LlmError> {
        if self.missing_key {
            return Err(LlmError::NotConfigured(
                "No API key is configured for the model service: set OPENAI_API_KEY (or \
                 [llm] api_key in agent.toml), or point [llm] base_url / OPENAI_BASE_URL at \
                 an OpenAI-compatible server that needs none."
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Starts a streamed answer. Retries happen here, before the first chunk.
    pub async fn stream(
        &self,
        messages: &[ChatMessage],
        tools: &[Value],
    ) -> Result<LlmStream, LlmError> {
        self.check_configured()?;
        let request = ChatRequest {
            model: &self.model,
            messages,
            stream: true,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            tools,
            stream_options: self.stream_usage.then_some(StreamOptions {
                include_usage: true,
            }),
        };
        let chat = self.client.chat();
        let started = chat.create_stream_byot::<_, Chunk>(request);
        let chunks = tokio::time::timeout(self.request_timeout, started)
            .await
            .map_err(|_| LlmError::Timeout(self.request_timeout))??;
        Ok(LlmStream {
            chunks,
            idle_timeout: self.idle_timeout,
            calls: Vec::new(),
            finished: false,
            pending_finish: None,
        })
    }

    /// A short non-streamed answer (titles).
    pub async fn complete(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
    ) -> Result<String, LlmError> {
        self.check_configured()?;
        let request = ChatRequest {
            model: &self.model,
            messages,
            stream: false,
            temperature: self.temperature,
            max_tokens: Some(max_tokens),
            tools: &[],
            stream_options: None,
        };
        let chat = self.client.chat();
        let completion: Completion =
            tokio::time::timeout(self.request_timeout, chat.create_byot(request))
                .await
                .map_err(|_| LlmError::Timeout(self.request_timeout))??;
        if let Some(usage) = &completion.usage {
            usage.record();
        }
        completion
            .choices
            .into_iter()
            .find_map(|c| c.message.and_then(|m| m.content))
            .ok_or_else(|| LlmError::Protocol("the completion has no message content".to_owned()))
    }
}

/// Installs ring as rustls' crypto provider (once per process); reqwest
/// panics when building a client without one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Bounded retries of 429, 5xx and connection failures, with exponential
/// backoff and jitter, honouring `Retry-After` up to a cap. It replaces the
/// crate's default policy, which retries three times and waits as long as the
/// server asks.
#[derive(Debug, Clone)]
struct RetryPolicy {
    remaining: u32,
    attempt: u32,
    max_retry_after: Duration,
}

impl RetryPolicy {
    fn new(max_retries: u32, max_retry_after: Duration) -> Self {
        RetryPolicy {
            remaining: max_retries,
            attempt: 0,
            max_retry_after,
        }
    }

    fn delay(&self, result: &Result<reqwest::Response, OpenAIError>) -> Option<Duration> {
        let retryable = match result {
            Ok(response) => {
                let status = response.status();
                status.as_u16() == 429 || (status.is_server_error() && status.as_u16() != 501)
            }
            Err(OpenAIError::Reqwest(e)) => e.is_connect(),
            Err(_) => false,
        };
        if !retryable {
            return None;
        }
        let asked = result
            .as_ref()
            .ok()
            .and_then(|r| r.headers().get(reqwest::header::RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        match asked {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => {
                let base = Duration::from_millis(200) * 2u32.saturating_pow(self.attempt);
                let jitter = rand::random_range(0.5..1.0);
                Some(base.min(Duration::from_secs(5)).mul_f64(jitter))
            }
        }
    }
}

impl tower::retry::Policy<HttpRequestFactory, reqwest::Response, OpenAIError> for RetryPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    fn retry(
        &mut self,
        _request: &mut HttpRequestFactory,
        result: &mut Result<reqwest::Response, OpenAIError>,
    ) -> Option<Self::Future> {
        if self.remaining == 0 {
            return None;
        }
        let delay = self.delay(result)?;
        self.remaining -= 1;
        self.attempt += 1;
        tracing::warn!(
            attempt = self.attempt,
            delay_ms = delay.as_millis() as u64,
            "model service failed; retrying"
        );
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, request: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        Some(request.clone())
    }
}
