//! OpenAI's Responses API (`[llm] api = "responses"`), spoken statelessly:
//! every request carries the whole input built from chatkitd's own history
//! (`store: false`, no `previous_response_id`), and a reasoning model's
//! reasoning items come back encrypted (`include:
//! ["reasoning.encrypted_content"]`) to be sent again before what they led
//! to, within an answer's tool steps and on later turns.
//!
//! - `input`: the conversation as input items, tools as function tools.
//! - `events`: the streamed events folded into the same [`LlmEvent`]s as a
//!   chat-completions stream, within the same bounds.
//!
//! [`LlmEvent`]: crate::llm::LlmEvent

mod events;
mod hosted;
mod input;

use serde::Serialize;
use serde_json::{Value, json};

pub(super) use events::Decoder;
pub(super) use hosted::HostedRequest;

use super::LlmError;
use super::wire::{ChatMessage, ToolDefinition};
use crate::config::{ReasoningEffort, ReasoningSummary};

/// `reasoning`: how hard a reasoning model thinks and which summary of it
/// streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) struct ReasoningOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) effort: Option<ReasoningEffort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) summary: Option<ReasoningSummary>,
}

/// What one request asks besides its input and tools.
#[derive(Debug, Clone, Copy)]
pub(super) struct Options<'a> {
    pub(super) model: &'a str,
    pub(super) stream: bool,
    pub(super) temperature: Option<f32>,
    pub(super) max_output_tokens: Option<u32>,
    /// A tool (of those offered) the model must call.
    pub(super) tool_choice: Option<&'a str>,
    /// Sent only when configured: a model that does not reason refuses it.
    pub(super) reasoning: Option<ReasoningOptions>,
    /// The hosted tools offered (answers only, not titles).
    pub(super) hosted: Option<&'a HostedRequest>,
    /// A format the answer must follow (`text.format`: a JSON schema).
    pub(super) text_format: Option<&'a Value>,
}

/// The request body of `POST /responses`.
pub(super) fn request_body(
    messages: &[ChatMessage],
    tools: &[ToolDefinition],
    options: Options<'_>,
) -> Value {
    let (instructions, input) = input::input(messages);
    let mut body = json!({
        "model": options.model,
        "input": input,
        "stream": options.stream,
        "store": false,
    });
    let Some(fields) = body.as_object_mut() else {
        return body;
    };
    if let Some(instructions) = instructions {
        fields.insert("instructions".to_owned(), json!(instructions));
    }
    let hosted = options.hosted.filter(|h| !h.tools.is_empty());
    if !tools.is_empty() || hosted.is_some() {
        let mut definitions = input::tools(tools);
        if let Some(hosted) = hosted {
            definitions.extend(hosted.tools.iter().cloned());
        }
        fields.insert("tools".to_owned(), Value::Array(definitions));
        fields.insert("parallel_tool_calls".to_owned(), json!(true));
        if let Some(name) = options
            .tool_choice
            .filter(|name| tools.iter().any(|t| t.name() == *name))
        {
            fields.insert(
                "tool_choice".to_owned(),
                json!({"type": "function", "name": name}),
            );
        }
    }
    if let Some(format) = options.text_format {
        fields.insert("text".to_owned(), json!({"format": format}));
    }
    if let Some(temperature) = options.temperature {
        fields.insert("temperature".to_owned(), json!(temperature));
    }
    if let Some(max) = options.max_output_tokens {
        fields.insert("max_output_tokens".to_owned(), json!(max));
    }
    let mut include: Vec<&str> = hosted.map(|h| h.include.clone()).unwrap_or_default();
    if let Some(reasoning) = options.reasoning {
        fields.insert("reasoning".to_owned(), json!(reasoning));
        include.insert(0, "reasoning.encrypted_content");
    }
    if !include.is_empty() {
        fields.insert("include".to_owned(), json!(include));
    }
    body
}

/// The text of a non-streamed response: its output messages' `output_text`
/// parts, joined; usage is recorded.
pub(super) fn completion_text(body: &[u8]) -> Result<String, LlmError> {
    let response: Value = serde_json::from_slice(body)
        .map_err(|e| LlmError::Protocol(format!("not a response: {e}")))?;
    if let Some(usage) = response.get("usage") {
        let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
        crate::metrics::get().tokens(count("input_tokens"), count("output_tokens"));
    }
    let text: String = response
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("message"))
        .filter_map(|item| item.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|part| part.get("type").and_then(Value::as_str) == Some("output_text"))
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect();
    if text.is_empty() {
        return Err(LlmError::Protocol(
            "the response has no output text".to_owned(),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn a_request_is_stateless_and_asks_for_reasoning_only_when_configured() {
        let messages = vec![
            ChatMessage::System {
                content: "Be brief.".to_owned(),
            },
            ChatMessage::User {
                content: "hi".to_owned(),
            },
        ];
        let tools = vec![ToolDefinition::new(
            "add",
            "Adds.",
            json!({"type": "object"}),
        )];
        let options = Options {
            model: "o4-mini",
            stream: true,
            temperature: None,
            max_output_tokens: Some(500),
            tool_choice: Some("add"),
            reasoning: Some(ReasoningOptions {
                effort: Some(ReasoningEffort::Low),
                summary: Some(ReasoningSummary::Auto),
            }),
            hosted: None,
            text_format: None,
        };
        let body = request_body(&messages, &tools, options);
        assert_eq!(body["store"], false);
        assert_eq!(body["stream"], true);
        assert_eq!(body["instructions"], "Be brief.");
        assert_eq!(body["max_output_tokens"], 500);
        assert_eq!(
            body["tool_choice"],
            json!({"type": "function", "name": "add"})
        );
        assert_eq!(
            body["reasoning"],
            json!({"effort": "low", "summary": "auto"})
        );
        assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));
        assert!(body.get("previous_response_id").is_none());

        let plain = request_body(
            &messages,
            &[],
            Options {
                reasoning: None,
                tool_choice: Some("add"),
                ..options
            },
        );
        for absent in ["reasoning", "include", "tools", "tool_choice"] {
            assert!(plain.get(absent).is_none(), "{absent}: {plain}");
        }

        let hosted = HostedRequest {
            tools: vec![json!({"type": "web_search"})],
            include: vec!["web_search_call.action.sources"],
        };
        let searching = request_body(
            &messages,
            &tools,
            Options {
                hosted: Some(&hosted),
                ..options
            },
        );
        assert_eq!(searching["tools"][1], json!({"type": "web_search"}));
        assert_eq!(
            searching["include"],
            json!([
                "reasoning.encrypted_content",
                "web_search_call.action.sources"
            ])
        );
    }

    #[test]
    fn a_completion_is_its_output_text() {
        let body = json!({"output": [
            {"type": "reasoning", "id": "rs", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A title"}]},
        ], "usage": {"input_tokens": 3, "output_tokens": 2}});
        assert_eq!(
            completion_text(body.to_string().as_bytes()).expect("text"),
            "A title"
        );
        assert!(completion_text(br#"{"output": []}"#).is_err());
    }
}
