//! The schema of `agent.toml`: one struct per section, with the defaults that
//! make an empty file a working SQLite setup, and the few rules other modules
//! share (which JWT key source is configured, where the development auth mode
//! may listen).
//!
//! Parsing, interpolation and validation are not here: see [`super`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

use super::agents::{GuardrailConfig, HandoffReturn, SpecialistConfig};
use super::attachments::AttachmentsConfig;
use super::hosted::HostedTools;
use super::interactive::{ActionConfig, ClientToolConfig};
pub use super::mcp::{InjectSource, McpScope, McpServerConfig};
use super::models::{ModelChoice, ReasoningEffort, ReasoningSummary};
use super::url::StoreUrl;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub llm: LlmConfig,
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default)]
    pub attachments: AttachmentsConfig,
    /// `[mcp_servers.NAME]`: tool servers, by name.
    #[serde(default)]
    pub mcp_servers: BTreeMap<String, McpServerConfig>,
    /// `[actions."TYPE"]`: what each widget action type does.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionConfig>,
    /// `[client_tools.NAME]`: tools that run in the browser.
    #[serde(default)]
    pub client_tools: BTreeMap<String, ClientToolConfig>,
    /// `[agents.NAME]`: specialists the entry agent can hand off to.
    #[serde(default)]
    pub agents: BTreeMap<String, SpecialistConfig>,
    /// `[guardrails.NAME]`: checks of the user's message or the answer.
    #[serde(default)]
    pub guardrails: BTreeMap<String, GuardrailConfig>,
    /// The directory of the configuration file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(deserialize_with = "socket_address")]
    pub listen: SocketAddr,
    /// Path of the ChatKit endpoint.
    pub path: String,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long runs in flight may go on after a shutdown signal.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Browser origins allowed to call the endpoint from another origin
    /// (CORS); none by default. `["*"]` allows any origin.
    pub cors_allowed_origins: Vec<String>,
    /// How long a streaming client may leave an event untaken (once the
    /// buffers between it and the run are full) before it is treated as
    /// gone: the run is cancelled, its partial answer kept.
    #[serde(with = "humantime_serde")]
    pub stream_write_timeout: Duration,
    /// Time for a client to send a request's headers (HTTP/1); slower
    /// connections are closed. Also bounds an idle HTTP/1 connection: hyper
    /// counts the wait for the next request's headers.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time for a whole request body to arrive; slower ones get 408.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Connections open at once; more wait in the accept queue. Capped at
    /// half the open files limit, so clients can never take every descriptor.
    pub max_connections: usize,
    /// Length of the kernel's queue of connections not yet accepted (the
    /// `listen` backlog; Linux caps it at `net.core.somaxconn`). When it is
    /// full, a new client's connection attempt is dropped and retried by
    /// its kernel a second later, so it should hold a burst of new clients.
    pub listen_backlog: u32,
    /// Answers this replica streams at once, across users; 0 (the default)
    /// sets no cap. A run beyond it is refused at once with 429 and
    /// `Retry-After`, before anything is stored.
    pub max_concurrent_runs: u32,
    /// `serve` writes its process id here (relative to the config file)
    /// and removes it at exit; `chatkitd reload` reads it.
    pub pid_file: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            path: "/api/chatkit".to_owned(),
            max_body_bytes: 10 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            cors_allowed_origins: Vec::new(),
            stream_write_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            listen_backlog: 4096,
            max_concurrent_runs: 0,
            pid_file: None,
        }
    }
}

/// `[store]`: where threads live.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (relative to the config file) or `postgres://…`.
    /// The environment variable `DATABASE_URL` overrides it.
    pub url: StoreUrl,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// Connections for queries.
    pub max_connections: u32,
    /// No longer used: run locks share one connection per replica, so they
    /// bound nothing (see `[server] max_concurrent_runs`). Accepted so that
    /// older files still load; the daemon warns when it is set.
    pub max_concurrent_runs: Option<u32>,
    /// How long a run waits for another run on the same thread to finish.
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: StoreUrl::Sqlite {
                path: PathBuf::from("chatkitd.db"),
                query: None,
            },
            migrate_on_start: true,
            max_connections: 16,
            max_concurrent_runs: None,
            lock_timeout: Duration::from_secs(120),
        }
    }
}

