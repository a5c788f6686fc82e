//! [`Assembler`]: folds parsed chunks into text deltas, whole tool calls and
//! a finish reason, within the [`StreamLimits`] of one answer (`limits.rs`
//! says what they are; this file enforces them as chunks arrive).
//!
//! Tool calls arrive as fragments keyed by `index`: the first usually carries
//! id and name, later ones append to `arguments`. Arguments stay JSON text
//! here; parsing them is the caller's business once the call is complete.
//! No I/O and no clock here; reading chunks under timeouts is `stream.rs`.

use serde_json::Value;

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
    /// Bytes of text so far.
    text_bytes: usize,
    /// The last non-empty finish_reason seen.
    finish_reason: Option<String>,
}

#[derive(Debug, Default)]
struct PartialCall {
    started: bool,
    id: String,
    name: String,
    arguments: String,
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
            text_bytes: 0,
            finish_reason: None,
        }
    }

    /// Absorbs one chunk: the text it carried (all choices together), none if
    /// it carried no text, the error object a server put in the stream, or
    /// [`LlmError::OverLimit`] when the chunk goes beyond a bound (its text
    /// is then not returned).
    pub(super) fn push(&mut self, chunk: Chunk) -> Result<Option<String>, LlmError> {
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| error.to_string());
            return Err(LlmError::InStream(message));
        }
        let mut text = String::new();
        for choice in chunk.choices.unwrap_or_default() {
            if let Some(delta) = choice.delta {
                if let Some(content) = delta.content {
                    text.push_str(&content);
                }
                for fragment in delta.tool_calls.unwrap_or_default() {
                    self.absorb(fragment).map_err(LlmError::OverLimit)?;
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        self.text_bytes = self.text_bytes.saturating_add(text.len());
        if self.text_bytes > self.limits.max_answer_bytes {
            return Err(LlmError::OverLimit(StreamLimit::Answer {
                max: self.limits.max_answer_bytes,
            }));
        }
        Ok((!text.is_empty()).then_some(text))
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
        let tool_calls = std::mem::take(&mut self.calls)
            .into_iter()
            .enumerate()
            .filter(|(_, call)| !call.name.is_empty())
            .map(|(i, call)| {
                // Some servers never send an id; the model needs one to pair
                // the call with its result.
                let id = if call.id.is_empty() {
                    format!("call_{i}")
                } else {
                    call.id
                };
                ToolCall::function(id, call.name, call.arguments)
            })
            .collect();
        Some(LlmEvent::Finished { reason, tool_calls })
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
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn chunk(json: &str) -> Chunk {
        serde_json::from_str(json).expect("a chunk")
    }

    /// Pushes every chunk, collecting the text; panics on an in-stream error.
    fn feed(assembler: &mut Assembler, chunks: &[&str]) -> Vec<String> {
        chunks
            .iter()
            .filter_map(|c| assembler.push(chunk(c)).expect("no in-stream error"))
            .collect()
    }

    fn finished(reason: &str, tool_calls: Vec<ToolCall>) -> Option<LlmEvent> {
        Some(LlmEvent::Finished {
            reason: reason.to_owned(),
            tool_calls,
        })
    }

    #[test]
    fn text_deltas_come_out_as_sent_and_empty_ones_are_none() {
        let mut assembler = Assembler::default();
        let text = feed(
            &mut assembler,
            &[
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            ],
        );
        assert_eq!(text, vec!["Hel", "lo"]);
        assert_eq!(assembler.finish(), finished("stop", vec![]));
    }

    #[test]
    fn fragments_are_keyed_by_index_even_interleaved() {
        let mut assembler = Assembler::default();
        let text = feed(
            &mut assembler,
            &[
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"add_task","arguments":""}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"list_tasks","arguments":"{"}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"title\":"}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"arguments":"}"}},{"index":0,"function":{"arguments":"\"milk\"}"}}]}}]}"#,
                r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
            ],
        );
        assert!(text.is_empty());
        assert_eq!(
            assembler.finish(),
            finished(
                "tool_calls",
                vec![
                    ToolCall::function("call_a", "add_task", r#"{"title":"milk"}"#),
                    ToolCall::function("call_b", "list_tasks", "{}"),
                ]
            )
        );
    }

    #[test]
    fn without_index_an_id_starts_a_new_call_and_no_id_continues_the_last() {
        let mut assembler = Assembler::default();
        feed(
            &mut assembler,
            &[
                r#"{"choices":[{"delta":{"tool_calls":[{"id":"x1","function":{"name":"first","arguments":"{\"a\""}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":":1}"}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"id":"x2","function":{"name":"second","arguments":"{}"}}]}}]}"#,
                r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
            ],
        );
        assert_eq!(
            assembler.finish(),
            finished(
                "tool_calls",
                vec![
                    ToolCall::function("x1", "first", r#"{"a":1}"#),
                    ToolCall::function("x2", "second", "{}"),
                ]
            )
        );
    }

    #[test]
    fn calls_without_ids_are_named_by_position_and_nameless_ones_dropped() {
        let mut assembler = Assembler::default();
        feed(
            &mut assembler,
            &[
                // The first fragment without index or id starts the first call.
                r#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"add_task","arguments":"{\"ti"}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"tle\":\"x\"}"}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":2,"id":"","function":{"name":"later","arguments":"{}"}}]}}]}"#,
                r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
            ],
        );
        // Index 1 never got a name: no call is made of it, and the others keep
        // their positions in the generated ids.
        assert_eq!(
            assembler.finish(),
            finished(
                "tool_calls",
                vec![
                    ToolCall::function("call_0", "add_task", r#"{"title":"x"}"#),
                    ToolCall::function("call_2", "later", "{}"),
                ]
            )
        );
    }

    #[test]
    fn an_empty_finish_reason_is_no_finish_reason() {
        let mut assembler = Assembler::default();
        feed(
            &mut assembler,
            &[
                r#"{"choices":[{"delta":{"content":"partial"},"finish_reason":""}]}"#,
                r#"{"choices":null}"#,
            ],
        );
        assert!(!assembler.has_finish_reason());
        assert_eq!(assembler.finish(), None);

        feed(
            &mut assembler,
            &[
                r#"{"choices":[{"delta":{},"finish_reason":"length"}]}"#,
                r#"{"choices":[{"delta":{},"finish_reason":""}]}"#,
            ],
        );
        assert!(assembler.has_finish_reason());
        assert_eq!(assembler.finish(), finished("length", vec![]));
    }

    #[test]
    fn an_error_object_mid_stream_is_an_error_with_its_message() {
        let mut assembler = Assembler::default();
        feed(
            &mut assembler,
            &[r#"{"choices":[{"delta":{"content":"Hi"}}]}"#],
        );
        let error = assembler
            .push(chunk(
                r#"{"error":{"message":"model overloaded","code":503},"choices":[{"delta":{"content":"lost"}}]}"#,
            ))
            .expect_err("an error");
        assert!(
            matches!(&error, LlmError::InStream(m) if m == "model overloaded"),
            "{error:?}"
        );
        let error = assembler
            .push(chunk(r#"{"error":"rate limited"}"#))
            .expect_err("an error");
        assert!(
            matches!(&error, LlmError::InStream(m) if m == r#""rate limited""#),
            "{error:?}"
        );
    }
}
