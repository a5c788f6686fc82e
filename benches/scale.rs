//! Scale benchmark: a thousand conversations at once on one replica.
//!
//! Run with `cargo bench --bench scale` (`-- --quick` for the 20 s version CI
//! runs; `-- --conversations N --seconds S` to change the load, `--burst`
//! to start every client at once; `-- --rate-limiter` for the rate limiter's
//! case alone; `-- --store sqlite` or `-- --store postgres` for one store;
//! `-- --daemon PATH` to load another build of `chatkitd`, such as an
//! older commit's, under the same clients, model and nginx run). It first times the per-user rate limiter on its own with
//! 100,000 distinct users (see [`rate_limiter`]). For SQLite
//! and (when a PostgreSQL server can be started or `TEST_PG_URL` is set)
//! Postgres, it starts the release `chatkitd` binary as a child process and
//! the fake OpenAI-compatible model in a process of its own, whose answers are 100
//! chunks 50 ms apart (a 5 s answer, like a real model's). Then every one of
//! N clients (1,000) sends `threads.create` in a loop, each answer read
//! whole. The clients start spread evenly over one answer's time, as users
//! arrive (`--burst` starts them all at once, so that they ask in waves of
//! N), and are measured for the S seconds that follow. It prints:
//! - answers, errors (HTTP errors, cut streams, `error` events), answers per
//!   second in the measured window (each answer counted for the share of
//!   its time inside it) against the ideal (N / 5 s), time to the first
//!   text delta p50 and p99 of the answers asked in it;
//! - with `--burst`, the first text p99 of the first round apart from the
//!   later ones, and, for reference, what the same burst of clients gets
//!   from the model directly (one answer each, no daemon between);
//! - the daemon's resident memory before, at its peak, and per conversation;
//! - the SQL statements one `threads.create` turn and one
//!   `threads.add_user_message` turn execute, counted from sqlx's own
//!   statement log on a daemon run in this process;
//! - the floor a relay can reach: first, the same clients under the same
//!   load ask the model for the same answers through nginx (one process,
//!   `proxy_buffering off`; skipped when nginx is not installed), a relay
//!   that parses nothing. The model runs in a process of its own (this
//!   binary, run again) for nginx and chatkitd alike, so the CPU seconds of
//!   nginx, of chatkitd and of the model, read from `/proc/PID/stat` over
//!   each run, are divided by the chunks streamed: CPU per streamed chunk,
//!   and chatkitd's as a multiple of nginx's and of the model's. On
//!   Postgres, chatkitd's is also given with the database server's CPU
//!   over the run (all its processes, found from a backend's parent) added,
//!   and the database's CPU per answer.
//!
//! Why this file stays whole past 500 lines: it is one benchmark run. The
//! load (`drive`), its report and the two relays it compares share the
//! options, the answer readers and the window, and reading one without the
//! others tells nothing; the processes it starts are `scale/processes.rs`.

#[path = "common/mod.rs"]
mod common;
#[path = "scale/processes.rs"]
mod processes;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chatkitd_testkit::FakeLlm;
use chatkitd_testkit::figures::{ms, percentile, status_kib};
use futures::StreamExt;
use processes::{ModelProcess, Nginx, cpu_seconds, postmaster_pid, server_cpu_seconds};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

/// Words of each message: the fake model echoes them after "Hello! You
/// said:", one per chunk, so that each answer is 100 chunks.
const MESSAGE_WORDS: usize = 97;
/// The pause before each chunk of the fake model's answers.
const CHUNK_DELAY: Duration = Duration::from_millis(50);
/// How long one answer takes at the model: 100 chunks, [`CHUNK_DELAY`] apart.
const ANSWER_TIME: Duration = Duration::from_millis(5000);

