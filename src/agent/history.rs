//! Building the model's input from a thread's stored items.
//!
//! The model sees the real transcript as structured chat messages: user and
//! assistant turns, completed client tool calls with their outputs, and hidden
//! context items. Nothing is flattened into one "User: … Assistant: …" text.
//! When the transcript exceeds the token budget, whole turns are left out,
//! oldest first; the newest turn is always kept.

use serde_json::Value;

use crate::llm::{ChatMessage, FunctionCall, ToolCall};
use crate::protocol::{ClientToolCallStatus, ItemKind, ThreadItem, UserContent, UserMessage};

/// The messages for a run: the system prompt, then the budgeted transcript.
pub fn build_messages(
    system_prompt: &str,
    items: &[ThreadItem],
    budget: usize,
) -> Vec<ChatMessage> {
    let system = ChatMessage::System {
        content: system_prompt.to_owned(),
    };
    let mut turns: Vec<Vec<ChatMessage>> = Vec::new();
    for item in items {
        let starts_turn = matches!(item.kind, ItemKind::UserMessage(_));
        if starts_turn || turns.is_empty() {
            turns.push(Vec::new());
        }
        if let Some(turn) = turns.last_mut() {
            turn.extend(item_messages(item));
        }
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
    std::iter::once(system)
        .chain(turns.into_iter().skip(first_kept).flatten())
        .collect()
}

/// The chat messages one stored item stands for (none for UI-only items).
fn item_messages(item: &ThreadItem) -> Vec<ChatMessage> {
    match &item.kind {
        ItemKind::UserMessage(message) => vec![ChatMessage::User {
            content: user_text(message),
        }],
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
                    tool_calls: vec![ToolCall {
                        id: call.call_id.clone(),
                        kind: "function".to_owned(),
                        function: FunctionCall {
                            name: call.name.clone(),
                            arguments: call.arguments.to_string(),
                        },
                    }],
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
        ItemKind::HiddenContextItem { content } => vec![ChatMessage::User {
            content: json_text(content),
        }],
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

/// What the model reads of a user message: the quoted text it answers, the
/// typed text with @-mentions inline, the mentions' data, and attachment names.
pub fn user_text(message: &UserMessage) -> String {
    let mut text = String::new();
    if let Some(quoted) = message.quoted_text.as_deref().filter(|q| !q.is_empty()) {
        text.push_str("The user is referring to this in particular:\n");
        text.push_str(quoted);
        text.push_str("\n\n");
    }
    let mut mentions = Vec::new();
    for part in &message.content {
        match part {
            UserContent::InputText { text: typed } => text.push_str(typed),
            UserContent::InputTag {
                text: tag, data, ..
            } => {
                text.push('@');
                text.push_str(tag);
                if !data.is_empty() {
                    mentions.push(format!("@{tag}: {}", Value::Object(data.clone())));
                }
            }
        }
    }
    if !mentions.is_empty() {
        text.push_str("\n\nMentioned entities:\n");
        text.push_str(&mentions.join("\n"));
    }
    for attachment in &message.attachments {
        text.push_str(&format!(
            "\n[attachment: {} ({})]",
            attachment.name, attachment.mime_type
        ));
    }
    text
}

fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AssistantContent, AssistantMessage, InferenceOptions, Timestamp};

    fn item(id: &str, kind: ItemKind) -> ThreadItem {
        ThreadItem {
            id: id.to_owned(),
            thread_id: "thr_1".to_owned(),
            created_at: Timestamp::now(),
            kind,
        }
    }

    fn user(id: &str, text: &str) -> ThreadItem {
        item(
            id,
            ItemKind::UserMessage(UserMessage {
                content: vec![UserContent::InputText { text: text.into() }],
                attachments: Vec::new(),
                quoted_text: None,
                inference_options: InferenceOptions::default(),
            }),
        )
    }

    fn assistant(id: &str, text: &str) -> ThreadItem {
        item(
            id,
            ItemKind::AssistantMessage(AssistantMessage {
                content: vec![AssistantContent::text(text)],
            }),
        )
    }

    #[test]
    fn transcript_is_structured_and_hidden_context_included() {
        let items = vec![
            user("m1", "hi"),
            assistant("m2", "hello"),
            item(
                "s1",
                ItemKind::SdkHiddenContext {
                    content: "The user cancelled the stream.".into(),
                },
            ),
            user("m3", "again"),
        ];
        let messages = build_messages("sys", &items, 10_000);
        assert_eq!(
            messages,
            vec![
                ChatMessage::System {
                    content: "sys".into()
                },
                ChatMessage::User {
                    content: "hi".into()
                },
                ChatMessage::assistant("hello"),
                ChatMessage::User {
                    content: "The user cancelled the stream.".into()
                },
                ChatMessage::User {
                    content: "again".into()
                },
            ]
        );
    }

    #[test]
    fn budget_drops_oldest_whole_turns_but_keeps_the_last() {
        let long = "x".repeat(4000);
        let items = vec![
            user("m1", &long),
            assistant("m2", &long),
            user("m3", "short"),
            assistant("m4", "ok"),
            user("m5", &long),
        ];
        let messages = build_messages("sys", &items, 1200);
        let texts: Vec<String> = messages
            .iter()
            .map(|m| serde_json::to_value(m).expect("json")["content"].to_string())
            .collect();
        assert_eq!(messages.len(), 4, "{texts:?}");
        assert_eq!(
            messages[1],
            ChatMessage::User {
                content: "short".into()
            }
        );
        // Even an over-budget last turn is sent.
        let messages = build_messages("sys", &items, 10);
        assert_eq!(messages.len(), 2);
    }

    #[test]
    fn quoted_text_and_mentions_reach_the_model() {
        let message = UserMessage {
            content: vec![
                UserContent::InputText {
                    text: "ask ".into(),
                },
                UserContent::InputTag {
                    id: "u1".into(),
                    text: "Ann".into(),
                    data: serde_json::from_str(r#"{"email":"ann@example.com"}"#).expect("map"),
                    group: None,
                    interactive: false,
                },
            ],
            attachments: Vec::new(),
            quoted_text: Some("the plan".into()),
            inference_options: InferenceOptions::default(),
        };
        assert_eq!(
            user_text(&message),
            "The user is referring to this in particular:\nthe plan\n\nask @Ann\n\nMentioned entities:\n@Ann: {\"email\":\"ann@example.com\"}"
        );
    }
}
