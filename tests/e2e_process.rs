//! The built `chatkitd` binary as a child process: `kill -9` mid-answer and a
//! restart on the same store, `migrate`, refused configurations, and SIGTERM.
//! The fake LLM runs in the test process.
//!
//! Why one file: each file under `tests/` is its own test binary, linked
//! against the whole daemon; this suite's scenarios share their fixtures,
//! and splitting them would add binaries to build and link in every CI run
//! without making any one scenario easier to find (each is a named test).

mod support;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chatkitd::store::sql::SqlStoreOptions;
use chatkitd::store::{PageRequest, SqlStore, Store};
use chatkitd_testkit::{FakeLlm, Script};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::{Backend, fresh_store_url, stream_at, user_input};
use tokio::process::{Child, Command};

/// A `chatkitd` command that sees none of the variables that override the
/// configuration file.
fn chatkitd(config: &Path) -> Command {
    let mut command = support::chatkitd_command(config);
    command.env("CHATKITD_LOG", "info,sqlx=warn");
    command
}

/// Writes an `agent.toml` for a daemon on `store_url` answering with `llm`:
/// the tests' usual settings (see [`support::test_config_toml`]).
fn write_config(dir: &Path, store_url: &str, llm: &FakeLlm) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, support::test_config_toml(store_url, &llm.base_url()))
        .expect("config written");
    path
}

/// A free port of 127.0.0.1 (bound, then released for the child).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A daemon running as a child process.
struct Served {
    child: Child,
    base: String,
    url: String,
    stderr: PathBuf,
}

impl Served {
    /// Starts `chatkitd serve` and waits until `/healthz` answers.
    async fn start(config: &Path, dir: &Path) -> Served {
        let port = free_port();
        let stderr = dir.join(format!("chatkitd-{port}.stderr"));
        let child = chatkitd(config)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("chatkitd starts");
        let base = format!("http://127.0.0.1:{port}");
        let mut served = Served {
            child,
            url: format!("{base}/api/chatkit"),
            base,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("chatkitd exited at start ({status}):\n{}", served.log());
            }
            if served.get("/healthz").await.0 == 200 {
                return served;
            }
            assert!(
                Instant::now() < deadline,
                "chatkitd not healthy in time:\n{}",
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the daemon logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// GET `path`: the status (0 when unreachable) and the body.
    async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("{}{path}", self.base)).await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    async fn post(&self, body: Value) -> (u16, Value) {
        support::post_at(&self.url, body).await
    }

    /// Sends SIGTERM and waits for the exit; returns the status and the log.
    async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().expect("still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => (status.expect("wait"), self.log()),
            Err(_) => panic!("no exit 10 s after SIGTERM:\n{}", self.log()),
        }
    }
}

/// Starts a long, slow answer (`words` words, one per `delay`) to `message`
/// on the daemon at `url` and returns once its first text delta reached the client; the
/// reader goes on in the background and yields the whole stream.
async fn start_long_answer(
    url: &str,
    llm: &FakeLlm,
    message: &str,
    words: usize,
    delay: Duration,
) -> tokio::task::JoinHandle<(support::Streamed, Option<String>)> {
    llm.push(Script::Text {
        chunks: (0..words).map(|i| format!("word{i} ")).collect(),
        delay,
    });
    support::start_reading_answer(url, support::create_body(message)).await
}