struct Options {
    /// `--store`: the one store to run, when given.
    store: Option<String>,
    /// `--daemon`: the build to load instead of this one.
    daemon: std::path::PathBuf,
    conversations: usize,
    duration: Duration,
    /// How long the clients take to start, evenly spread: one answer's time
    /// by default, as real users arrive; zero with `--burst`, all at once.
    ramp: Duration,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let quick = args.iter().any(|a| a == "--quick");
    let text = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    Options {
        store: text("--store"),
        daemon: text("--daemon").map_or_else(common::Child::this_build, Into::into),
        conversations: value("--conversations").map_or(1000, |n| n as usize),
        duration: Duration::from_secs(value("--seconds").unwrap_or(if quick { 20 } else { 60 })),
        ramp: if args.iter().any(|a| a == "--burst") {
            Duration::ZERO
        } else {
            ANSWER_TIME
        },
    }
}

/// One answer read whole: when it was asked, when it ended, and the time to
/// its first text.
struct Answered {
    asked: Instant,
    ended: Instant,
    ttft: Duration,
}

impl Answered {
    /// The share of this answer's time that fell inside `window`.
    fn share_in(&self, window: (Instant, Instant)) -> f64 {
        let from = self.asked.max(window.0);
        let to = self.ended.min(window.1);
        let length = self.ended.duration_since(self.asked).as_secs_f64();
        if to <= from || length == 0.0 {
            return 0.0;
        }
        to.duration_since(from).as_secs_f64() / length
    }
}

/// SQL statements sqlx executed in this process (its `sqlx::query` events).
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

struct CountStatements;

impl<S: tracing::Subscriber> Layer<S> for CountStatements {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if let Some(addr) = std::env::var_os(processes::MODEL_PROCESS) {
        return serve_model(&addr.to_string_lossy()).await;
    }
    chatkitd::tls::install_crypto_provider();
    // The clients' sockets and the fake model's: far more than 1,024.
    chatkitd::http::serve::raise_open_files_limit();
    let statements = tracing_subscriber::filter::Targets::new()
        .with_target("sqlx::query", tracing::Level::DEBUG);
    let subscriber = tracing_subscriber::registry().with(CountStatements.with_filter(statements));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    rate_limiter();
    if std::env::args().any(|a| a == "--rate-limiter") {
        return;
    }
    let options = options();
    let model = ModelProcess::start();
    let floor = relay_floor(&model, &options).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.path().join("scale.db").display());
    let wanted = |store: &str| options.store.as_deref().is_none_or(|only| only == store);
    if wanted("sqlite") {
        run_backend("sqlite", &sqlite, &model, floor, &options).await;
    }
    if wanted("postgres") {
        match chatkitd_testkit::try_fresh_database().await {
            Some(url) => run_backend("postgres", &url, &model, floor, &options).await,
            None => println!("\n[postgres] skipped: no PostgreSQL server could be started"),
        }
    }
}

/// Distinct users the rate limiter's case checks.
const LIMITED_USERS: usize = 100_000;

/// The cost of one `RateLimiter::check` with [`LIMITED_USERS`] distinct users
/// active at once, as many as a busy replica may see in a minute: each user
/// checked once (a new bucket each), then each once more (an existing one).
/// It prints the mean cost per check of each pass, which must not grow with
/// the number of users.
fn rate_limiter() {
    let limiter = chatkitd::limits::RateLimiter::new(60, 10).expect("limited");
    let users: Vec<String> = (0..LIMITED_USERS).map(|i| format!("user-{i}")).collect();
    for pass in ["new users", "known users"] {
        let started = Instant::now();
        for user in &users {
            std::hint::black_box(limiter.check(user)).expect("within the burst");
        }
        let per_check = started.elapsed().as_secs_f64() * 1e9 / LIMITED_USERS as f64;
        println!(
            "rate limiter, {LIMITED_USERS} distinct users, {pass}: {per_check:.0} ns per check"
        );
    }
}

