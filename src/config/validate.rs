//! The rules a configuration must keep beyond its types: ranges, non-empty
//! names, URL schemes, files that must exist, the JWT key source. Each
//! broken rule is reported with the line of the key that breaks it.
//!
//! What parses into a typed field (addresses, store URLs, inject sources) is
//! checked while reading the file, not here.

mod agents;
mod interactive;

use super::document::Document;
use super::schema::{AuthMode, Config, LlmApi, McpServerConfig};
use super::{ConfigError, KeySource};

/// Checks every rule; the first broken one is the error.
pub(super) fn validate(config: &Config, document: &Document<'_>) -> Result<(), ConfigError> {
    let check = Check { config, document };
    // In the order the rules were always checked, so a file with several
    // faults reports the same one first.
    check.server()?;
    check.store()?;
    check.limits()?;
    check.llm()?;
    check.max_turns()?;
    check.auth()?;
    check.cors()?;
    for (name, server) in &config.mcp_servers {
        check.mcp_server(name, server)?;
    }
    check.instructions()?;
    super::attachments::validate(&config.attachments, document)?;
    interactive::validate(config, document)?;
    agents::validate(config, document)
}

/// A broken rule at the key `keys` names, on the line that sets it (or, for
/// a key the file leaves out, the line of its table).
fn invalid_at(document: &Document<'_>, keys: &[&str], message: String) -> ConfigError {
    ConfigError::Invalid {
        path: document.path().to_owned(),
        line: document
            .key_line(keys)
            .or_else(|| document.key_line(&keys[..keys.len().saturating_sub(1)])),
        key: keys.join("."),
        message,
    }
}

struct Check<'c> {
    config: &'c Config,
    document: &'c Document<'c>,
}

