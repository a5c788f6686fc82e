//! The conversation as the Responses API reads it: [`ChatMessage`]s turned
//! into input items, tool definitions into function tools.
//!
//! The system prompt becomes `instructions`; a user message an input
//! message (text, `input_image`, `input_file` parts); an assistant message
//! its text, then one `function_call` item per call; a tool result a
//! `function_call_output`; stored reasoning items go back as they came, only
//! their `type`, `id`, `summary` and `encrypted_content` kept.

use serde_json::{Value, json};

use crate::llm::wire::{ChatMessage, ContentPart, ToolDefinition};

/// The instructions (the first system message) and the input items.
pub(super) fn input(messages: &[ChatMessage]) -> (Option<&str>, Vec<Value>) {
    let mut instructions = None;
    let mut items = Vec::with_capacity(messages.len());
    for message in messages {
        match message {
            ChatMessage::System { content } if instructions.is_none() => {
                instructions = Some(content.as_str());
            }
            ChatMessage::System { content } => {
                items.push(json!({"role": "system", "content": content}));
            }
            ChatMessage::User { content } => items.push(json!({
                "role": "user",
                "content": [{"type": "input_text", "text": content}],
            })),
            ChatMessage::UserParts { content } => items.push(json!({
                "role": "user",
                "content": content.iter().map(input_part).collect::<Vec<_>>(),
            })),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                if let Some(text) = content.as_deref().filter(|t| !t.is_empty()) {
                    items.push(json!({"role": "assistant", "content": text}));
                }
                items.extend(tool_calls.iter().map(|call| {
                    json!({
                        "type": "function_call",
                        "call_id": call.id,
                        "name": call.function.name,
                        "arguments": call.function.arguments,
                    })
                }));
            }
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => items.push(json!({
                "type": "function_call_output",
                "call_id": tool_call_id,
                "output": content,
            })),
            ChatMessage::Reasoning { items: reasoning } => {
                items.extend(reasoning.iter().map(reasoning_input));
            }
        }
    }
    (instructions, items)
}

/// A part of a user message as an input content part.
fn input_part(part: &ContentPart) -> Value {
    match part {
        ContentPart::Text { text } => json!({"type": "input_text", "text": text}),
        ContentPart::ImageUrl { image_url } => {
            json!({"type": "input_image", "image_url": image_url.url, "detail": "auto"})
        }
        ContentPart::File { file } => json!({
            "type": "input_file",
            "filename": file.filename,
            "file_data": file.file_data,
        }),
    }
}

/// A stored reasoning item as input: what the API takes back of it.
pub(super) fn reasoning_input(item: &Value) -> Value {
    let mut kept = serde_json::Map::new();
    kept.insert("type".to_owned(), json!("reasoning"));
    for key in ["id", "summary", "encrypted_content"] {
        if let Some(value) = item.get(key) {
            kept.insert(key.to_owned(), value.clone());
        }
    }
    if !kept.contains_key("summary") {
        kept.insert("summary".to_owned(), json!([]));
    }
    Value::Object(kept)
}

/// The tools as Responses function tools (`{"type":"function","name",…}`).
pub(super) fn tools(tools: &[ToolDefinition]) -> Vec<Value> {
    tools
        .iter()
        .map(|tool| {
            let (description, parameters) = tool.described();
            json!({
                "type": "function",
                "name": tool.name(),
                "description": description,
                "parameters": parameters,
                "strict": false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::llm::wire::ToolCall;

    #[test]
    fn a_conversation_becomes_instructions_and_items_in_order() {
        let reasoning = json!({"type": "reasoning", "id": "rs_1", "status": "completed",
            "summary": [{"type": "summary_text", "text": "Plan."}], "encrypted_content": "gAAA"});
        let messages = vec![
            ChatMessage::System {
                content: "Be brief.".to_owned(),
            },
            ChatMessage::User {
                content: "Add milk".to_owned(),
            },
            ChatMessage::Reasoning {
                items: vec![reasoning],
            },
            ChatMessage::Assistant {
                content: Some("On it.".to_owned()),
                tool_calls: vec![ToolCall::function("call_1", "add", r#"{"t":"milk"}"#)],
            },
            ChatMessage::Tool {
                tool_call_id: "call_1".to_owned(),
                content: "added".to_owned(),
            },
            ChatMessage::UserParts {
                content: vec![ContentPart::text("and this"), ContentPart::image("data:x")],
            },
        ];
        let (instructions, items) = input(&messages);
        assert_eq!(instructions, Some("Be brief."));
        assert_eq!(
            items,
            vec![
                json!({"role": "user", "content": [{"type": "input_text", "text": "Add milk"}]}),
                json!({"type": "reasoning", "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Plan."}], "encrypted_content": "gAAA"}),
                json!({"role": "assistant", "content": "On it."}),
                json!({"type": "function_call", "call_id": "call_1", "name": "add", "arguments": r#"{"t":"milk"}"#}),
                json!({"type": "function_call_output", "call_id": "call_1", "output": "added"}),
                json!({"role": "user", "content": [
                    {"type": "input_text", "text": "and this"},
                    {"type": "input_image", "image_url": "data:x", "detail": "auto"},
                ]}),
            ]
        );
    }

    #[test]
    fn tools_take_the_flat_shape() {
        let tool = ToolDefinition::new("add", "Adds.", json!({"type": "object"}));
        assert_eq!(
            tools(&[tool]),
            vec![
                json!({"type": "function", "name": "add", "description": "Adds.",
                "parameters": {"type": "object"}, "strict": false})
            ]
        );
    }
}