async fn run_backend(
    name: &str,
    store_url: &str,
    model: &ModelProcess,
    floor: Option<f64>,
    options: &Options,
) {
    let llm = FakeLlm::start().await;
    llm.set_default_delay(CHUNK_DELAY);
    let (create, add) = statements_per_turn(store_url, &llm).await;
    println!(
        "\n[{name}] SQL statements per turn: threads.create {create:.1}, threads.add_user_message {add:.1}"
    );

    // The load's model is the one in its own process, so that its CPU is
    // counted apart from the daemon's and the clients'.
    let daemon = common::Child::start(
        &options.daemon,
        store_url,
        &model.base_url(),
        None,
        "chat_completions",
    )
    .await;
    let (pid, url) = (daemon.pid, daemon.url.clone());

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.conversations * 2)
        .build()
        .expect("client");
    if options.ramp.is_zero() {
        // What the same burst costs with no daemon between: the clients ask
        // the model directly, all at once, one answer each.
        let (mut first, failed) = model_burst(&llm, options.conversations).await;
        println!(
            "[{name}] the model directly, {} clients at once: first chunk p50 {:.1} ms, p99 {:.1} ms, {failed} failed",
            options.conversations,
            ms(percentile(&mut first, 50.0)),
            ms(percentile(&mut first, 99.0))
        );
    }
    // Warm up: connections, prepared statements, the pools.
    for _ in 0..3 {
        answer(&http, &url).await.expect("a warm-up answer");
    }
    let rss_before = status_kib(&pid.to_string(), "VmRSS:");
    let (daemon_cpu, own_cpu) = (cpu_seconds(&pid.to_string()), cpu_seconds("self"));
    let model_cpu = model.cpu_seconds();
    // On Postgres the store's work runs in the database's processes: what
    // it does for chatkitd's turns counts as chatkitd's.
    let postmaster = postmaster_pid(store_url).await;
    let database_cpu = postmaster.map(server_cpu_seconds);
    println!(
        "[{name}] {} conversations at once, started over {} s, then measured for {} s; answers of 100 chunks {} ms apart",
        options.conversations,
        options.ramp.as_secs(),
        options.duration.as_secs(),
        CHUNK_DELAY.as_millis()
    );
    let load = drive(options, move || {
        let (http, url) = (http.clone(), url.clone());
        async move { answer(&http, &url).await }
    })
    .await;
    let elapsed = load.elapsed;
    let daemon_cpu = cpu_seconds(&pid.to_string()) - daemon_cpu;
    let own_cpu = cpu_seconds("self") - own_cpu;
    let model_cpu = model.cpu_seconds() - model_cpu;
    let database_cpu = postmaster
        .zip(database_cpu)
        .map(|(postmaster, before)| server_cpu_seconds(postmaster) - before);
    let rss_peak = status_kib(&pid.to_string(), "VmHWM:");
    load.print(options);
    let done = &load.done;
    println!(
        "  daemon RSS: {} MiB before, {} MiB at peak, {:.1} KiB per conversation",
        rss_before / 1024,
        rss_peak / 1024,
        rss_peak.saturating_sub(rss_before) as f64 / options.conversations as f64
    );
    println!(
        "  CPU over {:.1} s: daemon {daemon_cpu:.1} s ({:.2} cores), model {model_cpu:.1} s, clients {own_cpu:.1} s ({:.2} cores)",
        elapsed.as_secs_f64(),
        daemon_cpu / elapsed.as_secs_f64(),
        own_cpu / elapsed.as_secs_f64()
    );
    let chunks = (done.len() * CHUNKS_PER_ANSWER) as f64;
    if let Some(database_cpu) = database_cpu {
        println!(
            "  Postgres (every process of the server): {database_cpu:.1} s, {:.2} ms per answer",
            database_cpu / done.len() as f64 * 1e3
        );
    }
    // chatkitd's own; and with its database's, when that runs apart.
    let own = daemon_cpu / chunks;
    let model_per_chunk = model_cpu / chunks;
    let ratios = |per_chunk: f64| match floor {
        Some(nginx) => format!(
            " ({:.2}× nginx, {:.2}× the model)",
            per_chunk / nginx,
            per_chunk / model_per_chunk
        ),
        None => format!(" ({:.2}× the model)", per_chunk / model_per_chunk),
    };
    println!(
        "  CPU per streamed chunk: the model {:.1} µs, chatkitd {:.1} µs{}",
        model_per_chunk * 1e6,
        own * 1e6,
        ratios(own)
    );
    if let Some(database_cpu) = database_cpu {
        let with = (daemon_cpu + database_cpu) / chunks;
        println!(
            "  CPU per streamed chunk, chatkitd with Postgres: {:.1} µs{}",
            with * 1e6,
            ratios(with)
        );
    }
    daemon.stop().await;
}

