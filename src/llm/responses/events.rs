//! [`Decoder`]: the Responses API's streamed events folded into text,
//! thinking, whole function calls and the answer's reasoning items, within
//! the same [`StreamLimits`] as a chat-completions answer.
//!
//! Event by event: `response.output_text.delta` (and a refusal's
//! `response.refusal.delta`) is text; `response.reasoning_summary_text.delta`
//! is thinking, a new summary part marked as such (each is one thought);
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

use super::hosted;
use super::input::reasoning_input;
use crate::llm::hosted::{HostedEvent, ImageStage};

/// Most citations shown of one answer; more are not shown.
const MAX_CITATIONS: usize = 256;
/// What a citation or a search is counted as against the answer's bytes:
/// each is kept whole (its URLs and titles are bounded on their own), so an
/// endless stream of them ends the answer like endless text.
const CITATION_BYTES: usize = 512;

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
    #[serde(default, deserialize_with = "text_or_none")]
    item_id: Option<String>,
    #[serde(default)]
    partial_image_index: Option<u64>,
    #[serde(default, deserialize_with = "text_or_none")]
    partial_image_b64: Option<String>,
    #[serde(default)]
    annotation: Option<Value>,
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
    /// The ids of the images begun, and the partial images shown of each.
    images: Vec<(String, u8)>,
    /// Citations read so far.
    citations: usize,
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
            images: Vec::new(),
            citations: 0,
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
                if let Some(delta) = event.delta.filter(|d| !d.is_empty()) {
                    let part = (
                        event.output_index.unwrap_or(0),
                        event.summary_index.unwrap_or(0),
                    );
                    pushed.new_part = self.last_part != Some(part);
                    self.last_part = Some(part);
                    self.count(delta.len())?;
                    pushed.reasoning = Some(delta);
                }
            }
            "response.output_item.added" | "response.output_item.done" => {
                let done = event.kind.ends_with(".done");
                if let Some(item) = event.item {
                    pushed.hosted = self.item(event.output_index, item, done)?;
                }
            }
            "response.output_text.annotation.added" => {
                if let Some(citation) = event.annotation.as_ref().and_then(hosted::citation)
                    && self.citations < MAX_CITATIONS
                {
                    self.citations += 1;
                    self.count(CITATION_BYTES)?;
                    pushed.hosted = Some(HostedEvent::Citation(citation));
                }
            }
            "response.image_generation_call.partial_image" => {
                pushed.hosted = self.partial_image(event);
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
    /// whole; a reasoning item, once done, is kept; a hosted tool's call is
    /// shown.
    fn item(
        &mut self,
        index: Option<u64>,
        item: Value,
        done: bool,
    ) -> Result<Option<HostedEvent>, LlmError> {
        match item.get("type").and_then(Value::as_str) {
            Some("web_search_call") => {
                self.count(CITATION_BYTES)?;
                return Ok(hosted::web_search(&item, done));
            }
            Some("file_search_call") => {
                self.count(CITATION_BYTES)?;
                return Ok(hosted::file_search(&item, done));
            }
            Some("image_generation_call") => return self.image(&item, done),
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
        Ok(None)
    }

    /// An image generation's item: begun (counted against `max_images`)
    /// or done with its image, read within `max_image_bytes`. Images are
    /// ignored when image generation is off: they were not asked for.
    fn image(&mut self, item: &Value, done: bool) -> Result<Option<HostedEvent>, LlmError> {
        let Some(id) = item.get("id").and_then(Value::as_str) else {
            return Ok(None);
        };
        if self.limits.max_images == 0 || id.len() > MAX_TOOL_NAME_BYTES {
            return Ok(None);
        }
        if !self.images.iter().any(|(known, _)| known == id) {
            if self.images.len() == self.limits.max_images {
                return Err(LlmError::OverLimit(StreamLimit::Images {
                    max: self.limits.max_images,
                }));
            }
            self.images.push((id.to_owned(), 0));
            if !done {
                return Ok(Some(HostedEvent::Image {
                    id: id.to_owned(),
                    stage: ImageStage::Started,
                }));
            }
        }
        if !done {
            return Ok(None);
        }
        let Some(result) = item.get("result").and_then(Value::as_str) else {
            // Done without an image: failed or refused; the text says why.
            return Ok(None);
        };
        let max = self.limits.max_image_bytes;
        let bytes = hosted::image_bytes(result, max)
            .map_err(|_| LlmError::OverLimit(StreamLimit::Image { max }))?;
        let revised_prompt = item
            .get("revised_prompt")
            .and_then(Value::as_str)
            .map(|p| crate::text::cut_chars(p, 4000, "…").into_owned());
        Ok(Some(HostedEvent::Image {
            id: id.to_owned(),
            stage: ImageStage::Done {
                bytes,
                revised_prompt,
            },
        }))
    }

    /// A partial image of an image begun: shown while no more than the
    /// partial images asked for were, and it is base64 within the bound.
    fn partial_image(&mut self, event: Event) -> Option<HostedEvent> {
        let id = event.item_id?;
        let base64 = event.partial_image_b64?;
        let asked = self.limits.partial_images;
        let (_, shown) = self.images.iter_mut().find(|(known, _)| *known == id)?;
        if *shown >= asked || !hosted::partial_image_ok(&base64, self.limits.max_image_bytes) {
            return None;
        }
        *shown += 1;
        let index = event.partial_image_index.unwrap_or(0);
        // As openai-chatkit's `partial_image_index_to_progress`.
        let progress = (index as f64 / f64::from(asked)).min(1.0);
        Some(HostedEvent::Image {
            id,
            stage: ImageStage::Partial { base64, progress },
        })
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
