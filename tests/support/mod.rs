//! Shared harness of the end-to-end tests: a daemon started in-process on a
//! free port ([`Daemon::start`]) or as the real `chatkitd` binary
//! ([`Daemon::binary`]), backed by the fake LLM and a real SQLite file or a
//! fresh database on a real PostgreSQL server, and a small HTTP client that
//! speaks to it over loopback (JSON and SSE).
//!
//! `both_backends!(scenario, …)` runs each `async fn scenario(Backend)` once
//! on SQLite and once on Postgres. Stopping a [`Daemon`] checks every request
//! it sent to the fake LLM (see [`Daemon::stop`]).
//!
//! - `streams`: reading SSE answers and posting to any ChatKit URL.
//! - `process`: the workspace's binaries as child processes, and `/proc`.

#![allow(dead_code)]

mod process;
mod streams;

// Each test binary uses its own part of the harness.
#[allow(unused_imports)]
pub use process::{
    EVERYTHING, chatkitd_command, children_of, fake_mcp_server, fake_mcp_server_toml,
    process_alive, serve_chatkitd, server_everything, terminate, workspace_bin,
};
#[allow(unused_imports)]
pub use streams::{Streamed, post_at, stream_at};
use streams::{read_events, read_json};

use std::path::PathBuf;
use std::time::Duration;

use chatkitd::app::App;
use chatkitd::config::Config;
use chatkitd::protocol::ThreadItem;
use chatkitd::store::sql::SqlStoreOptions;
use chatkitd::store::{SqlStore, Store};
use chatkitd_testkit::FakeLlm;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named scenario on both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A fresh store URL for a test: a SQLite file in `dir`, or a new Postgres database.
pub async fn fresh_store_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("chatkitd.db").display()),
        Backend::Postgres => {
            chatkitd_testkit::shared_server()
                .await
                .fresh_database()
                .await
        }
    }
}

/// A configuration for tests: fast timeouts, the fake LLM, the given store.
pub fn test_config(store_url: &str, llm_base_url: &str, dir: PathBuf) -> Config {
    let mut config =
        Config::from_toml("", "test.toml", dir, &|_| None).expect("defaults are valid");
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.shutdown_grace = Duration::from_secs(5);
    config.store.url = store_url.parse().expect("a store URL");
    config.store.lock_timeout = Duration::from_secs(30);
    config.llm.base_url = llm_base_url.to_owned();
    config.llm.api_key = Some("test-key".to_owned());
    config.llm.model = "fake-model".to_owned();
    config.llm.request_timeout = Duration::from_secs(10);
    config.llm.idle_timeout = Duration::from_secs(5);
    config.llm.max_retry_after = Duration::from_secs(2);
    // Tests that exercise the limits set them; the rest must not trip them.
    config.limits.max_concurrent_runs_per_user = 0;
    config.limits.requests_per_minute_per_user = 0;
    config
}

/// An HS256 token for `user` (its `sub`), signed with `secret`, valid for
/// an hour.
pub fn hs256_token(secret: &str, user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token")
}

/// A daemon under test, in this process or as a child process.
pub struct Daemon {
    /// The ChatKit endpoint.
    pub url: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub llm: FakeLlm,
    pub store_url: String,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    serving: Serving,
}

/// How a [`Daemon`] runs, and what stops it.
enum Serving {
    InProcess {
        shutdown: Option<oneshot::Sender<()>>,
        served: Option<JoinHandle<()>>,
    },
    Binary {
        child: Option<tokio::process::Child>,
        log: PathBuf,
    },
}

/// The configuration file of [`Daemon::binary`] before the test's own
/// tables: [`test_config`]'s settings, as TOML.
pub fn test_config_toml(store_url: &str, llm_base_url: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[store]
url = "{store_url}"
lock_timeout = "30s"

[llm]
base_url = "{llm_base_url}"
api_key = "test-key"
model = "fake-model"
request_timeout = "10s"
idle_timeout = "5s"
max_retry_after = "2s"

[limits]
max_concurrent_runs_per_user = 0
requests_per_minute_per_user = 0
"#
    )
}