/// The SQL statements of one `threads.create` turn and of one
/// `threads.add_user_message` turn, each averaged over 20 turns on a daemon
/// in this process (whose sqlx statement log this process counts).
async fn statements_per_turn(store_url: &str, llm: &FakeLlm) -> (f64, f64) {
    llm.set_default_delay(Duration::ZERO);
    let daemon = common::InProcess::start(store_url, &llm.base_url(), 16).await;
    let url = daemon.url.clone();
    let http = reqwest::Client::new();
    const TURNS: u64 = 20;
    let thread = create(&http, &url).await;
    let before = STATEMENTS.load(Ordering::Relaxed);
    for _ in 0..TURNS {
        create(&http, &url).await;
    }
    let created = STATEMENTS.load(Ordering::Relaxed) - before;
    let before = STATEMENTS.load(Ordering::Relaxed);
    for _ in 0..TURNS {
        let body = json!({"type": "threads.add_user_message", "params": {"thread_id": thread, "input": input("and then?")}});
        let text = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("add")
            .text()
            .await
            .expect("body");
        assert!(text.contains("\"type\":\"assistant_message\""), "{text}");
    }
    let added = STATEMENTS.load(Ordering::Relaxed) - before;
    daemon.stop().await;
    llm.set_default_delay(CHUNK_DELAY);
    (created as f64 / TURNS as f64, added as f64 / TURNS as f64)
}

/// Creates a thread with one short message; returns its id.
async fn create(http: &reqwest::Client, url: &str) -> String {
    let body = json!({"type": "threads.create", "params": {"input": input("hello")}});
    let text = http
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("create")
        .text()
        .await
        .expect("body");
    let first = text.lines().next().unwrap_or_default();
    let event: Value = serde_json::from_str(first.trim_start_matches("data: ")).expect("event");
    event["thread"]["id"]
        .as_str()
        .expect("thread id")
        .to_owned()
}

/// One `threads.create` answered whole: the time to its first text delta,
/// or what went wrong.
/// `n` clients, each on a connection of its own, ask the model for one
/// streamed answer at the same instant; their times to the first chunk,
/// and how many failed.
async fn model_burst(llm: &FakeLlm, n: usize) -> (Vec<Duration>, usize) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .build()
        .expect("client");
    let words: Vec<String> = (0..MESSAGE_WORDS).map(|i| format!("w{i}")).collect();
    let body = json!({"model": "fake-model", "stream": true,
        "messages": [{"role": "user", "content": words.join(" ")}]});
    let url = format!("{}/chat/completions", llm.base_url());
    let asks = (0..n).map(|_| {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let response = http.post(&url).json(&body).send().await.ok()?;
            let mut stream = response.bytes_stream();
            let mut first = None;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.ok()?;
                if first.is_none() && String::from_utf8_lossy(&chunk).contains("\"content\"") {
                    first = Some(started.elapsed());
                }
            }
            first
        })
    });
    let firsts: Vec<Option<Duration>> = futures::future::join_all(asks)
        .await
        .into_iter()
        .map(|joined| joined.ok().flatten())
        .collect();
    let failed = firsts.iter().filter(|f| f.is_none()).count();
    (firsts.into_iter().flatten().collect(), failed)
}

