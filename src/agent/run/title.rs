//! Thread titles: a short name generated from the first user message.
//!
//! Generation runs beside the answer and is awaited at the end of the run, so
//! the title goes out as `thread.updated` on the same stream. It never
//! overwrites a title: the store sets it only while the thread has none.

use std::borrow::Cow;
use std::time::Duration;

use super::{Run, Stop};
use crate::agent::transcript::user_text;
use crate::llm::{ChatMessage, LlmClient, LlmError};
use crate::protocol::{ItemKind, Page, Thread, ThreadItem, ThreadStreamEvent};
use crate::text::cut_chars;

/// How long the end of a run waits for a title still being generated.
pub(super) const TITLE_WAIT: Duration = Duration::from_secs(15);

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
    let answer = crate::protocol::scrub::scrub(answer);
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

impl Run<'_> {
    /// Starts title generation when this is the first exchange of an untitled thread.
    pub(super) fn start_title(
        &self,
        items: &[ThreadItem],
    ) -> Option<tokio::task::JoinHandle<Option<String>>> {
        if !self.agent.config.title_generation
            || self.input.thread.title.is_some()
            || !self.agent.llm.is_configured()
        {
            return None;
        }
        let mut users = items.iter().filter_map(|item| match &item.kind {
            ItemKind::UserMessage(message) => Some(message),
            _ => None,
        });
        let first = users.next()?;
        if users.next().is_some() {
            return None;
        }
        let text = user_text(first);
        if text.trim().is_empty() {
            return None;
        }
        let llm = self.agent.llm.clone();
        Some(tokio::spawn(async move {
            match generate(&llm, &text).await {
                Ok(title) => title,
                Err(e) => {
                    tracing::warn!(error = %e, "title generation failed");
                    None
                }
            }
        }))
    }

    pub(super) async fn apply_title(&mut self, title: &str) -> Result<(), Stop> {
        let thread = &mut self.input.thread;
        match self
            .agent
            .store
            .set_title_if_unset(&self.input.identity.user_id, &thread.id, title)
            .await
        {
            Ok(true) => {
                thread.title = Some(title.to_owned());
                let thread = Thread::from_metadata(thread, Page::default());
                self.emit(ThreadStreamEvent::ThreadUpdated { thread }).await
            }
            // The user named the thread meanwhile: theirs wins.
            Ok(false) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "could not save the generated title");
                Ok(())
            }
        }
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
