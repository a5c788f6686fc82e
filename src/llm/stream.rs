//! A streamed answer: [`LlmStream`] reads chunks (server-sent events, framed
//! by `sse.rs` within the chunk bound) under the idle timeout and hands them
//! to the [`Assembler`] (`assemble.rs`), which folds them into text deltas,
//! whole tool calls and a finish reason within the answer's limits.
//!
//! A stream that ends without a `finish_reason` is reported as cut, never
//! taken for a complete answer. Nothing here knows requests or retries.

use std::pin::Pin;
use std::time::Duration;

use super::LlmError;
use super::assemble::{Assembler, Pushed};
use super::hosted::HostedEvent;
use super::limits::{StreamLimit, StreamLimits};
use super::responses;
use super::sse::{SseError, SseEvent, SseReader};
use super::wire::{Chunk, ToolCall};
use crate::config::LlmApi;
use bytes::Bytes;
use futures::Stream;
use tokio::time::{Instant, Sleep};

/// No event came within the wait.
struct Elapsed;

/// Something the streamed answer produced.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// More answer text.
    Text(String),
    /// More of the model's thinking (`reasoning_content` or `reasoning`
    /// deltas), which comes before the text it leads to. `new_part`: it
    /// begins a part of its own (each summary part of the Responses API
    /// does); chat completions stream one text without parts.
    Reasoning { delta: String, new_part: bool },
    /// What a hosted tool did (a search, an image), or a citation in the
    /// text so far (Responses API).
    Hosted(HostedEvent),
    /// The answer is complete. `tool_calls` holds the assembled calls when
    /// the model asked for tools.
    Finished {
        reason: String,
        tool_calls: Vec<ToolCall>,
        /// The answer's reasoning items (Responses API), opaque, to send back
        /// before its tool calls and on later turns; none in chat completions.
        reasoning: Vec<serde_json::Value>,
    },
}

/// How long to wait for the end of a stream after its finish_reason.
const AFTER_FINISH_GRACE: Duration = Duration::from_secs(2);

/// The body of a streamed answer, as it arrives.
pub(super) type Body = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// A streamed answer in progress.
pub struct LlmStream {
    chunks: SseReader<Body>,
    idle_timeout: Duration,
    /// The wait for the next chunk, armed once per answer and moved only
    /// when it fires: a chunk records when it came ([`LlmStream::last_read`]),
    /// and a timer that fires before the real deadline is set to it. No
    /// timer is armed or cleared per chunk.
    idle: Option<Pin<Box<Sleep>>>,
    /// When the last event (or the start of the answer) came.
    last_read: Instant,
    decoder: Decoder,
    /// The text of a chunk that also carried reasoning, returned after it.
    queued: Option<String>,
    finished: bool,
}

/// How the events of a stream are read: chat-completions chunks, or the
/// Responses API's events.
#[derive(Debug)]
pub(super) enum Decoder {
    Chat(Assembler),
    Responses(responses::Decoder),
}

impl Decoder {
    /// The decoder of `api`'s stream, within `limits`.
    pub(super) fn new(api: LlmApi, limits: StreamLimits) -> Decoder {
        match api {
            LlmApi::ChatCompletions => Decoder::Chat(Assembler::new(limits)),
            LlmApi::Responses => Decoder::Responses(responses::Decoder::new(limits)),
        }
    }

    /// Reads one event's data: what it carried for the answer.
    fn push(&mut self, data: &str) -> Result<Pushed, LlmError> {
        match self {
            Decoder::Chat(assembler) => {
                let chunk = match serde_json::from_str::<Chunk>(data) {
                    Ok(chunk) => chunk,
                    // One chunk that is not even our tolerant shape: skip it. A
                    // broken stream still shows as a missing finish_reason.
                    Err(e) => {
                        tracing::warn!(error = %e, chunk = %crate::text::cut_chars(data, 200, "…"), "skipping an unreadable chunk");
                        return Ok(Pushed::default());
                    }
                };
                if let Some(usage) = &chunk.usage {
                    usage.record();
                }
                assembler.push(chunk)
            }
            Decoder::Responses(decoder) => decoder.push(data),
        }
    }

