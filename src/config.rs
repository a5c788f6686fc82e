//! `agent.toml`: the schema, `${ENV}` interpolation, environment overrides and
//! validation.
//!
//! A bad file is refused at start with the file, the line, the key and the
//! reason. Every value has a default except what only the deployment can know,
//! so the shipped `agent.toml` runs on SQLite with no other service.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// A configuration that could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}{}: `{key}`: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

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
    /// `[mcp_servers.NAME]`: tool servers, by name.
    #[serde(default)]
    pub mcp_servers: BTreeMap<String, McpServerConfig>,
    /// The directory of the configuration file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8000".to_owned(),
            path: "/api/chatkit".to_owned(),
            max_body_bytes: 10 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// `[store]`: where threads live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (relative to the config file) or `postgres://…`.
    /// The environment variable `DATABASE_URL` overrides it.
    pub url: String,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// Connections for queries.
    pub max_connections: u32,
    /// Postgres only: connections that hold a run's per-thread advisory lock,
    /// which bounds the runs one replica executes at once.
    pub max_concurrent_runs: u32,
    /// How long a run waits for another run on the same thread to finish.
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://chatkitd.db".to_owned(),
            migrate_on_start: true,
            max_connections: 16,
            max_concurrent_runs: 64,
            lock_timeout: Duration::from_secs(120),
        }
    }
}

/// `[auth]`: who the caller is.
#[derive(Debug, Clone, Deserialize)]
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

/// `[limits]`: what keeps one user from hurting the others.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Answers one user may have streaming at once (0: no limit).
    pub max_concurrent_runs_per_user: u32,
    /// Requests one user may make per minute, in bursts up to `burst` (0: no limit).
    pub requests_per_minute_per_user: u32,
    pub burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_concurrent_runs_per_user: 4,
            requests_per_minute_per_user: 120,
            burst: 30,
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
        }
    }
}

/// `[mcp_servers.NAME]`: one stdio MCP server definition. `command`, `args`
/// and `env` mean what they mean in other MCP clients' configuration files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program; a path with a `/` is relative to the config file.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// The child's whole environment besides `PATH` and `HOME`: the daemon's
    /// own variables (and secrets) are not inherited.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (relative to the config file); the config file's
    /// directory by default.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub scope: McpScope,
    /// Instances kept started and idle (shared scope; per-user pools start on demand).
    #[serde(default = "default_min_idle")]
    pub min_idle: usize,
    /// Most instances at once (per user for `per_user`); calls beyond wait.
    #[serde(default = "default_max_instances")]
    pub max_instances: usize,
    /// Spawn plus MCP initialize.
    #[serde(default = "default_startup_timeout", with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// One tool call, including the wait for a free instance.
    #[serde(default = "default_call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Idle instances beyond `min_idle` are stopped after this long.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Only these tools are offered to the model (all when unset).
    #[serde(default)]
    pub enabled_tools: Option<Vec<String>>,
    /// These tools are never offered.
    #[serde(default)]
    pub disabled_tools: Vec<String>,
    /// Tool parameters the daemon fills in, hidden from the model:
    /// parameter name → source. The source `user.id` is the authenticated user.
    #[serde(default)]
    pub inject: BTreeMap<String, String>,
}

/// Whom one server instance serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpScope {
    /// Instances serve every user.
    #[default]
    Shared,
    /// An instance serves one user, whose id is in its environment as
    /// `CHATKITD_USER_ID`.
    PerUser,
}

/// Values a tool parameter can be injected with.
pub const INJECT_SOURCES: [&str; 1] = ["user.id"];

fn default_min_idle() -> usize {
    1
}
fn default_max_instances() -> usize {
    4
}
fn default_startup_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_call_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}

