//! Building the model's input from a thread's stored items.
//!
//! The model sees the real transcript as structured chat messages: user and
//! assistant turns, completed client tool calls with their outputs, and hidden
//! context items. Nothing is flattened into one "User: … Assistant: …" text.
//! When the transcript exceeds the token budget, whole turns are left out,
//! oldest first; the newest turn is always kept. A newest user message that
//! does not fit the budget beside the system prompt is refused rather than
//! sent: cutting it would answer a question the user did not ask, and sending
//! it would bill (or overflow) a context the budget says is too small.

use std::collections::HashSet;

use serde_json::Value;

use super::agents::{GuardrailRecord, HandoffRecord};
use super::media::{
    Media, generated_image, images_after_results, stored_tool_images, user_message,
};
use super::records::{
    GeneratedImageRecord, ReasoningRecord, StoredCall, ToolRecord, UiRecord, in_reading_order,
};

use crate::llm::{ChatMessage, ToolCall};
use crate::protocol::{ClientToolCallStatus, ItemKind, ThreadItem};

/// The newest user message does not fit the history budget beside the
/// system prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "This message is too long for the assistant (about {tokens} tokens with the instructions; at most {budget} fit). Shorten it and send it again."
)]
pub struct MessageTooLong {
    /// Estimated tokens of the message plus the system prompt.
    pub tokens: usize,
    /// `[agent] history_token_budget`.
    pub budget: usize,
}

/// The messages for a run: the system prompt, then the budgeted transcript;
/// refused when the newest user message alone passes the budget (the rest of
/// its turn is the run's own tool work, bounded by `max_turns`, and is kept).
pub fn build_messages(
    system_prompt: &str,
    items: &[ThreadItem],
    budget: usize,
) -> Result<Vec<ChatMessage>, MessageTooLong> {
    build_messages_with_media(system_prompt, items, budget, &Media::new())
}

/// [`build_messages`] with the attachments and tool images the history
/// names, as loaded by the run (`agent::run`).
pub fn build_messages_with_media(
    system_prompt: &str,
    items: &[ThreadItem],
    budget: usize,
    media: &Media,
) -> Result<Vec<ChatMessage>, MessageTooLong> {
    let system = ChatMessage::System {
        content: system_prompt.to_owned(),
    };
    let mut turns: Vec<Vec<ChatMessage>> = Vec::new();
    let mut newest_user = 0;
    for item in in_reading_order(items) {
        let starts_turn = matches!(item.kind, ItemKind::UserMessage(_)) || is_action(item);
        if starts_turn || turns.is_empty() {
            turns.push(Vec::new());
        }
        let messages = item_messages(item, media);
        if starts_turn {
            newest_user = messages.iter().map(ChatMessage::estimated_tokens).sum();
        }
        if let Some(turn) = turns.last_mut() {
            turn.extend(messages);
        }
    }
    let needed = system.estimated_tokens() + newest_user;
    if needed > budget {
        return Err(MessageTooLong {
            tokens: needed,
            budget,
        });
    }
    let cost = |turn: &Vec<ChatMessage>| {
        turn.iter()
            .map(ChatMessage::estimated_tokens)
            .sum::<usize>()
    };
    let mut total: usize = system.estimated_tokens() + turns.iter().map(cost).sum::<usize>();
    let mut first_kept = 0;
    while total > budget && first_kept + 1 < turns.len() {
        total -= cost(&turns[first_kept]);
        first_kept += 1;
    }
    let transcript: Vec<ChatMessage> = turns.into_iter().skip(first_kept).flatten().collect();
    Ok(std::iter::once(system)
        .chain(images_after_results(followed_reasoning(pair_tool_calls(
            transcript,
        ))))
        .collect())
}

/// Keeps only tool calls that have their result and results that have their
/// call (a crash can leave either alone; models reject both), and joins an
/// assistant's text with the calls that followed it into one message.
fn pair_tool_calls(messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let answered: HashSet<String> = messages
        .iter()
        .filter_map(|m| match m {
            ChatMessage::Tool { tool_call_id, .. } => Some(tool_call_id.clone()),
            _ => None,
        })
        .collect();
    let mut asked: HashSet<String> = HashSet::new();
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    for message in messages {
        match message {
            ChatMessage::Assistant {
                content,
                tool_calls,
            } if !tool_calls.is_empty() => {
                let calls: Vec<ToolCall> = tool_calls
                    .into_iter()
                    .filter(|c| answered.contains(&c.id))
                    .collect();
                asked.extend(calls.iter().map(|c| c.id.clone()));
                let follows_text = matches!(
                    out.last(),
                    Some(ChatMessage::Assistant { tool_calls, .. }) if tool_calls.is_empty()
                );
                match out.last_mut() {
                    Some(ChatMessage::Assistant {
                        tool_calls: previous,
                        ..
                    }) if content.is_none() && follows_text => previous.extend(calls),
                    _ if content.is_some() || !calls.is_empty() => {
                        out.push(ChatMessage::Assistant {
                            content,
                            tool_calls: calls,
                        });
                    }
                    _ => {}
                }
            }
            ChatMessage::Tool {
                ref tool_call_id, ..
            } if !asked.contains(tool_call_id) => {}
            other => out.push(other),
        }
    }
    out
}

