//! The hidden items that record tool activity, so the next turn's history
//! replays it exactly: what the model asked for, and each call's result.
//!
//! Stored as the content of a `hidden_context_item`:
//! `{"type":"chatkitd.tool_calls","calls":[{"id","name","arguments"}]}` and
//! `{"type":"chatkitd.tool_result","call_id","name","output","is_error"}`.
//! These shapes are in existing databases: field names and `type` strings
//! must not change. How the records become chat messages lives in
//! [`super::history`]; nothing here runs a tool.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::llm::ToolCall;
use crate::protocol::{IdKind, ItemKind, ThreadItem, Timestamp, new_id};

/// A stored record of tool activity, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ToolRecord {
    /// The calls of one model answer.
    #[serde(rename = "chatkitd.tool_calls")]
    Calls { calls: Vec<StoredCall> },
    /// One call's result.
    #[serde(rename = "chatkitd.tool_result")]
    Result {
        call_id: String,
        name: String,
        output: String,
        is_error: bool,
    },
}

/// One call as the model asked for it; `arguments` is the model's JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl ToolRecord {
    /// The record of what the model asked for.
    pub fn calls(calls: &[ToolCall]) -> Self {
        ToolRecord::Calls {
            calls: calls
                .iter()
                .map(|c| StoredCall {
                    id: c.id.clone(),
                    name: c.function.name.clone(),
                    arguments: c.function.arguments.clone(),
                })
                .collect(),
        }
    }

    /// The record of one call's result.
    pub fn result(call: &ToolCall, output: &str, is_error: bool) -> Self {
        ToolRecord::Result {
            call_id: call.id.clone(),
            name: call.function.name.clone(),
            output: output.to_owned(),
            is_error,
        }
    }

    /// The record in a hidden content item's content, if it is one.
    pub fn from_content(content: &Value) -> Option<Self> {
        serde_json::from_value(content.clone()).ok()
    }

    /// The hidden item holding this record on `thread_id`.
    pub fn into_item(self, thread_id: &str) -> ThreadItem {
        // A plain enum of strings and a bool always serializes.
        let content = serde_json::to_value(&self).unwrap_or(Value::Null);
        ThreadItem {
            id: new_id(IdKind::Message),
            thread_id: thread_id.to_owned(),
            created_at: Timestamp::now(),
            kind: ItemKind::HiddenContextItem { content },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_shapes_read_back_and_write_the_same() {
        let calls = json!({"type": "chatkitd.tool_calls", "calls": [
            {"id": "c1", "name": "add_task", "arguments": "{\"title\":\"milk\"}"}
        ]});
        let record = ToolRecord::from_content(&calls).expect("a calls record");
        assert_eq!(
            record,
            ToolRecord::Calls {
                calls: vec![StoredCall {
                    id: "c1".into(),
                    name: "add_task".into(),
                    arguments: "{\"title\":\"milk\"}".into(),
                }]
            }
        );
        assert_eq!(serde_json::to_value(&record).expect("json"), calls);

        let result = json!({"type": "chatkitd.tool_result", "call_id": "c1",
            "name": "add_task", "output": "ok", "is_error": false});
        let record = ToolRecord::from_content(&result).expect("a result record");
        assert_eq!(
            record,
            ToolRecord::Result {
                call_id: "c1".into(),
                name: "add_task".into(),
                output: "ok".into(),
                is_error: false,
            }
        );
        assert_eq!(serde_json::to_value(&record).expect("json"), result);
    }

    #[test]
    fn other_hidden_content_is_not_a_record() {
        assert_eq!(ToolRecord::from_content(&json!({"note": "x"})), None);
        assert_eq!(ToolRecord::from_content(&json!("plain text")), None);
    }
}
