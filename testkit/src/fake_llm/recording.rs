//! What the fake model records of each request (chat completions or Responses)
//! ([`RecordedRequest`]) and helpers reading the messages of a request body.
//! Judging whether a request is well formed lives in `invariants`.

use serde_json::Value;

/// One chat-completions or Responses request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The JSON body; a JSON string holding the raw text if it was not JSON.
    pub body: Value,
    /// The `Authorization` header value, if any.
    pub authorization: Option<String>,
    /// The body's `stream` field (false when absent).
    pub stream: bool,
}

impl RecordedRequest {
    /// The `messages` array, empty if missing.
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The `input` array of a Responses API request, empty if missing.
    pub fn input(&self) -> &[Value] {
        self.body
            .get("input")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The `model` field, if present.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// The text of the last `user` message, see [`message_text`].
    pub fn last_user_text(&self) -> Option<String> {
        last_user_text(&self.body)
    }

    /// Names of the functions offered in `tools` (either API's shape).
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| {
                        t.pointer("/function/name")
                            .or_else(|| t.get("name"))
                            .and_then(Value::as_str)
                    })
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The text of a message's `content`: the string itself, or the `text` of
/// every text part (`text`; the Responses API's `input_text` and
/// `output_text`) joined with a space. `None` if there is none.
pub fn message_text(message: &Value) -> Option<String> {
    match message.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| {
                    matches!(
                        p.get("type").and_then(Value::as_str),
                        Some("text" | "input_text" | "output_text")
                    )
                })
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            Some(texts.join(" "))
        }
        _ => None,
    }
}

/// The text of the last message with role `user` in a request body (its
/// `messages`, or a Responses request's `input`).
pub fn last_user_text(body: &Value) -> Option<String> {
    body.get("messages")
        .or_else(|| body.get("input"))?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(message_text)
}
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_text_from_parts() {
        let body = json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]},
        ]});
        assert_eq!(last_user_text(&body).as_deref(), Some("a b"));
    }
}
