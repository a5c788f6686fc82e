//! Tool-call benchmark: a warm call through the MCP pool, and the start-up +
//! initialize cost that a spawn-per-request design pays on every message.
//!
//! Run with `cargo bench --bench tools` (optionally `-- --quick`). It uses the
//! real `tasks-mcp` server of this workspace (built in the same profile if
//! missing) on a SQLite file in a temp dir, and prints medians and tails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatkitd::config::Config;
use chatkitd::mcp::instance::{Events, Instance, ToolsChanged};
use chatkitd::mcp::process::Launch;
use chatkitd::mcp::{Endpoint, McpManager};
use chatkitd_testkit::figures::{ms, percentile};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (spawns, calls) = if quick { (20, 1000) } else { (50, 5000) };
    let binary = tasks_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("tasks.db");

    // What spawn-per-request pays: start the server and finish the MCP
    // initialize handshake, every time.
    let launch = Endpoint::Process(Launch {
        server: "tasks".into(),
        program: binary.clone(),
        args: Vec::new(),
        env: BTreeMap::from([("TASKS_DB".to_owned(), db.display().to_string())]),
        cwd: dir.path().to_path_buf(),
        limits: Default::default(),
    });
    let events = Events {
        server: "tasks".into(),
        tools_changed: Arc::new(ToolsChanged::default()),
        progress: Default::default(),
        asking: Default::default(),
    };
    let mut startup = Vec::with_capacity(spawns);
    for _ in 0..spawns {
        let started = Instant::now();
        let instance = Instance::start(&launch, None, events.clone(), Duration::from_secs(30))
            .await
            .expect("tasks-mcp starts");
        startup.push(started.elapsed());
        instance.stop().await;
    }

    // A pooled server: warm calls through the manager, with identity injection.
    let config_text = format!(
        "[mcp_servers.tasks]\ncommand = {:?}\nenv = {{ TASKS_DB = {:?} }}\nmin_idle = 2\nmax_instances = 2\ninject = {{ user_id = \"user.id\" }}\n",
        binary.display().to_string(),
        db.display().to_string()
    );
    let config = Config::from_toml(
        &config_text,
        "bench.toml",
        dir.path().to_path_buf(),
        &|_| None,
    )
    .expect("config");
    let manager = McpManager::start(&config.mcp_servers, Path::new("."), 16 * 1024).await;
    for i in 0..5 {
        let added = manager
            .call(
                "bench-user",
                "add_task",
                &format!(r#"{{"title":"task {i}"}}"#),
            )
            .await;
        assert!(!added.is_error, "{}", added.output);
    }
    for _ in 0..200 {
        manager.call("bench-user", "list_tasks", "{}").await;
    }
    let mut warm = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let outcome = manager.call("bench-user", "list_tasks", "{}").await;
        warm.push(started.elapsed());
        assert!(!outcome.is_error, "{}", outcome.output);
    }

    // Eight callers at once on two instances: the pool queues, nobody fails.
    let concurrent_calls = calls / 2;
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move {
                let mut errors = 0;
                for _ in 0..concurrent_calls / 8 {
                    if manager
                        .call("bench-user", "list_tasks", "{}")
                        .await
                        .is_error
                    {
                        errors += 1;
                    }
                }
                errors
            })
        })
        .collect();
    let mut errors = 0;
    for task in tasks {
        errors += task.await.expect("caller");
    }
    let elapsed = started.elapsed();
    manager.shutdown().await;

    println!("tasks-mcp ({}), SQLite", binary.display());
    println!(
        "  spawn + initialize (per-request design), {spawns} runs: p50 {:.2} ms  p90 {:.2} ms",
        ms(percentile(&mut startup, 50.0)),
        ms(percentile(&mut startup, 90.0))
    );
    println!(
        "  warm pooled call (list_tasks), {calls} calls:        p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms",
        ms(percentile(&mut warm, 50.0)),
        ms(percentile(&mut warm, 90.0)),
        ms(percentile(&mut warm, 99.0))
    );
    println!(
        "  spawn-per-request / pooled, at the median: {:.0}x",
        percentile(&mut startup, 50.0).as_secs_f64() / percentile(&mut warm, 50.0).as_secs_f64()
    );
    println!(
        "  8 concurrent callers on 2 instances: {} calls in {:.2} s = {:.0} calls/s, errors {errors}",
        concurrent_calls / 8 * 8,
        elapsed.as_secs_f64(),
        (concurrent_calls / 8 * 8) as f64 / elapsed.as_secs_f64()
    );
}

/// `tasks-mcp` beside this benchmark's profile directory, built if missing.
fn tasks_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    let binary = profile_dir.join("tasks-mcp");
    if !binary.exists() {
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "-p", "tasks-mcp", "--bin", "tasks-mcp"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        assert!(
            cargo.status().expect("cargo").success(),
            "building tasks-mcp failed"
        );
    }
    binary
}
