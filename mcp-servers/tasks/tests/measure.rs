//! Latency figures for the lead: spawn-to-initialized and a warm `list_tasks` round trip.
//!
//! Runs only with `TASKS_MCP_MEASURE=1` (it prints figures, it asserts little). Use a release
//! build for representative numbers: `TASKS_MCP_MEASURE=1 cargo test --release -p tasks-mcp
//! --test measure -- --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::{close, ok, spawn, temp_db, unique_user};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    eprintln!(
        "{name}: n={} p50={:?} p90={:?} p99={:?} min={:?} max={:?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.90),
        percentile(&samples, 0.99),
        samples[0],
        samples[samples.len() - 1],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_spawn_and_warm_call() {
    if std::env::var("TASKS_MCP_MEASURE").as_deref() != Ok("1") {
        eprintln!("skipped: set TASKS_MCP_MEASURE=1 to print latency figures");
        return;
    }
    let (_dir, db) = temp_db();
    // The first spawn creates the file and schema; it is not counted.
    close(spawn(&db).await).await;

    let mut spawns = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let client = spawn(&db).await;
        spawns.push(start.elapsed());
        close(client).await;
    }
    report("spawn -> initialized", spawns);

    let client = spawn(&db).await;
    let user = unique_user("measure");
    for i in 0..5 {
        ok(
            &client,
            "add_task",
            json!({ "user_id": user, "title": format!("task {i}") }),
        )
        .await;
    }
    let args = json!({ "user_id": user });
    for _ in 0..50 {
        ok(&client, "list_tasks", args.clone()).await;
    }
    let mut calls = Vec::new();
    for _ in 0..500 {
        let start = Instant::now();
        let value = ok(&client, "list_tasks", args.clone()).await;
        calls.push(start.elapsed());
        assert_eq!(value["tasks"].as_array().map(Vec::len), Some(5));
    }
    report("warm list_tasks (5 tasks) round trip", calls);
    close(client).await;
}