/// `extra`'s keys set over `base`'s, table by table.
fn merge_toml(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(more)) => merge_toml(inner, more),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl Daemon {
    /// Starts a daemon with the test configuration.
    pub async fn start(backend: Backend) -> Daemon {
        Daemon::start_with(backend, |_| {}).await
    }

    /// Starts a daemon after `tweak` adjusted the test configuration.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Daemon {
        Daemon::start_on(backend, None, tweak).await
    }

    /// A second daemon (a replica) on the same database as `other`, with a
    /// fake LLM of its own.
    pub async fn start_replica(other: &Daemon) -> Daemon {
        Daemon::start_on(other.backend, Some(other.store_url.clone()), |_| {}).await
    }

    async fn start_on(
        backend: Backend,
        store_url: Option<String>,
        tweak: impl FnOnce(&mut Config),
    ) -> Daemon {
        chatkitd::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let llm = FakeLlm::start().await;
        let store_url = match store_url {
            Some(url) => url,
            None => fresh_store_url(backend, dir.path()).await,
        };
        let mut config = test_config(&store_url, &llm.base_url(), dir.path().to_path_buf());
        tweak(&mut config);
        let path = config.server.path.clone();
        let app = App::build(config).await.expect("daemon builds");
        let listener = app.bind(None).await.expect("daemon binds");
        let addr = listener.local_addr().expect("bound address");
        let (tx, rx) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            app.serve(listener, async {
                let _ = rx.await;
            })
            .await
            .expect("daemon serves");
        });
        let serving = Serving::InProcess {
            shutdown: Some(tx),
            served: Some(served),
        };
        Daemon::serving(addr, &path, llm, (backend, store_url), dir, serving)
    }

    fn serving(
        addr: std::net::SocketAddr,
        path: &str,
        llm: FakeLlm,
        (backend, store_url): (Backend, String),
        dir: tempfile::TempDir,
        serving: Serving,
    ) -> Daemon {
        Daemon {
            url: format!("http://{addr}{path}"),
            base: format!("http://{addr}"),
            llm,
            store_url,
            backend,
            dir,
            http: reqwest::Client::new(),
            serving,
        }
    }

    /// Starts the real `chatkitd serve` binary on the test configuration
    /// with `extra` (TOML: whole tables, or keys that override the test's)
    /// on top, its log in the test's directory.
    pub async fn binary(backend: Backend, extra: &str) -> Daemon {
        Daemon::binary_on(backend, None, extra).await
    }

    /// A second `chatkitd` binary (a replica) on the same database as
    /// `other`, with a fake LLM of its own and `extra` on top.
    pub async fn binary_replica(other: &Daemon, extra: &str) -> Daemon {
        Daemon::binary_on(other.backend, Some(other.store_url.clone()), extra).await
    }

    async fn binary_on(backend: Backend, store_url: Option<String>, extra: &str) -> Daemon {
        chatkitd::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let llm = FakeLlm::start().await;
        let store_url = match store_url {
            Some(url) => url,
            None => fresh_store_url(backend, dir.path()).await,
        };
        let mut config: toml::Table =
            toml::from_str(&test_config_toml(&store_url, &llm.base_url())).expect("test TOML");
        merge_toml(&mut config, toml::from_str(extra).expect("the test's TOML"));
        let path = config
            .get("server")
            .and_then(|server| server.get("path"))
            .and_then(toml::Value::as_str)
            .unwrap_or("/api/chatkit")
            .to_owned();
        let config_path = dir.path().join("agent.toml");
        std::fs::write(&config_path, toml::to_string(&config).expect("TOML")).expect("written");
        let log = dir.path().join("chatkitd.log");
        let (child, addr) = serve_chatkitd(&config_path, &log).await;
        let serving = Serving::Binary {
            child: Some(child),
            log,
        };
        Daemon::serving(addr, &path, llm, (backend, store_url), dir, serving)
    }

    /// The process id of a [`Daemon::binary`].
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        match &self.serving {
            Serving::Binary {
                child: Some(child), ..
            } => child.id().expect("the daemon runs"),
            _ => panic!("only a binary daemon has a process id"),
        }
    }

    /// Kills a [`Daemon::binary`] with SIGKILL and reaps it: no shutdown,
    /// no goodbye to the database.
    pub async fn kill(&mut self) {
        let Serving::Binary { child, .. } = &mut self.serving else {
            panic!("only a binary can be killed");
        };
        if let Some(mut child) = child.take() {
            child.kill().await.expect("SIGKILL");
        }
    }

    /// The log of a [`Daemon::binary`] so far (empty in-process).
    pub fn log(&self) -> String {
        match &self.serving {
            Serving::Binary { log, .. } => std::fs::read_to_string(log).unwrap_or_default(),
            Serving::InProcess { .. } => String::new(),
        }
    }

    /// Signals shutdown, waits until the daemon has drained its runs, then
    /// checks every request it sent to the fake LLM for the invariants a
    /// strict model server enforces (no tool result without its call, no
    /// call without its result, …).
    ///
    /// The check runs here, after the drain, so that requests made while
    /// runs finish are judged too and a failure names the scenario's end. It
    /// also runs when the fake LLM is dropped, so a test that never calls
    /// `stop` (or calls only [`Daemon::shut_down`]) is still checked; a test
    /// that sends malformed history on purpose says so with
    /// `daemon.llm.expect_malformed_requests()`.
    pub async fn stop(mut self) {
        self.shut_down().await;
        self.llm.assert_requests_well_formed();
    }

    /// A second connection to the daemon's database, for inspecting what it stored.
    pub async fn store(&self) -> SqlStore {
        SqlStore::connect(&self.store_url, &SqlStoreOptions::default())
            .await
            .expect("store connects")
    }

    /// The ids of a user's stored threads, newest first.
    pub async fn stored_threads(&self, user: &str) -> Vec<String> {
        let store = self.store().await;
        let page = chatkitd::store::PageRequest {
            limit: 100,
            order: chatkitd::protocol::Order::Desc,
            after: None,
        };
        let threads = store.list_threads(user, &page).await.expect("threads");
        store.close().await;
        threads.data.into_iter().map(|thread| thread.id).collect()
    }

    /// Every stored item of a thread, hidden ones included, oldest first.
    pub async fn stored_items(&self, user: &str, thread_id: &str) -> Vec<ThreadItem> {
        let store = self.store().await;
        let items = store
            .load_history(user, thread_id, 10_000)
            .await
            .expect("history");
        store.close().await;
        items
    }

    /// POSTs a JSON body; returns the status and the parsed JSON answer.
    pub async fn post(&self, body: Value) -> (u16, Value) {
        self.post_raw(serde_json::to_vec(&body).expect("json"))
            .await
    }

    /// POSTs raw bytes; returns the status and the JSON answer (`Null` if none).
    pub async fn post_raw(&self, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(&self.url)
            .body(body)
            .send()
            .await
            .expect("request sent");
        read_json(response).await
    }

    /// POSTs a streaming request and reads every event until the stream ends.
    pub async fn stream(&self, body: Value) -> Streamed {
        self.stream_until(body, |_| false).await
    }

    /// Like [`Daemon::stream`], but hangs up right after the first event for which
    /// `stop` is true (the UI's stop button).
    pub async fn stream_until(&self, body: Value, stop: impl Fn(&Value) -> bool) -> Streamed {
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        read_events(response, stop).await
    }

    /// Creates a thread with one message; returns its id and the stream.
    pub async fn create_thread(&self, text: &str) -> (String, Streamed) {
        created(self.stream(create_body(text)).await)
    }

    /// Sends a follow-up message to a thread.
    pub async fn add_message(&self, thread_id: &str, text: &str) -> Streamed {
        self.stream(add_message_body(thread_id, text)).await
    }

    /// The visible items of a thread as the client sees them, oldest first.
    pub async fn items(&self, thread_id: &str) -> Vec<Value> {
        let (status, page) = self
            .post(json!({"type": "items.list", "params": {"thread_id": thread_id, "limit": 100, "order": "asc"}}))
            .await;
        assert_eq!(status, 200, "items.list: {page}");
        page["data"].as_array().expect("data").clone()
    }

    /// GET a path of the daemon (e.g. `/metrics`): status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// `threads.get_by_id`.
    pub async fn get_thread(&self, thread_id: &str) -> (u16, Value) {
        self.post(json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}))
            .await
    }
}

