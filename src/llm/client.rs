//! [`LlmClient`]: one configured endpoint and model, reached through
//! async-openai's bring-your-own-types path for chat completions and through
//! reqwest directly for `GET /models`.
//!
//! It sets the timeouts the crate leaves unset (connect, first byte; the idle
//! timeout between chunks is the stream's) and replaces the crate's retries
//! with [`RetryPolicy`]. It knows nothing of ChatKit or of the agent's turns.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::middleware::ReqwestService;

use super::LlmError;
use super::limits::StreamLimits;
use super::retry::RetryPolicy;
use super::stream::LlmStream;
use super::wire::{ChatMessage, ChatRequest, Completion, ModelList, StreamOptions, ToolDefinition};
use crate::config::{DEFAULT_OPENAI_BASE_URL, LlmConfig};

/// A client for one configured endpoint and model.
#[derive(Clone)]
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    /// The same connection pool without the retry layer, for the requests
    /// async-openai has no bring-your-own-types path for (`/models`).
    http: reqwest::Client,
    /// Without a trailing slash.
    base_url: String,
    /// Never empty when set.
    api_key: Option<String>,
    model: String,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    request_timeout: Duration,
    idle_timeout: Duration,
    limits: StreamLimits,
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
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        let service = tower::ServiceBuilder::new()
            .retry(RetryPolicy::new(config.max_retries, config.max_retry_after))
            .service(ReqwestService::new(http.clone()));
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let openai = OpenAIConfig::new()
            .with_api_base(&base_url)
            .with_api_key(config.api_key.clone().unwrap_or_default());
        let client = Client::with_config(openai).with_http_service(service);
        Ok(LlmClient {
            client,
            http,
            missing_key: config.api_key.is_none() && base_url == DEFAULT_OPENAI_BASE_URL,
            base_url,
            api_key: config.api_key.clone().filter(|k| !k.is_empty()),
            model: config.model.clone(),
            temperature: config.temperature,
            max_tokens: config.max_tokens,
            request_timeout: config.request_timeout,
            idle_timeout: config.idle_timeout,
            limits: StreamLimits::from_config(config),
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
        tools: &[ToolDefinition],
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
        let started = chat.create_stream_byot(request);
        let chunks = tokio::time::timeout(self.request_timeout, started)
            .await
            .map_err(|_| LlmError::Timeout(self.request_timeout))??;
        Ok(LlmStream::new(chunks, self.idle_timeout, self.limits))
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

    /// The models the endpoint lists (`GET /models`), once, without retries:
    /// it is asked by an operator's check, which should see the first answer.
    ///
    /// A server without the route answers [`LlmError::NoModelsRoute`]; any
    /// other error status is [`LlmError::Api`] with the body as its message;
    /// a success whose body is not a model list is [`LlmError::Protocol`].
    pub async fn list_models(&self) -> Result<ModelList, LlmError> {
        self.check_configured()?;
        let mut request = self
            .http
            .get(format!("{}/models", self.base_url))
            .timeout(self.request_timeout);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| self.request_failed(e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(LlmError::NoModelsRoute);
        }
        if !status.is_success() {
            return Err(LlmError::Api {
                status: status.as_u16(),
                message: response.text().await.unwrap_or_default(),
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| LlmError::Protocol(format!("the model list could not be read: {e}")))?;
        serde_json::from_slice(&body)
            .map_err(|e| LlmError::Protocol(format!("not a model list: {e}")))
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
