//! `agent.toml`: loading, environment overrides and the error type. A file
//! goes through four steps, one module each:
//!
//! 1. `document.rs`: parsed as TOML, every key and value with its position;
//! 2. `interpolate.rs`: `${VAR}` and `${VAR:-default}` expanded in string values;
//! 3. `schema.rs`: read into typed sections (addresses, store URLs and inject
//!    sources are parsed here, `url.rs` holds the store URL), then overridden
//!    from the environment;
//! 4. `validate.rs`: the rules types cannot say.
//!
//! A bad file is refused at start with the file, the line, the key and the
//! reason. Every value has a default except what only the deployment can know,
//! so the shipped `agent.toml` runs on SQLite with no other service.

mod agents;
mod attachments;
mod document;
mod hosted;
mod interactive;
mod interpolate;
mod mcp;
mod models;
mod schema;
mod url;
mod validate;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

pub use agents::{
    ENTRY_AGENT, GuardrailConfig, GuardrailFailure, GuardrailOn, HandoffReturn, SpecialistConfig,
};
pub use attachments::{
    AttachmentStorage, AttachmentsConfig, ImageDelivery, ModelInput, base_mime, mime_matches,
};
use document::Document;
pub use hosted::{
    FileSearch, HostedTools, ImageGeneration, ImageQuality, ImageSize, SearchContextSize,
    UserLocation, WebSearch,
};
pub use interactive::{
    ActionConfig, ActionTarget, Approval, ClientToolConfig, RESERVED_ACTIONS, ToolSettings,
};
pub use interpolate::Env;
use interpolate::Expansions;
pub use models::{ModelChoice, ReasoningEffort, ReasoningSummary};
pub use schema::{
    AgentConfig, AuthConfig, AuthMode, Config, DEFAULT_OPENAI_BASE_URL, InjectSource, KeySource,
    KeySourceError, LimitsConfig, LlmApi, LlmConfig, McpScope, McpServerConfig, ServerConfig,
    StoreConfig,
};
pub use url::{StoreUrl, StoreUrlError, redact_url};

/// A configuration that could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file (or the prompt file it names) cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not TOML, a misspelt key, or an unset environment variable.
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    /// A value its key does not accept; `line` is where the file sets it,
    /// when it does.
    #[error("{path}{}: `{key}`: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
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
        env: Env<'_>,
    ) -> Result<Config, ConfigError> {
        let document = Document::parse(text, path)?;
        let expansions = interpolate::expand(&document, env)?;
        let mut config = read(&document, &expansions)?;
        config.apply_env(path, env)?;
        // The one place a relative SQLite path meets the config file's directory.
        config.store.url = config.store.url.resolved_against(&base_dir);
        config.base_dir = base_dir;
        validate::validate(&config, &document)?;
        Ok(config)
    }

    /// `DATABASE_URL`, `OPENAI_API_KEY` and `OPENAI_BASE_URL` win over the
    /// file when set and not empty.
    fn apply_env(&mut self, path: &str, env: Env<'_>) -> Result<(), ConfigError> {
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(url) = set("DATABASE_URL") {
            self.store.url = url.parse().map_err(|e| ConfigError::Invalid {
                path: path.to_owned(),
                line: None,
                key: "store.url".to_owned(),
                message: format!("DATABASE_URL {url:?}: {e}"),
            })?;
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
        Ok(())
    }

    /// A prompt given as inline `text`, or as a `file` relative to the
    /// config file (an agent's or a guardrail's); empty without either.
    pub fn read_instructions(
        &self,
        file: Option<&std::path::Path>,
        text: Option<&str>,
    ) -> Result<String, ConfigError> {
        if let Some(text) = text {
            return Ok(text.to_owned());
        }
        let Some(file) = file else {
            return Ok(String::new());
        };
        let full = self.base_dir.join(file);
        std::fs::read_to_string(&full).map_err(|source| ConfigError::Read {
            path: full.display().to_string(),
            source,
        })
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

/// Reads the expanded document into the schema. A string that held a
/// reference is read as the number or boolean it spells where the key wants
/// one, so `max_turns = "${TURNS:-8}"` works.
fn read(document: &Document<'_>, expansions: &Expansions) -> Result<Config, ConfigError> {
    let mut root = document.root().clone();
    expansions.apply(root.get_mut());
    let mut coerced: Option<toml::de::Error> = None;
    loop {
        let error = match Config::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(config) => return Ok(config),
            Err(error) => error,
        };
        // Refused as a number too: what the schema said of the string is the
        // better message (e.g. `listen = "${PORT}"`).
        if let Some(first) = coerced.take()
            && first.span() == error.span()
        {
            return Err(document.error(&first));
        }
        match error.span() {
            Some(span) if expansions.coerce(root.get_mut(), &span) => coerced = Some(error),
            _ => return Err(document.error(&error)),
        }
    }
}

#[cfg(test)]
mod tests;
