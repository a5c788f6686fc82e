//! Operating chatkitd: metrics after real traffic, the listener's accept
//! queue, and replicas on one Postgres database behaving as one, also when
//! one of them is killed.

mod support;

use std::time::Duration;

use chatkitd_testkit::{FakeToolCall, Script};
use pretty_assertions::assert_eq;
use serde_json::json;
use support::{Backend, Daemon, fake_mcp_server};

/// The value of the first sample line of `metric` with all `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn metrics_count_requests_runs_tokens_and_tools(backend: Backend) {
    let server = fake_mcp_server();
    let daemon = Daemon::start_with(backend, move |config| {
        config.mcp_servers.insert("fake".into(), server);
    })
    .await;
    daemon.llm.push(Script::ToolCalls {
        calls: vec![FakeToolCall::new("c1", "pid", "{}")],
    });
    daemon.llm.push(Script::text(["All ", "done."]));
    let (thread_id, _) = daemon.create_thread("which pid?").await;
    daemon.items(&thread_id).await;
    let (status, _) = daemon
        .post(json!({"type": "threads.explode", "params": {}}))
        .await;
    assert_eq!(status, 400);

    let (status, text) = daemon.get("/metrics").await;
    assert_eq!(status, 200);
    let positive = |metric: &str, labels: &[&str]| {
        let value = sample(&text, metric, labels);
        assert!(
            value.is_some_and(|v| v > 0.0),
            "{metric}{labels:?} = {value:?} in\n{text}"
        );
    };
    positive(
        "chatkitd_requests_total",
        &[r#"type="threads.create""#, r#"outcome="ok""#],
    );
    positive(
        "chatkitd_requests_total",
        &[r#"type="items.list""#, r#"outcome="ok""#],
    );
    positive(
        "chatkitd_requests_total",
        &[r#"type="invalid""#, r#"outcome="400""#],
    );
    positive(
        "chatkitd_run_duration_seconds_count",
        &[r#"outcome="completed""#],
    );
    positive("chatkitd_time_to_first_token_seconds_count", &[]);
    positive("chatkitd_llm_tokens_total", &[r#"direction="in""#]);
    positive("chatkitd_llm_tokens_total", &[r#"direction="out""#]);
    positive(
        "chatkitd_tool_calls_total",
        &[r#"server="fake""#, r#"tool="pid""#, r#"outcome="ok""#],
    );
    positive(
        "chatkitd_tool_call_duration_seconds_count",
        &[r#"tool="pid""#],
    );
    positive(
        "chatkitd_mcp_instances",
        &[r#"server="fake""#, r#"state="idle""#],
    );
    positive("chatkitd_store_connections", &[r#"state="idle""#]);
    assert!(!text.contains(&thread_id), "no thread ids in metrics");
    assert!(!text.contains("which pid"), "no message text in metrics");
    daemon.stop().await;
}

/// Two daemons on one Postgres database, messages to one thread through both,
/// interleaved and concurrent: every message is stored once, in a consistent
/// order, and each answer saw the previous exchange. (Postgres only: scale-out
/// is Postgres; a SQLite file serializes runs within one process.)
/// The listening socket's accept queue is `[server] listen_backlog` long
/// (capped by the kernel's `net.core.somaxconn`), not the 128 a plain bind
/// asks for, which a burst of new clients overflows. Read with `ss`, whose
/// Send-Q column is a listening socket's backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_queues_listen_backlog_connections() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("somaxconn")
        .trim()
        .parse()
        .expect("a number");
    let backlog_of = |base: &str| {
        let port = base.rsplit(':').next().expect("a port").to_owned();
        let out = std::process::Command::new("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let backlog: u32 = text
            .split_whitespace()
            .nth(2)
            .and_then(|q| q.parse().ok())
            .unwrap_or_else(|| panic!("no listening socket on port {port}: {text:?}"));
        backlog
    };
    let default = Daemon::binary(Backend::Sqlite, "").await;
    assert_eq!(backlog_of(&default.base), somaxconn.min(4096));
    default.stop().await;
    let chosen = Daemon::binary(Backend::Sqlite, "[server]\nlisten_backlog = 1000\n").await;
    assert_eq!(backlog_of(&chosen.base), somaxconn.min(1000));
    chosen.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_postgres_database_serialize_a_thread() {
    let a = Daemon::start_with(Backend::Postgres, |_| {}).await;
    let b = Daemon::start_replica(&a).await;
    // Slow answers make the runs overlap unless they are serialized.
    for daemon in [&a, &b] {
        daemon.llm.set_default_delay(Duration::from_millis(40));
    }
    let (thread_id, _) = a.create_thread("m0").await;
    for round in 0..3 {
        let first = format!("a{round}");
        let second = format!("b{round}");
        let (x, y) = tokio::join!(
            a.add_message(&thread_id, &first),
            b.add_message(&thread_id, &second)
        );
        assert!(
            x.error().is_none() && y.error().is_none(),
            "{}\n{}",
            x.raw,
            y.raw
        );
    }
    let items = a.items(&thread_id).await;
    let texts: Vec<String> = items
        .iter()
        .map(|i| {
            i["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(items.len(), 14, "{texts:?}");
    // Strict alternation: each user message is followed by its own answer.
    for pair in texts.chunks(2) {
        assert_eq!(
            pair[1],
            format!("Hello! You said: {}", pair[0]),
            "{texts:?}"
        );
    }
    let mut users: Vec<&String> = texts.iter().step_by(2).collect();
    users.sort();
    assert_eq!(users, ["a0", "a1", "a2", "b0", "b1", "b2", "m0"]);
    // Each model request saw the whole thread up to its own message.
    for daemon in [&a, &b] {
        for request in daemon.llm.stream_requests() {
            let messages = request.messages();
            let last = messages.last().expect("messages");
            let position = texts
                .iter()
                .position(|t| Some(t.as_str()) == last["content"].as_str())
                .expect("the request's message is stored");
            assert_eq!(messages.len(), 1 + position + 1, "history before {last}");
        }
    }
    // Both replicas list the same thread the same way.
    assert_eq!(b.items(&thread_id).await, items);
    a.stop().await;
    b.stop().await;
}

both_backends!(metrics_count_requests_runs_tokens_and_tools);

/// A replica killed with SIGKILL in the middle of a run frees that thread for
/// the other replica at once: its run locks live in its database session,
/// which dies with the process, so there is no lease to wait out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_frees_its_threads_within_a_second() {
    let mut a = Daemon::binary(Backend::Postgres, "").await;
    let b = Daemon::binary_replica(&a, "").await;
    let (thread_id, _) = a.create_thread("hello").await;
    // A long answer on A: its run holds the thread's lock while it streams.
    a.llm.push(Script::Text {
        chunks: vec!["word ".to_owned(); 600],
        delay: Duration::from_millis(50),
    });
    let answering =
        support::start_reading_answer(&a.url, support::add_message_body(&thread_id, "a long one"))
            .await;
    // B cannot take the thread while A's run is alive.
    let refused = tokio::time::timeout(
        Duration::from_millis(700),
        b.add_message(&thread_id, "too early"),
    )
    .await;
    assert!(refused.is_err(), "B answered while A's run held the thread");

    let killed = std::time::Instant::now();
    a.kill().await;
    let next = b.add_message(&thread_id, "after the kill").await;
    let took = killed.elapsed();
    assert_eq!(
        next.answer().as_deref(),
        Some("Hello! You said: after the kill"),
        "{}",
        next.raw
    );
    assert!(
        took < Duration::from_secs(1),
        "B got the thread {took:?} after the kill"
    );
    let (cut, error) = answering.await.expect("reader");
    assert!(
        error.is_some(),
        "A's stream was cut by the kill: {}",
        cut.raw
    );
    b.stop().await;
}

/// Run locks taken in a burst (one statement per batch on the lock
/// session) are each held once and exclusively across replicas: a second
/// store (another replica's session) cannot take any of them while they are
/// held, and takes every one of them once they are released, woken by the
/// release rather than by waiting out its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_run_locks_is_exclusive_across_replicas() {
    use chatkitd::store::sql::SqlStoreOptions;
    use chatkitd::store::{SqlStore, Store};
    let url = chatkitd_testkit::shared_server()
        .await
        .fresh_database()
        .await;
    let options = SqlStoreOptions {
        lock_timeout: Duration::from_millis(300),
        ..SqlStoreOptions::default()
    };
    let a = std::sync::Arc::new(SqlStore::connect(&url, &options).await.expect("store a"));
    a.migrate().await.expect("migrated");
    let b = std::sync::Arc::new(SqlStore::connect(&url, &options).await.expect("store b"));
    let ids: Vec<String> = (0..300).map(|i| format!("thr_burst_{i}")).collect();

    let burst = futures::future::join_all(ids.iter().map(|id| {
        let a = a.clone();
        async move { a.lock_thread(id).await }
    }))
    .await;
    let held: Vec<_> = burst
        .into_iter()
        .map(|lock| lock.expect("every lock of the burst is taken"))
        .collect();

    for id in ids.iter().step_by(30) {
        let refused = b.lock_thread(id).await;
        assert!(refused.is_err(), "{id} was taken twice");
    }
    // Waiting on b, then released by a: b gets them on the notification.
    let waiting = {
        let b = b.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut locks = Vec::new();
            for id in ids.iter().step_by(30) {
                locks.push(b.lock_thread(id).await.expect("free after the release"));
            }
            (started.elapsed(), locks)
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(held);
    let (took, locks) = waiting.await.expect("waiter");
    assert_eq!(locks.len(), 10);
    // Well under the 250 ms a waiter retries after unprompted.
    assert!(took < Duration::from_millis(200), "b waited {took:?}");
    drop(locks);
    a.close().await;
    b.close().await;
}
