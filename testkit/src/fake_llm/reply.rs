//! How one [`Script`] plays out as an HTTP response: the chunks of a
//! `text/event-stream` body or a JSON completion, with their ids, usage and
//! scripted failures (the Responses API's events and objects: `responses`). Which script answers which request is decided in
//! `server`; the scripts themselves are defined in `script`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FAKE_MODEL, FakeToolCall, Script, message_text};

mod responses;

/// Pause before a scripted abort, so hyper flushes what came before it
/// (otherwise it may drop buffered chunks, even the headers, with the connection).
const FLUSH_PAUSE: Duration = Duration::from_millis(20);

/// How long a [`Script::Hang`] keeps its connection open at most.
const HANG_LIMIT: Duration = Duration::from_secs(600);

/// A rough token count: whitespace-separated words, at least one.
fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

/// The prompt's token count by [`count_tokens`], one per message without text.
fn prompt_tokens(body: &Value) -> u64 {
    body.get("messages")
        .or_else(|| body.get("input"))
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .map(|m| message_text(m).map_or(1, |t| count_tokens(&t)))
                .sum()
        })
        .unwrap_or(1)
}

/// Splits `s` into three fragments of roughly equal length on char boundaries.
fn three_fragments(s: &str) -> [&str; 3] {
    let boundaries: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let chars = boundaries.len() - 1;
    let a = boundaries[chars / 3];
    let b = boundaries[2 * chars / 3];
    [&s[..a], &s[a..b], &s[b..]]
}

/// One step of a streamed body.
enum Step {
    Sleep(Duration),
    Send(Bytes),
    /// Make the body stream fail, aborting the response.
    Fail,
    /// Send nothing more until the client leaves or [`HANG_LIMIT`] passes.
    Hang,
}

/// The per-response constants of a reply.
pub(crate) struct Reply {
    /// The server's count of bodies still being sent, see [`OpenStream`].
    open_streams: Arc<AtomicUsize>,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    prompt_tokens: u64,
}