/// The id of the thread a `threads.create` stream created, and the stream.
fn created(streamed: Streamed) -> (String, Streamed) {
    assert_eq!(streamed.status, 200, "threads.create: {}", streamed.raw);
    (streamed.thread_id().to_owned(), streamed)
}

/// `(type, text)` of stored or listed items: the text of a user or assistant
/// message, the content of a hidden item.
pub fn transcript(items: &[serde_json::Value]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|item| {
            let kind = item["type"].as_str().unwrap_or_default().to_owned();
            let text = match kind.as_str() {
                "sdk_hidden_context" => item["content"].as_str(),
                _ => item["content"][0]["text"].as_str(),
            };
            (kind, text.unwrap_or_default().to_owned())
        })
        .collect()
}

/// A `UserMessageInput` with one text part.
pub fn user_input(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}

/// A `threads.create` request with one text message.
pub fn create_body(text: &str) -> Value {
    json!({"type": "threads.create", "params": {"input": user_input(text)}})
}

/// A `threads.add_user_message` request with one text message.
pub fn add_message_body(thread_id: &str, text: &str) -> Value {
    json!({
        "type": "threads.add_user_message",
        "params": {"thread_id": thread_id, "input": user_input(text)}
    })
}

/// The update type of a streamed piece of answer text.
pub const TEXT_DELTA: &str = "assistant_message.content_part.text_delta";