/// 11. `kill -9` in the middle of an answer; a new daemon on the same store
///     serves the thread, and its next run is not blocked by a stale lock.
async fn killed_mid_answer_then_restarted(backend: Backend) {
    chatkitd::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let llm = FakeLlm::start().await;
    let store_url = fresh_store_url(backend, dir.path()).await;
    let config = write_config(dir.path(), &store_url, &llm);
    let mut first = Served::start(&config, dir.path()).await;

    let reader = start_long_answer(
        &first.url,
        &llm,
        "remember this",
        100,
        Duration::from_millis(100),
    )
    .await;
    first.child.kill().await.expect("kill -9");
    let (streamed, failure) = reader.await.expect("reader");
    assert!(
        failure.is_some(),
        "the client sees the connection fail: {}",
        streamed.raw
    );
    let thread_id = streamed.thread_id().to_owned();
    let user_message = streamed.done_items()[0].clone();
    assert_eq!(user_message["type"], "user_message");

    let second = Served::start(&config, dir.path()).await;
    let (status, thread) = second
        .post(json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}))
        .await;
    assert_eq!(status, 200, "{thread}");
    assert_eq!(thread["id"], thread_id.as_str());
    assert_eq!(
        thread["items"]["data"],
        json!([user_message]),
        "the user message survived"
    );

    llm.clear_requests();
    let started = Instant::now();
    let body = json!({
        "type": "threads.add_user_message",
        "params": {"thread_id": thread_id, "input": user_input("are you back?")}
    });
    let (next, failure) = stream_at(&second.url, body, |_| false).await;
    let took = started.elapsed();
    assert_eq!(failure, None);
    assert_eq!(next.status, 200);
    assert!(
        took < Duration::from_secs(5),
        "the next run took {took:?}: a stale lock?"
    );
    assert_eq!(next.error(), None, "{}", next.raw);
    assert_eq!(
        next.answer().as_deref(),
        Some("Hello! You said: are you back?")
    );
    let requests = llm.stream_requests();
    assert_eq!(requests.len(), 1);
    let history: Vec<Value> = requests[0].messages()[1..].to_vec();
    assert_eq!(
        history,
        [
            json!({"role": "user", "content": "remember this"}),
            json!({"role": "user", "content": "are you back?"}),
        ]
    );
    let (status, log) = second.terminate().await;
    assert!(status.success(), "{status}:\n{log}");
}

/// 12. `chatkitd migrate` applies the migrations, and again is a no-op.
async fn migrate_twice(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let llm = FakeLlm::start().await;
    let store_url = fresh_store_url(backend, dir.path()).await;
    let config = write_config(dir.path(), &store_url, &llm);
    let options = SqlStoreOptions::default();
    let page = PageRequest {
        limit: 20,
        order: chatkitd::protocol::Order::Desc,
        after: None,
    };
    match backend {
        Backend::Sqlite => assert!(!dir.path().join("chatkitd.db").exists()),
        Backend::Postgres => {
            let store = SqlStore::connect(&store_url, &options)
                .await
                .expect("connects");
            assert!(
                store.list_threads("dev", &page).await.is_err(),
                "no tables before migrating"
            );
            store.close().await;
        }
    }
    for run in ["first", "second"] {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            chatkitd(&config).arg("migrate").output(),
        )
        .await
        .expect("migrate finishes")
        .expect("migrate runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{run} migrate: {}\n{stdout}\n{stderr}",
            output.status
        );
        assert!(
            stdout.lines().any(|l| l.contains("migrations")),
            "{run} migrate prints what it did: {stdout:?}"
        );
    }
    let store = SqlStore::connect(&store_url, &options)
        .await
        .expect("connects");
    let threads = store
        .list_threads("dev", &page)
        .await
        .expect("tables exist");
    assert_eq!(threads.data.len(), 0);
    store.close().await;
    assert!(llm.requests().is_empty());
}

/// 13. A bad configuration stops `serve` at once, saying where and what.
#[tokio::test]
async fn bad_configs_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Each is wrong on line 2; the error names the file, the line and what.
    let cases = [
        ("[server]\nlisten = \"nonsense\"\n", "server.listen"),
        ("[llm]\nmodle = \"x\"\n", "modle"),
        (
            "[llm]\nmodel = \"${CHATKITD_E2E_UNSET_VAR}\"\n",
            "CHATKITD_E2E_UNSET_VAR",
        ),
    ];
    for (i, (text, culprit)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).expect("config written");
        let started = Instant::now();
        let output = tokio::time::timeout(
            Duration::from_secs(10),
            chatkitd(&path)
                .env_remove("CHATKITD_E2E_UNSET_VAR")
                .arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", free_port()))
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{text:?} was not refused within 10 s"))
        .expect("chatkitd runs");
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text:?} was accepted");
        assert!(took < Duration::from_secs(5), "{text:?} took {took:?}");
        let place = format!("{}:2: ", path.display());
        let line = stderr
            .lines()
            .find(|l| l.contains(&place))
            .unwrap_or_else(|| panic!("{text:?}: no line names {place:?}: {stderr}"));
        assert!(
            line.contains(culprit),
            "{text:?}: names {culprit:?}: {line}"
        );
    }
    assert!(!dir.path().join("chatkitd.db").exists(), "no store touched");
}

