//! Load benchmark: what the daemon adds to the time to first token, what it
//! allocates per streamed event, and 64 concurrent streamed conversations.
//!
//! Run with `cargo bench --bench latency` (optionally `-- --quick`;
//! `-- --store sqlite` or `-- --store postgres` for one store only;
//! `-- --daemon PATH` to measure another build of `chatkitd`, such as an
//! older commit's, against the same clients and model). It starts the fake
//! OpenAI-compatible LLM with zero delay in this process and the release
//! `chatkitd` binary in a child process, as it is deployed, over loopback,
//! on SQLite and (when a PostgreSQL server can be started or `TEST_PG_URL`
//! is set) on Postgres, and prints:
//! - the fake LLM's own time to first token (client → LLM directly), the time
//!   to the first `text_delta` through the daemon, and the difference of the
//!   medians: the daemon's added latency;
//! - heap allocations per streamed event (this build's code, run in this
//!   process for the count; skipped with `--daemon`): the fake model echoes the user's
//!   words one chunk each, so a long message minus a short one, divided by the
//!   extra chunks, is what one more chunk costs. Counted by this process's
//!   allocator over everything (client, model, daemon), once through the
//!   daemon and once from the model directly; the difference is the daemon's;
//! - with an input guardrail whose verdict takes 50 ms (this build, chat
//!   completions only): the first text's p50 beside the one without, and
//!   the turn's end, which waits for the verdict;
//! - 64 conversations at once, each sending turns back to back (a new thread,
//!   then four more messages on it, then a new thread) for a fixed time: turns
//!   per second in each window and their median, errors, median and p99 turn
//!   time, the daemon's resident memory.
//!
//! The first-token and 64-conversation scenarios run twice on each store:
//! with the daemon asking the model through chat completions, then through
//! the Responses API (`[llm] api = "responses"`; the direct figure then asks
//! the fake model's `/responses`). `-- --api chat_completions` or
//! `-- --api responses` runs one.

#[path = "common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chatkitd_testkit::FakeLlm;
use chatkitd_testkit::figures::{ms, percentile, status_kib};
use futures::StreamExt;
use serde_json::{Value, json};

/// The system allocator, counting allocations and the bytes asked for while
/// [`COUNTING`] is on (only then: the shared counters would otherwise slow
/// every allocation of the other scenarios).
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

fn count(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations and bytes counted so far.
fn allocated() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    )
}

struct Options {
    samples: usize,
    conversations: usize,
    /// Turns per thread, the first being its `threads.create`.
    turns_per_thread: usize,
    warmup: Duration,
    window: Duration,
    windows: usize,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    chatkitd::tls::install_crypto_provider();
    let quick = std::env::args().any(|a| a == "--quick");
    let options = Options {
        samples: if quick { 100 } else { 400 },
        conversations: 64,
        turns_per_thread: 5,
        warmup: Duration::from_secs(1),
        window: Duration::from_secs(if quick { 2 } else { 4 }),
        windows: 3,
    };
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let only = value("--store");
    let wanted = |store: &str| only.is_none_or(|only| only == store);
    let other_build = value("--daemon").map(std::path::PathBuf::from);
    let only_api = value("--api");
    let apis: Vec<&str> = ["chat_completions", "responses"]
        .into_iter()
        .filter(|api| only_api.is_none_or(|only| only == api))
        .collect();
    let binary = other_build
        .clone()
        .unwrap_or_else(common::Child::this_build);
    println!("daemon: {}", binary.display());
    let dir = tempfile::tempdir().expect("temp dir");
    for api in apis {
        // Allocations are counted once, on the chat-completions path.
        let count = other_build.is_none() && api == "chat_completions";
        if wanted("sqlite") {
            let sqlite = format!(
                "sqlite://{}",
                dir.path().join(format!("bench-{api}.db")).display()
            );
            run_backend("sqlite", &sqlite, &binary, count, api, &options).await;
        }
        if wanted("postgres") {
            match chatkitd_testkit::try_fresh_database().await {
                Some(url) => run_backend("postgres", &url, &binary, count, api, &options).await,
                None => println!("\n[postgres] skipped: no PostgreSQL server could be started"),
            }
        }
    }
}

