//! A streamed answer: [`LlmStream`] reads chunks under the idle timeout and
//! [`Assembler`] folds them into text deltas, whole tool calls and a finish
//! reason.
//!
//! Tool calls arrive as fragments keyed by `index`: the first usually carries
//! id and name, later ones append to `arguments`. Arguments stay JSON text
//! here; parsing them is the caller's business once the call is complete. A
//! stream that ends without a `finish_reason` is reported as cut, never taken
//! for a complete answer. Nothing here knows HTTP or retries.

use std::pin::Pin;
use std::time::Duration;

use async_openai::error::OpenAIError;
use futures::{Stream, StreamExt};
use serde_json::Value;

use super::LlmError;
use super::wire::{Chunk, ToolCall, ToolCallDelta};

/// Something the streamed answer produced.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// More answer text.
    Text(String),
    /// The answer is complete. `tool_calls` holds the assembled calls when
    /// the model asked for tools.
    Finished {
        reason: String,
        tool_calls: Vec<ToolCall>,
    },
}

/// How long to wait for the end of a stream after its finish_reason.
const AFTER_FINISH_GRACE: Duration = Duration::from_secs(2);

pub(super) type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, OpenAIError>> + Send>>;

/// A streamed answer in progress.
pub struct LlmStream {
    chunks: ChunkStream,
    idle_timeout: Duration,
    assembler: Assembler,
    finished: bool,
}

impl LlmStream {
    pub(super) fn new(chunks: ChunkStream, idle_timeout: Duration) -> Self {
        LlmStream {
            chunks,
            idle_timeout,
            assembler: Assembler::default(),
            finished: false,
        }
    }

    /// The next event; `None` after `Finished` or an error.
    pub async fn next(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        if self.finished {
            return None;
        }
        loop {
            // After a finish_reason only `[DONE]` or trailing usage should come;
            // a server that then keeps the stream open is not waited for long.
            let wait = if self.assembler.has_finish_reason() {
                AFTER_FINISH_GRACE
            } else {
                self.idle_timeout
            };
            let chunk = match tokio::time::timeout(wait, self.chunks.next()).await {
                Err(_) => {
                    let timeout = LlmError::Timeout(self.idle_timeout);
                    return self.end_or(timeout);
                }
                // `[DONE]` or the end of the body. Only a finish_reason tells a
                // complete answer from a cut one.
                Ok(None) => return self.end_or(LlmError::Cut),
                // One chunk that is not even our tolerant shape: skip it. A
                // broken stream still shows as a missing finish_reason.
                Ok(Some(Err(OpenAIError::JSONDeserialize(e, content)))) => {
                    tracing::warn!(error = %e, chunk = %crate::text::cut_chars(&content, 200, "…"), "skipping an unreadable chunk");
                    continue;
                }
                Ok(Some(Err(e))) => return self.fail(e.into()),
                Ok(Some(Ok(chunk))) => chunk,
            };
            if let Some(usage) = &chunk.usage {
                usage.record();
            }
            match self.assembler.push(chunk) {
                Err(error) => return self.fail(error),
                Ok(Some(text)) => return Some(Ok(LlmEvent::Text(text))),
                Ok(None) => {}
            }
        }
    }

    /// The end of the chunks: the finished answer if a finish_reason came,
    /// else `error`.
    fn end_or(&mut self, error: LlmError) -> Option<Result<LlmEvent, LlmError>> {
        self.finished = true;
        Some(self.assembler.finish().ok_or(error))
    }

    fn fail(&mut self, error: LlmError) -> Option<Result<LlmEvent, LlmError>> {
        self.finished = true;
        Some(Err(error))
    }
}

/// Folds parsed chunks into text, tool calls and a finish reason; no I/O and
/// no clock, so every server quirk it absorbs is tested on its own.
#[derive(Debug, Default)]
pub(super) struct Assembler {
    calls: Vec<PartialCall>,
    /// The last non-empty finish_reason seen.
    finish_reason: Option<String>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

impl Assembler {
    /// Absorbs one chunk: the text it carried (all choices together), none if
    /// it carried no text, or the error object a server put in the stream.
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
                    self.absorb(fragment);
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        Ok((!text.is_empty()).then_some(text))
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
    fn absorb(&mut self, fragment: ToolCallDelta) {
        let index = match fragment.index {
            Some(index) => index,
            None if fragment.id.is_some() || self.calls.is_empty() => self.calls.len(),
            None => self.calls.len() - 1,
        };
        if self.calls.len() <= index {
            self.calls.resize_with(index + 1, PartialCall::default);
        }
        let call = &mut self.calls[index];
        if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name {
                call.name.push_str(&name);
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
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

    fn stream_of(items: Vec<Result<Chunk, OpenAIError>>) -> LlmStream {
        LlmStream::new(
            Box::pin(futures::stream::iter(items)),
            Duration::from_secs(5),
        )
    }

    async fn drain(mut stream: LlmStream) -> Vec<Result<LlmEvent, LlmError>> {
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            events.push(event);
        }
        events
    }

    #[tokio::test]
    async fn a_stream_cut_without_finish_reason_ends_in_cut() {
        let text = r#""not an object""#;
        let unreadable = serde_json::from_str::<Chunk>(text).expect_err("not a chunk");
        let events = drain(stream_of(vec![
            Ok(chunk(r#"{"choices":[{"delta":{"content":"partial"}}]}"#)),
            Err(OpenAIError::JSONDeserialize(unreadable, text.to_owned())),
            Ok(chunk(r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f"}}]}}]}"#)),
        ]))
        .await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(&events[0], Ok(LlmEvent::Text(t)) if t == "partial"));
        assert!(matches!(events[1], Err(LlmError::Cut)), "{events:?}");
    }

    #[tokio::test]
    async fn a_finished_stream_ends_once_with_its_calls() {
        let events = drain(stream_of(vec![
            Ok(chunk(r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{}"}}]}}]}"#)),
            Ok(chunk(r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#)),
            Ok(chunk(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#)),
        ]))
        .await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(matches!(
            &events[0],
            Ok(LlmEvent::Finished { reason, tool_calls })
                if reason == "tool_calls" && *tool_calls == vec![ToolCall::function("c", "f", "{}")]
        ));
    }

    #[tokio::test]
    async fn an_error_object_ends_the_stream() {
        let events = drain(stream_of(vec![
            Ok(chunk(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#)),
            Ok(chunk(r#"{"error":{"message":"model overloaded"}}"#)),
            Ok(chunk(
                r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            )),
        ]))
        .await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            matches!(&events[1], Err(LlmError::InStream(m)) if m == "model overloaded"),
            "{events:?}"
        );
    }
}
