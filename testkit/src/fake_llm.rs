//! A fake OpenAI-compatible chat-completions server for tests.
//!
//! [`FakeLlm`] serves `POST /v1/chat/completions` and `GET /v1/models` on
//! 127.0.0.1 with axum, speaking the real wire format (JSON completions and
//! `text/event-stream` chunk streams ending in `data: [DONE]`), so the real
//! client runs against it unmodified. Every chat request is recorded as a
//! [`RecordedRequest`]; replies are scripted with [`Script`]s taken from two
//! FIFO queues, one for streaming requests and one for non-streaming ones, with
//! a deterministic echo reply when a queue is empty.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The model name reported when a request names none, and listed by `/v1/models`.
pub const FAKE_MODEL: &str = "fake-model";

/// Pause before a scripted abort, so hyper flushes what came before it
/// (otherwise it may drop buffered chunks, even the headers, with the connection).
const FLUSH_PAUSE: Duration = Duration::from_millis(20);

/// How long a [`Script::Hang`] keeps its connection open at most.
const HANG_LIMIT: Duration = Duration::from_secs(600);

/// One tool call the fake model makes, see [`Script::ToolCalls`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeToolCall {
    /// The call id, e.g. `call_1`, that the `tool` reply must quote.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The JSON-encoded arguments, sent as a string like the real API does.
    pub arguments: String,
}

impl FakeToolCall {
    /// A tool call with this id, function name and JSON arguments string.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

/// What the fake answers to one chat-completions request.
///
/// Streaming requests take scripts pushed with [`FakeLlm::push`], non-streaming
/// ones those pushed with [`FakeLlm::push_unary`]. Every stream starts with a
/// chunk whose delta is `{"role":"assistant","content":""}`.
#[derive(Clone, Debug)]
pub enum Script {
    /// Stream one content chunk per entry, each after `delay`, then a
    /// `finish_reason: "stop"` chunk and `[DONE]`. Non-streaming: one
    /// completion with the concatenated text.
    Text {
        /// The content deltas, in order.
        chunks: Vec<String>,
        /// Pause before each content chunk.
        delay: Duration,
    },
    /// Like [`Script::Text`], but the role chunk (the first byte of the body)
    /// only comes after `first_token_delay`; the response headers come at once.
    /// Non-streaming: the whole response waits `first_token_delay`.
    Slow {
        /// The content deltas, in order.
        chunks: Vec<String>,
        /// Pause before the first chunk.
        first_token_delay: Duration,
        /// Pause before each content chunk.
        delay: Duration,
    },
    /// Stream tool calls: for call `i` a delta with its id, type and name, then
    /// its arguments in three fragments; then `finish_reason: "tool_calls"` and
    /// `[DONE]`. Non-streaming: a completion with `message.tool_calls`.
    ToolCalls {
        /// The calls, indexed in order.
        calls: Vec<FakeToolCall>,
    },
    /// Answer at once with this HTTP status, an optional `Retry-After` header
    /// (seconds) and `body`, by default an OpenAI-style error object.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The `Retry-After` header value in seconds, if any.
        retry_after: Option<u64>,
        /// The response body; `None` means an OpenAI-style `server_error`.
        body: Option<String>,
    },
    /// Stream the role chunk and these content chunks, then end the body
    /// cleanly but early: no finish_reason chunk and no `[DONE]`.
    /// Non-streaming: a 200 whose JSON body is cut in the middle.
    CutAfter {
        /// The content deltas sent before the cut.
        chunks: Vec<String>,
    },
    /// Like [`Script::CutAfter`], but the body stream then fails, so the server
    /// aborts the chunked encoding and the client sees a transport error
    /// rather than a clean end of body.
    Abort {
        /// The content deltas sent before the abort.
        chunks: Vec<String>,
    },
    /// Stream these content chunks, then an event
    /// `data: {"error":{"message":..,"type":"server_error"}}`, then end.
    /// Non-streaming: a 500 with that error object.
    ErrorInStream {
        /// The content deltas sent before the error.
        chunks: Vec<String>,
        /// The error message.
        message: String,
    },
    /// Stream the role chunk and these content chunks, then send nothing more
    /// while the client stays connected (for 10 minutes at most).
    /// Non-streaming: 200 headers, then a body that never comes.
    Hang {
        /// The content deltas sent before hanging.
        chunks: Vec<String>,
    },
    /// Stream exactly these `data:` payloads (raw JSON text, or `[DONE]`), with
    /// no role chunk added: for the quirks of other OpenAI-compatible servers
    /// (no `index`, no first `id`, `finish_reason: ""`). Non-streaming: a 200
    /// whose body is the payloads joined.
    Raw {
        /// The `data:` payloads, in order.
        events: Vec<String>,
    },
}

