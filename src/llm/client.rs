//! [`LlmClient`]: one configured endpoint and model. Chat completions (or
//! Responses, `[llm] api`) go through async-openai's tower middleware (its replayable request factory
//! and reqwest service) under our [`RetryPolicy`]; `GET /models` goes to
//! reqwest directly, without retries.
//!
//! Answers are read here, not by async-openai's client, and always within a
//! bound: a streamed answer by [`LlmStream`] (one chunk at a time, pulled as
//! it is consumed), a completion or an error answer up to a size. The
//! crate's client reads bodies whole and streams through an unbounded
//! channel, which a flooding server would turn into unbounded memory.
//!
//! It sets the timeouts the crate leaves unset (connect, first byte; the idle
//! timeout between chunks is the stream's). It knows nothing of ChatKit or of
//! the agent's turns.

use std::sync::Arc;
use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use bytes::Bytes;
use tower::ServiceExt;
use tower::retry::Retry;

use super::LlmError;
use super::body::{ERROR_BODY_BYTES, api_error, read_at_most, read_json};
use super::limits::StreamLimits;
use super::responses::{self, HostedRequest, ReasoningOptions};
use super::retry::RetryPolicy;
use super::stream::{Decoder, LlmStream};
use super::wire::{
    ChatMessage, ChatRequest, ForcedFunction, ForcedTool, ModelList, StreamOptions, ToolDefinition,
    ToolKind, error_answer_message,
};
use crate::config::{
    DEFAULT_OPENAI_BASE_URL, LlmApi, LlmConfig, ReasoningEffort, ReasoningSummary,
};

/// Most bytes of a transcription answer.
const TRANSCRIPT_BYTES: usize = 1024 * 1024;
mod completion;
mod transcription;

use transcription::Transcriber;

/// Fewest output tokens a non-streamed Responses call is given (a reasoning
/// model thinks from the same budget).
const MIN_RESPONSES_COMPLETION_TOKENS: u32 = 1024;
/// Most bytes of a `GET /models` answer (a few hundred models).
const MODEL_LIST_BYTES: usize = 4 * 1024 * 1024;

/// The choices of one answer besides its messages and tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Turn<'a> {
    /// The model to answer with; the configured one when `None`.
    pub model: Option<&'a str>,
    /// A tool (of those offered) the model must call.
    pub tool_choice: Option<&'a str>,
    /// The answering agent's own reasoning options, over the model's.
    pub reasoning_effort: Option<ReasoningEffort>,
    pub reasoning_summary: Option<ReasoningSummary>,
}