impl Reply {
    /// The reply to the request with this body, the `n`th the server saw.
    pub(crate) fn new(open_streams: Arc<AtomicUsize>, n: u64, body: &Value) -> Reply {
        Reply {
            id: format!("chatcmpl-fake-{n}"),
            created: unix_now(),
            model: body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(FAKE_MODEL)
                .to_owned(),
            include_usage: body
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true),
            prompt_tokens: prompt_tokens(body),
            open_streams,
        }
    }

    fn usage(&self, completion_text: &str) -> Value {
        let completion = count_tokens(completion_text);
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        })
    }

    fn event(data: &Value) -> Step {
        Step::Send(Bytes::from(format!("data: {data}\n\n")))
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Step {
        Self::event(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        }))
    }

    fn role_chunk(&self) -> Step {
        self.chunk(json!({"role": "assistant", "content": ""}), None)
    }

    fn content_chunks(&self, steps: &mut Vec<Step>, chunks: &[String], delay: Duration) {
        for chunk in chunks {
            if !delay.is_zero() {
                steps.push(Step::Sleep(delay));
            }
            steps.push(self.chunk(json!({"content": chunk}), None));
        }
    }

    /// Tool calls: for call `i` a delta with its id, type and name, then its
    /// arguments in three fragments.
    fn call_chunks(&self, steps: &mut Vec<Step>, calls: &[FakeToolCall]) {
        for (index, call) in calls.iter().enumerate() {
            steps.push(self.chunk(
                json!({"tool_calls": [{
                    "index": index,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }]}),
                None,
            ));
            for fragment in three_fragments(&call.arguments) {
                if !fragment.is_empty() {
                    steps.push(self.chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
                        None,
                    ));
                }
            }
        }
    }

    /// The finish chunk, the usage chunk if asked for, and `[DONE]`.
    fn finish(&self, steps: &mut Vec<Step>, finish_reason: &str, completion_text: &str) {
        steps.push(self.chunk(json!({}), Some(finish_reason)));
        if self.include_usage {
            steps.push(Self::event(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": self.usage(completion_text),
            })));
        }
        steps.push(Step::Send(Bytes::from_static(b"data: [DONE]\n\n")));
    }

    /// The response to a streaming request.
    pub(crate) fn stream(&self, script: Script) -> Response {
        let mut steps = Vec::new();
        match script {
            Script::Status {
                status,
                retry_after,
                body,
            } => return status_response(status, retry_after, body),
            Script::Text { chunks, delay } => {
                steps.push(self.role_chunk());
                self.content_chunks(&mut steps, &chunks, delay);
                self.finish(&mut steps, "stop", &chunks.concat());
            }
            Script::Slow {
                chunks,
                first_token_delay,
                delay,
            } => {
                steps.push(Step::Sleep(first_token_delay));
                steps.push(self.role_chunk());
                self.content_chunks(&mut steps, &chunks, delay);
                self.finish(&mut steps, "stop", &chunks.concat());
            }
            Script::ToolCalls { calls } => {
                steps.push(self.role_chunk());
                self.call_chunks(&mut steps, &calls);
                let arguments: String = calls.iter().map(|c| c.arguments.as_str()).collect();
                self.finish(&mut steps, "tool_calls", &arguments);
            }
            Script::CutAfter { chunks } => {
                steps.push(self.role_chunk());
                self.content_chunks(&mut steps, &chunks, Duration::ZERO);
            }
            Script::Abort { chunks } => {
                steps.push(self.role_chunk());
                self.content_chunks(&mut steps, &chunks, Duration::ZERO);
                steps.push(Step::Sleep(FLUSH_PAUSE));
                steps.push(Step::Fail);
            }
            Script::ErrorInStream { chunks, message } => {
                steps.push(self.role_chunk());
                self.content_chunks(&mut steps, &chunks, Duration::ZERO);
                steps.push(Self::event(
                    &json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}}),
                ));
            }
            Script::Hang { chunks } => {
                steps.push(self.role_chunk());
                self.content_chunks(&mut steps, &chunks, Duration::ZERO);
                steps.push(Step::Hang);
            }
            Script::Raw { events } => {
                for event in events {
                    steps.push(Step::Send(Bytes::from(format!("data: {event}\n\n"))));
                }
            }
            Script::Thinking {
                field,
                reasoning,
                chunks,
                calls,
            } => {
                steps.push(self.role_chunk());
                for delta in &reasoning {
                    steps.push(self.chunk(json!({ field: delta }), None));
                }
                self.content_chunks(&mut steps, &chunks, Duration::ZERO);
                self.call_chunks(&mut steps, &calls);
                let reason = if calls.is_empty() {
                    "stop"
                } else {
                    "tool_calls"
                };
                self.finish(
                    &mut steps,
                    reason,
                    &format!("{}{}", reasoning.concat(), chunks.concat()),
                );
            }
        }
        self.streamed_response("text/event-stream", steps)
    }

    fn completion(&self, message: Value, finish_reason: &str, completion_text: &str) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
            "usage": self.usage(completion_text),
        })
    }

    fn text_completion(&self, text: &str) -> Value {
        self.completion(
            json!({"role": "assistant", "content": text, "refusal": null}),
            "stop",
            text,
        )
    }

    /// The response to a non-streaming request.
    pub(crate) async fn unary(&self, script: Script) -> Response {
        let json_response = |value: Value| {
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                value.to_string(),
            )
                .into_response()
        };
        match script {
            Script::Status {
                status,
                retry_after,
                body,
            } => status_response(status, retry_after, body),
            Script::Text { chunks, .. } => json_response(self.text_completion(&chunks.concat())),
            Script::Thinking {
                field,
                reasoning,
                chunks,
                ..
            } => {
                let text = chunks.concat();
                json_response(self.completion(
                    json!({"role": "assistant", "content": text, field: reasoning.concat()}),
                    "stop",
                    &format!("{}{}", reasoning.concat(), text),
                ))
            }
            Script::Slow {
                chunks,
                first_token_delay,
                ..
            } => {
                tokio::time::sleep(first_token_delay).await;
                json_response(self.text_completion(&chunks.concat()))
            }
            Script::ToolCalls { calls } => {
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        })
                    })
                    .collect();
                let arguments: String = calls.iter().map(|c| c.arguments.as_str()).collect();
                json_response(self.completion(
                    json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": tool_calls}),
                    "tool_calls",
                    &arguments,
                ))
            }
            Script::CutAfter { chunks } => {
                let full = self.text_completion(&chunks.concat()).to_string();
                let half = Bytes::copy_from_slice(&full.as_bytes()[..full.len() / 2]);
                self.streamed_response("application/json", vec![Step::Send(half)])
            }
            Script::Abort { chunks } => {
                let full = self.text_completion(&chunks.concat()).to_string();
                let half = Bytes::copy_from_slice(&full.as_bytes()[..full.len() / 2]);
                self.streamed_response(
                    "application/json",
                    vec![Step::Send(half), Step::Sleep(FLUSH_PAUSE), Step::Fail],
                )
            }
            Script::ErrorInStream { message, .. } => {
                error_response(StatusCode::INTERNAL_SERVER_ERROR, &message, "server_error")
            }
            Script::Hang { .. } => self.streamed_response("application/json", vec![Step::Hang]),
            Script::Raw { events } => self.streamed_response(
                "application/json",
                vec![Step::Send(Bytes::from(events.concat()))],
            ),
        }
    }

    /// A 200 response whose body plays `steps` lazily, so sleeps are real and
    /// every chunk is flushed as produced.
    fn streamed_response(&self, content_type: &'static str, steps: Vec<Step>) -> Response {
        let guard = OpenStream::new(self.open_streams.clone());
        let body = futures::stream::unfold(
            (VecDeque::from(steps), guard),
            |(mut steps, guard)| async move {
                loop {
                    match steps.pop_front()? {
                        Step::Sleep(delay) => tokio::time::sleep(delay).await,
                        Step::Send(bytes) => return Some((Ok(bytes), (steps, guard))),
                        Step::Fail => {
                            steps.clear();
                            let err = std::io::Error::other("fake LLM: scripted abort");
                            return Some((Err(err), (steps, guard)));
                        }
                        // When the client leaves, hyper drops this stream mid-sleep.
                        Step::Hang => tokio::time::sleep(HANG_LIMIT).await,
                    }
                }
            },
        );
        let mut response = Response::new(Body::from_stream(body));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

/// Counts a response body in the server's open-stream count while it lives.
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn new(open_streams: Arc<AtomicUsize>) -> Self {
        open_streams.fetch_add(1, Ordering::SeqCst);
        OpenStream(open_streams)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An immediate answer with this status, see [`Script::Status`].
fn status_response(status: u16, retry_after: Option<u64>, body: Option<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let is_json = body.is_none();
    let body = body.unwrap_or_else(|| error_body("fake error", "server_error"));
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    let content_type = if is_json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// An OpenAI-style error object.
fn error_body(message: &str, kind: &str) -> String {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}}).to_string()
}

/// A JSON error answer, as the real API gives for a bad request.
pub(crate) fn error_response(status: StatusCode, message: &str, kind: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        error_body(message, kind),
    )
        .into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_concatenate_back() {
        for s in ["", "{}", "{\"a\":1}", "héllo wörld ünïcode"] {
            let [a, b, c] = three_fragments(s);
            assert_eq!(format!("{a}{b}{c}"), s);
        }
        assert_eq!(three_fragments("abcdef"), ["ab", "cd", "ef"]);
    }
}
