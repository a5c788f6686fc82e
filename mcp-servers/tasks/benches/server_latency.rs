//! Latency figures of the tasks server alone: spawn to initialized, and a
//! warm `list_tasks` round trip, through rmcp's client on a SQLite file.
//!
//! A measurement, not a test: it prints figures and checks only that the
//! calls succeed. Run `cargo bench -p tasks-mcp --bench server_latency`
//! (`-- --quick` for fewer samples). CI does not run it; the daemon's view of
//! the same costs is the workspace's `tools` benchmark.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use chatkitd_testkit::figures::percentile;
use common::{close, ok, spawn, temp_db, unique_user};
use serde_json::json;

fn report(name: &str, mut samples: Vec<Duration>) {
    println!(
        "{name}: n={} p50={:?} p90={:?} p99={:?} min={:?} max={:?}",
        samples.len(),
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 90.0),
        percentile(&mut samples, 99.0),
        percentile(&mut samples, 0.0),
        percentile(&mut samples, 100.0),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (spawns, calls) = if quick { (10, 200) } else { (20, 500) };
    let (_dir, db) = temp_db();
    // The first spawn creates the file and schema; it is not counted.
    close(spawn(&db).await).await;

    let mut spawn_times = Vec::with_capacity(spawns);
    for _ in 0..spawns {
        let start = Instant::now();
        let client = spawn(&db).await;
        spawn_times.push(start.elapsed());
        close(client).await;
    }
    report("spawn -> initialized", spawn_times);

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
    let mut call_times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let value = ok(&client, "list_tasks", args.clone()).await;
        call_times.push(start.elapsed());
        assert_eq!(value["tasks"].as_array().map(Vec::len), Some(5));
    }
    report("warm list_tasks (5 tasks) round trip", call_times);
    close(client).await;
}