/// A client for one configured endpoint and model.
#[derive(Clone)]
pub struct LlmClient {
    /// Chat completions, retried by [`RetryPolicy`] before an answer starts.
    service: Retry<RetryPolicy, ReqwestService>,
    /// The same connection pool without the retry layer (`/models`).
    http: reqwest::Client,
    /// Without a trailing slash.
    base_url: String,
    /// `{base_url}/chat/completions`, parsed once rather than per request.
    chat_url: reqwest::Url,
    /// `{base_url}/responses`.
    responses_url: reqwest::Url,
    /// `[llm] api`.
    api: LlmApi,
    /// `[llm] reasoning_effort` and `reasoning_summary`, when either is set.
    reasoning: Option<ReasoningOptions>,
    /// The models of `[llm] models` with reasoning options of their own.
    model_reasoning: Vec<(String, ReasoningOptions)>,
    /// `[llm.hosted_tools]`, offered with every answer (Responses API).
    hosted: Arc<HostedRequest>,
    /// Never empty when set.
    api_key: Option<String>,
    model: String,
    /// `[llm] models`: empty when only `model` is offered.
    models: Vec<String>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    request_timeout: Duration,
    idle_timeout: Duration,
    limits: StreamLimits,
    missing_key: bool,
    stream_usage: bool,
    /// `input.transcribe`'s endpoint, when `[llm] transcription_model` is set.
    transcriber: Option<Transcriber>,
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
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        let service = Retry::new(
            RetryPolicy::new(config.max_retries, config.max_retry_after),
            ReqwestService::new(http.clone()),
        );
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{base_url}/{path}")).map_err(|e| {
                LlmError::NotConfigured(format!("[llm] base_url {base_url:?} is not a URL: {e}"))
            })
        };
        let chat_url = url("chat/completions")?;
        let responses_url = url("responses")?;
        let reasoning = (config.reasoning_effort.is_some() || config.reasoning_summary.is_some())
            .then_some(ReasoningOptions {
                effort: config.reasoning_effort,
                summary: config.reasoning_summary,
            });
        let transcriber = Transcriber::from_config(config, &base_url)?;
        Ok(LlmClient {
            transcriber,
            chat_url,
            responses_url,
            api: config.api,
            reasoning,
            hosted: Arc::new(HostedRequest::new(&config.hosted_tools)),
            service,
            http,
            missing_key: config.api_key.is_none() && base_url == DEFAULT_OPENAI_BASE_URL,
            base_url,
            api_key: config.api_key.clone().filter(|k| !k.is_empty()),
            model: config.model.clone(),
            models: config.models.iter().map(|m| m.name.clone()).collect(),
            model_reasoning: config
                .models
                .iter()
                .filter(|m| m.reasoning_effort.is_some() || m.reasoning_summary.is_some())
                .map(|m| {
                    let options = ReasoningOptions {
                        effort: m.reasoning_effort.or(config.reasoning_effort),
                        summary: m.reasoning_summary.or(config.reasoning_summary),
                    };
                    (m.name.clone(), options)
                })
                .collect(),
            temperature: config.temperature,
            max_tokens: config.max_tokens,
            request_timeout: config.request_timeout,
            idle_timeout: config.idle_timeout,
            limits: StreamLimits::from_config(config),
            stream_usage: config.stream_usage,
        })
    }

    /// The reasoning options of `model`: its own from `[llm] models`, else
    /// `[llm]`'s.
    fn reasoning_for(&self, model: &str) -> Option<ReasoningOptions> {
        self.model_reasoning
            .iter()
            .find(|(name, _)| name == model)
            .map(|(_, options)| *options)
            .or(self.reasoning)
    }

    /// The reasoning options of one call: the turn's own over the model's.
    fn reasoning_of(&self, model: &str, turn: &Turn<'_>) -> Option<ReasoningOptions> {
        let base = self.reasoning_for(model);
        if turn.reasoning_effort.is_none() && turn.reasoning_summary.is_none() {
            return base;
        }
        Some(ReasoningOptions {
            effort: turn.reasoning_effort.or(base.and_then(|b| b.effort)),
            summary: turn.reasoning_summary.or(base.and_then(|b| b.summary)),
        })
    }

    /// The configured model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The models a user may pick (`[llm] models`, or just the default).
    pub fn models(&self) -> &[String] {
        if self.models.is_empty() {
            std::slice::from_ref(&self.model)
        } else {
            &self.models
        }
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
        tools: &[ToolDefinition],
        turn: Turn<'_>,
    ) -> Result<LlmStream, LlmError> {
        self.check_configured()?;
        let model = turn.model.unwrap_or(&self.model);
        let response = match self.api {
            LlmApi::ChatCompletions => {
                // Only a tool that is offered can be required.
                let tool_choice = turn
                    .tool_choice
                    .filter(|name| tools.iter().any(|t| t.name() == *name))
                    .map(|name| ForcedTool {
                        kind: ToolKind::Function,
                        function: ForcedFunction { name },
                    });
                let request = ChatRequest {
                    model,
                    messages,
                    stream: true,
                    temperature: self.temperature,
                    max_tokens: self.max_tokens,
                    tools,
                    tool_choice,
                    stream_options: self.stream_usage.then_some(StreamOptions {
                        include_usage: true,
                    }),
                    reasoning_effort: self.reasoning_of(model, &turn).and_then(|r| r.effort),
                    response_format: None,
                };
                self.send(&self.chat_url, &request).await?
            }
            LlmApi::Responses => {
                let body = responses::request_body(
                    messages,
                    tools,
                    responses::Options {
                        model,
                        stream: true,
                        temperature: self.temperature,
                        max_output_tokens: self.max_tokens,
                        tool_choice: turn.tool_choice,
                        reasoning: self.reasoning_of(model, &turn),
                        hosted: Some(&self.hosted),
                        text_format: None,
                    },
                );
                self.send(&self.responses_url, &body).await?
            }
        };
        Ok(LlmStream::new(
            Box::pin(response.bytes_stream()),
            self.idle_timeout,
            self.limits,
            Decoder::new(self.api, self.limits),
        ))
    }

    /// Posts a request to `url`, retrying as [`RetryPolicy`] says, until an
    /// answer's headers arrive within the request timeout. An error status
    /// is [`LlmError::Api`] with the message of its (bounded) body.
    async fn send(
        &self,
        url: &reqwest::Url,
        request: &impl serde::Serialize,
    ) -> Result<reqwest::Response, LlmError> {
        let mut body = Vec::with_capacity(4096);
        serde_json::to_writer(&mut body, request)
            .map_err(|e| LlmError::Protocol(format!("the request cannot be written: {e}")))?;
        let body = Bytes::from(body);
        let http = self.http.clone();
        let url = url.clone();
        let key = self.api_key.clone();
        // Rebuilt for every attempt; the body bytes are shared, not copied.
        let factory = HttpRequestFactory::new(move || {
            let mut builder = http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(key) = &key {
                builder = builder.bearer_auth(key);
            }
            let built = builder.build().map_err(OpenAIError::Reqwest);
            async move { built }
        });
        let answered =
            tokio::time::timeout(self.request_timeout, self.service.clone().oneshot(factory))
                .await
                .map_err(|_| LlmError::Timeout(self.request_timeout))?;
        let response = match answered {
            Ok(response) => response,
            Err(OpenAIError::Reqwest(e)) => return Err(self.request_failed(e)),
            Err(other) => return Err(other.into()),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // The message is what the server said, cut at the bound.
        let body = match read_at_most(response, ERROR_BODY_BYTES).await {
            Ok(Some(body)) => body,
            Ok(None) | Err(_) => Vec::new(),
        };
        Err(LlmError::Api {
            status: status.as_u16(),
            message: error_answer_message(&body),
        })
    }

    /// The models the endpoint lists (`GET /models`), once, without retries:
    /// it is asked by an operator's check, which should see the first answer.
    ///
    /// A server without the route answers [`LlmError::NoModelsRoute`]; any
    /// other error status is [`LlmError::Api`] with the body as its message;
    /// a success whose body is not a model list is [`LlmError::Protocol`].
    pub async fn list_models(&self) -> Result<ModelList, LlmError> {
        self.check_configured()?;
        let request = self
            .http
            .get(format!("{}/models", self.base_url))
            .timeout(self.request_timeout);
        let response = self.send_once(request, self.api_key.as_deref()).await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(LlmError::NoModelsRoute);
        }
        if !status.is_success() {
            return Err(api_error(response).await);
        }
        read_json(response, MODEL_LIST_BYTES, "model list").await
    }

    /// Whether the endpoint serves the Responses API (`POST /responses`),
    /// asked once with a request that has no input: a server with the route
    /// refuses it as invalid and spends nothing on it; one without answers
    /// 404 (or 405).
    pub async fn serves_responses(&self) -> Result<bool, LlmError> {
        self.check_configured()?;
        let body = serde_json::json!({"model": self.model, "input": [], "store": false});
        let request = self
            .http
            .post(self.responses_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(self.request_timeout);
        let response = self.send_once(request, self.api_key.as_deref()).await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::METHOD_NOT_ALLOWED
        {
            return Ok(false);
        }
        if status.is_success() || status.is_client_error() {
            return Ok(true);
        }
        Err(api_error(response).await)
    }

    /// Sends a request once, without the retry layer, with `key` as its
    /// bearer.
    async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
        key: Option<&str>,
    ) -> Result<reqwest::Response, LlmError> {
        let request = match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        request.send().await.map_err(|e| self.request_failed(e))
    }

    /// A request that got no answer, with its causes but without the URL
    /// (the caller knows it, and it may carry credentials).
    fn request_failed(&self, error: reqwest::Error) -> LlmError {
        if error.is_timeout() {
            return LlmError::Timeout(self.request_timeout);
        }
        let prefix = if error.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        let error = error.without_url();
        let mut reasons = vec![error.to_string()];
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !reasons.iter().any(|r| r.contains(&text)) {
                reasons.push(text);
            }
            source = cause.source();
        }
        LlmError::Transport(format!("{prefix}: {}", reasons.join(": ")))
    }
}
