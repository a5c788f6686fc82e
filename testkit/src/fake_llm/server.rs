//! [`FakeLlm`]: the running server, its routes, the shared state between
//! the handle and the server task (recorded requests, script queues) and the
//! check of the recorded requests when the handle is dropped. Playing a
//! script as a response lives in `reply`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::invariants::first_malformed;
use super::reply::{Reply, error_response};
use super::script::{default_stream, default_unary};
use super::{FAKE_MODEL, RecordedRequest, Script, last_user_text};

/// State shared between the handle and the server task.
struct Shared {
    inner: Mutex<Inner>,
    /// Number of recorded requests, for [`FakeLlm::wait_for_requests`].
    count: watch::Sender<usize>,
    /// Number of streamed response bodies not yet finished or dropped; each
    /// reply holds a clone while its body lives.
    open_streams: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Inner {
    requests: Vec<RecordedRequest>,
    stream_scripts: VecDeque<Script>,
    unary_scripts: VecDeque<Script>,
    default_delay: Duration,
    next_id: u64,
    /// Set by [`FakeLlm::expect_malformed_requests`]: the test sends
    /// malformed history on purpose, so the automatic check is off.
    malformed_expected: bool,
    /// `POST /v1/audio/transcriptions` requests, as received.
    transcriptions: Vec<TranscriptionRequest>,
    /// Answers to the next transcription requests: `Ok(text)` or an HTTP
    /// error status; empty means `Ok(TRANSCRIBED)`.
    transcription_replies: VecDeque<Result<String, u16>>,
}

/// What the fake transcribes when no reply is queued.
pub const TRANSCRIBED: &str = "hello from the fake transcriber";

/// One `POST /v1/audio/transcriptions` as the fake received it.
#[derive(Clone, Debug)]
pub struct TranscriptionRequest {
    /// The `Content-Type` header (`multipart/form-data; boundary=…`).
    pub content_type: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The raw multipart body.
    pub body: Vec<u8>,
}

impl TranscriptionRequest {
    /// The body as text, bytes that are not UTF-8 replaced.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
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
/// Dropping it shuts the server down gracefully (in-flight responses finish)
/// and checks every recorded request (see
/// [`FakeLlm::assert_requests_well_formed`]).
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
        // A deep accept queue: a burst of a thousand new streams must not
        // overflow the default 128 (dropped connection attempts are retried
        // by the kernel only a second later).
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(4096)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            count: watch::Sender::new(0),
            open_streams: Arc::new(AtomicUsize::new(0)),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/responses", post(responses))
            .route("/v1/models", get(models))
            .route("/v1/audio/transcriptions", post(transcriptions))
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

    /// Queues the answer to the next transcription request: the text, or
    /// an HTTP error status.
    pub fn push_transcription(&self, reply: Result<String, u16>) {
        self.shared.lock().transcription_replies.push_back(reply);
    }

    /// The transcription requests received so far.
    pub fn transcription_requests(&self) -> Vec<TranscriptionRequest> {
        self.shared.lock().transcriptions.clone()
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
    /// [`FakeLlm::wait_for_requests`] restarts at zero), after checking them
    /// with [`FakeLlm::assert_requests_well_formed`], so that no request
    /// escapes the check by being forgotten.
    pub fn clear_requests(&self) {
        self.assert_requests_well_formed();
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
    /// streaming or not, as judged by
    /// [`check_request_well_formed`](super::check_request_well_formed); does
    /// nothing after [`FakeLlm::expect_malformed_requests`].
    ///
    /// Dropping the fake runs this check, so tests need not call it; calling
    /// it makes a failure point at a step of the test.
    pub fn assert_requests_well_formed(&self) {
        let inner = self.shared.lock();
        if inner.malformed_expected {
            return;
        }
        if let Some(problem) = first_malformed(&inner.requests) {
            drop(inner);
            panic!("fake LLM: {problem}");
        }
    }

    /// Turns off the request-invariant check for this fake (explicit and on
    /// drop), for a test that sends malformed history on purpose, e.g. to see
    /// how a client or the fake itself handles it. Call it before the
    /// malformed request is sent, where the reason can be read.
    pub fn expect_malformed_requests(&self) {
        self.shared.lock().malformed_expected = true;
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
        // The check lives here rather than in each test's harness so that
        // every user of the fake is covered, the daemon harness, the process
        // and CLI tests that hold a fake of their own, and a test that never
        // reaches its `stop()`. Drop is where every path ends. A test that is
        // already panicking has failed for its own reason: a second panic
        // would abort the process and hide the first message.
        if !std::thread::panicking() {
            self.assert_requests_well_formed();
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

async fn transcriptions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text_header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let reply = {
        let mut inner = shared.lock();
        inner.transcriptions.push(TranscriptionRequest {
            content_type: text_header(header::CONTENT_TYPE).unwrap_or_default(),
            authorization: text_header(header::AUTHORIZATION),
            body: body.to_vec(),
        });
        inner
            .transcription_replies
            .pop_front()
            .unwrap_or_else(|| Ok(TRANSCRIBED.to_owned()))
    };
    match reply {
        Ok(text) => Json(json!({ "text": text })).into_response(),
        Err(status) => error_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "fake LLM: scripted transcription failure",
            "server_error",
        ),
    }
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "fake LLM: no such route",
        "invalid_request_error",
    )
}

/// Which API a request came in through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    ChatCompletions,
    Responses,
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(shared, headers, body, Api::ChatCompletions).await
}

async fn responses(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(shared, headers, body, Api::Responses).await
}

/// Records a model request and answers it with the next script of its
/// queue (the same queues for both APIs), in its API's wire format.
async fn answer(shared: Arc<Shared>, headers: HeaderMap, body: Bytes, api: Api) -> Response {
    // As the real API does, a Responses request with no input is refused
    // before anything runs (`chatkitd check` asks this to see the route).
    if api == Api::Responses
        && serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|b| b.get("input").and_then(Value::as_array).map(Vec::is_empty))
            == Some(true)
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            "fake LLM: `input` must not be empty",
            "invalid_request_error",
        );
    }
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

    let reply = Reply::new(shared.open_streams.clone(), id, &body);
    let user_text = last_user_text(&body).unwrap_or_default();
    match (stream, api) {
        (true, Api::ChatCompletions) => {
            reply.stream(script.unwrap_or_else(|| default_stream(&user_text, default_delay)))
        }
        (true, Api::Responses) => reply
            .responses_stream(script.unwrap_or_else(|| default_stream(&user_text, default_delay))),
        (false, Api::ChatCompletions) => {
            reply
                .unary(script.unwrap_or_else(|| default_unary(&user_text)))
                .await
        }
        (false, Api::Responses) => {
            reply
                .responses_unary(script.unwrap_or_else(|| default_unary(&user_text)))
                .await
        }
    }
}
