//! Clients that misbehave at the edges of a stream: one that asks for a long
//! answer and never reads its socket, and one that stops taking events exactly
//! when the answer ends. Either must cost at most `stream_write_timeout` of
//! the run's resources (thread lock, run slot, lock connection) and must never
//! lose text the model wrote.

use std::time::{Duration, Instant};

use chatkitd::app::App;
use chatkitd::auth::Identity;
use chatkitd::chatkit::{Response, STREAM_BUFFER};
use chatkitd::protocol::Request;
use chatkitd_testkit::{FakeLlm, Script};
use pretty_assertions::assert_eq;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both_backends;
use crate::support::{
    Backend, Daemon, add_message_body, create_body, eventually, fresh_store_url, test_config,
    transcript,
};

/// The development user of `auth.mode = "none"`.
const USER: &str = "dev";
/// The hidden item a cancelled run leaves behind.
const MARKER: &str = "The user cancelled the stream. Stop responding to the prior request.";
/// The write timeout the tests configure, short so that they run quickly.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// A raw HTTP/1.1 POST of `body` to `path` on `addr` (`HOST:PORT`), written
/// on a fresh connection that the caller then never reads.
async fn post_and_never_read(addr: &str, path: &str, body: &Value) -> TcpStream {
    let body = serde_json::to_vec(body).expect("json");
    let mut socket = TcpStream::connect(addr).await.expect("connects");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head sent");
    socket.write_all(&body).await.expect("body sent");
    socket
}

/// The address and endpoint path of a daemon.
fn addr_and_path(daemon: &Daemon) -> (&str, &str) {
    (
        daemon.base.trim_start_matches("http://"),
        &daemon.url[daemon.base.len()..],
    )
}

/// `[llm] max_answer_bytes` for tests of [`huge_answer`]: above its length,
/// so that the model's answer bounds never end it before the socket fills.
const HUGE_ANSWER_BOUND: usize = 64 * 1024 * 1024;

/// An answer far beyond what loopback sockets, hyper and the event buffer
/// hold for a reader that takes nothing (25 MB), and its length.
fn huge_answer() -> (Script, usize) {
    let chunks = vec!["x".repeat(64 * 1024); 400];
    let len = chunks.iter().map(String::len).sum();
    (Script::text(chunks), len)
}

/// A client asks for a long answer and leaves its socket unread. Once the
/// kernel's buffers and the daemon's are full the run cannot send; within
/// the write timeout it is cancelled as if the client had left: its partial
/// answer and the marker are stored, and its thread and run slot are free
/// again while the client is still connected.
async fn a_client_that_never_reads_releases_its_thread(backend: Backend) {
    // The answer must outgrow the socket buffers, not the model bounds, and
    // the stalled run's slot must be given back for the next message.
    let daemon = Daemon::binary(
        backend,
        &format!(
            "[server]\nstream_write_timeout = \"{}ms\"\n[llm]\nmax_answer_bytes = {HUGE_ANSWER_BOUND}\n[limits]\nmax_concurrent_runs_per_user = 1\n",
            WRITE_TIMEOUT.as_millis()
        ),
    )
    .await;
    let (thread_id, first) = daemon.create_thread("hello").await;
    assert_eq!(first.error(), None, "{}", first.raw);

    let (answer, full_len) = huge_answer();
    daemon.llm.push(answer);
    let asked = Instant::now();
    let (addr, path) = addr_and_path(&daemon);
    let socket = post_and_never_read(addr, path, &add_message_body(&thread_id, "a long one")).await;

    let stored_marker = eventually(Duration::from_secs(30), || async {
        daemon
            .stored_values(USER, &thread_id)
            .await
            .last()
            .is_some_and(|item| item["content"] == MARKER)
    })
    .await;
    assert!(
        stored_marker,
        "the stalled run was not cancelled: {:?}",
        transcript(&daemon.stored_values(USER, &thread_id).await)
            .iter()
            .map(|(kind, text)| (kind.clone(), text.len()))
            .collect::<Vec<_>>()
    );
    let released_after = asked.elapsed();

    let stored = transcript(&daemon.stored_values(USER, &thread_id).await);
    let kinds: Vec<&str> = stored.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "user_message",
            "assistant_message",
            "user_message",
            "assistant_message",
            "sdk_hidden_context"
        ]
    );
    let partial = &stored[3].1;
    assert!(
        !partial.is_empty() && partial.len() < full_len && partial.bytes().all(|b| b == b'x'),
        "the partial answer is kept: {} of {full_len} bytes",
        partial.len()
    );

    // Lock and slot are free while the stalled client is still connected.
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        daemon.add_message(&thread_id, "next"),
    )
    .await
    .expect("the thread answers again");
    assert_eq!(next.status, 200, "{}", next.raw);
    assert_eq!(next.answer().as_deref(), Some("Hello! You said: next"));
    assert!(
        released_after < Duration::from_secs(30),
        "released after {released_after:?}"
    );
    drop(socket);
    daemon.stop().await;
}