async fn answer(http: &reqwest::Client, url: &str) -> Result<Duration, String> {
    let words: Vec<String> = (0..MESSAGE_WORDS).map(|i| format!("w{i}")).collect();
    let body = json!({"type": "threads.create", "params": {"input": input(&words.join(" "))}});
    let started = Instant::now();
    let response = http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!(
            "HTTP {status}: {}",
            response.text().await.unwrap_or_default()
        ));
    }
    let mut stream = response.bytes_stream();
    let mut ttft = None;
    // Only the tail is kept: enough to see the last events.
    let mut tail = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("stream cut: {e}"))?;
        let text = String::from_utf8_lossy(&chunk);
        if ttft.is_none() && text.contains("content_part.text_delta") {
            ttft = Some(started.elapsed());
        }
        if text.contains("\"type\":\"error\"") {
            return Err(format!("error event: {text}"));
        }
        tail.push_str(&text);
        if tail.len() > 8192 {
            tail.drain(..tail.len() - 4096);
        }
    }
    match ttft {
        Some(ttft) if tail.contains("\"type\":\"assistant_message\"") => Ok(ttft),
        _ => Err(format!("incomplete answer: {tail}")),
    }
}

fn input(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}

/// Chunks of one answer: the fake model's echo of [`MESSAGE_WORDS`] words
/// after "Hello! You said:".
const CHUNKS_PER_ANSWER: usize = MESSAGE_WORDS + 3;

/// Serves the fake model, answering [`CHUNK_DELAY`] apart, until killed:
/// this binary run as the model's own process.
async fn serve_model(addr: &str) {
    let addr = addr.parse().expect("a socket address");
    let llm = FakeLlm::start_on(addr).await.expect("the model listens");
    llm.set_default_delay(CHUNK_DELAY);
    std::future::pending::<()>().await;
}

/// The floor: the same clients and load, each asking the model for the
/// same answer through nginx, a relay that parses nothing. Prints answers/s,
/// first text and CPU per streamed chunk of nginx and of the model; returns
/// nginx's CPU seconds per chunk, the figure chatkitd is compared with.
async fn relay_floor(model: &ModelProcess, options: &Options) -> Option<f64> {
    let nginx = match Nginx::start(model) {
        Ok(nginx) => nginx,
        Err(why) => {
            println!("\n[nginx] skipped: {why}");
            return None;
        }
    };
    let url = format!("http://{}/v1/chat/completions", nginx.addr);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.conversations * 2)
        .build()
        .expect("client");
    for _ in 0..3 {
        ask_model(&http, &url)
            .await
            .expect("a warm-up answer through nginx");
    }
    let pid = nginx.child.id().to_string();
    let (nginx_cpu, model_cpu) = (cpu_seconds(&pid), model.cpu_seconds());
    println!(
        "\n[nginx] the same {} clients asking the model through nginx (one process, proxy_buffering off)",
        options.conversations
    );
    let load = drive(options, move || {
        let (http, url) = (http.clone(), url.clone());
        async move { ask_model(&http, &url).await }
    })
    .await;
    let nginx_cpu = cpu_seconds(&pid) - nginx_cpu;
    let model_cpu = model.cpu_seconds() - model_cpu;
    load.print(options);
    let chunks = (load.done.len() * CHUNKS_PER_ANSWER) as f64;
    println!(
        "  CPU per streamed chunk: nginx {:.1} µs, the model {:.1} µs; nginx / the model {:.2}×",
        nginx_cpu / chunks * 1e6,
        model_cpu / chunks * 1e6,
        nginx_cpu / model_cpu
    );
    Some(nginx_cpu / chunks)
}

/// Whether a piece of the model's stream holds a chunk with text: a
/// `"content"` that is not empty (the first chunk carries the role and an
/// empty content).
fn has_text(stream: &str) -> bool {
    stream
        .match_indices("\"content\":\"")
        .any(|(at, found)| !stream[at + found.len()..].starts_with('"'))
}

/// One streamed answer straight from the model's API (through whatever is
/// at `url`): the time to its first text, or what went wrong.
async fn ask_model(http: &reqwest::Client, url: &str) -> Result<Duration, String> {
    let words: Vec<String> = (0..MESSAGE_WORDS).map(|i| format!("w{i}")).collect();
    let body = json!({"model": "fake-model", "stream": true,
        "messages": [{"role": "user", "content": words.join(" ")}]});
    let started = Instant::now();
    let response = http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut stream = response.bytes_stream();
    let mut ttft = None;
    let mut tail = String::new();
    while let Some(chunk) = stream.next().await {
        let text =
            String::from_utf8_lossy(&chunk.map_err(|e| format!("stream cut: {e}"))?).into_owned();
        if ttft.is_none() && has_text(&text) {
            ttft = Some(started.elapsed());
        }
        tail.push_str(&text);
        if tail.len() > 8192 {
            tail.drain(..tail.len() - 4096);
        }
    }
    match ttft {
        Some(ttft) if tail.contains("[DONE]") => Ok(ttft),
        _ => Err(format!("incomplete answer: {tail}")),
    }
}

