//! The bounds of one streamed answer ([`StreamLimits`], from `[llm]`) and
//! the error naming the one a model went beyond ([`StreamLimit`]).
//!
//! Everything a chunk can make the daemon hold is bounded (the tool-call
//! index, the number of calls, the bytes of a name, of arguments and of the
//! text), because a model server is as untrusted as a client: a chunk with
//! `index: 18446744073709551615` must end one answer, never the process.
//! The assembler (`assemble.rs`) enforces them; the tests here feed it
//! chunks that break each one.

use thiserror::Error;

use crate::config::LlmConfig;

/// Tool-call indexes accepted in a stream: `0..TOOL_CALL_INDEXES`. Servers
/// number calls from 0, so a real answer never comes near it; the bound is
/// what keeps a hostile index from sizing the table of calls.
pub(super) const TOOL_CALL_INDEXES: usize = 128;

/// Longest tool name accepted, in bytes. Real names are under 64 bytes; a
/// name is streamed in fragments like arguments, so it needs a bound too.
pub(super) const MAX_TOOL_NAME_BYTES: usize = 1024;

/// The bounds of one streamed answer, from `[llm]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StreamLimits {
    /// Most tool calls in one answer; at most [`TOOL_CALL_INDEXES`].
    pub(super) max_tool_calls: usize,
    /// Most bytes of one call's arguments.
    pub(super) max_tool_arguments_bytes: usize,
    /// Most bytes of the answer's text and reasoning together.
    pub(super) max_answer_bytes: usize,
    /// Most images of one answer (hosted image generation); 0: off.
    pub(super) max_images: usize,
    /// Largest image, decoded.
    pub(super) max_image_bytes: usize,
    /// Partial images asked for per image; more are not shown.
    pub(super) partial_images: u8,
}

/// Room for a chunk's JSON around its text and arguments.
const CHUNK_OVERHEAD_BYTES: usize = 64 * 1024;

impl StreamLimits {
    /// Most bytes of one streamed chunk (one server-sent event), which is
    /// read whole before it can be parsed. Derived, not configured: a chunk
    /// can carry at most a whole answer's text and a whole call's arguments,
    /// twice over for JSON escapes, so a larger one breaks a bound anyway.
    pub(super) fn max_chunk_bytes(&self) -> usize {
        self.max_answer_bytes
            .saturating_add(self.max_tool_arguments_bytes)
            .saturating_mul(2)
            .saturating_add(CHUNK_OVERHEAD_BYTES)
            .saturating_add(self.max_event_image_bytes())
    }

    /// Most bytes of images in one event: `response.completed` repeats
    /// every image of the answer, base64-encoded.
    fn max_event_image_bytes(&self) -> usize {
        if self.max_images == 0 {
            return 0;
        }
        self.max_image_bytes
            .div_ceil(3)
            .saturating_mul(4)
            .saturating_mul(self.max_images)
    }
}

impl StreamLimits {
    pub(super) fn from_config(config: &LlmConfig) -> StreamLimits {
        let images = config.hosted_tools.image_generation.as_ref();
        StreamLimits {
            max_tool_calls: config.max_tool_calls.min(TOOL_CALL_INDEXES),
            max_tool_arguments_bytes: config.max_tool_arguments_bytes,
            max_answer_bytes: config.max_answer_bytes,
            max_images: images.map_or(0, |i| i.max_images),
            max_image_bytes: images.map_or(0, |i| i.max_image_bytes),
            partial_images: images.map_or(0, |i| i.partial_images),
        }
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits::from_config(&LlmConfig::default())
    }
}

/// The bound a model's answer went beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StreamLimit {
    #[error("it used tool-call index {index}; the highest accepted is {}", TOOL_CALL_INDEXES - 1)]
    ToolCallIndex { index: usize },
    #[error("it asked for more than {max} tool calls in one answer")]
    ToolCalls { max: usize },
    #[error("it wrote a tool name longer than {max} bytes")]
    ToolName { max: usize },
    #[error("it wrote tool-call arguments longer than {max} bytes")]
    ToolArguments { max: usize },
    #[error("it wrote more than {max} bytes of text (reasoning included)")]
    Answer { max: usize },
    #[error("it sent one streamed chunk of more than {max} bytes")]
    Chunk { max: usize },
    #[error("it generated more than {max} images in one answer")]
    Images { max: usize },
    #[error("it generated an image larger than {max} bytes, or one that is not base64")]
    Image { max: usize },
}

