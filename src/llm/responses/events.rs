//! [`Decoder`]: the Responses API's streamed events folded into text,
//! thinking, whole function calls and the answer's reasoning items, within
//! the same [`StreamLimits`] as a chat-completions answer.
//!
//! Event by event: `response.output_text.delta` (and a refusal's
//! `response.refusal.delta`) is text; `response.reasoning_summary_text.delta`
//! is thinking, a new summary part starting a new paragraph;
//! `response.output_item.added`, `response.function_call_arguments.delta`
//! and `.done` and `response.output_item.done` build function calls keyed by
//! `output_index`; a reasoning item's `response.output_item.done` keeps the
//! item (its encrypted content counted against the answer's bytes);
//! `response.completed` finishes the answer and reports usage;
//! `response.incomplete`, `response.failed` and `error` end it with an error.
//! Unknown event types are ignored. No I/O and no clock here.

use serde::Deserialize;
use serde_json::Value;

use crate::llm::assemble::{PartialCall, Pushed, whole_calls};
use crate::llm::limits::{
    MAX_TOOL_NAME_BYTES, StreamLimit, StreamLimits, TOOL_CALL_INDEXES, append_within,
};
use crate::llm::{LlmError, LlmEvent};

use super::input::reasoning_input;

/// One streamed event, every field optional: only what chatkitd reads.
#[derive(Debug, Default, Deserialize)]
struct Event {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    summary_index: Option<u64>,
    #[serde(default, deserialize_with = "text_or_none")]
    delta: Option<String>,
    #[serde(default, deserialize_with = "text_or_none")]
    arguments: Option<String>,
    #[serde(default)]
    item: Option<Value>,
    #[serde(default)]
    response: Option<Value>,
    #[serde(default, deserialize_with = "text_or_none")]
    message: Option<String>,
}

/// A field some servers fill with other shapes: its text when it is text.
fn text_or_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(text) => Some(text),
        _ => None,
    })
}

/// Folds the events of one streamed response.
#[derive(Debug)]
pub(in crate::llm) struct Decoder {
    limits: StreamLimits,
    /// Function calls by output index; `None` where the output is not one.
    calls: Vec<Option<PartialCall>>,
    started_calls: usize,
    /// Bytes of text, thinking and reasoning items so far.
    answer_bytes: usize,
    /// The reasoning items done, in order, as input for the next request.
    reasoning: Vec<Value>,
    /// The summary part the last thinking delta belonged to.
    last_part: Option<(u64, u64)>,
    completed: bool,
}

impl Decoder {
    pub(in crate::llm) fn new(limits: StreamLimits) -> Decoder {
        Decoder {
            limits,
            calls: Vec::new(),
            started_calls: 0,
            answer_bytes: 0,
            reasoning: Vec::new(),
            last_part: None,
            completed: false,
        }
    }

    /// Whether `response.completed` came.
    pub(in crate::llm) fn has_finish_reason(&self) -> bool {
        self.completed
    }