impl Script {
    /// A [`Script::Text`] with these chunks and no delay.
    pub fn text<I, S>(chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Script::Text {
            chunks: chunks.into_iter().map(Into::into).collect(),
            delay: Duration::ZERO,
        }
    }

    /// A [`Script::ToolCalls`] with a single call.
    pub fn tool_call(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Script::ToolCalls {
            calls: vec![FakeToolCall::new(id, name, arguments)],
        }
    }

    /// A [`Script::Status`] with this status, no `Retry-After` and the default body.
    pub fn status(status: u16) -> Self {
        Script::Status {
            status,
            retry_after: None,
            body: None,
        }
    }
}

/// One chat-completions request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The JSON body; a JSON string holding the raw text if it was not JSON.
    pub body: Value,
    /// The `Authorization` header value, if any.
    pub authorization: Option<String>,
    /// The body's `stream` field (false when absent).
    pub stream: bool,
}

impl RecordedRequest {
    /// The `messages` array, empty if missing.
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The `model` field, if present.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// The text of the last `user` message, see [`message_text`].
    pub fn last_user_text(&self) -> Option<String> {
        last_user_text(&self.body)
    }

    /// Names of the functions offered in `tools`.
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The text of a message's `content`: the string itself, or the `text` of
/// every `{"type":"text"}` part joined with a space. `None` if there is none.
pub fn message_text(message: &Value) -> Option<String> {
    match message.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            Some(texts.join(" "))
        }
        _ => None,
    }
}

/// The text of the last message with role `user` in a request body.
pub fn last_user_text(body: &Value) -> Option<String> {
    body.get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(message_text)
}

/// Checks that a chat-completions request body would be accepted by a strict
/// server: a non-empty `messages` array, a `role` on every message, every
/// `tool` message answering an earlier assistant tool call, and every
/// assistant tool call answered by a later `tool` message unless that
/// assistant message is the last one.
pub fn check_request_well_formed(body: &Value) -> Result<(), String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| "no `messages` array".to_owned())?;
    if messages.is_empty() {
        return Err("`messages` is empty".to_owned());
    }
    // Tool call id -> index of the assistant message that made it.
    let mut offered: HashMap<&str, usize> = HashMap::new();
    let mut answered: HashSet<&str> = HashSet::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("message {i} has no `role`: {message}"))?;
        match role {
            "assistant" => {
                let calls = message.get("tool_calls").and_then(Value::as_array);
                for call in calls.into_iter().flatten() {
                    let id = call.get("id").and_then(Value::as_str).ok_or_else(|| {
                        format!("message {i} has a tool call without `id`: {call}")
                    })?;
                    offered.insert(id, i);
                }
            }
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("tool message {i} has no `tool_call_id`"))?;
                if !offered.contains_key(id) {
                    return Err(format!(
                        "tool message {i} answers tool_call_id {id:?}, which no earlier assistant message called"
                    ));
                }
                answered.insert(id);
            }
            _ => {}
        }
    }
    let last = messages.len() - 1;
    let mut unanswered: Vec<(usize, &str)> = offered
        .iter()
        .filter(|(id, at)| **at != last && !answered.contains(*id))
        .map(|(id, at)| (*at, *id))
        .collect();
    unanswered.sort();
    if let Some((at, id)) = unanswered.first() {
        return Err(format!(
            "assistant message {at} calls tool {id:?}, but no later `tool` message answers it"
        ));
    }
    Ok(())
}

/// State shared between the handle and the server task.
struct Shared {
    inner: Mutex<Inner>,
    /// Number of recorded requests, for [`FakeLlm::wait_for_requests`].
    count: watch::Sender<usize>,
    /// Number of streamed response bodies not yet finished or dropped.
    open_streams: AtomicUsize,
}