/// What one load run got: every answer read whole, the errors, and the
/// measured window.
struct Load {
    done: Vec<Answered>,
    errors: usize,
    first_error: Option<String>,
    window: (Instant, Instant),
    elapsed: Duration,
}

/// Runs the load: `options.conversations` clients, started spread over
/// `options.ramp`, each asking `ask` for one answer after another until
/// the measured window ends.
async fn drive<F, Fut>(options: &Options, ask: F) -> Load
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Duration, String>> + Send,
{
    let done = Arc::new(Mutex::new(Vec::<Answered>::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let started = Instant::now();
    let window = (
        started + options.ramp,
        started + options.ramp + options.duration,
    );
    let mut clients = Vec::new();
    for i in 0..options.conversations {
        let ask = ask.clone();
        let (done, errors, first_error) = (done.clone(), errors.clone(), first_error.clone());
        let start_at = started
            + options
                .ramp
                .mul_f64(i as f64 / options.conversations as f64);
        clients.push(tokio::spawn(async move {
            tokio::time::sleep_until(start_at.into()).await;
            while Instant::now() < window.1 {
                let asked = Instant::now();
                match ask().await {
                    Ok(ttft) => done.lock().await.push(Answered {
                        asked,
                        ended: Instant::now(),
                        ttft,
                    }),
                    Err(error) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().await.get_or_insert(error);
                        // Not a hot loop against a failing server.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    futures::future::join_all(clients).await;
    let elapsed = started.elapsed();
    let done = std::mem::take(&mut *done.lock().await);
    let first_error = first_error.lock().await.take();
    Load {
        done,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        window,
        elapsed,
    }
}

impl Load {
    /// Answers, errors, answers per second in the window against the ideal,
    /// and the first text of the answers asked in it.
    fn print(&self, options: &Options) {
        let (done, window, errors) = (&self.done, self.window, self.errors);
        // The answers' work inside the window: each counts for the share of
        // its time that fell in it, so the rate has no steps where answers end.
        let work: f64 = done.iter().map(|a| a.share_in(window)).sum();
        let rate = work / options.duration.as_secs_f64();
        let mut ttfts: Vec<Duration> = done
            .iter()
            .filter(|a| a.asked >= window.0 && a.asked < window.1)
            .map(|a| a.ttft)
            .collect();
        let ideal = options.conversations as f64 / ANSWER_TIME.as_secs_f64();
        println!(
            "  answers {} ({} asked in the window), errors {errors}, {rate:.1} answers/s in the window ({:.0} % of the ideal {ideal:.0}/s)",
            done.len(),
            ttfts.len(),
            100.0 * rate / ideal
        );
        println!(
            "  first text p50 {:.1} ms, p99 {:.1} ms",
            ms(percentile(&mut ttfts, 50.0)),
            ms(percentile(&mut ttfts, 99.0))
        );
        // The first answers of each client (asked in the window's first
        // answer time) met cold pools and connections; the rest did not.
        let first_round = window.0 + ANSWER_TIME;
        let (mut first, mut later): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
        for a in done
            .iter()
            .filter(|a| a.asked >= window.0 && a.asked < window.1)
        {
            if a.asked < first_round {
                first.push(a.ttft);
            } else {
                later.push(a.ttft);
            }
        }
        println!(
            "  first text p99 of the first round {:.1} ms ({} answers), of the later ones {:.1} ms ({})",
            ms(percentile(&mut first, 99.0)),
            first.len(),
            ms(percentile(&mut later, 99.0)),
            later.len()
        );
        if let Some(error) = &self.first_error {
            println!("  first error: {error}");
        }
    }
}