/// Query connections of the daemon under test.
const STORE_CONNECTIONS: u32 = 32;

async fn run_backend(
    store: &str,
    store_url: &str,
    binary: &std::path::Path,
    count_allocations: bool,
    api: &str,
    options: &Options,
) {
    let name = format!("{store}, {api}");
    let name = name.as_str();
    let llm = FakeLlm::start().await;
    let daemon = common::Child::start(
        binary,
        store_url,
        &llm.base_url(),
        Some(STORE_CONNECTIONS),
        api,
    )
    .await;
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
        direct_ttft(&http, &llm.base_url(), api, "how are you today").await;
        daemon_turn(
            &http,
            &url,
            &threads[i % threads.len()],
            "how are you today",
        )
        .await;
    }
    let mut direct = Vec::with_capacity(options.samples);
    let mut through = Vec::with_capacity(options.samples);
    let fresh = create_threads(&http, &url, options.samples).await;
    for thread in &fresh {
        direct.push(direct_ttft(&http, &llm.base_url(), api, "how are you today").await);
        through.push(
            daemon_turn(&http, &url, thread, "how are you today")
                .await
                .ttft,
        );
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

    if count_allocations {
        let counted = common::InProcess::start(store_url, &llm.base_url(), STORE_CONNECTIONS).await;
        allocations_per_event(name, &http, &counted.url, &llm.base_url()).await;
        counted.stop().await;
        with_input_guardrail(name, &http, binary, store_url, t50, options).await;
    }
    concurrent(name, &http, &url, daemon.pid, options).await;
    daemon.stop().await;
}

/// How long the fake model takes to give a guardrail's verdict in
/// [`with_input_guardrail`]: far longer than the first text takes.
const VERDICT_DELAY: Duration = Duration::from_millis(50);