impl Config {
    /// Reads, interpolates, overrides from the environment and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Config::from_toml(&text, &path.display().to_string(), base_dir, &|name| {
            std::env::var(name).ok()
        })
    }

    /// Parses configuration text. `env` looks up environment variables, so
    /// tests never touch the process environment.
    pub fn from_toml(
        text: &str,
        path: &str,
        base_dir: PathBuf,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let interpolated = interpolate(text, path, env)?;
        let mut config: Config =
            toml::from_str(&interpolated).map_err(|e| parse_error(path, &interpolated, &e))?;
        config.base_dir = base_dir;
        config.apply_env(env);
        config.validate(path, text)?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(url) = set("DATABASE_URL") {
            self.store.url = url;
        }
        if let Some(key) = set("OPENAI_API_KEY") {
            self.llm.api_key = Some(key);
        }
        if let Some(base) = set("OPENAI_BASE_URL") {
            self.llm.base_url = base;
        }
        if self.llm.api_key.as_deref() == Some("") {
            self.llm.api_key = None;
        }
    }

    fn validate(&self, path: &str, text: &str) -> Result<(), ConfigError> {
        let invalid = |section: &str, key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: locate(text, section, key),
            key: format!("{section}.{key}"),
            message,
        };
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "server",
                "listen",
                format!(
                    "{:?} is not HOST:PORT with a numeric host",
                    self.server.listen
                ),
            ));
        }
        if !self.server.path.starts_with('/') {
            return Err(invalid("server", "path", "must start with `/`".to_owned()));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid(
                "server",
                "max_body_bytes",
                "must be at least 1024".to_owned(),
            ));
        }
        if !(self.store.url.starts_with("sqlite:")
            || self.store.url.starts_with("postgres://")
            || self.store.url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "store",
                "url",
                "must start with sqlite:, postgres:// or postgresql://".to_owned(),
            ));
        }
        if self.store.max_connections == 0 || self.store.max_concurrent_runs == 0 {
            return Err(invalid(
                "store",
                "max_connections",
                "pool sizes must be at least 1".to_owned(),
            ));
        }
        if !(self.llm.base_url.starts_with("http://") || self.llm.base_url.starts_with("https://"))
        {
            return Err(invalid(
                "llm",
                "base_url",
                format!("{:?} is not an http(s) URL", self.llm.base_url),
            ));
        }
        if self.llm.model.trim().is_empty() {
            return Err(invalid("llm", "model", "must not be empty".to_owned()));
        }
        if self.agent.max_turns == 0 {
            return Err(invalid(
                "agent",
                "max_turns",
                "must be at least 1".to_owned(),
            ));
        }
        self.validate_auth(&invalid)?;
        for origin in &self.server.cors_allowed_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(invalid(
                    "server",
                    "cors_allowed_origins",
                    format!("{origin:?} is not an origin like https://app.example.com"),
                ));
            }
        }
        for (name, server) in &self.mcp_servers {
            self.validate_mcp_server(path, text, name, server)?;
        }
        if let Some(instructions) = &self.agent.instructions {
            let full = self.base_dir.join(instructions);
            if !full.is_file() {
                return Err(invalid(
                    "agent",
                    "instructions",
                    format!("prompt file {} does not exist", full.display()),
                ));
            }
        }
        Ok(())
    }

    fn validate_auth(
        &self,
        invalid: &dyn Fn(&str, &str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let auth = &self.auth;
        match auth.mode {
            AuthMode::None => {
                if auth.dev_user.trim().is_empty() {
                    return Err(invalid("auth", "dev_user", "must not be empty".to_owned()));
                }
            }
            AuthMode::Jwt => {
                let sources = [
                    auth.secret.is_some(),
                    auth.public_key_file.is_some(),
                    auth.jwks_url.is_some(),
                ];
                if sources.iter().filter(|s| **s).count() != 1 {
                    return Err(invalid(
                        "auth",
                        "mode",
                        "mode = \"jwt\" needs exactly one of secret, public_key_file or jwks_url"
                            .to_owned(),
                    ));
                }
                if auth.secret.as_ref().is_some_and(|s| s.len() < 32) {
                    return Err(invalid(
                        "auth",
                        "secret",
                        "an HMAC secret must be at least 32 bytes".to_owned(),
                    ));
                }
                if let Some(file) = &auth.public_key_file {
                    let full = self.base_dir.join(file);
                    if !full.is_file() {
                        return Err(invalid(
                            "auth",
                            "public_key_file",
                            format!("{} does not exist", full.display()),
                        ));
                    }
                }
                if let Some(url) = &auth.jwks_url
                    && !(url.starts_with("https://") || url.starts_with("http://"))
                {
                    return Err(invalid(
                        "auth",
                        "jwks_url",
                        format!("{url:?} is not an http(s) URL"),
                    ));
                }
                if auth.user_claim.trim().is_empty() {
                    return Err(invalid(
                        "auth",
                        "user_claim",
                        "must not be empty".to_owned(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_mcp_server(
        &self,
        path: &str,
        text: &str,
        name: &str,
        server: &McpServerConfig,
    ) -> Result<(), ConfigError> {
        let section = format!("mcp_servers.{name}");
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: locate(text, &section, key).or_else(|| locate_header(text, &section)),
            key: format!("{section}.{key}"),
            message,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "",
                "server names use only letters, digits, `_` and `-`".to_owned(),
            ));
        }
        if server.command.trim().is_empty() {
            return Err(invalid("command", "must not be empty".to_owned()));
        }
        if server.max_instances == 0 {
            return Err(invalid("max_instances", "must be at least 1".to_owned()));
        }
        if server.min_idle > server.max_instances {
            return Err(invalid(
                "min_idle",
                format!("must not exceed max_instances ({})", server.max_instances),
            ));
        }
        for (param, source) in &server.inject {
            if !INJECT_SOURCES.contains(&source.as_str()) {
                return Err(invalid(
                    "inject",
                    format!("{param} = {source:?}: the source must be one of {INJECT_SOURCES:?}"),
                ));
            }
        }
        if server.startup_timeout.is_zero() || server.call_timeout.is_zero() {
            return Err(invalid(
                "call_timeout",
                "timeouts must be positive".to_owned(),
            ));
        }
        Ok(())
    }

    /// The socket address to listen on (validated at load).
    pub fn listen_addr(&self) -> SocketAddr {
        self.server
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8000)))
    }

    /// The store URL with a relative SQLite path resolved against the config
    /// file's directory.
    pub fn store_url(&self) -> String {
        let url = &self.store.url;
        let Some(rest) = url
            .strip_prefix("sqlite://")
            .or(url.strip_prefix("sqlite:"))
        else {
            return url.clone();
        };
        if rest.starts_with('/') || rest.starts_with(":memory:") {
            return url.clone();
        }
        format!("sqlite://{}", self.base_dir.join(rest).display())
    }

    /// The system prompt: the instructions file's text, or a plain default.
    pub fn system_prompt(&self) -> Result<String, ConfigError> {
        match &self.agent.instructions {
            None => Ok(format!("You are {}, a helpful assistant.", self.agent.name)),
            Some(file) => {
                let full = self.base_dir.join(file);
                std::fs::read_to_string(&full).map_err(|source| ConfigError::Read {
                    path: full.display().to_string(),
                    source,
                })
            }
        }
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in the text. An unset variable
/// without a default is an error naming the line.
fn interpolate(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        // Comments are left alone, so a commented-out `${VAR}` needs no value.
        let comment_at = comment_start(line);
        while let Some(start) = rest.find("${") {
            let absolute = line.len() - rest.len() + start;
            if comment_at.is_some_and(|c| absolute > c) {
                break;
            }
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(ConfigError::Parse {
                    path: path.to_owned(),
                    line: index + 1,
                    message: "unterminated `${` (write `${NAME}`)".to_owned(),
                });
            };
            let spec = &after[..end];
            let (name, default) = match spec.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (spec, None),
            };
            let value = match (env(name), default) {
                (Some(value), _) => value,
                (None, Some(default)) => default.to_owned(),
                (None, None) => {
                    return Err(ConfigError::Parse {
                        path: path.to_owned(),
                        line: index + 1,
                        message: format!(
                            "environment variable {name} is not set (use ${{{name}:-default}} for a fallback)"
                        ),
                    });
                }
            };
            // Values land inside TOML strings: escape what would end or break them.
            out.push_str(&value.replace('\\', "\\\\").replace('"', "\\\""));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Byte offset of a `#` comment outside any string on this line, if any.
fn comment_start(line: &str) -> Option<usize> {
    let mut in_string: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match in_string {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    in_string = None;
                }
            }
            None if c == '"' || c == '\'' => in_string = Some(c),
            None if c == '#' => return Some(i),
            None => {}
        }
    }
    None
}

