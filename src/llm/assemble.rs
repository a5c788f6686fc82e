//! [`Assembler`]: folds parsed chunks into text deltas, whole tool calls and
//! a finish reason, within the [`StreamLimits`] of one answer (`limits.rs`
//! says what they are; this file enforces them as chunks arrive).
//!
//! Tool calls arrive as fragments keyed by `index`: the first usually carries
//! id and name, later ones append to `arguments`. Arguments stay JSON text
//! here; parsing them is the caller's business once the call is complete.
//! No I/O and no clock here; reading chunks under timeouts is `stream.rs`.

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
            return Err(LlmError::InStream(super::wire::error_message(&error)));
        }
        let mut text = String::new();
        for choice in chunk.choices.unwrap_or_default() {
            if let Some(delta) = choice.delta {
                if let Some(content) = delta.content {
                    // The one choice's text as it came, not copied.
                    if text.is_empty() {
                        text = content;
                    } else {
                        text.push_str(&content);
                    }
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
pub(super) mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    pub(in crate::llm) fn chunk(json: &str) -> Chunk {
        serde_json::from_str(json).expect("a chunk")
    }

    /// Pushes every chunk, collecting the text; panics on an error.
    pub(in crate::llm) fn feed(assembler: &mut Assembler, chunks: &[&str]) -> Vec<String> {
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

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Value, json};

        use super::*;

        const LIMITS: StreamLimits = StreamLimits {
            max_tool_calls: 4,
            max_tool_arguments_bytes: 64,
            max_answer_bytes: 128,
        };

        fn short_text() -> impl Strategy<Value = String> {
            prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter)
        }

        /// A tool-call fragment with any subset of its fields; indexes are
        /// mostly small but may be anything a `u64` holds.
        fn fragment() -> impl Strategy<Value = Value> {
            let index = prop_oneof![3 => 0_u64..8, 1 => 0_u64..300, 1 => any::<u64>()];
            (
                prop::option::of(index),
                prop::option::of(short_text()),
                prop::option::of(short_text()),
                prop::option::of(short_text()),
            )
                .prop_map(|(index, id, name, arguments)| {
                    let mut fragment = json!({"type": "function", "function": {}});
                    if let Some(index) = index {
                        fragment["index"] = json!(index);
                    }
                    if let Some(id) = id {
                        fragment["id"] = json!(id);
                    }
                    if let Some(name) = name {
                        fragment["function"]["name"] = json!(name);
                    }
                    if let Some(arguments) = arguments {
                        fragment["function"]["arguments"] = json!(arguments);
                    }
                    fragment
                })
        }

        /// A chunk as servers send them, an error object, or odd JSON.
        fn chunk_json() -> impl Strategy<Value = Value> {
            let finish = prop::option::of(prop::sample::select(vec![
                "",
                "stop",
                "tool_calls",
                "length",
            ]));
            let choice = (
                prop::option::of(short_text()),
                prop::option::of(prop::collection::vec(fragment(), 0..4)),
                finish,
            )
                .prop_map(|(content, tool_calls, finish_reason)| {
                    json!({"index": 0, "delta": {"content": content, "tool_calls": tool_calls}, "finish_reason": finish_reason})
                });
            prop_oneof![
                8 => prop::collection::vec(choice, 0..3).prop_map(|choices| json!({"choices": choices})),
                1 => short_text().prop_map(|message| json!({"error": {"message": message}})),
                1 => prop_oneof![
                    Just(json!({"choices": null})),
                    Just(json!({"choices": [{"delta": null}]})),
                    Just(json!([])),
                    Just(json!("not an object")),
                ],
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_chunks_stay_within_the_limits(chunks in prop::collection::vec(chunk_json(), 0..24)) {
                let mut assembler = Assembler::new(LIMITS);
                let mut text_bytes = 0;
                let mut failed = false;
                for value in chunks {
                    // What does not even parse as a chunk is skipped by the stream.
                    let Ok(chunk) = serde_json::from_value::<Chunk>(value) else {
                        continue;
                    };
                    match assembler.push(chunk) {
                        Ok(text) => text_bytes += text.map_or(0, |t| t.len()),
                        Err(LlmError::OverLimit(_) | LlmError::InStream(_)) => {
                            failed = true;
                            break;
                        }
                        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
                    }
                    prop_assert!(text_bytes <= LIMITS.max_answer_bytes);
                    prop_assert!(assembler.call_slots() <= TOOL_CALL_INDEXES);
                }
                if failed {
                    return Ok(());
                }
                if let Some(LlmEvent::Finished { tool_calls, .. }) = assembler.finish() {
                    prop_assert!(tool_calls.len() <= LIMITS.max_tool_calls);
                    for call in tool_calls {
                        prop_assert!(!call.function.name.is_empty());
                        prop_assert!(call.function.name.len() <= MAX_TOOL_NAME_BYTES);
                        prop_assert!(call.function.arguments.len() <= LIMITS.max_tool_arguments_bytes);
                        prop_assert!(!call.id.is_empty());
                    }
                }
            }
        }
    }
}