impl Check<'_> {
    /// A broken rule of `[section] key`, at the line that sets it, if any.
    fn invalid(&self, section: &str, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.document.path().to_owned(),
            line: self.document.key_line(&[section, key]),
            key: format!("{section}.{key}"),
            message: message.into(),
        }
    }

    fn server(&self) -> Result<(), ConfigError> {
        let server = &self.config.server;
        if !server.path.starts_with('/') {
            return Err(self.invalid("server", "path", "must start with `/`"));
        }
        if server.max_body_bytes < 1024 {
            return Err(self.invalid("server", "max_body_bytes", "must be at least 1024"));
        }
        for (key, value) in [
            ("stream_write_timeout", server.stream_write_timeout),
            ("header_read_timeout", server.header_read_timeout),
            ("idle_timeout", server.idle_timeout),
            ("body_read_timeout", server.body_read_timeout),
        ] {
            if value.is_zero() {
                return Err(self.invalid("server", key, "must not be 0"));
            }
        }
        if server.max_connections == 0 {
            return Err(self.invalid("server", "max_connections", "must be at least 1"));
        }
        if !(1..=65_535).contains(&server.listen_backlog) {
            return Err(self.invalid("server", "listen_backlog", "must be 1 to 65535"));
        }
        Ok(())
    }

    fn cors(&self) -> Result<(), ConfigError> {
        for origin in &self.config.server.cors_allowed_origins {
            if origin != "*" && !is_http_url(origin) {
                return Err(self.invalid(
                    "server",
                    "cors_allowed_origins",
                    format!("{origin:?} is not an origin like https://app.example.com"),
                ));
            }
        }
        Ok(())
    }

    fn store(&self) -> Result<(), ConfigError> {
        let store = &self.config.store;
        if store.max_connections == 0 {
            return Err(self.invalid("store", "max_connections", "must be at least 1"));
        }
        Ok(())
    }

    fn limits(&self) -> Result<(), ConfigError> {
        let limits = &self.config.limits;
        if limits.max_message_chars == 0 {
            return Err(self.invalid("limits", "max_message_chars", "must be at least 1"));
        }
        if limits.max_list_bytes < 1024 {
            return Err(self.invalid("limits", "max_list_bytes", "must be at least 1024"));
        }
        if limits.max_feedback_items == 0 {
            return Err(self.invalid("limits", "max_feedback_items", "must be at least 1"));
        }
        Ok(())
    }

    fn llm(&self) -> Result<(), ConfigError> {
        let llm = &self.config.llm;
        if !is_http_url(&llm.base_url) {
            return Err(self.invalid(
                "llm",
                "base_url",
                format!("{:?} is not an http(s) URL", llm.base_url),
            ));
        }
        if llm.model.trim().is_empty() {
            return Err(self.invalid("llm", "model", "must not be empty"));
        }
        // Tool-call indexes beyond 127 are refused whatever this says, so a
        // larger maximum could never be reached.
        if !(1..=128).contains(&llm.max_tool_calls) {
            return Err(self.invalid("llm", "max_tool_calls", "must be from 1 to 128"));
        }
        if llm.max_tool_arguments_bytes < 1024 {
            return Err(self.invalid("llm", "max_tool_arguments_bytes", "must be at least 1024"));
        }
        if llm.max_answer_bytes < 1024 {
            return Err(self.invalid("llm", "max_answer_bytes", "must be at least 1024"));
        }
        for (i, choice) in llm.models.iter().enumerate() {
            let name = &choice.name;
            if name.trim().is_empty() {
                return Err(self.invalid("llm", "models", "model names must not be empty"));
            }
            if llm.models[..i].iter().any(|other| other.name == *name) {
                return Err(self.invalid("llm", "models", format!("{name:?} is listed twice")));
            }
            if choice.reasoning_summary.is_some() && llm.api != LlmApi::Responses {
                return Err(self.invalid(
                    "llm",
                    "models",
                    format!("{name:?} sets reasoning_summary, which needs api = \"responses\""),
                ));
            }
        }
        if let Some(url) = &llm.transcription_base_url
            && !is_http_url(url)
        {
            return Err(self.invalid(
                "llm",
                "transcription_base_url",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        if llm
            .transcription_model
            .as_ref()
            .is_some_and(|m| m.trim().is_empty())
        {
            return Err(self.invalid("llm", "transcription_model", "must not be empty"));
        }
        if llm.max_audio_bytes < 1024 {
            return Err(self.invalid("llm", "max_audio_bytes", "must be at least 1024"));
        }
        if llm.reasoning_summary.is_some() && llm.api != LlmApi::Responses {
            return Err(self.invalid(
                "llm",
                "reasoning_summary",
                "needs api = \"responses\" (chat completions stream no reasoning summary)",
            ));
        }
        super::hosted::validate(
            &llm.hosted_tools,
            llm.api == LlmApi::Responses,
            self.document,
        )?;
        if !llm.models.is_empty() && !llm.models.iter().any(|m| m.name == llm.model) {
            return Err(self.invalid(
                "llm",
                "models",
                format!(
                    "must include the default model {:?} (`llm.model`)",
                    llm.model
                ),
            ));
        }
        Ok(())
    }

    fn max_turns(&self) -> Result<(), ConfigError> {
        if self.config.agent.max_turns == 0 {
            return Err(self.invalid("agent", "max_turns", "must be at least 1"));
        }
        if self.config.agent.question_timeout.is_zero() {
            return Err(self.invalid("agent", "question_timeout", "must be positive"));
        }
        Ok(())
    }

    fn instructions(&self) -> Result<(), ConfigError> {
        let agent = &self.config.agent;
        if let Some(instructions) = &agent.instructions {
            let full = self.config.base_dir.join(instructions);
            if !full.is_file() {
                return Err(self.invalid(
                    "agent",
                    "instructions",
                    format!("prompt file {} does not exist", full.display()),
                ));
            }
        }
        Ok(())
    }

    fn auth(&self) -> Result<(), ConfigError> {
        let auth = &self.config.auth;
        if auth.mode == AuthMode::None {
            if !crate::protocol::is_user_id(&auth.dev_user) {
                return Err(self.invalid(
                    "auth",
                    "dev_user",
                    "must be 1 to 256 bytes of text without control characters",
                ));
            }
            return Ok(());
        }
        let source = auth
            .key_source()
            .map_err(|e| self.invalid("auth", "mode", e.to_string()))?;
        match source {
            KeySource::Secret(secret) if secret.len() < 32 => {
                return Err(self.invalid(
                    "auth",
                    "secret",
                    "an HMAC secret must be at least 32 bytes",
                ));
            }
            KeySource::Secret(_) => {}
            KeySource::PublicKeyFile(file) => {
                let full = self.config.base_dir.join(file);
                if !full.is_file() {
                    return Err(self.invalid(
                        "auth",
                        "public_key_file",
                        format!("{} does not exist", full.display()),
                    ));
                }
            }
            KeySource::JwksUrl(url) if !is_http_url(url) => {
                return Err(self.invalid(
                    "auth",
                    "jwks_url",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
            KeySource::JwksUrl(_) => {}
        }
        if auth.user_claim.trim().is_empty() {
            return Err(self.invalid("auth", "user_claim", "must not be empty"));
        }
        Ok(())
    }

    fn mcp_server(&self, name: &str, server: &McpServerConfig) -> Result<(), ConfigError> {
        let section = format!("mcp_servers.{name}");
        // A rule broken by a default (no such key) points at the server's table.
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: self.document.path().to_owned(),
            line: self
                .document
                .key_line(&["mcp_servers", name, key])
                .or_else(|| self.document.key_line(&["mcp_servers", name])),
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
        match (&server.command, &server.url) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "url",
                    "set `command` (a program to spawn) or `url` (a streamable HTTP server), not both"
                        .to_owned(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "command",
                    "set `command` (a program to spawn) or `url` (a streamable HTTP server)"
                        .to_owned(),
                ));
            }
            (Some(command), None) => {
                if command.trim().is_empty() {
                    return Err(invalid("command", "must not be empty".to_owned()));
                }
                if let Some(header) = server.headers.keys().next() {
                    return Err(invalid(
                        "headers",
                        format!(
                            "`{header}`: headers are sent to `url` servers; a `command` server gets `env`"
                        ),
                    ));
                }
            }
            (None, Some(url)) => {
                remote_server(server, url).map_err(|(key, message)| invalid(key, message))?
            }
        }
        if server.max_instances == 0 {
            return Err(invalid("max_instances", "must be at least 1".to_owned()));
        }
        if server.max_total_instances == 0 {
            return Err(invalid(
                "max_total_instances",
                "must be at least 1".to_owned(),
            ));
        }
        if server.min_idle > server.max_instances {
            return Err(invalid(
                "min_idle",
                format!("must not exceed max_instances ({})", server.max_instances),
            ));
        }
        if server.startup_timeout.is_zero() || server.call_timeout.is_zero() {
            return Err(invalid(
                "call_timeout",
                "timeouts must be positive".to_owned(),
            ));
        }
        // Below these a server cannot even start: a clear error beats a
        // pool that fails forever.
        for (key, value, least, what) in [
            ("max_memory", server.max_memory, 16 << 20, "16 MiB"),
            ("max_cpu_seconds", server.max_cpu_seconds, 1, "1"),
            ("max_open_files", server.max_open_files, 16, "16"),
        ] {
            if value.is_some_and(|v| v < least) {
                return Err(invalid(key, format!("must be at least {what}")));
            }
        }
        Ok(())
    }
}

/// The rules of a `url` server: a URL, headers that are headers (and not
/// the transport's own), and none of the keys that only a spawned process
/// has. Fails with the key and why.
fn remote_server(server: &McpServerConfig, url: &str) -> Result<(), (&'static str, String)> {
    if !is_http_url(url) {
        return Err(("url", format!("{url:?} is not an http:// or https:// URL")));
    }
    for (name, value) in &server.headers {
        let Ok(parsed) = http::HeaderName::try_from(name.as_str()) else {
            return Err(("headers", format!("{name:?} is not a header name")));
        };
        if http::HeaderValue::try_from(value.as_str()).is_err() {
            return Err((
                "headers",
                format!("the value of `{name}` is not a header value (control characters?)"),
            ));
        }
        if RESERVED_HEADERS.contains(&parsed.as_str()) {
            return Err((
                "headers",
                format!("`{name}` is set by the MCP transport itself"),
            ));
        }
    }
    let process_only = [
        ("args", !server.args.is_empty()),
        ("env", !server.env.is_empty()),
        ("cwd", server.cwd.is_some()),
        ("max_memory", server.max_memory.is_some()),
        ("max_cpu_seconds", server.max_cpu_seconds.is_some()),
        ("max_open_files", server.max_open_files.is_some()),
    ];
    if let Some((key, _)) = process_only.iter().find(|(_, set)| *set) {
        return Err((
            key,
            "applies to `command` servers, not to a `url` server".to_owned(),
        ));
    }
    if server.scope == crate::config::McpScope::PerUser {
        return Err((
            "scope",
            "`per_user` starts a process per user and applies to `command` servers; a `url` server learns the user through `inject`".to_owned(),
        ));
    }
    Ok(())
}

/// Headers the streamable HTTP transport sets itself (lower case).
const RESERVED_HEADERS: [&str; 5] = [
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// An `http://` or `https://` URL that parses, with a host.
fn is_http_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && reqwest::Url::parse(url).is_ok_and(|u| u.has_host())
}