fn parse_error(path: &str, text: &str, error: &toml::de::Error) -> ConfigError {
    let line = error
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
        .unwrap_or(1);
    ConfigError::Parse {
        path: path.to_owned(),
        line,
        message: error.message().to_owned(),
    }
}

/// The line of a `[section]` header.
fn locate_header(text: &str, section: &str) -> Option<usize> {
    let header = format!("[{section}]");
    text.lines().position(|l| l.trim() == header).map(|i| i + 1)
}

/// The line where `key` is set inside `[section]`, for error messages.
fn locate(text: &str, section: &str, key: &str) -> Option<usize> {
    let header = format!("[{section}]");
    let mut in_section = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_section = trimmed == header;
            continue;
        }
        if in_section
            && !key.is_empty()
            && trimmed
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(index + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_toml(text, "agent.toml", PathBuf::from("."), &move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn empty_file_gets_working_defaults() {
        let config = load("", &[]).expect("defaults are valid");
        assert_eq!(config.server.listen, "127.0.0.1:8000");
        assert_eq!(config.store.url, "sqlite://chatkitd.db");
        assert_eq!(config.server.max_body_bytes, 10 * 1024 * 1024);
        assert!(config.llm.api_key.is_none());
    }

    #[test]
    fn interpolates_and_environment_overrides() {
        let text = "[llm]\nmodel = \"${MODEL}\"\nbase_url = \"${BASE:-http://localhost:11434/v1}\"\n# api_key = \"${UNSET}\"\n";
        let config =
            load(text, &[("MODEL", "llama\"3"), ("OPENAI_API_KEY", "sk-x")]).expect("valid");
        assert_eq!(config.llm.model, "llama\"3");
        assert_eq!(config.llm.base_url, "http://localhost:11434/v1");
        assert_eq!(config.llm.api_key.as_deref(), Some("sk-x"));
        let config = load("", &[("DATABASE_URL", "postgres://db/x")]).expect("valid");
        assert_eq!(config.store.url, "postgres://db/x");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let err = load("[llm]\nmodel = \"${NOPE}\"\n", &[]).expect_err("unset");
        assert_eq!(
            err.to_string(),
            "agent.toml:2: environment variable NOPE is not set (use ${NOPE:-default} for a fallback)"
        );
        let err = load("[server]\nlisten = \"localhost\"\n", &[]).expect_err("bad addr");
        assert_eq!(
            err.to_string(),
            "agent.toml:2: `server.listen`: \"localhost\" is not HOST:PORT with a numeric host"
        );
        let err = load("[server]\nmax_body_bytes = \"big\"\n", &[]).expect_err("bad type");
        assert!(err.to_string().starts_with("agent.toml:2: "), "{err}");
        let err = load("[llm]\nmodle = \"x\"\n", &[]).expect_err("typo");
        assert!(err.to_string().contains("modle"), "{err}");
        let err = load("[store]\nurl = \"mysql://x\"\n", &[]).expect_err("bad url");
        assert!(err.to_string().contains("store.url"), "{err}");
    }

    #[test]
    fn relative_sqlite_paths_resolve_against_the_config_dir() {
        let mut config = load("", &[]).expect("valid");
        config.base_dir = PathBuf::from("/etc/chatkitd");
        assert_eq!(config.store_url(), "sqlite:///etc/chatkitd/chatkitd.db");
        config.store.url = "sqlite:///var/lib/c.db".into();
        assert_eq!(config.store_url(), "sqlite:///var/lib/c.db");
    }
}