/// Keeps reasoning items only where what they led to follows them (an
/// assistant message, its text or calls): the Responses API refuses a
/// reasoning item alone, which a run stopped between the two can leave.
fn followed_reasoning(mut messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    // From the end: a reasoning message is kept when the next one kept is
    // an answer, or reasoning kept for one.
    let mut answer_follows = false;
    let mut keep = vec![true; messages.len()];
    for (index, message) in messages.iter().enumerate().rev() {
        match message {
            ChatMessage::Reasoning { .. } => keep[index] = answer_follows,
            ChatMessage::Assistant { .. } => answer_follows = true,
            _ => answer_follows = false,
        }
    }
    let mut keep = keep.into_iter();
    messages.retain(|_| keep.next().unwrap_or(true));
    messages
}

/// The chat messages one stored item stands for (none for UI-only items).
fn item_messages(item: &ThreadItem, media: &Media) -> Vec<ChatMessage> {
    match &item.kind {
        ItemKind::UserMessage(message) => vec![user_message(message, media)],
        ItemKind::AssistantMessage(message) => {
            let text = message.text();
            if text.trim().is_empty() {
                Vec::new()
            } else {
                vec![ChatMessage::assistant(text)]
            }
        }
        ItemKind::ClientToolCall(call) => match (call.status, &call.output) {
            // A pending call has no result yet; sending it alone would be an
            // orphan tool call, which models reject.
            (ClientToolCallStatus::Pending, _) | (_, None) => Vec::new(),
            (ClientToolCallStatus::Completed, Some(output)) => vec![
                ChatMessage::Assistant {
                    content: None,
                    tool_calls: vec![ToolCall::function(
                        call.call_id.clone(),
                        call.name.clone(),
                        call.arguments.to_string(),
                    )],
                },
                ChatMessage::Tool {
                    tool_call_id: call.call_id.clone(),
                    content: json_text(output),
                },
            ],
        },
        ItemKind::Widget {
            copy_text: Some(text),
            ..
        } if !text.trim().is_empty() => vec![ChatMessage::assistant(text.clone())],
        ItemKind::HiddenContextItem { content } => hidden_messages(content, media),
        ItemKind::SdkHiddenContext { content } => vec![ChatMessage::User {
            content: content.clone(),
        }],
        ItemKind::Widget { .. }
        | ItemKind::GeneratedImage { .. }
        | ItemKind::StructuredInput { .. }
        | ItemKind::Task { .. }
        | ItemKind::Workflow { .. }
        | ItemKind::EndOfTurn => Vec::new(),
    }
}

/// The chat messages of a hidden context item: tool activity as calls and
/// results, an action handed to the agent as the user's words, a widget's
/// state as nothing, anything else as context in a user message.
fn hidden_messages(content: &Value, media: &Media) -> Vec<ChatMessage> {
    match UiRecord::from_content(content) {
        Some(UiRecord::Action { text, .. }) => return vec![ChatMessage::User { content: text }],
        Some(UiRecord::ActionRun {
            tool,
            arguments,
            output,
            ..
        }) => {
            return vec![ChatMessage::User {
                content: format!(
                    "(Not typed by the user: they pressed a button in the chat, which ran {tool} with {arguments} and returned: {output})"
                ),
            }];
        }
        Some(UiRecord::WidgetState { .. }) => return Vec::new(),
        None => {}
    }
    if let Some(record) = ReasoningRecord::from_content(content) {
        return vec![ChatMessage::Reasoning {
            items: record.items,
        }];
    }
    if HandoffRecord::from_content(content).is_some()
        || GuardrailRecord::from_content(content).is_some()
    {
        return Vec::new();
    }
    if let Some(record) = GeneratedImageRecord::from_content(content) {
        return vec![generated_image(&record, media)];
    }
    match ToolRecord::from_content(content) {
        Some(ToolRecord::Calls { calls }) => vec![ChatMessage::Assistant {
            content: None,
            tool_calls: calls.into_iter().map(stored_call).collect(),
        }],
        Some(ToolRecord::Result {
            call_id,
            name,
            output,
            images,
            ..
        }) => {
            let result = ChatMessage::Tool {
                tool_call_id: call_id,
                content: output,
            };
            std::iter::once(result)
                .chain(stored_tool_images(&name, &images, media))
                .collect()
        }
        None => vec![ChatMessage::User {
            content: json_text(content),
        }],
    }
}

/// Whether `item` is a widget action handed to the agent (it starts a turn
/// like a user message).
fn is_action(item: &ThreadItem) -> bool {
    matches!(&item.kind, ItemKind::HiddenContextItem { content }
        if content.get("type").and_then(Value::as_str) == Some("chatkitd.action"))
}

/// A stored call as the model's tool call.
fn stored_call(call: StoredCall) -> ToolCall {
    ToolCall::function(call.id, call.name, call.arguments)
}

fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
