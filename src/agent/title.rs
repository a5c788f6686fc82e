//! Thread titles: a short name generated from the first user message.
//!
//! Generation runs beside the answer and is awaited at the end of the run, so
//! the title goes out as `thread.updated` on the same stream. It never
//! overwrites a title: the store sets it only while the thread has none.

use std::borrow::Cow;

use crate::llm::{ChatMessage, LlmClient, LlmError};
use crate::text::cut_chars;

const TITLE_PROMPT: &str = "Write a title of 3 to 6 words for a conversation that starts with \
the user's message below. Answer with the title only: no quotes, no trailing period.";

/// Longest title kept, in characters.
const MAX_TITLE_CHARS: usize = 80;

/// Asks the model for a title for a conversation starting with `first_message`.
pub async fn generate(llm: &LlmClient, first_message: &str) -> Result<Option<String>, LlmError> {
    let messages = [
        ChatMessage::System {
            content: TITLE_PROMPT.to_owned(),
        },
        ChatMessage::User {
            content: cut_chars(first_message, 2000, "").into_owned(),
        },
    ];
    let answer = llm.complete(&messages, 24).await?;
    Ok(clean(&answer))
}

/// Keeps the first line, without quotes, a `Title:` prefix or a final period.
fn clean(answer: &str) -> Option<String> {
    let answer = crate::protocol::text::scrub(answer);
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line
        .strip_prefix("Title:")
        .or_else(|| line.strip_prefix("title:"))
        .unwrap_or(line)
        .trim()
        .trim_matches(|c| matches!(c, '"' | '\'' | '*' | '#' | '`'))
        .trim()
        .trim_end_matches('.')
        .trim();
    if line.is_empty() {
        return None;
    }
    match cut_chars(line, MAX_TITLE_CHARS, "") {
        Cow::Borrowed(whole) => Some(whole.to_owned()),
        Cow::Owned(cut) => Some(cut.trim_end().to_owned() + "…"),
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn cleans_model_answers() {
        assert_eq!(
            clean("\"Buying Milk Today.\"\n"),
            Some("Buying Milk Today".into())
        );
        assert_eq!(clean("Title: Weekly plan"), Some("Weekly plan".into()));
        assert_eq!(clean("  \n**Trip**\nmore"), Some("Trip".into()));
        assert_eq!(clean("\"\""), None);
        assert_eq!(clean(&"a".repeat(100)).map(|t| t.chars().count()), Some(81));
    }
}