#[derive(Default)]
struct Inner {
    requests: Vec<RecordedRequest>,
    stream_scripts: VecDeque<Script>,
    unary_scripts: VecDeque<Script>,
    default_delay: Duration,
    next_id: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fake OpenAI-compatible server.
///
/// Dropping it shuts the server down gracefully (in-flight responses finish).
pub struct FakeLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeLlm {
    /// Starts a server on a free port of 127.0.0.1 in a task of the current
    /// tokio runtime.
    pub async fn start() -> FakeLlm {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("fake LLM: cannot bind 127.0.0.1:0")
    }

    /// Starts a server bound to `addr` (port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeLlm> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            count: watch::Sender::new(0),
            open_streams: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/models", get(models))
            .fallback(not_found)
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                // Fires on shutdown() and when the handle is dropped.
                let _ = rx.await;
            });
            if let Err(err) = server.await {
                eprintln!("fake LLM server on {addr} failed: {err}");
            }
        });
        Ok(FakeLlm {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a script for the next streaming request.
    pub fn push(&self, script: Script) {
        self.shared.lock().stream_scripts.push_back(script);
    }

    /// Queues a script for the next non-streaming request.
    pub fn push_unary(&self, script: Script) {
        self.shared.lock().unary_scripts.push_back(script);
    }

    /// Scripts not yet consumed: `(streaming, non-streaming)`.
    pub fn pending_scripts(&self) -> (usize, usize) {
        let inner = self.shared.lock();
        (inner.stream_scripts.len(), inner.unary_scripts.len())
    }

    /// Sets the pause before each chunk of the default streamed reply.
    pub fn set_default_delay(&self, delay: Duration) {
        self.shared.lock().default_delay = delay;
    }

    /// Every chat-completions request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// The recorded requests with `stream: true`.
    pub fn stream_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.stream).collect()
    }

    /// The recorded requests without `stream: true`.
    pub fn unary_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| !r.stream).collect()
    }

    /// Number of response bodies still being sent: streams (and lazily sent
    /// non-streaming bodies) that neither ended nor were dropped because the
    /// client went away. Lets a test check that a client hung up on a
    /// [`Script::Hang`].
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams.load(Ordering::SeqCst)
    }

    /// Forgets the recorded requests (the count seen by
    /// [`FakeLlm::wait_for_requests`] restarts at zero).
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
        self.shared.count.send_replace(0);
    }

    /// Waits until at least `n` requests were recorded and returns them all;
    /// `None` if that did not happen within `timeout`.
    pub async fn try_wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Option<Vec<RecordedRequest>> {
        let mut rx = self.shared.count.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await {
            Ok(Ok(_)) => Some(self.requests()),
            _ => None,
        }
    }

    /// Waits until at least `n` requests were recorded and returns them all.
    ///
    /// # Panics
    /// If fewer than `n` arrived within `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        match self.try_wait_for_requests(n, timeout).await {
            Some(requests) => requests,
            None => panic!(
                "fake LLM: expected at least {n} request(s) within {timeout:?}, got {}",
                self.requests().len()
            ),
        }
    }

    /// Panics with a description of the first malformed recorded request,
    /// as judged by [`check_request_well_formed`].
    pub fn assert_requests_well_formed(&self) {
        for (i, request) in self.requests().iter().enumerate() {
            if let Err(problem) = check_request_well_formed(&request.body) {
                let body = serde_json::to_string_pretty(&request.body).unwrap_or_default();
                panic!("fake LLM: request {i} is malformed: {problem}\nrequest body: {body}");
            }
        }
    }

    /// Stops accepting connections and waits (up to 5 s) for in-flight
    /// responses to finish, then stops the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl std::fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLlm")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

async fn models() -> Response {
    Json(json!({
        "object": "list",
        "data": [{"id": FAKE_MODEL, "object": "model", "created": 0, "owned_by": "testkit"}],
    }))
    .into_response()
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "fake LLM: no such route",
        "invalid_request_error",
    )
}

fn error_body(message: &str, kind: &str) -> String {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}}).to_string()
}