/// `[auth]`: who the caller is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The single user of `mode = "none"`.
    pub dev_user: String,
    /// Allow `mode = "none"` on a non-loopback address (you almost certainly
    /// do not want this).
    pub allow_insecure_none_auth: bool,
    /// `jwt`: shared secret for HS256/384/512.
    pub secret: Option<String>,
    /// `jwt`: PEM file with an RSA or EC public key (RS*, PS*, ES*).
    pub public_key_file: Option<PathBuf>,
    /// `jwt`: URL of a JWKS document (keys chosen by `kid`).
    pub jwks_url: Option<String>,
    /// `jwt`: required `iss`, when set.
    pub issuer: Option<String>,
    /// `jwt`: required `aud` (one of these), when set.
    pub audience: Option<Vec<String>>,
    /// `jwt`: the claim that holds the user id.
    pub user_claim: String,
    /// `jwt`: clock skew allowed on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// `jwt`: the algorithms accepted; by default every one the key type allows.
    pub algorithms: Option<Vec<String>>,
    /// `jwt`: claims offered to the system prompt as `{{user.name}}` and
    /// `{{user.email}}`; never used for identity.
    pub name_claim: String,
    pub email_claim: String,
    /// `jwt`: how long fetched JWKS keys are used before they are fetched again.
    #[serde(with = "humantime_serde")]
    pub jwks_cache_ttl: Duration,
    /// `jwt`: the shortest interval between two JWKS fetches caused by
    /// unknown `kid`s, so bad tokens cannot make the daemon hammer the issuer.
    #[serde(with = "humantime_serde")]
    pub jwks_min_refresh_interval: Duration,
    /// `jwt`: how long past `jwks_cache_ttl` cached keys are still used while
    /// a refresh fails or hangs (tokens with a known `kid` are verified at
    /// once meanwhile); beyond it, requests get 503 until a fetch succeeds.
    /// 0: expired keys are never used.
    #[serde(with = "humantime_serde")]
    pub jwks_max_stale: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::None,
            dev_user: "dev".to_owned(),
            allow_insecure_none_auth: false,
            secret: None,
            public_key_file: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            user_claim: "sub".to_owned(),
            leeway: Duration::from_secs(30),
            algorithms: None,
            name_claim: "name".to_owned(),
            email_claim: "email".to_owned(),
            jwks_cache_ttl: Duration::from_secs(600),
            jwks_min_refresh_interval: Duration::from_secs(10),
            jwks_max_stale: Duration::from_secs(3600),
        }
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Development only: every request acts as `dev_user`.
    None,
    /// A bearer JWT on every request; no valid token, no access.
    Jwt,
}

/// Where `mode = "jwt"` finds the key that verifies tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource<'a> {
    /// A shared HMAC secret.
    Secret(&'a str),
    /// A PEM public key file, relative to the config file's directory.
    PublicKeyFile(&'a Path),
    /// A JWKS document, keys chosen by `kid`.
    JwksUrl(&'a str),
}

/// `[auth]` names no key source, or more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("mode = \"jwt\" needs exactly one of secret, public_key_file or jwks_url")]
pub struct KeySourceError;

impl AuthConfig {
    /// The one key source configured for `mode = "jwt"`.
    pub fn key_source(&self) -> Result<KeySource<'_>, KeySourceError> {
        match (&self.secret, &self.public_key_file, &self.jwks_url) {
            (Some(secret), None, None) => Ok(KeySource::Secret(secret)),
            (None, Some(file), None) => Ok(KeySource::PublicKeyFile(file)),
            (None, None, Some(url)) => Ok(KeySource::JwksUrl(url)),
            _ => Err(KeySourceError),
        }
    }

    /// Whether the daemon may listen on `addr` with this auth mode: the
    /// development mode only on a loopback address, unless
    /// `allow_insecure_none_auth` says otherwise.
    pub fn permits_listen(&self, addr: SocketAddr) -> bool {
        match self.mode {
            AuthMode::Jwt => true,
            AuthMode::None => addr.ip().is_loopback() || self.allow_insecure_none_auth,
        }
    }
}

/// `[limits]`: what keeps one user from hurting the others.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Answers one user may have streaming at once (0: no limit).
    pub max_concurrent_runs_per_user: u32,
    /// Requests one user may make per minute, in bursts up to `burst` (0: no limit).
    pub requests_per_minute_per_user: u32,
    pub burst: u32,
    /// Characters of one user message (its text, quoted text, tags and
    /// options) and of one client tool output; a longer one is refused with
    /// 400 before anything is stored.
    pub max_message_chars: usize,
    /// Bytes of stored JSON in one page of `items.list`, `threads.list` or
    /// `threads.get_by_id`; a page that would pass it ends early with
    /// `has_more: true`. A single item larger than this is served alone.
    pub max_list_bytes: usize,
    /// Item ids in one `items.feedback` request; more are refused with 400.
    pub max_feedback_items: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_concurrent_runs_per_user: 4,
            requests_per_minute_per_user: 120,
            burst: 30,
            max_message_chars: 100_000,
            max_list_bytes: 8 * 1024 * 1024,
            max_feedback_items: 100,
        }
    }
}