    fn has_finish_reason(&self) -> bool {
        match self {
            Decoder::Chat(assembler) => assembler.has_finish_reason(),
            Decoder::Responses(decoder) => decoder.has_finish_reason(),
        }
    }

    fn finish(&mut self) -> Option<LlmEvent> {
        match self {
            Decoder::Chat(assembler) => assembler.finish(),
            Decoder::Responses(decoder) => decoder.finish(),
        }
    }
}

impl LlmStream {
    pub(super) fn new(
        body: Body,
        idle_timeout: Duration,
        limits: StreamLimits,
        decoder: Decoder,
    ) -> Self {
        LlmStream {
            chunks: SseReader::new(body, limits.max_chunk_bytes()),
            idle_timeout,
            idle: None,
            last_read: Instant::now(),
            decoder,
            queued: None,
            finished: false,
        }
    }

    /// The next event; `None` after `Finished` or an error.
    pub async fn next(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        if let Some(text) = self.queued.take() {
            return Some(Ok(LlmEvent::Text(text)));
        }
        if self.finished {
            return None;
        }
        loop {
            // After a finish_reason only `[DONE]` or trailing usage should come;
            // a server that then keeps the stream open is not waited for long.
            let wait = if self.decoder.has_finish_reason() {
                AFTER_FINISH_GRACE
            } else {
                self.idle_timeout
            };
            let event = match self.read_within(wait).await {
                Err(Elapsed) => {
                    let timeout = LlmError::Timeout(self.idle_timeout);
                    return self.end_or(timeout);
                }
                // The end of the body. Only a finish_reason tells a complete
                // answer from a cut one.
                Ok(None) => return self.end_or(LlmError::Cut),
                Ok(Some(Err(error))) => return self.fail(read_failed(error)),
                Ok(Some(Ok(event))) => event,
            };
            if event.data == "[DONE]" {
                return self.end_or(LlmError::Cut);
            }
            if event.kind == "keepalive" {
                continue;
            }
            match self.decoder.push(&event.data) {
                Err(error) => return self.fail(error),
                Ok(Pushed {
                    reasoning: Some(delta),
                    text,
                    new_part,
                    ..
                }) => {
                    self.queued = text;
                    return Some(Ok(LlmEvent::Reasoning { delta, new_part }));
                }
                Ok(Pushed {
                    text: Some(text), ..
                }) => return Some(Ok(LlmEvent::Text(text))),
                // A Responses event carries one thing: never text as well.
                Ok(Pushed {
                    hosted: Some(hosted),
                    ..
                }) => return Some(Ok(LlmEvent::Hosted(hosted))),
                Ok(Pushed { .. }) => {}
            }
        }
    }