both_backends!(a_client_that_never_reads_releases_its_thread);

/// What a disconnect or a stall exactly at the end of an answer leaves.
#[derive(Debug, Clone, Copy)]
enum EndOfAnswer {
    /// The client goes away while the run sends `content_part.done`.
    Disconnect,
    /// The client stays but takes nothing more: the write timeout ends it.
    Stall,
}

/// The stream is full exactly when the answer's last text is out and its
/// `content_part.done` is next: the client then leaves (or stalls past the
/// write timeout). The whole answer was streamed, so the whole answer is
/// kept, then the marker of a cancelled run.
///
/// Driven through `ChatKit::handle`, the front end HTTP and `chatkitd chat`
/// share, because only there the test can hold the stream's buffer full at
/// an exact event: over a socket, kernel buffers decide which event blocks.
async fn the_end_of_an_answer_is_kept(end: EndOfAnswer) {
    chatkitd::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let llm = FakeLlm::start().await;
    let store_url = fresh_store_url(Backend::Sqlite, dir.path()).await;
    let mut config = test_config(&store_url, &llm.base_url(), dir.path().to_path_buf());
    config.server.stream_write_timeout = WRITE_TIMEOUT;
    config.agent.title_generation = false;
    let app = App::build(config).await.expect("daemon builds");

    // Sent before content_part.done: thread.created, the user message,
    // stream_options, item.added, content_part.added and the deltas. The
    // test takes the first; the buffer then holds the rest exactly.
    let deltas = STREAM_BUFFER + 1 - 5;
    let chunks: Vec<String> = (0..deltas).map(|i| format!("w{i} ")).collect();
    let full = chunks.concat();
    llm.push(Script::text(chunks));
    let body = serde_json::to_vec(&create_body("hello")).expect("json");
    let request = Request::parse(&body).expect("a valid request");
    let Ok(Response::Stream(mut stream)) =
        app.chatkit().handle(&Identity::user(USER), request).await
    else {
        panic!("threads.create streams");
    };
    let created = stream.events.recv().await.expect("thread.created");
    let created = serde_json::to_value(&created).expect("event JSON");
    let thread_id = created["thread"]["id"]
        .as_str()
        .expect("thread id")
        .to_owned();
    let full_buffer = eventually(Duration::from_secs(10), || {
        let len = stream.events.len();
        async move { len == STREAM_BUFFER }
    })
    .await;
    assert!(full_buffer, "the buffer fills up: {}", stream.events.len());
    // Let the run reach the send that cannot go through.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stream = match end {
        EndOfAnswer::Disconnect => {
            drop(stream);
            None
        }
        // Held open (and unread) until the end: only the timeout can end it.
        EndOfAnswer::Stall => Some(stream),
    };

    let store = app.store().clone();
    let stored = || async {
        let items = chatkitd::store::Store::load_history(&*store, USER, &thread_id, 100)
            .await
            .expect("history");
        items
            .iter()
            .map(|item| serde_json::to_value(item).expect("item JSON"))
            .collect::<Vec<Value>>()
    };
    let settled = eventually(Duration::from_secs(10), || async {
        stored().await.len() >= 3
    })
    .await;
    assert!(settled, "{:?}", transcript(&stored().await));
    assert_eq!(
        transcript(&stored().await),
        [
            ("user_message".to_owned(), "hello".to_owned()),
            ("assistant_message".to_owned(), full),
            ("sdk_hidden_context".to_owned(), MARKER.to_owned()),
        ],
        "{end:?}"
    );
    drop(stream);
    app.shutdown().await;
    llm.assert_requests_well_formed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_at_the_end_of_an_answer_keeps_it_whole() {
    the_end_of_an_answer_is_kept(EndOfAnswer::Disconnect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_at_the_end_of_an_answer_keeps_it_whole() {
    the_end_of_an_answer_is_kept(EndOfAnswer::Stall).await;
}

/// 500 connections that send half a request head and then nothing are
/// closed by the header timeout, while a normal chat is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_by_the_header_timeout() {
    const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
    let daemon = Daemon::binary(
        Backend::Sqlite,
        &format!(
            "[server]\nheader_read_timeout = \"{}s\"\n",
            HEADER_TIMEOUT.as_secs()
        ),
    )
    .await;
    let (addr, _) = addr_and_path(&daemon);
    let mut half_open = Vec::new();
    for _ in 0..500 {
        let mut socket = TcpStream::connect(addr).await.expect("connects");
        socket
            .write_all(b"POST /api/chatkit HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("half a head sent");
        half_open.push(socket);
    }
    let opened = Instant::now();

    let (_, chat) = tokio::time::timeout(Duration::from_secs(20), daemon.create_thread("hi"))
        .await
        .expect("a chat is answered beside them");
    assert_eq!(chat.answer().as_deref(), Some("Hello! You said: hi"));

    let closed = futures::future::join_all(half_open.iter_mut().map(|socket| async move {
        let mut buf = [0u8; 1024];
        // Closed: end of stream (or a reset), after at most an error answer.
        loop {
            match tokio::time::timeout(Duration::from_secs(20), socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }))
    .await;
    let waited = opened.elapsed();
    let open = closed.iter().filter(|closed| !**closed).count();
    assert_eq!(open, 0, "{open} of 500 half-open connections still open");
    assert!(
        waited >= HEADER_TIMEOUT - Duration::from_millis(100),
        "closed after {waited:?}, before the header timeout"
    );
    daemon.stop().await;
}

/// SIGTERM to the binary while a client that never reads waits for a long
/// answer: the daemon exits within the grace period plus a few seconds, and
/// the partial answer is stored with the marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_client_that_never_reads_exits_in_time() {
    const GRACE: Duration = Duration::from_secs(2);
    // The write timeout is far longer than the test: only the shutdown
    // can end the stalled run.
    let mut daemon = Daemon::binary(
        Backend::Sqlite,
        &format!(
            "[server]\nshutdown_grace = \"{}s\"\nstream_write_timeout = \"10m\"\n[llm]\nmax_answer_bytes = {HUGE_ANSWER_BOUND}\n[agent]\ntitle_generation = false\n",
            GRACE.as_secs()
        ),
    )
    .await;
    let (answer, full_len) = huge_answer();
    daemon.llm.push(answer);
    let (addr, path) = addr_and_path(&daemon);
    let socket = post_and_never_read(addr, path, &create_body("a long one")).await;
    // Let the buffers fill and the run stall on its client.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // SIGTERM, then a successful exit (checked by `shut_down`) in time.
    let signalled = Instant::now();
    daemon.shut_down().await;
    let took = signalled.elapsed();
    assert!(
        took < GRACE + Duration::from_secs(5),
        "exited {took:?} after SIGTERM (grace {GRACE:?}):\n{}",
        daemon.log()
    );
    drop(socket);

    let threads = daemon.stored_threads(USER).await;
    assert_eq!(threads.len(), 1);
    let stored = transcript(&daemon.stored_values(USER, &threads[0]).await);
    let kinds: Vec<&str> = stored.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["user_message", "assistant_message", "sdk_hidden_context"],
        "{}",
        daemon.log()
    );
    let partial = &stored[1].1;
    assert!(
        !partial.is_empty() && partial.len() < full_len,
        "the partial answer is kept: {} of {full_len} bytes",
        partial.len()
    );
    assert_eq!(stored[2].1, MARKER);
    daemon.stop().await;
}

/// Beyond `max_connections` a new client waits to be accepted (it is not
/// refused), and a connection that sends nothing is closed after the idle
/// timeout, which lets the waiting client in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_idle_ones_to_close() {
    const IDLE: Duration = Duration::from_secs(2);
    let daemon = Daemon::binary(
        Backend::Sqlite,
        &format!(
            "[server]\nmax_connections = 2\nidle_timeout = \"{}s\"\n",
            IDLE.as_secs()
        ),
    )
    .await;
    let (addr, _) = addr_and_path(&daemon);
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(addr).await.expect("connects"));
    }
    let waited = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), daemon.get("/healthz"))
        .await
        .expect("answered once a slot is free");
    let waited = waited.elapsed();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    assert!(
        waited >= IDLE - Duration::from_millis(200),
        "answered after {waited:?}: the cap let a third connection in"
    );
    for socket in &mut silent {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection was closed: {read:?}"
        );
    }
    daemon.stop().await;
}

