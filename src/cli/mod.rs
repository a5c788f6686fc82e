//! The operator's terminal commands besides `serve` and `migrate`:
//!
//! - [`chat`]: `chatkitd chat`, the same agent, store and tool servers as the
//!   daemon, in a terminal (interactive or piped).
//! - [`tools`]: `chatkitd tools list|call`, the tools as the model sees them,
//!   and one call through the pool.
//! - [`check`]: `chatkitd check`, a deploy gate: configuration, store, tool
//!   servers and model endpoint, one line per check.
//!
//! The commands write what they are asked for to stdout and everything else
//! (thread ids, errors, logs) to stderr; `main.rs` turns their results into
//! exit codes.

pub mod chat;
pub mod check;
pub mod tools;

use thiserror::Error;

use crate::app::StartError;
use crate::chatkit::ChatKitError;
use crate::config::ConfigError;
use crate::store::StoreError;

/// Why a terminal command could not do its work (not a failed check or a
/// failed tool call: those are results).
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    ChatKit(#[from] ChatKitError),
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
}

/// A URL without its password (in the user-info part or a `password=`
/// query parameter), for messages.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme) = out.find("://") {
        let authority_end = out[scheme + 3..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| scheme + 3 + i);
        if let Some(at) = out[scheme + 3..authority_end].rfind('@') {
            let at = scheme + 3 + at;
            if let Some(colon) = out[scheme + 3..at].find(':') {
                out.replace_range(scheme + 3 + colon + 1..at, "***");
            }
        }
    }
    if let Some(query) = out.find('?') {
        let (head, params) = out.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

/// The symbols tool lines are drawn with: Unicode when the locale says the
/// terminal speaks UTF-8, plain ASCII otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Glyphs {
    pub tool: &'static str,
    pub ellipsis: &'static str,
    pub result: &'static str,
}

impl Glyphs {
    pub const UNICODE: Glyphs = Glyphs {
        tool: "⚙",
        ellipsis: "…",
        result: "↳",
    };
    pub const ASCII: Glyphs = Glyphs {
        tool: "*",
        ellipsis: "...",
        result: "->",
    };

    /// From `LC_ALL`, `LC_CTYPE` or `LANG`, the first one set.
    pub fn from_env() -> Glyphs {
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .find(|value| !value.is_empty())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if locale.contains("utf-8") || locale.contains("utf8") {
            Glyphs::UNICODE
        } else {
            Glyphs::ASCII
        }
    }
}

/// `text` on one line (runs of whitespace become one space), cut to `max`
/// characters with `ellipsis`.
pub fn one_line(text: &str, max: usize, ellipsis: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::cut_chars(&flat, max, ellipsis).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/chat"),
            "postgres://app:***@db:5432/chat"
        );
        assert_eq!(
            redact_url("postgres://app@db/chat?sslmode=require&password=x"),
            "postgres://app@db/chat?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("sqlite:///srv/chatkitd.db"),
            "sqlite:///srv/chatkitd.db"
        );
        assert_eq!(
            redact_url("https://api.example.com/v1"),
            "https://api.example.com/v1"
        );
        // An `@` after the authority is not a password separator.
        assert_eq!(redact_url("http://host/v1/a:b@c"), "http://host/v1/a:b@c");
    }

    #[test]
    fn lines_are_flattened_and_cut() {
        assert_eq!(one_line("a\n  b\tc", 10, "..."), "a b c");
        assert_eq!(one_line("abcdef", 3, "…"), "abc…");
    }
}
