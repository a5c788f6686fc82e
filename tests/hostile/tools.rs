//! Hostile tool servers: one that cannot start, one that crashes on every
//! call, one that writes garbage to stderr; a model that makes up tool names;
//! per-user instances beyond the global cap; an instance that dies while
//! idle. Servers are real `fake-mcp` child processes. Scenarios that need
//! a chat run against the real binary; those about one pool's back-off,
//! caps and reaping drive the [`McpManager`] directly, where its counts can
//! be read.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatkitd::config::{McpScope, McpServerConfig};
use chatkitd::mcp::McpManager;
use chatkitd_testkit::{FakeToolCall, Script};

use crate::support::{Backend, Daemon, eventually, fake_mcp_server, fake_mcp_server_toml};

/// A server whose program does not exist.
const BROKEN_SERVER: &str = "[mcp_servers.broken]\ncommand = \"does-not-exist\"\n";

/// A manager with background upkeep, as the daemon runs it.
async fn manager_with(server: McpServerConfig) -> Arc<McpManager> {
    let configs = BTreeMap::from([("fake".to_owned(), server)]);
    McpManager::start(&configs, Path::new("."), 16 * 1024).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_server_that_cannot_start_does_not_delay_runs() {
    let daemon = Daemon::binary(
        Backend::Sqlite,
        &format!("{}{BROKEN_SERVER}", fake_mcp_server_toml()),
    )
    .await;
    // Each failed start doubles the back-off; runs that waited on it would
    // take 0.2, 0.4, 0.8, 1.6, 3.2, 6.4 s.
    let mut thread: Option<String> = None;
    for round in 0..6 {
        daemon.llm.push(Script::text(["Fine."]));
        let started = Instant::now();
        let streamed = match &thread {
            None => {
                let (id, streamed) = daemon.create_thread("hello").await;
                thread = Some(id);
                streamed
            }
            Some(id) => daemon.add_message(id, "again").await,
        };
        let elapsed = started.elapsed();
        assert_eq!(
            streamed.answer().as_deref(),
            Some("Fine."),
            "{}",
            streamed.raw
        );
        assert!(
            elapsed < Duration::from_secs(3),
            "run {round} took {elapsed:?}"
        );
    }
    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 6);
    for request in &requests {
        assert!(
            request.tool_names().contains(&"echo".to_owned()),
            "the working server's tools are offered: {:?}",
            request.tool_names()
        );
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_crashes_on_every_call_backs_off() {
    let manager = manager_with(fake_mcp_server()).await;
    let (mut crashed, mut backed_off) = (0u64, 0u64);
    for _ in 0..12 {
        let outcome = manager.call_tool("u", "fake", "crash", "{}").await;
        assert!(outcome.is_error, "{outcome:?}");
        if outcome.output.contains("stopped during the call") {
            crashed += 1;
        } else if outcome.output.contains("next attempt is in") {
            backed_off += 1;
        } else {
            panic!("unexpected outcome {outcome:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replaced = manager.pool_counts()[0].replaced;
    assert!(
        // Back-off doubles from 0.2 s: about 4 starts in the ~1.5 s of
        // these calls (6 leaves room for a loaded machine); without it, 12.
        crashed <= 6 && backed_off >= 6 && replaced <= 6,
        "12 crashing calls: {crashed} crashed, {backed_off} backed off, {replaced} instances replaced"
    );

    // Once the back-off has passed, a call that succeeds proves the server
    // healthy: its next crash is replaced at once, without back-off.
    assert!(
        eventually(Duration::from_secs(10), || {
            let manager = manager.clone();
            async move { !manager.call_tool("u", "fake", "pid", "{}").await.is_error }
        })
        .await
    );
    let crash = manager.call_tool("u", "fake", "crash", "{}").await;
    assert!(
        crash.output.contains("stopped during the call"),
        "{crash:?}"
    );
    let after = manager.call_tool("u", "fake", "pid", "{}").await;
    assert!(
        !after.is_error,
        "a healthy server's crash is not backed off: {after:?}"
    );
    manager.shutdown().await;
}

/// Names no server offers, different on every run.
fn made_up_names(count: usize) -> Vec<String> {
    let seed = RandomState::new();
    (0..count)
        .map(|i| format!("made_up_{:016x}", seed.hash_one(i)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_tool_names_add_one_metrics_label_set() {
    let daemon = Daemon::binary(Backend::Sqlite, &fake_mcp_server_toml()).await;
    let names = made_up_names(50);
    for (turn, batch) in names.chunks(10).enumerate() {
        let calls = batch
            .iter()
            .enumerate()
            .map(|(i, name)| FakeToolCall::new(format!("call_{turn}_{i}"), name, "{}"))
            .collect();
        daemon.llm.push(Script::ToolCalls { calls });
    }
    daemon.llm.push(Script::text(["Done."]));
    let (_, streamed) = daemon.create_thread("call made-up tools").await;
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Done."),
        "{}",
        streamed.raw
    );

    let (status, metrics) = daemon.get("/metrics").await;
    assert_eq!(status, 200);
    for name in &names {
        assert!(!metrics.contains(name.as_str()), "{name} became a label");
    }
    let unknown: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("chatkitd_tool_calls_total{server=\"none\""))
        .collect();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    let count: u64 = unknown[0]
        .strip_prefix(r#"chatkitd_tool_calls_total{server="none",tool="unknown",outcome="error"} "#)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("one label set for unknown tools: {}", unknown[0]));
    assert!(count >= 50, "{count}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_stderr_does_not_kill_the_server() {
    let manager = manager_with(fake_mcp_server()).await;
    let before = manager.call_tool("u", "fake", "pid", "{}").await;
    assert!(!before.is_error, "{before:?}");
    // Not UTF-8, then 1 MB without a newline: a reader that stopped at the
    // first bad byte would close the pipe and the server would die writing.
    let noise = manager
        .call_tool("u", "fake", "stderr_noise", r#"{"bytes": 1000000}"#)
        .await;
    assert_eq!((noise.output.as_str(), noise.is_error), ("noisy", false));
    let after = manager.call_tool("u", "fake", "pid", "{}").await;
    assert_eq!(
        after.output, before.output,
        "the same instance still answers"
    );
    assert_eq!(manager.pool_counts()[0].replaced, 0);
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_instances_stop_at_the_global_cap() {
    let mut server = fake_mcp_server();
    server.scope = McpScope::PerUser;
    server.max_instances = 1;
    server.max_total_instances = 2;
    server.call_timeout = Duration::from_secs(2);
    let manager = manager_with(server).await;
    // Two users keep the two places busy; a third waits the call timeout,
    // then gets a tool error, and nothing more is spawned.
    let busy: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|user| {
            let manager = manager.clone();
            tokio::spawn(async move {
                manager
                    .call_tool(user, "fake", "sleep", r#"{"ms": 1500}"#)
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let third = manager.call_tool("c", "fake", "pid", "{}").await;
    let waited = started.elapsed();
    assert!(third.is_error, "{third:?}");
    assert!(third.output.contains("max_total_instances"), "{third:?}");
    assert!(
        waited >= Duration::from_millis(1500),
        "it waited for the call timeout: {waited:?}"
    );
    for call in busy {
        let outcome = call.await.expect("call task");
        assert_eq!(outcome.output, "slept", "{outcome:?}");
    }
    let counts = &manager.pool_counts()[0];
    assert_eq!(counts.idle + counts.busy, 2, "{counts:?}");

    // Now both are idle: the third user's call stops the one unused the
    // longest instead of waiting, and the total stays at the cap.
    let started = Instant::now();
    let third = manager.call_tool("c", "fake", "pid", "{}").await;
    assert!(!third.is_error, "{third:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let counts = &manager.pool_counts()[0];
    assert_eq!(counts.idle + counts.busy, 2, "{counts:?}");
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_dies_idle_is_reaped() {
    // One instance, kept idle by `min_idle`: age alone never stops it.
    let mut server = fake_mcp_server();
    server.max_instances = 1;
    server.min_idle = 1;
    let manager = manager_with(server).await;
    let pid = manager.call_tool("u", "fake", "pid", "{}").await;
    assert!(!pid.is_error, "{pid:?}");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.output])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    // Upkeep drops the dead instance and waits for the process: no zombie
    // is left.
    let proc_entry = format!("/proc/{}", pid.output);
    assert!(
        eventually(Duration::from_secs(15), || {
            let gone = !Path::new(&proc_entry).exists();
            async move { gone }
        })
        .await,
        "{proc_entry} is still there: {:?}",
        std::fs::read_to_string(format!("{proc_entry}/stat"))
    );
    let next = manager.call_tool("u", "fake", "pid", "{}").await;
    assert!(!next.is_error && next.output != pid.output, "{next:?}");
    manager.shutdown().await;
}

/// A server over its `max_memory` or `max_cpu_seconds` (rlimits set on the
/// child) fails that call with a tool error, and the next call runs on a
/// fresh instance; a call within the limits is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_over_its_rlimits_fails_the_call_and_is_replaced() {
    let mut server = fake_mcp_server();
    server.max_memory = Some(512 << 20);
    server.max_cpu_seconds = Some(1);
    server.max_open_files = Some(64);
    // A runtime of fixed size, so its address space does not depend on
    // the machine's cores.
    server.env.insert("TOKIO_WORKER_THREADS".into(), "2".into());
    server.env.insert("MALLOC_ARENA_MAX".into(), "2".into());
    let manager = manager_with(server).await;
    let pid = |outcome: chatkitd::mcp::ToolOutcome| {
        assert!(!outcome.is_error, "{}", outcome.output);
        outcome.output
    };
    let first = pid(manager.call("u", "pid", "{}").await);
    let fits = manager.call("u", "allocate", r#"{"mb": 64}"#).await;
    assert!(!fits.is_error, "{}", fits.output);

    let over = manager.call("u", "allocate", r#"{"mb": 1024}"#).await;
    assert!(over.is_error, "{}", over.output);
    assert!(
        over.output.contains("stopped during the call"),
        "{}",
        over.output
    );
    let second = pid(manager.call("u", "pid", "{}").await);
    assert_ne!(first, second, "the instance was not replaced");

    let spun = manager.call("u", "spin", r#"{"ms": 5000}"#).await;
    assert!(spun.is_error, "{}", spun.output);
    let third = pid(manager.call("u", "pid", "{}").await);
    assert_ne!(second, third, "the instance was not replaced");
    manager.shutdown().await;
}

/// A server's log notifications reach the daemon's log at their level,
/// tagged with the server, like its stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_log_messages_reach_the_daemons_log() {
    let daemon = Daemon::binary(Backend::Sqlite, &fake_mcp_server_toml()).await;
    daemon.llm.push(Script::tool_call(
        "call_log",
        "log",
        r#"{"message": "disk nearly full"}"#,
    ));
    daemon.llm.push(Script::text(["Logged."]));
    let (_, streamed) = daemon.create_thread("log something").await;
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Logged."),
        "{}",
        streamed.raw
    );
    let logged = eventually(Duration::from_secs(5), || async {
        daemon
            .log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("disk nearly full") && l.contains("fake"))
    })
    .await;
    assert!(logged, "{}", daemon.log());
}

/// A server's progress notifications update the call's workflow task
/// while it runs; the task then ends as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_update_the_running_task() {
    let daemon = Daemon::start_with(Backend::Sqlite, |config| {
        config
            .mcp_servers
            .insert("fake".to_owned(), fake_mcp_server());
    })
    .await;
    daemon
        .llm
        .push(Script::tool_call("call_p", "progress", r#"{"steps": 3}"#));
    daemon.llm.push(Script::text(["Done."]));
    let (_, streamed) = daemon.create_thread("work").await;
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Done."),
        "{}",
        streamed.raw
    );
    let contents: Vec<String> = streamed
        .events
        .iter()
        .filter(|e| e["update"]["type"] == "workflow.task.updated")
        .filter_map(|e| e["update"]["task"]["content"].as_str().map(str::to_owned))
        .collect();
    let seen = |needle: &str| contents.iter().position(|c| c.contains(needle));
    let first = seen("progress: 1/3 (33%) - step 1")
        .unwrap_or_else(|| panic!("step 1 not shown: {contents:#?}"));
    let last = seen("progress: 3/3 (100%) - step 3").expect("step 3 shown");
    let done = seen("done in").expect("the task ends done");
    assert!(first < last && last < done, "{contents:#?}");
}