/// `[llm]`: the OpenAI-compatible endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Base URL up to `/v1`. `OPENAI_BASE_URL` overrides it.
    pub base_url: String,
    /// Bearer key. `OPENAI_API_KEY` overrides it. Optional for local servers.
    pub api_key: Option<String>,
    pub model: String,
    /// Sampling temperature; omitted from requests when unset.
    pub temperature: Option<f32>,
    /// Upper bound on tokens of one answer; omitted when unset.
    pub max_tokens: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long to wait for the response headers (the first byte).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest silence allowed between two chunks of a streamed answer.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Retries on 429, 5xx and connection failures, before the stream starts.
    pub max_retries: u32,
    /// Longest `Retry-After` honoured; a longer one fails the request at once.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Ask for token usage at the end of streams (`stream_options.include_usage`)
    /// for the token metrics; turn off for a server that rejects the option.
    pub stream_usage: bool,
    /// Most tool calls one model answer may ask for (1 to 128); an answer
    /// with more ends the run with an `error` event, its text kept.
    pub max_tool_calls: usize,
    /// Largest arguments of one tool call the model may stream, in bytes.
    pub max_tool_arguments_bytes: usize,
    /// Largest text of one model answer, in bytes; beyond it the run ends
    /// with an `error` event and the text so far is kept.
    pub max_answer_bytes: usize,
    /// The models a user may pick in the composer (`inference_options.model`);
    /// `model` is the default and must be among them. Empty: only `model`.
    /// Each may set its own reasoning options.
    pub models: Vec<ModelChoice>,
    /// The model `input.transcribe` sends audio to (`/audio/transcriptions`);
    /// unset, voice input is not enabled.
    pub transcription_model: Option<String>,
    /// Another endpoint for transcription (default: `base_url`).
    pub transcription_base_url: Option<String>,
    /// Its key (default: `api_key`).
    pub transcription_api_key: Option<String>,
    /// Largest audio clip accepted, in bytes (decoded).
    pub max_audio_bytes: usize,
    /// The API the model is asked through: chat completions, which every
    /// OpenAI-compatible server speaks, or OpenAI's Responses API.
    pub api: LlmApi,
    /// How hard a reasoning model thinks (`reasoning.effort`, Responses API);
    /// unset, the model's default and no reasoning options are sent.
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Which summary of its thinking a reasoning model streams
    /// (`reasoning.summary`, Responses API); unset, none is asked for.
    pub reasoning_summary: Option<ReasoningSummary>,
    /// `[llm.hosted_tools]`: tools OpenAI runs itself (Responses API only).
    pub hosted_tools: HostedTools,
}

/// `[llm] api`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmApi {
    /// `POST {base_url}/chat/completions`.
    #[default]
    ChatCompletions,
    /// `POST {base_url}/responses`, stateless (`store: false`).
    Responses,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: DEFAULT_OPENAI_BASE_URL.to_owned(),
            api_key: None,
            model: "gpt-4.1-mini".to_owned(),
            temperature: None,
            max_tokens: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_retries: 2,
            max_retry_after: Duration::from_secs(20),
            stream_usage: true,
            max_tool_calls: 32,
            max_tool_arguments_bytes: 1024 * 1024,
            max_answer_bytes: 1024 * 1024,
            models: Vec::new(),
            transcription_model: None,
            transcription_base_url: None,
            transcription_api_key: None,
            max_audio_bytes: 10 * 1024 * 1024,
            api: LlmApi::ChatCompletions,
            reasoning_effort: None,
            reasoning_summary: None,
            hosted_tools: HostedTools::default(),
        }
    }
}

/// OpenAI's own endpoint, which needs an API key.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// `[agent]`: what the assistant is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub name: String,
    /// Path of the system prompt (relative to the config file), read at start.
    pub instructions: Option<PathBuf>,
    /// Model calls allowed in one run (tool calls need more than one).
    pub max_turns: u32,
    /// Generate a short title after the first exchange of an untitled thread.
    pub title_generation: bool,
    /// Approximate token budget for the history sent to the model; the oldest
    /// turns are left out first.
    pub history_token_budget: usize,
    /// Most stored items read back when building the history.
    pub history_max_items: u32,
    /// Tool results longer than this many bytes are cut, with a marker, before
    /// the model reads them.
    pub max_tool_output_bytes: usize,
    /// Bytes of images one tool result may show the model (decoded); images
    /// past it are named, not shown.
    pub max_tool_image_bytes: usize,
    /// How long a tool server's question to the user (MCP elicitation)
    /// waits for an answer; the call is then told no answer came.
    #[serde(with = "humantime_serde")]
    pub question_timeout: Duration,
    /// Show the model's thinking (reasoning deltas) as a reasoning workflow
    /// of thoughts before its answer.
    pub show_reasoning: bool,
    /// The agents of `[agents]` this one may hand the conversation to.
    pub handoffs: Vec<String>,
    /// Where the next message starts after a handoff.
    pub handoff_return: HandoffReturn,
    /// Handoffs allowed in one answer.
    pub max_handoffs: u32,
    /// The agents of `[agents]` this one may ask as tools.
    pub tools_from_agents: Vec<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            name: "Assistant".to_owned(),
            instructions: None,
            max_turns: 8,
            title_generation: true,
            history_token_budget: 24_000,
            history_max_items: 400,
            max_tool_output_bytes: 16 * 1024,
            max_tool_image_bytes: 4 * 1024 * 1024,
            question_timeout: Duration::from_secs(600),
            show_reasoning: true,
            handoffs: Vec::new(),
            handoff_return: HandoffReturn::Stay,
            max_handoffs: 4,
            tools_from_agents: Vec::new(),
        }
    }
}

/// `[server] listen` as a socket address, refused with what is expected.
fn socket_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!("{text:?} is not HOST:PORT with a numeric host"))
    })
}