/// The first text and the whole turn with an input guardrail whose verdict
/// (a pass) takes [`VERDICT_DELAY`]: the guardrail runs beside the model
/// call, so the first text should come as soon as without one (`without`,
/// the p50 measured just before), and the turn end after the verdict.
async fn with_input_guardrail(
    name: &str,
    http: &reqwest::Client,
    binary: &std::path::Path,
    store_url: &str,
    without: Duration,
    options: &Options,
) {
    let llm = FakeLlm::start().await;
    let guardrail =
        "[guardrails.topic]\ninstructions_text = \"Trip on anything off topic.\"\non = \"input\"\n";
    let daemon = common::Child::start_with(
        binary,
        store_url,
        &llm.base_url(),
        Some(STORE_CONNECTIONS),
        "chat_completions",
        guardrail,
    )
    .await;
    let verdict = || chatkitd_testkit::Script::Slow {
        chunks: vec![r#"{"tripwire": false, "reason": "on topic"}"#.to_owned()],
        first_token_delay: VERDICT_DELAY,
        delay: Duration::ZERO,
    };
    let samples = options.samples / 2;
    // Each new thread's first message is checked too: at once.
    for _ in 0..samples + 10 {
        llm.push_unary(chatkitd_testkit::Script::text([
            r#"{"tripwire": false, "reason": "on topic"}"#,
        ]));
    }
    let threads = create_threads(http, &daemon.url, samples + 10).await;
    let (mut first, mut done) = (Vec::new(), Vec::new());
    for (i, thread) in threads.iter().enumerate() {
        llm.push_unary(verdict());
        let turn = daemon_turn(http, &daemon.url, thread, "how are you today").await;
        assert!(turn.ok, "a turn with a guardrail failed");
        // The first ten warm the paths.
        if i >= 10 {
            first.push(turn.ttft);
            done.push(turn.total);
        }
    }
    println!(
        "\n[{name}] with an input guardrail whose verdict takes {} ms, {samples} samples",
        VERDICT_DELAY.as_millis()
    );
    println!(
        "  first text:   p50 {:>8.3} ms  (without a guardrail: {:>8.3} ms)",
        ms(percentile(&mut first, 50.0)),
        ms(without)
    );
    println!(
        "  answer done:  p50 {:>8.3} ms  (after the verdict)",
        ms(percentile(&mut done, 50.0))
    );
    daemon.stop().await;
}

/// Extra words in the long message of [`allocations_per_event`]: one more
/// chunk each in the model's echo.
const EXTRA_WORDS: usize = 200;

/// Prints the heap allocations one more streamed chunk costs, through the
/// daemon and from the model directly (see the module doc).
async fn allocations_per_event(name: &str, http: &reqwest::Client, url: &str, llm: &str) {
    const TURNS: usize = 20;
    let short = "hi".to_owned();
    let long = vec!["word"; EXTRA_WORDS + 1].join(" ");
    let threads = create_threads(http, url, 2 * TURNS).await;
    // (allocations, bytes) of TURNS answers to `text`, through the daemon
    // (each on a thread of its own, so history is the same) or directly.
    COUNTING.store(true, Ordering::Relaxed);
    let measure = async |text: &str, threads: Option<&[String]>| {
        let before = allocated();
        for i in 0..TURNS {
            match threads {
                Some(threads) => {
                    let turn = daemon_turn(http, url, &threads[i], text).await;
                    assert!(turn.ok, "a turn of the allocation count failed");
                }
                None => {
                    direct_ttft(http, llm, "chat_completions", text).await;
                }
            }
        }
        let after = allocated();
        (after.0 - before.0, after.1 - before.1)
    };
    let chunks = (EXTRA_WORDS * TURNS) as f64;
    let per_event = |long: (u64, u64), short: (u64, u64)| {
        (
            (long.0 as f64 - short.0 as f64) / chunks,
            (long.1 as f64 - short.1 as f64) / chunks,
        )
    };
    let through = per_event(
        measure(&long, Some(&threads[..TURNS])).await,
        measure(&short, Some(&threads[TURNS..])).await,
    );
    let direct = per_event(measure(&long, None).await, measure(&short, None).await);
    COUNTING.store(false, Ordering::Relaxed);
    println!(
        "[{name}] heap allocations per streamed chunk ({TURNS} answers of {EXTRA_WORDS} extra chunks)"
    );
    println!(
        "  through chatkitd: {:>6.1} allocations {:>8.0} bytes",
        through.0, through.1
    );
    println!(
        "  LLM directly:     {:>6.1} allocations {:>8.0} bytes",
        direct.0, direct.1
    );
    println!(
        "  added by chatkitd: {:>5.1} allocations {:>8.0} bytes",
        through.0 - direct.0,
        through.1 - direct.1
    );
}

/// One finished turn of [`concurrent`]: when it ended and how it went.
struct Finished {
    at: Instant,
    turn: Turn,
}

/// Prints what 64 conversations sending turns back to back achieve.
async fn concurrent(
    name: &str,
    http: &reqwest::Client,
    url: &str,
    daemon_pid: u32,
    options: &Options,
) {
    println!(
        "[{name}] {} concurrent conversations, {} turns per thread, {:.0} s warm-up then {} windows of {:.0} s",
        options.conversations,
        options.turns_per_thread,
        options.warmup.as_secs_f64(),
        options.windows,
        options.window.as_secs_f64()
    );
    let started = Instant::now();
    let measured_from = started + options.warmup;
    let until = measured_from + options.window * options.windows as u32;
    let mut tasks = Vec::new();
    for _ in 0..options.conversations {
        let (http, url) = (http.clone(), url.to_owned());
        let turns_per_thread = options.turns_per_thread;
        tasks.push(tokio::spawn(async move {
            let mut finished = Vec::new();
            'threads: loop {
                let (turn, thread) = create_turn(&http, &url).await;
                finished.push(Finished {
                    at: Instant::now(),
                    turn,
                });
                let Some(thread) = thread else {
                    continue;
                };
                for _ in 1..turns_per_thread {
                    if Instant::now() >= until {
                        break 'threads;
                    }
                    let turn = daemon_turn(&http, &url, &thread, "how are you today").await;
                    finished.push(Finished {
                        at: Instant::now(),
                        turn,
                    });
                }
                if Instant::now() >= until {
                    break;
                }
            }
            finished
        }));
    }
    let mut per_window = vec![0usize; options.windows];
    let mut times = Vec::new();
    let mut errors = 0;
    for task in tasks {
        for done in task.await.expect("conversation task") {
            if done.at < measured_from || done.at >= until {
                continue;
            }
            let window =
                ((done.at - measured_from).as_secs_f64() / options.window.as_secs_f64()) as usize;
            per_window[window.min(options.windows - 1)] += 1;
            if !done.turn.ok {
                errors += 1;
            }
            times.push(done.turn.total);
        }
    }
    let mut rates: Vec<f64> = per_window
        .iter()
        .map(|&n| n as f64 / options.window.as_secs_f64())
        .collect();
    let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "  turns/s by window: {}; median {:.0} turns/s",
        shown.join(", "),
        rates[rates.len() / 2]
    );
    println!(
        "  {} turns, errors {errors}, turn p50 {:.2} ms p99 {:.2} ms, RSS {} MiB",
        times.len(),
        ms(percentile(&mut times, 50.0)),
        ms(percentile(&mut times, 99.0)),
        status_kib(&daemon_pid.to_string(), "VmRSS:") / 1024
    );
}

