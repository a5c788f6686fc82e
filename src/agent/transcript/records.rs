//! The hidden items that record tool activity, so the next turn's history
//! replays it exactly: what the model asked for, and each call's result.
//!
//! Stored as the content of a `hidden_context_item`:
//! `{"type":"chatkitd.tool_calls","calls":[{"id","name","arguments"}]}` and
//! `{"type":"chatkitd.tool_result","call_id","name","output","is_error"}`.
//! The interactive records ([`UiRecord`]) live beside them:
//! `{"type":"chatkitd.widget_state","source"?,"approval"?}`, the hidden twin
//! of a widget item (id [`state_id`]) saying which tool call the widget shows
//! and, for an approval card, which calls wait and whether they were
//! settled; and `{"type":"chatkitd.action","action","text"}`, a widget
//! action handed to the agent, which the model reads as the user's words.
//! A reasoning model's encrypted reasoning items (Responses API) are kept as
//! `{"type":"chatkitd.reasoning","items":[…]}` ([`ReasoningRecord`]); an
//! image the model generated,
//! `{"type":"chatkitd.generated_image","image":{…},"prompt"?}`
//! ([`GeneratedImageRecord`]); a handoff between agents,
//! the records of several agents are in `agents.rs`.
//! These shapes are in existing databases: field names and `type` strings
//! must not change. How the records become chat messages lives in
//! [`super::history`]; nothing here runs a tool.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::llm::ToolCall;
use crate::protocol::{IdKind, ItemKind, ThreadItem, new_id};

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
        /// Images the result showed the model, kept as attachments of the
        /// thread.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<StoredImage>,
    },
}

/// An image of a tool result: the attachment that keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredImage {
    pub id: String,
    pub mime_type: String,
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
            images: Vec::new(),
        }
    }

    /// The same result showing `images`.
    pub fn with_images(mut self, stored: Vec<StoredImage>) -> Self {
        if let ToolRecord::Result { images, .. } = &mut self {
            *images = stored;
        }
        self
    }

    /// The record in a hidden content item's content, if it is one.
    pub fn from_content(content: &Value) -> Option<Self> {
        serde_json::from_value(content.clone()).ok()
    }

    /// The hidden item holding this record on `thread_id`.
    pub fn into_item(self, thread_id: &str) -> ThreadItem {
        // A plain enum of strings and a bool always serializes.
        let content = serde_json::to_value(&self).unwrap_or(Value::Null);
        ThreadItem::new(
            new_id(IdKind::Message),
            thread_id,
            ItemKind::HiddenContextItem { content },
        )
    }
}

/// The reasoning items of one model answer as the Responses API returned
/// them (opaque, encrypted), kept so that later requests send them back
/// before what they led to: `{"type":"chatkitd.reasoning","items":[…]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "chatkitd.reasoning")]
pub struct ReasoningRecord {
    pub items: Vec<Value>,
}

impl ReasoningRecord {
    /// Reads a hidden item's content as this record.
    pub fn from_content(content: &Value) -> Option<Self> {
        tagged_record(content, "chatkitd.reasoning")
    }

    /// The hidden item holding this record on `thread_id`.
    pub fn into_item(self, thread_id: &str) -> ThreadItem {
        tagged_item(&self, thread_id)
    }
}

/// A hidden item's content as the record of type `tag`, if it is one.
pub(super) fn tagged_record<T: serde::de::DeserializeOwned>(
    content: &Value,
    tag: &str,
) -> Option<T> {
    if content.get("type").and_then(Value::as_str) != Some(tag) {
        return None;
    }
    serde_json::from_value(content.clone()).ok()
}

/// The hidden item holding a tagged record on `thread_id`.
pub(super) fn tagged_item<T: Serialize>(record: &T, thread_id: &str) -> ThreadItem {
    // Records of strings and JSON values always serialize.
    let content = serde_json::to_value(record).unwrap_or(Value::Null);
    ThreadItem::new(
        new_id(IdKind::SdkHiddenContext),
        thread_id,
        ItemKind::HiddenContextItem { content },
    )
}

