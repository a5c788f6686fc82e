//! A streamed answer: [`LlmStream`] reads chunks under the idle timeout and
//! hands them to the [`Assembler`] (`assemble.rs`), which folds them into
//! text deltas, whole tool calls and a finish reason within the answer's
//! limits.
//!
//! A stream that ends without a `finish_reason` is reported as cut, never
//! taken for a complete answer. Nothing here knows HTTP or retries.

use std::pin::Pin;
use std::time::Duration;

use super::LlmError;
use super::assemble::Assembler;
use super::limits::StreamLimits;
use super::wire::{Chunk, ToolCall};
use async_openai::error::OpenAIError;
use futures::{Stream, StreamExt};

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
    pub(super) fn new(chunks: ChunkStream, idle_timeout: Duration, limits: StreamLimits) -> Self {
        LlmStream {
            chunks,
            idle_timeout,
            assembler: Assembler::new(limits),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(json: &str) -> Chunk {
        serde_json::from_str(json).expect("a chunk")
    }

    fn stream_of(items: Vec<Result<Chunk, OpenAIError>>) -> LlmStream {
        LlmStream::new(
            Box::pin(futures::stream::iter(items)),
            Duration::from_secs(5),
            StreamLimits::default(),
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