async fn create_threads(http: &reqwest::Client, url: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let (turn, id) = create_turn(http, url).await;
        assert!(turn.ok, "threads.create failed");
        ids.push(id.expect("thread id"));
    }
    ids
}

struct Turn {
    ttft: Duration,
    total: Duration,
    ok: bool,
}

/// One `threads.create` with its answer, and the new thread's id.
async fn create_turn(http: &reqwest::Client, url: &str) -> (Turn, Option<String>) {
    let body = json!({"type": "threads.create", "params": {"input": input("start")}});
    let (turn, text) = stream_turn(http, url, &body).await;
    let id = text
        .lines()
        .next()
        .and_then(|first| serde_json::from_str::<Value>(first.trim_start_matches("data: ")).ok())
        .and_then(|event| event["thread"]["id"].as_str().map(str::to_owned));
    (turn, id)
}

/// One `threads.add_user_message`: time to the first text delta and to the end.
async fn daemon_turn(http: &reqwest::Client, url: &str, thread: &str, text: &str) -> Turn {
    let body = json!({"type": "threads.add_user_message", "params": {"thread_id": thread, "input": input(text)}});
    stream_turn(http, url, &body).await.0
}

/// Posts `body` and reads the streamed answer whole.
async fn stream_turn(http: &reqwest::Client, url: &str, body: &Value) -> (Turn, String) {
    let started = Instant::now();
    let failed = |text: String| {
        let elapsed = started.elapsed();
        let turn = Turn {
            ttft: elapsed,
            total: elapsed,
            ok: false,
        };
        (turn, text)
    };
    let Ok(response) = http.post(url).json(body).send().await else {
        return failed(String::new());
    };
    let status_ok = response.status().is_success();
    let mut stream = response.bytes_stream();
    let mut ttft = None;
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return failed(text);
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
    let turn = Turn {
        ttft: ttft.unwrap_or(total),
        total,
        ok,
    };
    (turn, text)
}

/// Time to the first content chunk from the fake LLM itself, for a message
/// of `text`, through `api`; reads the whole answer.
async fn direct_ttft(http: &reqwest::Client, base: &str, api: &str, text: &str) -> Duration {
    let (path, body, first_text) = if api == "responses" {
        (
            "responses",
            json!({"model": "fake-model", "stream": true, "store": false,
                "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}]}),
            "\"delta\":\"Hello",
        )
    } else {
        (
            "chat/completions",
            json!({"model": "fake-model", "stream": true, "messages": [{"role": "user", "content": text}]}),
            "\"content\":\"Hello",
        )
    };
    let started = Instant::now();
    let response = http
        .post(format!("{base}/{path}"))
        .json(&body)
        .send()
        .await
        .expect("llm request");
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let mut first = None;
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("llm chunk")));
        if first.is_none() && text.contains(first_text) {
            first = Some(started.elapsed());
        }
    }
    first.unwrap_or_else(|| started.elapsed())
}

fn input(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}