/// 14. An idle daemon is healthy and ready, and SIGTERM stops it promptly and
///     cleanly.
async fn sigterm_when_idle(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let llm = FakeLlm::start().await;
    let store_url = fresh_store_url(backend, dir.path()).await;
    let config = write_config(dir.path(), &store_url, &llm);
    let served = Served::start(&config, dir.path()).await;
    assert_eq!(
        served.get("/healthz").await,
        (200, r#"{"status":"ok"}"#.to_owned())
    );
    assert_eq!(
        served.get("/readyz").await,
        (200, r#"{"status":"ready"}"#.to_owned())
    );
    let started = Instant::now();
    let (status, log) = served.terminate().await;
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "{status}:\n{log}");
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    assert!(llm.requests().is_empty());
}

/// The `fake-mcp` processes whose parent is `pid`.
fn mcp_children(pid: u32) -> Vec<u32> {
    support::children_of(pid)
        .into_iter()
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/comm"))
                .is_ok_and(|comm| comm.trim() == "fake-mcp")
        })
        .collect()
}

/// Appends a fake MCP server that keeps two instances idle.
fn add_fake_mcp(config: &Path) {
    let mut text = std::fs::read_to_string(config).expect("config");
    text.push_str(&format!(
        "\n[mcp_servers.fake]\ncommand = {:?}\nmin_idle = 2\nmax_instances = 2\n",
        support::workspace_bin("fake-mcp").display().to_string()
    ));
    std::fs::write(config, text).expect("config written");
}

/// 15. MCP servers die with the daemon: on SIGTERM (orderly) and on SIGKILL
///     (the parent-death signal), with no orphan left behind.
async fn no_mcp_child_outlives_the_daemon(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let llm = FakeLlm::start().await;
    for signal in ["TERM", "KILL"] {
        let store_url = fresh_store_url(backend, dir.path()).await;
        let config = write_config(dir.path(), &store_url, &llm);
        add_fake_mcp(&config);
        let served = Served::start(&config, dir.path()).await;
        let pid = served.child.id().expect("running");
        let started = support::eventually(Duration::from_secs(10), || async {
            mcp_children(pid).len() == 2
        })
        .await;
        assert!(started, "two idle MCP servers start:\n{}", served.log());
        let children = mcp_children(pid);
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let mut served = served;
        let status = tokio::time::timeout(Duration::from_secs(10), served.child.wait())
            .await
            .expect("the daemon exits")
            .expect("wait");
        if signal == "TERM" {
            assert_eq!(status.code(), Some(0), "{}", served.log());
        }
        let gone = support::eventually(Duration::from_secs(5), || async {
            children.iter().all(|c| !support::process_alive(*c))
        })
        .await;
        assert!(
            gone,
            "after SIG{signal}, MCP servers {children:?} still run"
        );
    }
}

