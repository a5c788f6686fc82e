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
pub use crate::config::redact_url;
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

/// The symbols tool lines are drawn with: Unicode when the locale says the
/// terminal speaks UTF-8, plain ASCII otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Glyphs {
    pub tool: &'static str,
    pub ellipsis: &'static str,
    pub result: &'static str,
    /// Starts each line of a widget.
    pub card: &'static str,
    /// Starts the model's thinking.
    pub thought: &'static str,
}

impl Glyphs {
    pub const UNICODE: Glyphs = Glyphs {
        tool: "⚙",
        ellipsis: "…",
        result: "↳",
        card: "│",
        thought: "💭",
    };
    pub const ASCII: Glyphs = Glyphs {
        tool: "*",
        ellipsis: "...",
        result: "->",
        card: "|",
        thought: "~",
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
    fn lines_are_flattened_and_cut() {
        assert_eq!(one_line("a\n  b\tc", 10, "..."), "a b c");
        assert_eq!(one_line("abcdef", 3, "…"), "abc…");
    }
}
