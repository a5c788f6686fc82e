//! The hidden records of several agents: a handoff from one agent to
//! another, `{"type":"chatkitd.handoff","from","to"}` ([`HandoffRecord`]),
//! and what guardrails decided, `{"type":"chatkitd.guardrail",…}`
//! ([`GuardrailRecord`]); and the agent a thread's next run starts with
//! ([`active_agent`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::records::{tagged_item, tagged_record};
use crate::protocol::{ItemKind, ThreadItem};

/// A handoff from one agent to another (`[agents]`):
/// `{"type":"chatkitd.handoff","from","to"}`. Not shown to the model (its
/// call and result are); it tells a later run who answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "chatkitd.handoff")]
pub struct HandoffRecord {
    pub from: String,
    pub to: String,
}

impl HandoffRecord {
    /// Reads a hidden item's content as this record.
    pub fn from_content(content: &Value) -> Option<Self> {
        tagged_record(content, "chatkitd.handoff")
    }

    /// The hidden item holding this record on `thread_id`.
    pub fn into_item(self, thread_id: &str) -> ThreadItem {
        tagged_item(&self, thread_id)
    }
}

/// What the guardrails of one side decided about a message or an answer:
/// `{"type":"chatkitd.guardrail","on","verdicts":[{"guardrail","tripped","reason"}]}`.
/// Not shown to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "chatkitd.guardrail")]
pub struct GuardrailRecord {
    /// `input` or `output`.
    pub on: String,
    pub verdicts: Vec<GuardrailVerdict>,
}

/// One guardrail's verdict in a [`GuardrailRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailVerdict {
    pub guardrail: String,
    pub tripped: bool,
    pub reason: String,
}

impl GuardrailRecord {
    /// Reads a hidden item's content as this record.
    pub fn from_content(content: &Value) -> Option<Self> {
        tagged_record(content, "chatkitd.guardrail")
    }

    /// The hidden item holding this record on `thread_id`.
    pub fn into_item(self, thread_id: &str) -> ThreadItem {
        tagged_item(&self, thread_id)
    }
}

/// The agent a new run of a thread starts with: the one the last handoff
/// went to, unless `back_to_entry` and the user wrote since (the entry
/// agent then answers: `None`). A run that resumes its turn (after an
/// approval or a client tool's output) keeps the agent that asked.
pub fn active_agent(items: &[ThreadItem], back_to_entry: bool) -> Option<String> {
    for item in items.iter().rev() {
        match &item.kind {
            ItemKind::UserMessage(_) if back_to_entry => return None,
            ItemKind::HiddenContextItem { content } => {
                if let Some(handoff) = HandoffRecord::from_content(content) {
                    return Some(handoff.to);
                }
            }
            _ => {}
        }
    }
    None
}