/// An image the model generated with the hosted image tool, kept as an
/// attachment of the thread, so later requests show it to the model:
/// `{"type":"chatkitd.generated_image","image":{"id","mime_type"},"prompt"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "chatkitd.generated_image")]
pub struct GeneratedImageRecord {
    pub image: StoredImage,
    /// The prompt the model drew from, when the endpoint said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

impl GeneratedImageRecord {
    /// Reads a hidden item's content as this record.
    pub fn from_content(content: &Value) -> Option<Self> {
        tagged_record(content, "chatkitd.generated_image")
    }

    /// The hidden item holding this record on `thread_id`.
    pub fn into_item(self, thread_id: &str) -> ThreadItem {
        tagged_item(&self, thread_id)
    }
}

/// The interactive records: widget state and actions for the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UiRecord {
    /// What a widget item shows and what it waits for.
    #[serde(rename = "chatkitd.widget_state")]
    WidgetState {
        widget_id: String,
        /// The call whose result the widget renders; an action bound to a
        /// tool runs it again to render the widget afresh.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<WidgetSource>,
        /// For an approval card: the calls it asks about.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<PendingApproval>,
    },
    /// A widget action the agent answers; `text` is what it means.
    #[serde(rename = "chatkitd.action")]
    Action { action: String, text: String },
    /// A widget action that ran a tool without the agent: the model reads
    /// what it did, so it does not trust a stale result from earlier.
    #[serde(rename = "chatkitd.action_run")]
    ActionRun {
        action: String,
        tool: String,
        arguments: String,
        output: String,
    },
}

/// The tool call a widget was rendered from (arguments as the model or the
/// action sent them, injected parameters not included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WidgetSource {
    pub server: String,
    pub tool: String,
    pub arguments: String,
}

/// Calls waiting for the user's approval, and whether that came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub calls: Vec<PendingCall>,
    pub state: ApprovalState,
}

/// One call waiting for approval: the call as the model asked for it, and
/// the server that would run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCall {
    #[serde(flatten)]
    pub call: StoredCall,
    pub server: String,
}

/// Where an approval stands. Only `pending` can change, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    /// The conversation went on without an answer; nothing ran.
    Expired,
}