/// 16. A panic in the process that owns the servers still stops them: the
///     runtime drops its tasks while unwinding, and each instance's guard
///     kills its process group.
#[test]
fn no_mcp_child_outlives_a_panic() {
    let config = support::fake_mcp_server();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u32>>();
    let owner = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            let mut servers = std::collections::BTreeMap::new();
            servers.insert("fake".to_owned(), config);
            let _manager = chatkitd::mcp::McpManager::start(&servers, Path::new("."), 1024).await;
            let me = std::process::id();
            tx.send(mcp_children(me)).expect("report children");
            panic!("a bug in the daemon");
        });
    });
    assert!(owner.join().is_err(), "the owner thread panicked");
    let children = rx.recv().expect("children reported");
    assert!(!children.is_empty(), "the server had started");
    let deadline = Instant::now() + Duration::from_secs(5);
    while children.iter().any(|c| support::process_alive(*c)) {
        assert!(Instant::now() < deadline, "{children:?} outlived the panic");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 17. SIGTERM during a streamed answer: after `shutdown_grace` the run is
///     cancelled, the client's stream ends with an error event that says why,
///     the partial answer and the hidden marker are stored, the daemon exits 0
///     and no MCP server remains.
async fn sigterm_during_an_answer_keeps_the_partial_answer(backend: Backend) {
    chatkitd::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let llm = FakeLlm::start().await;
    let store_url = fresh_store_url(backend, dir.path()).await;
    let config = write_config(dir.path(), &store_url, &llm);
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"300ms\"");
    std::fs::write(&config, text).expect("config written");
    add_fake_mcp(&config);
    let mut served = Served::start(&config, dir.path()).await;
    let pid = served.child.id().expect("running");
    let children_up = support::eventually(Duration::from_secs(10), || async {
        !mcp_children(pid).is_empty()
    })
    .await;
    assert!(children_up, "{}", served.log());
    let children = mcp_children(pid);

    let reader = start_long_answer(
        &served.url,
        &llm,
        "long answer",
        100,
        Duration::from_millis(50),
    )
    .await;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(10), served.child.wait())
        .await
        .expect("the daemon exits")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "{}", served.log());
    let (streamed, failure) = reader.await.expect("reader");
    assert!(failure.is_none(), "the stream ends cleanly: {failure:?}");
    let last = streamed.events.last().expect("events");
    assert_eq!(last["type"], "error", "{}", streamed.raw);
    assert_eq!(last["allow_retry"], true);
    let seen = streamed.streamed_text();
    assert!(!seen.is_empty() && seen.len() < 100 * 6, "{seen}");

    let thread_id = streamed.thread_id().to_owned();
    let store = chatkitd::store::SqlStore::connect(&store_url, &Default::default())
        .await
        .expect("store");
    let items = chatkitd::store::Store::load_history(&store, "dev", &thread_id, 100)
        .await
        .expect("history");
    let kinds: Vec<&str> = items.iter().map(|i| i.type_name()).collect();
    assert_eq!(
        kinds,
        ["user_message", "assistant_message", "sdk_hidden_context"]
    );
    let chatkitd::protocol::ItemKind::AssistantMessage(answer) = &items[1].kind else {
        unreachable!()
    };
    assert!(
        answer.text().starts_with(&seen),
        "{} vs {seen}",
        answer.text()
    );
    store.close().await;

    let gone = support::eventually(Duration::from_secs(5), || async {
        children.iter().all(|c| !support::process_alive(*c))
    })
    .await;
    assert!(gone, "MCP servers {children:?} outlived the daemon");
}

/// 18. A second signal does not wait for the grace period: the daemon exits
///     at once (status 130) while a run is still going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    chatkitd::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let llm = FakeLlm::start().await;
    let store_url = fresh_store_url(Backend::Sqlite, dir.path()).await;
    let config = write_config(dir.path(), &store_url, &llm);
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"60s\"");
    std::fs::write(&config, text).expect("config written");
    let mut served = Served::start(&config, dir.path()).await;
    let pid = served.child.id().expect("running").to_string();
    let reader =
        start_long_answer(&served.url, &llm, "long", 200, Duration::from_millis(100)).await;
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.clone()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    };
    signal("TERM");
    let draining = support::eventually(Duration::from_secs(10), || async {
        served.log().contains("received; shutting down")
    })
    .await;
    assert!(draining, "the first signal is seen:\n{}", served.log());
    assert!(
        served.child.try_wait().expect("wait").is_none(),
        "still draining"
    );
    // The daemon listens for the second signal right after it logs the
    // first, and a signal in between goes unseen: so SIGINT is sent again
    // until the daemon exits, at most ten times. Either way it exits long
    // before the 60 s grace period, which is what "at once" means here.
    let mut status = None;
    for _ in 0..10 {
        signal("INT");
        if let Ok(exited) =
            tokio::time::timeout(Duration::from_millis(500), served.child.wait()).await
        {
            status = Some(exited.expect("wait"));
            break;
        }
    }
    let status = status.unwrap_or_else(|| panic!("no exit after SIGINT:\n{}", served.log()));
    assert_eq!(status.code(), Some(130), "{}", served.log());
    reader.abort();
}

both_backends!(
    killed_mid_answer_then_restarted,
    migrate_twice,
    sigterm_when_idle,
    no_mcp_child_outlives_the_daemon,
    sigterm_during_an_answer_keeps_the_partial_answer
);
