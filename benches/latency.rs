//! Load benchmark: what the daemon adds to the time to first token, and 64
//! concurrent streamed conversations.
//!
//! Run with `cargo bench --bench latency` (optionally `-- --quick`). It starts
//! the fake OpenAI-compatible LLM with zero delay and the daemon in this
//! process, over loopback, on SQLite and (when a PostgreSQL server can be
//! started or `TEST_PG_URL` is set) on Postgres, and prints:
//! - the fake LLM's own time to first token (client → LLM directly), the time
//!   to the first `text_delta` through the daemon, and the difference of the
//!   medians: the daemon's added latency;
//! - 64 conversations of several turns each, all at once: errors, turns per
//!   second, median and p99 turn time, resident memory after each round.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatkitd_testkit::FakeLlm;
use chatkitd_testkit::figures::{ms, percentile, status_kib};
use futures::StreamExt;
use serde_json::{Value, json};

struct Options {
    samples: usize,
    conversations: usize,
    turns: usize,
    rounds: usize,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    chatkitd::tls::install_crypto_provider();
    let quick = std::env::args().any(|a| a == "--quick");
    let options = Options {
        samples: if quick { 100 } else { 400 },
        conversations: 64,
        turns: if quick { 3 } else { 5 },
        rounds: if quick { 2 } else { 3 },
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    run_backend("sqlite", &sqlite, &options).await;
    match chatkitd_testkit::try_fresh_database().await {
        Some(url) => run_backend("postgres", &url, &options).await,
        None => println!("\n[postgres] skipped: no PostgreSQL server could be started"),
    }
}

async fn run_backend(name: &str, store_url: &str, options: &Options) {
    let llm = FakeLlm::start().await;
    let daemon = common::InProcess::start(store_url, &llm.base_url(), 32).await;
    let url = daemon.url.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .expect("client");

    println!(
        "\n[{name}] time to first token, {} samples each (fake LLM, zero delay)",
        options.samples
    );
    // Warm both paths (connections, caches, prepared statements).
    let threads = create_threads(&http, &url, 32).await;
    for i in 0..50 {
        direct_ttft(&http, &llm.base_url()).await;
        daemon_turn(&http, &url, &threads[i % threads.len()]).await;
    }
    let mut direct = Vec::with_capacity(options.samples);
    let mut through = Vec::with_capacity(options.samples);
    let fresh = create_threads(&http, &url, options.samples).await;
    for thread in &fresh {
        direct.push(direct_ttft(&http, &llm.base_url()).await);
        through.push(daemon_turn(&http, &url, thread).await.ttft);
    }
    let (d50, t50) = (
        percentile(&mut direct, 50.0),
        percentile(&mut through, 50.0),
    );
    println!(
        "  LLM directly:      p50 {:>8.3} ms  p90 {:>8.3} ms",
        ms(d50),
        ms(percentile(&mut direct, 90.0))
    );
    println!(
        "  through chatkitd:  p50 {:>8.3} ms  p90 {:>8.3} ms",
        ms(t50),
        ms(percentile(&mut through, 90.0))
    );
    println!(
        "  added by chatkitd: p50 {:>8.3} ms",
        ms(t50.saturating_sub(d50))
    );

    println!(
        "[{name}] {} concurrent conversations x {} turns, {} rounds",
        options.conversations, options.turns, options.rounds
    );
    for round in 1..=options.rounds {
        let threads = Arc::new(create_threads(&http, &url, options.conversations).await);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..options.conversations {
            let (http, url, threads) = (http.clone(), url.clone(), threads.clone());
            let turns = options.turns;
            tasks.push(tokio::spawn(async move {
                let mut results = Vec::new();
                for _ in 0..turns {
                    results.push(daemon_turn(&http, &url, &threads[i]).await);
                }
                results
            }));
        }
        let mut times = Vec::new();
        let mut errors = 0;
        for task in tasks {
            for turn in task.await.expect("conversation task") {
                if !turn.ok {
                    errors += 1;
                }
                times.push(turn.total);
            }
        }
        let elapsed = started.elapsed();
        println!(
            "  round {round}: {} turns in {:.2} s = {:.0} turns/s, errors {errors}, turn p50 {:.2} ms p99 {:.2} ms, RSS {} MiB",
            times.len(),
            elapsed.as_secs_f64(),
            times.len() as f64 / elapsed.as_secs_f64(),
            ms(percentile(&mut times, 50.0)),
            ms(percentile(&mut times, 99.0)),
            status_kib("self", "VmRSS:") / 1024
        );
    }
    daemon.stop().await;
}

async fn create_threads(http: &reqwest::Client, url: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let body = json!({"type": "threads.create", "params": {"input": input("start")}});
        let response = http.post(url).json(&body).send().await.expect("create");
        let text = response.text().await.expect("create body");
        let first = text.lines().next().unwrap_or_default();
        let event: Value = serde_json::from_str(first.trim_start_matches("data: ")).expect("event");
        ids.push(
            event["thread"]["id"]
                .as_str()
                .expect("thread id")
                .to_owned(),
        );
    }
    ids
}

struct Turn {
    ttft: Duration,
    total: Duration,
    ok: bool,
}

/// One `threads.add_user_message`: time to the first text delta and to the end.
async fn daemon_turn(http: &reqwest::Client, url: &str, thread: &str) -> Turn {
    let body = json!({"type": "threads.add_user_message", "params": {"thread_id": thread, "input": input("how are you today")}});
    let started = Instant::now();
    let Ok(response) = http.post(url).json(&body).send().await else {
        return Turn {
            ttft: started.elapsed(),
            total: started.elapsed(),
            ok: false,
        };
    };
    let status_ok = response.status().is_success();
    let mut stream = response.bytes_stream();
    let mut ttft = None;
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Turn {
                ttft: started.elapsed(),
                total: started.elapsed(),
                ok: false,
            };
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        if ttft.is_none() && text.contains("content_part.text_delta") {
            ttft = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let ok = status_ok
        && ttft.is_some()
        && !text.contains("\"type\":\"error\"")
        && text.contains("\"type\":\"assistant_message\"");
    Turn {
        ttft: ttft.unwrap_or(total),
        total,
        ok,
    }
}

/// Time to the first content chunk from the fake LLM itself.
async fn direct_ttft(http: &reqwest::Client, base: &str) -> Duration {
    let body = json!({"model": "fake-model", "stream": true, "messages": [{"role": "user", "content": "how are you today"}]});
    let started = Instant::now();
    let response = http
        .post(format!("{base}/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("llm request");
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let mut first = None;
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("llm chunk")));
        if first.is_none() && text.contains("\"content\":\"Hello") {
            first = Some(started.elapsed());
        }
    }
    first.unwrap_or_else(|| started.elapsed())
}

fn input(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}