/// `items` in the order the model reads them: the record of a tool-bound
/// action, which is written without the run lock and so can land between a
/// run's tool calls and their results, is read after those results (or
/// before the next turn), so a call is always followed by its results.
pub fn in_reading_order(items: &[ThreadItem]) -> Vec<&ThreadItem> {
    let mut ordered = Vec::with_capacity(items.len());
    let mut open: HashSet<&str> = HashSet::new();
    let mut held = Vec::new();
    for item in items {
        let content = match &item.kind {
            ItemKind::HiddenContextItem { content } => Some(content),
            ItemKind::UserMessage(_) => {
                open.clear();
                None
            }
            _ => None,
        };
        let tag = content
            .and_then(|c| c.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        match tag {
            "chatkitd.action_run" if !open.is_empty() => {
                held.push(item);
                continue;
            }
            "chatkitd.tool_calls" => {
                ordered.append(&mut held);
                open = content
                    .and_then(|c| c.get("calls"))
                    .and_then(Value::as_array)
                    .map(|calls| {
                        calls
                            .iter()
                            .filter_map(|c| c.get("id").and_then(Value::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            "chatkitd.tool_result" => {
                if let Some(id) = content
                    .and_then(|c| c.get("call_id"))
                    .and_then(Value::as_str)
                {
                    open.remove(id);
                }
                ordered.push(item);
                if open.is_empty() {
                    ordered.append(&mut held);
                }
                continue;
            }
            "chatkitd.action" => open.clear(),
            _ => {}
        }
        if open.is_empty() {
            ordered.append(&mut held);
        }
        ordered.push(item);
    }
    ordered.append(&mut held);
    ordered
}

/// The id of a widget's state record.
pub fn state_id(widget_id: &str) -> String {
    format!("shcx_{widget_id}")
}

impl UiRecord {
    /// The record in a hidden content item's content, if it is one.
    pub fn from_content(content: &Value) -> Option<Self> {
        serde_json::from_value(content.clone()).ok()
    }

    /// The hidden item holding this record on `thread_id`: a widget's state
    /// under [`state_id`], an action under a fresh id.
    pub fn into_item(self, thread_id: &str) -> ThreadItem {
        let id = match &self {
            UiRecord::WidgetState { widget_id, .. } => state_id(widget_id),
            UiRecord::Action { .. } | UiRecord::ActionRun { .. } => {
                new_id(IdKind::SdkHiddenContext)
            }
        };
        // Strings, options and enums of strings always serialize.
        let content = serde_json::to_value(&self).unwrap_or(Value::Null);
        ThreadItem::new(id, thread_id, ItemKind::HiddenContextItem { content })
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
                images: Vec::new(),
            }
        );
        assert_eq!(serde_json::to_value(&record).expect("json"), result);
    }

    #[test]
    fn interactive_records_keep_their_shapes() {
        let state = json!({"type": "chatkitd.widget_state", "widget_id": "msg_1",
            "approval": {"calls": [{"id": "c1", "name": "delete_task", "arguments": "{}",
                                    "server": "tasks"}],
                         "state": "pending"}});
        let record = UiRecord::from_content(&state).expect("a state record");
        assert!(
            matches!(&record, UiRecord::WidgetState { source: None, approval: Some(a), .. }
            if a.state == ApprovalState::Pending)
        );
        assert_eq!(serde_json::to_value(&record).expect("json"), state);
        assert_eq!(record.into_item("thr_1").id, "shcx_msg_1");

        let action = json!({"type": "chatkitd.action", "action": "explain", "text": "Why?"});
        let record = UiRecord::from_content(&action).expect("an action record");
        assert_eq!(serde_json::to_value(&record).expect("json"), action);
        assert_eq!(ToolRecord::from_content(&action), None);
        assert_eq!(
            UiRecord::from_content(&json!({"type": "chatkitd.tool_calls", "calls": []})),
            None
        );
    }

    #[test]
    fn an_action_run_between_calls_and_results_is_read_after_the_results() {
        let hidden = |id: &str, content: Value| {
            ThreadItem::new(id, "thr_1", ItemKind::HiddenContextItem { content })
        };
        let run = json!({"type": "chatkitd.action_run", "action": "a", "tool": "t",
            "arguments": "{}", "output": "ok"});
        let items = vec![
            hidden(
                "calls",
                json!({"type": "chatkitd.tool_calls", "calls": [
                {"id": "c1", "name": "x", "arguments": "{}"},
                {"id": "c2", "name": "y", "arguments": "{}"}]}),
            ),
            hidden(
                "r1",
                json!({"type": "chatkitd.tool_result", "call_id": "c1",
                "name": "x", "output": "1", "is_error": false}),
            ),
            hidden("run", run.clone()),
            hidden(
                "r2",
                json!({"type": "chatkitd.tool_result", "call_id": "c2",
                "name": "y", "output": "2", "is_error": false}),
            ),
            hidden("later", run),
        ];
        let order: Vec<&str> = in_reading_order(&items)
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(order, ["calls", "r1", "r2", "run", "later"]);
        // Calls that never get results (an approval not given) hold it only
        // until the next calls.
        let order: Vec<&str> = in_reading_order(&items[..3])
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(order, ["calls", "r1", "run"]);
    }

    #[test]
    fn other_hidden_content_is_not_a_record() {
        assert_eq!(ToolRecord::from_content(&json!({"note": "x"})), None);
        assert_eq!(ToolRecord::from_content(&json!("plain text")), None);
    }
}