    /// The next event of the body, unless none comes within `wait` of the
    /// last one.
    async fn read_within(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Result<SseEvent, SseError>>, Elapsed> {
        let deadline = self.last_read + wait;
        let idle = match &mut self.idle {
            Some(idle) => {
                // Only a deadline brought forward needs the timer moved now
                // (once per answer: the grace after the finish_reason).
                if deadline < idle.deadline() {
                    idle.as_mut().reset(deadline);
                }
                idle
            }
            None => self
                .idle
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        let read = self.chunks.next();
        tokio::pin!(read);
        let event = loop {
            tokio::select! {
                biased;
                event = &mut read => break event,
                () = idle.as_mut() => {
                    if Instant::now() >= deadline {
                        return Err(Elapsed);
                    }
                    idle.as_mut().reset(deadline);
                }
            }
        };
        self.last_read = Instant::now();
        Ok(event)
    }

    /// The end of the chunks: the finished answer if a finish_reason came,
    /// else `error`.
    fn end_or(&mut self, error: LlmError) -> Option<Result<LlmEvent, LlmError>> {
        self.finished = true;
        Some(self.decoder.finish().ok_or(error))
    }

    fn fail(&mut self, error: LlmError) -> Option<Result<LlmEvent, LlmError>> {
        self.finished = true;
        Some(Err(error))
    }
}

fn read_failed(error: SseError) -> LlmError {
    match error {
        SseError::Transport(reason) => LlmError::Transport(reason),
        SseError::TooLarge { max } => LlmError::OverLimit(StreamLimit::Chunk { max }),
        SseError::NotUtf8 => LlmError::Protocol("a streamed chunk is not UTF-8".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream whose body is these chunks as server-sent events, each in
    /// a read of its own.
    fn stream_of(chunks: &[&str]) -> LlmStream {
        let reads: Vec<Result<Bytes, reqwest::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from(format!("data: {c}\n\n"))))
            .collect();
        LlmStream::new(
            Box::pin(futures::stream::iter(reads)),
            Duration::from_secs(5),
            StreamLimits::default(),
            Decoder::new(LlmApi::ChatCompletions, StreamLimits::default()),
        )
    }

    async fn drain(mut stream: LlmStream) -> Vec<Result<LlmEvent, LlmError>> {
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            events.push(event);
        }
        events
    }

    /// The idle timeout counts from the last chunk, not from the start:
    /// chunks 100 ms apart go on past a 300 ms timeout, and a silence of
    /// 600 ms after them ends the answer.
    #[tokio::test]
    async fn the_idle_timeout_counts_from_the_last_chunk() {
        let body = futures::stream::unfold(0, |i| async move {
            if i < 6 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let chunk =
                    format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"t{i}\"}}}}]}}\n\n");
                Some((Ok::<_, reqwest::Error>(Bytes::from(chunk)), i + 1))
            } else {
                tokio::time::sleep(Duration::from_millis(600)).await;
                None
            }
        });
        let stream = LlmStream::new(
            Box::pin(body),
            Duration::from_millis(300),
            StreamLimits::default(),
            Decoder::new(LlmApi::ChatCompletions, StreamLimits::default()),
        );
        let events = drain(stream).await;
        assert_eq!(events.len(), 7, "{events:?}");
        assert!(matches!(&events[5], Ok(LlmEvent::Text(t)) if t == "t5"));
        assert!(matches!(events[6], Err(LlmError::Timeout(_))), "{events:?}");
    }

    #[tokio::test]
    async fn a_stream_cut_without_finish_reason_ends_in_cut() {
        let events = drain(stream_of(&[
            r#"{"choices":[{"delta":{"content":"partial"}}]}"#,
            r#""not an object""#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f"}}]}}]}"#,
        ]))
        .await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(&events[0], Ok(LlmEvent::Text(t)) if t == "partial"));
        assert!(matches!(events[1], Err(LlmError::Cut)), "{events:?}");
    }

    #[tokio::test]
    async fn a_finished_stream_ends_once_with_its_calls() {
        let events = drain(stream_of(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
            "[DONE]",
            r#"{"choices":[{"delta":{"content":"after the end"}}]}"#,
        ]))
        .await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(matches!(
            &events[0],
            Ok(LlmEvent::Finished { reason, tool_calls, .. })
                if reason == "tool_calls" && *tool_calls == vec![ToolCall::function("c", "f", "{}")]
        ));
    }

    #[tokio::test]
    async fn reasoning_comes_before_the_text_of_its_chunk() {
        let events = drain(stream_of(&[
            r#"{"choices":[{"delta":{"reasoning_content":"Hmm."}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":" Done.","content":"Hi"}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
        ]))
        .await;
        let kinds: Vec<String> = events
            .iter()
            .map(|event| match event {
                Ok(LlmEvent::Reasoning { delta, .. }) => format!("reasoning {delta}"),
                Ok(LlmEvent::Text(t)) => format!("text {t}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds[..3],
            ["reasoning Hmm.", "reasoning  Done.", "text Hi"],
            "{events:?}"
        );
        assert!(matches!(events[3], Ok(LlmEvent::Finished { .. })));
    }

    #[tokio::test]
    async fn an_error_object_ends_the_stream() {
        let events = drain(stream_of(&[
            r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            r#"{"error":{"message":"model overloaded"}}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
        ]))
        .await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            matches!(&events[1], Err(LlmError::InStream(m)) if m == "model overloaded"),
            "{events:?}"
        );
    }
}