/// A body that stops arriving gets 408 once `body_read_timeout` has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_408() {
    const BODY_TIMEOUT: Duration = Duration::from_secs(1);
    let daemon = Daemon::binary(
        Backend::Sqlite,
        &format!(
            "[server]\nbody_read_timeout = \"{}s\"\n",
            BODY_TIMEOUT.as_secs()
        ),
    )
    .await;
    let (addr, path) = addr_and_path(&daemon);
    let mut socket = TcpStream::connect(addr).await.expect("connects");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"type\":"
    );
    socket.write_all(head.as_bytes()).await.expect("sent");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    daemon.stop().await;
}

/// An HTTP/2 client that reads its socket but never grants flow-control
/// window: no socket write stalls, yet the stream cannot move. The run is
/// released within the write timeout like any stalled client's, and the
/// connection, which would otherwise hold the stream's last event forever,
/// is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_grants_no_window_is_closed() {
    let daemon = Daemon::binary(
        Backend::Sqlite,
        &format!(
            "[server]\nstream_write_timeout = \"{}ms\"\n[llm]\nmax_answer_bytes = {HUGE_ANSWER_BOUND}\n",
            WRITE_TIMEOUT.as_millis()
        ),
    )
    .await;
    let (thread_id, _) = daemon.create_thread("hello").await;
    let (answer, _) = huge_answer();
    daemon.llm.push(answer);

    let (addr, path) = addr_and_path(&daemon);
    let tcp = TcpStream::connect(addr).await.expect("connects");
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1024)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(())
        .expect("request");
    let (response, mut body) = client.send_request(request, false).expect("sent");
    let json = serde_json::to_vec(&add_message_body(&thread_id, "a long one")).expect("json");
    body.send_data(json.into(), true).expect("body sent");
    let response = response.await.expect("answered");
    assert_eq!(response.status(), 200);
    // Held, never read and never released: the window stays shut.
    let _unread = response.into_body();

    let closed = tokio::time::timeout(WRITE_TIMEOUT + Duration::from_secs(10), connection).await;
    assert!(
        closed.is_ok(),
        "the connection of a client that grants no window stays open"
    );
    let stored_marker = eventually(Duration::from_secs(10), || async {
        daemon
            .stored_values(USER, &thread_id)
            .await
            .last()
            .is_some_and(|item| item["content"] == MARKER)
    })
    .await;
    assert!(stored_marker, "the stalled run's partial answer is kept");
    let next = daemon.add_message(&thread_id, "next").await;
    assert_eq!(next.answer().as_deref(), Some("Hello! You said: next"));
    daemon.stop().await;
}