fn error_response(status: StatusCode, message: &str, kind: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        error_body(message, kind),
    )
        .into_response()
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let is_json = parsed.is_ok();
    let body =
        parsed.unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);

    let (script, default_delay, id) = {
        let mut inner = shared.lock();
        inner.requests.push(RecordedRequest {
            body: body.clone(),
            authorization,
            stream,
        });
        inner.next_id += 1;
        let script = if !is_json {
            None
        } else if stream {
            inner.stream_scripts.pop_front()
        } else {
            inner.unary_scripts.pop_front()
        };
        (script, inner.default_delay, inner.next_id)
    };
    shared.count.send_modify(|count| *count += 1);

    if !is_json {
        return error_response(
            StatusCode::BAD_REQUEST,
            "fake LLM: request body is not JSON",
            "invalid_request_error",
        );
    }

    let reply = Reply {
        id: format!("chatcmpl-fake-{id}"),
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
        prompt_tokens: prompt_tokens(&body),
        shared: shared.clone(),
    };
    let user_text = last_user_text(&body).unwrap_or_default();
    if stream {
        let script = script.unwrap_or_else(|| Script::Text {
            chunks: words_with_spaces(&format!("Hello! You said: {user_text}")),
            delay: default_delay,
        });
        reply.stream(script)
    } else {
        let script = script.unwrap_or_else(|| {
            let title: Vec<&str> = user_text.split_whitespace().take(4).collect();
            Script::text([format!("Title: {}", title.join(" "))])
        });
        reply.unary(script).await
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Splits text into words, each keeping its trailing spaces, so the pieces
/// concatenate back to the text.
fn words_with_spaces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in text.split_inclusive(' ') {
        match out.last_mut() {
            // Fold runs of spaces into the previous word.
            Some(last) if piece == " " => last.push(' '),
            _ => out.push(piece.to_owned()),
        }
    }
    out
}

/// A rough token count: whitespace-separated words, at least one.
fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

fn prompt_tokens(body: &Value) -> u64 {
    body.get("messages")
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
struct Reply {
    shared: Arc<Shared>,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    prompt_tokens: u64,
}

impl Reply {
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

    fn stream(&self, script: Script) -> Response {
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

    async fn unary(&self, script: Script) -> Response {
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
        let guard = OpenStream::new(self.shared.clone());
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

/// Counts a response body in [`Shared::open_streams`] while it lives.
struct OpenStream(Arc<Shared>);

impl OpenStream {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open_streams.fetch_add(1, Ordering::SeqCst);
        OpenStream(shared)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_their_spaces() {
        let words = words_with_spaces("Hello! You said:  hi there");
        assert_eq!(words, ["Hello! ", "You ", "said:  ", "hi ", "there"]);
        assert_eq!(words.concat(), "Hello! You said:  hi there");
    }

    #[test]
    fn fragments_concatenate_back() {
        for s in ["", "{}", "{\"a\":1}", "héllo wörld ünïcode"] {
            let [a, b, c] = three_fragments(s);
            assert_eq!(format!("{a}{b}{c}"), s);
        }
        assert_eq!(three_fragments("abcdef"), ["ab", "cd", "ef"]);
    }

    #[test]
    fn user_text_from_parts() {
        let body = json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]},
        ]});
        assert_eq!(last_user_text(&body).as_deref(), Some("a b"));
    }

    #[test]
    fn well_formedness() {
        let ok = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        ]});
        assert_eq!(check_request_well_formed(&ok), Ok(()));

        let orphan_tool = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "c9", "content": "done"},
        ]});
        assert!(
            check_request_well_formed(&orphan_tool)
                .unwrap_err()
                .contains("c9")
        );

        let unanswered = json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1"}]},
            {"role": "user", "content": "hi"},
        ]});
        assert!(
            check_request_well_formed(&unanswered)
                .unwrap_err()
                .contains("c1")
        );

        assert!(check_request_well_formed(&json!({"messages": []})).is_err());
        assert!(check_request_well_formed(&json!({"model": "m"})).is_err());
        assert!(
            check_request_well_formed(&json!({"messages": [{"content": "x"}]}))
                .unwrap_err()
                .contains("role")
        );
    }
}