/// Whether an event carries a piece of answer text.
pub fn is_text_delta(event: &Value) -> bool {
    event["update"]["type"] == TEXT_DELTA
}

/// POSTs `body` to the ChatKit endpoint at `url` and returns once the first
/// text delta reached the client; the reader goes on in the background and
/// yields the whole stream (and the transport error, if any), as
/// [`stream_at`] does. For tests that stop or kill a daemon mid-answer: the
/// fake LLM must have been given a long, slow script first.
pub async fn start_reading_answer(
    url: &str,
    body: Value,
) -> JoinHandle<(Streamed, Option<String>)> {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let url = url.to_owned();
    let reader = tokio::spawn(async move {
        stream_at(&url, body, move |event| {
            if is_text_delta(event) {
                tx.send_replace(true);
            }
            false
        })
        .await
    });
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|started| *started))
        .await
        .expect("the answer starts")
        .expect("reader alive");
    reader
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Daemon {
    /// Signals shutdown and waits until the daemon has drained its runs, like
    /// [`Daemon::stop`], but keeps the handle (and the SQLite file) so that
    /// what the daemon stored can still be inspected; `stop` afterwards only
    /// cleans up.
    ///
    /// A binary gets SIGTERM and must exit successfully in time; its log,
    /// written to a file, must carry no ANSI colour codes.
    pub async fn shut_down(&mut self) {
        match &mut self.serving {
            Serving::InProcess { shutdown, served } => {
                if let Some(tx) = shutdown.take() {
                    let _ = tx.send(());
                }
                if let Some(served) = served.take() {
                    tokio::time::timeout(Duration::from_secs(30), served)
                        .await
                        .expect("daemon stops in time")
                        .expect("daemon task");
                }
            }
            Serving::Binary { child, log } => {
                let Some(mut child) = child.take() else {
                    return;
                };
                terminate(child.id().expect("running"));
                let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
                    .await
                    .expect("chatkitd exits in time")
                    .expect("wait");
                let log = std::fs::read_to_string(log).unwrap_or_default();
                assert!(status.success(), "chatkitd exited with {status}:\n{log}");
                assert!(
                    !log.contains('\u{1b}'),
                    "colour codes in a log file:\n{log}"
                );
            }
        }
    }

    /// [`Daemon::stored_items`] as the JSON the daemon would send.
    pub async fn stored_values(&self, user: &str, thread_id: &str) -> Vec<Value> {
        self.stored_items(user, thread_id)
            .await
            .iter()
            .map(|item| serde_json::to_value(item).expect("item JSON"))
            .collect()
    }
}

/// An answer read without assuming its shape: status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub json: Value,
    pub text: String,
}

impl Answer {
    /// Reads `response` whole.
    pub async fn read(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        Answer {
            status,
            headers,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Daemon {
    /// POSTs a JSON body with `Authorization: Bearer <token>`; returns the
    /// status and the parsed JSON answer.
    pub async fn post_as(&self, token: &str, body: Value) -> (u16, Value) {
        let answer = self
            .post_raw_as(
                Some(&format!("Bearer {token}")),
                serde_json::to_vec(&body).expect("json"),
            )
            .await;
        (answer.status, answer.json)
    }

    /// POSTs raw bytes with this `Authorization` header value (none when
    /// `None`); returns the status, the headers and the body.
    pub async fn post_raw_as(&self, authorization: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        Answer::read(request.send().await.expect("request sent")).await
    }

    /// Like [`Daemon::stream`], with `Authorization: Bearer <token>`.
    pub async fn stream_as(&self, token: &str, body: Value) -> Streamed {
        self.stream_until_as(token, body, |_| false).await
    }

    /// Like [`Daemon::stream_until`], with `Authorization: Bearer <token>`.
    pub async fn stream_until_as(
        &self,
        token: &str,
        body: Value,
        stop: impl Fn(&Value) -> bool,
    ) -> Streamed {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        read_events(response, stop).await
    }

    /// Creates a thread with one message as the bearer of `token`; returns
    /// its id and the stream.
    pub async fn create_thread_as(&self, token: &str, text: &str) -> (String, Streamed) {
        created(self.stream_as(token, create_body(text)).await)
    }
}

/// What a tool returned to the model in the newest model request: its
/// JSON, or its text as a JSON string.
pub fn last_tool_json(daemon: &Daemon) -> Value {
    let requests = daemon.llm.stream_requests();
    let content = requests
        .last()
        .expect("request")
        .messages()
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .expect("a tool result")
        .to_owned();
    serde_json::from_str(&content).unwrap_or(Value::String(content))
}
