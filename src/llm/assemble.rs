//! [`Assembler`]: folds parsed chunks into text deltas, whole tool calls and
//! a finish reason, within the [`StreamLimits`] of one answer (`limits.rs`
//! says what they are; this file enforces them as chunks arrive).
//!
//! Tool calls arrive as fragments keyed by `index`: the first usually carries
//! id and name, later ones append to `arguments`. Arguments stay JSON text
//! here; parsing them is the caller's business once the call is complete.
//! No I/O and no clock here; reading chunks under timeouts is `stream.rs`.

use super::hosted::HostedEvent;
use super::limits::{
    MAX_TOOL_NAME_BYTES, StreamLimit, StreamLimits, TOOL_CALL_INDEXES, append_within,
};
use super::wire::{Chunk, ToolCall, ToolCallDelta};
use super::{LlmError, LlmEvent};

/// Folds parsed chunks into text, tool calls and a finish reason; no I/O and
/// no clock, so every server quirk it absorbs is tested on its own.
#[derive(Debug)]
pub(super) struct Assembler {
    limits: StreamLimits,
    calls: Vec<PartialCall>,
    /// Calls that received at least one fragment.
    started_calls: usize,
    /// Bytes of text and reasoning so far.
    answer_bytes: usize,
    /// The last non-empty finish_reason seen.
    finish_reason: Option<String>,
}

/// What one chunk carried for the answer.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Pushed {
    /// More of the answer's text.
    pub(super) text: Option<String>,
    /// More of the model's thinking.
    pub(super) reasoning: Option<String>,
    /// The thinking begins a new part (a Responses API summary part); chat
    /// completions have none.
    pub(super) new_part: bool,
    /// What a hosted tool did, or a citation (Responses API).
    pub(super) hosted: Option<HostedEvent>,
}

/// Appends `more` to `all`, moving it when `all` is still empty (the usual
/// single choice: its text as it came, not copied).
fn append(all: &mut String, more: String) {
    if all.is_empty() {
        *all = more;
    } else {
        all.push_str(&more);
    }
}

/// A tool call being streamed.
#[derive(Debug, Default)]
pub(super) struct PartialCall {
    /// It received a fragment (chat completions count calls by this).
    pub(super) started: bool,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) arguments: String,
}

/// The calls that got a name, by index, as whole calls. A call without an id
/// gets `call_{index}`: some servers never send one, and the model needs it
/// to pair the call with its result.
pub(super) fn whole_calls(calls: impl Iterator<Item = (usize, PartialCall)>) -> Vec<ToolCall> {
    calls
        .filter(|(_, call)| !call.name.is_empty())
        .map(|(index, call)| {
            let id = if call.id.is_empty() {
                format!("call_{index}")
            } else {
                call.id
            };
            ToolCall::function(id, call.name, call.arguments)
        })
        .collect()
}

impl Default for Assembler {
    fn default() -> Self {
        Assembler::new(StreamLimits::default())
    }
}

impl Assembler {
    pub(super) fn new(limits: StreamLimits) -> Assembler {
        Assembler {
            limits,
            calls: Vec::new(),
            started_calls: 0,
            answer_bytes: 0,
            finish_reason: None,
        }
    }

    /// Absorbs one chunk: the text and the reasoning it carried (all
    /// choices together; each `None` when it carried none), the error
    /// object a server put in the stream, or [`LlmError::OverLimit`] when the
    /// chunk goes beyond a bound (its text is then not returned). Reasoning
    /// counts against the answer's bytes like text: a model that thinks
    /// without end is stopped by the same bound.
    pub(super) fn push(&mut self, chunk: Chunk) -> Result<Pushed, LlmError> {
        if let Some(error) = chunk.error {
            return Err(LlmError::InStream(super::wire::error_message(&error)));
        }
        let mut text = String::new();
        let mut reasoning = String::new();
        for choice in chunk.choices.unwrap_or_default() {
            if let Some(mut delta) = choice.delta {
                if let Some(thought) = delta.take_reasoning() {
                    append(&mut reasoning, thought);
                }
                if let Some(content) = delta.content {
                    append(&mut text, content);
                }
                for fragment in delta.tool_calls.unwrap_or_default() {
                    self.absorb(fragment).map_err(LlmError::OverLimit)?;
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        self.answer_bytes = self
            .answer_bytes
            .saturating_add(text.len())
            .saturating_add(reasoning.len());
        if self.answer_bytes > self.limits.max_answer_bytes {
            return Err(LlmError::OverLimit(StreamLimit::Answer {
                max: self.limits.max_answer_bytes,
            }));
        }
        Ok(Pushed {
            text: (!text.is_empty()).then_some(text),
            reasoning: (!reasoning.is_empty()).then_some(reasoning),
            new_part: false,
            hosted: None,
        })
    }

    /// How many call slots exist, started or skipped over by an index.
    #[cfg(test)]
    pub(super) fn call_slots(&self) -> usize {
        self.calls.len()
    }

    /// Whether a finish_reason has come, so the answer is complete once the
    /// stream ends.
    pub(super) fn has_finish_reason(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// The finished answer with its assembled tool calls, or `None` when no
    /// finish_reason came (a cut stream).
    pub(super) fn finish(&mut self) -> Option<LlmEvent> {
        let reason = self.finish_reason.take()?;
        let tool_calls = whole_calls(std::mem::take(&mut self.calls).into_iter().enumerate());
        Some(LlmEvent::Finished {
            reason,
            tool_calls,
            reasoning: Vec::new(),
        })
    }

    /// Adds one tool-call fragment. Servers that omit `index` send each call
    /// whole or in order, so a fragment without index that carries an `id`
    /// starts a new call and one without continues the last.
    fn absorb(&mut self, fragment: ToolCallDelta) -> Result<(), StreamLimit> {
        let index = match fragment.index {
            Some(index) => index,
            None if fragment.id.is_some() || self.calls.is_empty() => self.calls.len(),
            None => self.calls.len() - 1,
        };
        if index >= TOOL_CALL_INDEXES {
            return Err(StreamLimit::ToolCallIndex { index });
        }
        if self.calls.len() <= index {
            self.calls.resize_with(index + 1, PartialCall::default);
        }
        let limits = self.limits;
        let call = &mut self.calls[index];
        if !call.started {
            call.started = true;
            self.started_calls += 1;
            if self.started_calls > limits.max_tool_calls {
                return Err(StreamLimit::ToolCalls {
                    max: limits.max_tool_calls,
                });
            }
        }
        if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name {
                append_within(&mut call.name, &name, MAX_TOOL_NAME_BYTES).ok_or(
                    StreamLimit::ToolName {
                        max: MAX_TOOL_NAME_BYTES,
                    },
                )?;
            }
            if let Some(arguments) = function.arguments {
                append_within(
                    &mut call.arguments,
                    &arguments,
                    limits.max_tool_arguments_bytes,
                )
                .ok_or(StreamLimit::ToolArguments {
                    max: limits.max_tool_arguments_bytes,
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests;