/// Appends `more` to `text` unless the result would be longer than `max`
/// bytes; `None` (and `text` unchanged) when it would.
pub(super) fn append_within(text: &mut String, more: &str, max: usize) -> Option<()> {
    if text.len().saturating_add(more.len()) > max {
        return None;
    }
    text.push_str(more);
    Some(())
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::llm::assemble::Assembler;
    use crate::llm::assemble::tests::{chunk, feed};
    use crate::llm::wire::ToolCall;
    use crate::llm::{LlmError, LlmEvent};

    fn small_limits() -> StreamLimits {
        StreamLimits {
            max_tool_calls: 2,
            max_tool_arguments_bytes: 8,
            max_answer_bytes: 10,
            max_images: 0,
            max_image_bytes: 0,
            partial_images: 0,
        }
    }

    fn over_limit(assembler: &mut Assembler, json: &str) -> StreamLimit {
        match assembler.push(chunk(json)) {
            Err(LlmError::OverLimit(limit)) => limit,
            other => panic!("expected a limit error, got {other:?}"),
        }
    }

    #[test]
    fn an_index_beyond_the_table_is_refused_without_allocating_it() {
        for index in [128_usize, 1_000_000_000, usize::MAX] {
            let mut assembler = Assembler::default();
            let json = format!(
                r#"{{"choices":[{{"delta":{{"tool_calls":[{{"index":{index},"id":"c","function":{{"name":"f","arguments":"{{}}"}}}}]}}}}]}}"#
            );
            assert_eq!(
                over_limit(&mut assembler, &json),
                StreamLimit::ToolCallIndex { index }
            );
            assert_eq!(assembler.call_slots(), 0, "nothing sized by {index}");
        }
        // The highest index accepted still works.
        let mut assembler = Assembler::default();
        feed(
            &mut assembler,
            &[
                r#"{"choices":[{"delta":{"tool_calls":[{"index":127,"id":"c","function":{"name":"f","arguments":"{}"}}]}}]}"#,
                r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
            ],
        );
        assert_eq!(
            assembler.finish(),
            Some(LlmEvent::Finished {
                reason: "tool_calls".to_owned(),
                tool_calls: vec![ToolCall::function("c", "f", "{}")],
                reasoning: Vec::new(),
            })
        );
    }

    #[test]
    fn calls_beyond_the_maximum_are_refused_whatever_their_indexes() {
        let mut assembler = Assembler::new(small_limits());
        feed(
            &mut assembler,
            &[
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f"}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":5,"id":"b","function":{"name":"g"}}]}}]}"#,
                // More fragments of calls already started are no new calls.
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
            ],
        );
        assert_eq!(
            over_limit(
                &mut assembler,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":3,"id":"c","function":{"name":"h"}}]}}]}"#
            ),
            StreamLimit::ToolCalls { max: 2 }
        );
        // Without indexes, each new id is a new call and counts the same.
        let mut assembler = Assembler::new(small_limits());
        feed(
            &mut assembler,
            &[
                r#"{"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"f"}},{"id":"b","function":{"name":"g"}}]}}]}"#,
            ],
        );
        assert_eq!(
            over_limit(
                &mut assembler,
                r#"{"choices":[{"delta":{"tool_calls":[{"id":"c","function":{"name":"h"}}]}}]}"#
            ),
            StreamLimit::ToolCalls { max: 2 }
        );
    }

    #[test]
    fn arguments_and_names_beyond_their_bounds_are_refused() {
        let mut assembler = Assembler::new(small_limits());
        feed(
            &mut assembler,
            &[
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"a\":"}}]}}]}"#,
                // Exactly at the bound: 8 bytes.
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"12}"}}]}}]}"#,
            ],
        );
        assert_eq!(
            over_limit(
                &mut assembler,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":" "}}]}}]}"#
            ),
            StreamLimit::ToolArguments { max: 8 }
        );
        // The call keeps what fit: finishing now would give it whole.
        assembler
            .push(chunk(
                r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
            ))
            .expect("a finish");
        assert_eq!(
            assembler.finish(),
            Some(LlmEvent::Finished {
                reason: "tool_calls".to_owned(),
                tool_calls: vec![ToolCall::function("a", "f", r#"{"a":12}"#)],
                reasoning: Vec::new(),
            })
        );

        let mut assembler = Assembler::default();
        let long = "n".repeat(MAX_TOOL_NAME_BYTES + 1);
        let json = format!(
            r#"{{"choices":[{{"delta":{{"tool_calls":[{{"index":0,"function":{{"name":"{long}"}}}}]}}}}]}}"#
        );
        assert_eq!(
            over_limit(&mut assembler, &json),
            StreamLimit::ToolName {
                max: MAX_TOOL_NAME_BYTES
            }
        );
    }

    #[test]
    fn text_beyond_the_answer_bound_is_refused_after_what_fit() {
        let mut assembler = Assembler::new(small_limits());
        let text = feed(
            &mut assembler,
            &[
                r#"{"choices":[{"delta":{"content":"Hello"}}]}"#,
                r#"{"choices":[{"delta":{"content":"there"}}]}"#,
            ],
        );
        assert_eq!(text, vec!["Hello", "there"]);
        assert_eq!(
            over_limit(&mut assembler, r#"{"choices":[{"delta":{"content":"!"}}]}"#),
            StreamLimit::Answer { max: 10 }
        );
        let error = LlmError::OverLimit(StreamLimit::Answer { max: 10 });
        assert!(!error.is_transient());
        assert_eq!(
            error.to_string(),
            "the model's answer went beyond a limit of this server: it wrote more than 10 bytes of text (reasoning included)"
        );
    }
}