    /// Reads one event's data.
    pub(in crate::llm) fn push(&mut self, data: &str) -> Result<Pushed, LlmError> {
        let event: Event = match serde_json::from_str(data) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, event = %crate::text::cut_chars(data, 200, "…"), "skipping an unreadable event");
                return Ok(Pushed::default());
            }
        };
        let mut pushed = Pushed::default();
        match event.kind.as_str() {
            "response.output_text.delta" | "response.refusal.delta" => {
                if let Some(delta) = event.delta.filter(|d| !d.is_empty()) {
                    self.count(delta.len())?;
                    pushed.text = Some(delta);
                }
            }
            "response.reasoning_summary_text.delta" => {
                if let Some(mut delta) = event.delta.filter(|d| !d.is_empty()) {
                    let part = (
                        event.output_index.unwrap_or(0),
                        event.summary_index.unwrap_or(0),
                    );
                    if self.last_part.is_some_and(|last| last != part) {
                        delta.insert_str(0, "\n\n");
                    }
                    self.last_part = Some(part);
                    self.count(delta.len())?;
                    pushed.reasoning = Some(delta);
                }
            }
            "response.output_item.added" | "response.output_item.done" => {
                let done = event.kind.ends_with(".done");
                if let Some(item) = event.item {
                    self.item(event.output_index, item, done)?;
                }
            }
            "response.function_call_arguments.delta" => {
                if let Some(delta) = event.delta {
                    let max = self.limits.max_tool_arguments_bytes;
                    let call = self.call(event.output_index)?;
                    append_within(&mut call.arguments, &delta, max)
                        .ok_or(StreamLimit::ToolArguments { max })
                        .map_err(LlmError::OverLimit)?;
                }
            }
            "response.function_call_arguments.done" => {
                if let Some(arguments) = event.arguments {
                    let max = self.limits.max_tool_arguments_bytes;
                    let call = self.call(event.output_index)?;
                    replace_within(&mut call.arguments, arguments, max)
                        .ok_or(LlmError::OverLimit(StreamLimit::ToolArguments { max }))?;
                }
            }
            "response.completed" => {
                self.completed = true;
                if let Some(usage) = event.response.as_ref().and_then(|r| r.get("usage")) {
                    let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
                    crate::metrics::get().tokens(count("input_tokens"), count("output_tokens"));
                }
            }
            "response.incomplete" => {
                let reason = event
                    .response
                    .as_ref()
                    .and_then(|r| r.pointer("/incomplete_details/reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned();
                return Err(LlmError::InStream(format!(
                    "the answer is incomplete ({reason})"
                )));
            }
            "response.failed" => {
                let message = event
                    .response
                    .as_ref()
                    .and_then(|r| r.get("error"))
                    .map_or_else(
                        || "the response failed".to_owned(),
                        crate::llm::wire::error_message,
                    );
                return Err(LlmError::InStream(message));
            }
            "error" => {
                return Err(LlmError::InStream(
                    event.message.unwrap_or_else(|| data.to_owned()),
                ));
            }
            _ => {}
        }
        Ok(pushed)
    }

    /// An output item added or done: a function call starts or is made
    /// whole; a reasoning item, once done, is kept.
    fn item(&mut self, index: Option<u64>, item: Value, done: bool) -> Result<(), LlmError> {
        match item.get("type").and_then(Value::as_str) {
            Some("function_call") => {
                let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
                let max_arguments = self.limits.max_tool_arguments_bytes;
                let call = self.call(index)?;
                if let Some(call_id) = text("call_id").or_else(|| text("id")) {
                    call.id = call_id;
                }
                if let Some(name) = text("name") {
                    replace_within(&mut call.name, name, MAX_TOOL_NAME_BYTES).ok_or(
                        LlmError::OverLimit(StreamLimit::ToolName {
                            max: MAX_TOOL_NAME_BYTES,
                        }),
                    )?;
                }
                if let Some(arguments) = text("arguments").filter(|a| done || !a.is_empty()) {
                    replace_within(&mut call.arguments, arguments, max_arguments).ok_or(
                        LlmError::OverLimit(StreamLimit::ToolArguments { max: max_arguments }),
                    )?;
                }
            }
            Some("reasoning") if done => {
                let kept = reasoning_input(&item);
                let bytes = kept
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .map_or(0, str::len);
                self.count(bytes)?;
                self.reasoning.push(kept);
            }
            _ => {}
        }
        Ok(())
    }

    /// The call at `index`, started now if new (counted against
    /// `max_tool_calls`); an index past the table is refused.
    fn call(&mut self, index: Option<u64>) -> Result<&mut PartialCall, LlmError> {
        let index = index.unwrap_or(0);
        let slot = usize::try_from(index)
            .ok()
            .filter(|i| *i < TOOL_CALL_INDEXES)
            .ok_or(LlmError::OverLimit(StreamLimit::ToolCallIndex {
                index: usize::try_from(index).unwrap_or(usize::MAX),
            }))?;
        if self.calls.len() <= slot {
            self.calls.resize_with(slot + 1, || None);
        }
        if self.calls[slot].is_none() {
            self.started_calls += 1;
            if self.started_calls > self.limits.max_tool_calls {
                return Err(LlmError::OverLimit(StreamLimit::ToolCalls {
                    max: self.limits.max_tool_calls,
                }));
            }
        }
        Ok(self.calls[slot].get_or_insert_with(PartialCall::default))
    }

    /// Counts `bytes` more of the answer against its bound.
    fn count(&mut self, bytes: usize) -> Result<(), LlmError> {
        self.answer_bytes = self.answer_bytes.saturating_add(bytes);
        if self.answer_bytes > self.limits.max_answer_bytes {
            return Err(LlmError::OverLimit(StreamLimit::Answer {
                max: self.limits.max_answer_bytes,
            }));
        }
        Ok(())
    }

    /// The finished answer, or `None` when `response.completed` never came.
    pub(in crate::llm) fn finish(&mut self) -> Option<LlmEvent> {
        if !self.completed {
            return None;
        }
        self.completed = false;
        let tool_calls = whole_calls(
            std::mem::take(&mut self.calls)
                .into_iter()
                .enumerate()
                .filter_map(|(index, call)| call.map(|call| (index, call))),
        );
        let reason = if tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        Some(LlmEvent::Finished {
            reason: reason.to_owned(),
            tool_calls,
            reasoning: std::mem::take(&mut self.reasoning),
        })
    }
}

/// Sets `text` to `new` if it is at most `max` bytes.
fn replace_within(text: &mut String, new: String, max: usize) -> Option<()> {
    (new.len() <= max).then(|| *text = new)
}

#[cfg(test)]
mod tests;
