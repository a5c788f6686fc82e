//! Hostile attachment clients against the real binary: a flood of previews
//! of a 10 MiB image over HTTP/1 and over HTTP/2 with the flow-control
//! window withheld (the daemon's resident memory stays far below one image
//! per request, previews over the cap get 429, an honest user's preview
//! works afterwards), uploads that stall or trickle (their slot is free
//! again in seconds), one user holding every upload slot (refused past the
//! per-user cap while another user uploads), and signed URLs counted against
//! their owner's request rate.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both_backends;
use crate::support::{Backend, Daemon, eventually, hs256_token};

const SECRET: &str = "hostile-attachments-secret-of-32-bytes-at-least";
const SIGNING_KEY: &str = "hostile-attachments-signing-key-0123456789";
/// The image of the floods: the largest attachment the defaults allow.
const IMAGE_BYTES: usize = 10 * 1024 * 1024;
/// Previews asked for at once in a flood.
const FLOOD: usize = 300;
/// The daemon's resident memory must stay under this during a flood; one
/// image per request was 2.6 GiB over HTTP/1 and 4.9 GiB over HTTP/2.
const FLOOD_RSS_BOUND_KIB: u64 = 250 * 1024;
/// `[server] stream_write_timeout` of the preview tests.
const STALL: Duration = Duration::from_secs(2);

fn token(user: &str) -> String {
    hs256_token(SECRET, user)
}

/// JWT auth, a signing key, and `extra` (TOML) on top.
async fn daemon(backend: Backend, extra: &str) -> Daemon {
    let toml = format!(
        "[auth]\nmode = \"jwt\"\nsecret = \"{SECRET}\"\n\
         [attachments]\nsigning_key = \"{SIGNING_KEY}\"\n{extra}"
    );
    Daemon::binary(backend, &toml).await
}

/// A PNG of `len` bytes: the signature, then bytes that do not compress
/// (as an image's do not), from a fixed seed.
fn png(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut x = seed | 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// `attachments.create` of a PNG of `size` bytes as `user`: the created
/// attachment (with its upload URL and preview URL).
async fn create(daemon: &Daemon, user: &str, size: usize) -> Value {
    let (status, created) = daemon
        .post_as(
            &token(user),
            json!({"type": "attachments.create",
                   "params": {"name": "big.png", "size": size, "mime_type": "image/png"}}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    created
}

fn upload_url(created: &Value) -> String {
    created["upload_descriptor"]["url"]
        .as_str()
        .expect("an upload URL")
        .to_owned()
}

fn preview_url(created: &Value) -> String {
    created["preview_url"]
        .as_str()
        .expect("a preview URL")
        .to_owned()
}

/// POSTs raw `bytes` to a signed upload URL: status and body.
async fn upload(url: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .expect("upload sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An uploaded image of `user`: its preview URL.
async fn uploaded(daemon: &Daemon, user: &str, bytes: &[u8]) -> String {
    let created = create(daemon, user, bytes.len()).await;
    let (status, body) = upload(&upload_url(&created), bytes.to_vec()).await;
    assert_eq!(status, 200, "{body}");
    preview_url(&created)
}

/// A preview's status, `Retry-After` and body.
async fn fetch(client: &reqwest::Client, url: &str) -> (u16, String, Vec<u8>) {
    let response = client.get(url).send().await.expect("GET sent");
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    (status, retry, body)
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the daemon's status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Samples the resident memory of `pid` every 10 ms until the returned
/// sender is dropped; the task answers the peak.
fn watch_rss(
    pid: u32,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<u64>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let peak = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss_kib(pid));
            tokio::select! {
                _ = &mut stopped => return peak,
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    });
    (stop, peak)
}

/// The address (`HOST:PORT`) and the path with query of a URL on `daemon`.
fn addr_and_path<'a>(daemon: &'a Daemon, url: &'a str) -> (&'a str, &'a str) {
    let addr = daemon.base.trim_start_matches("http://");
    let path = url.strip_prefix(&daemon.base).expect("a URL on the daemon");
    (addr, path)
}

/// The config of the preview floods: a cap far below the flood, a short
/// write timeout, two users' worth of previews per user.
fn flood_toml() -> String {
    format!(
        "max_concurrent_previews = 16\nmax_concurrent_previews_per_user = 12\n\
         [server]\nstream_write_timeout = \"{}s\"\n",
        STALL.as_secs()
    )
}

/// Checks a refused preview: 429 `busy` with `Retry-After`, as JSON.
fn assert_busy(status: u16, retry: &str, body: &[u8]) {
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(body));
    assert_eq!(retry, "1");
    let json: Value = serde_json::from_slice(body).expect("a JSON error");
    assert_eq!(json["error"]["code"], "busy", "{json}");
}

/// An honest user's image is previewed whole after a flood.
async fn honest_preview_works(daemon: &Daemon) {
    let image = png(256 * 1024, 99);
    let url = uploaded(daemon, "carol", &image).await;
    let (status, _, body) = fetch(&reqwest::Client::new(), &url).await;
    assert_eq!(status, 200);
    assert!(body == image, "carol's preview is her image");
}

/// 300 previews at once over HTTP/1 (150 of each of two owners' 10 MiB
/// images, signed URLs, no bearer): each is streamed whole or refused with
/// 429 at once, the daemon never holds an image per request, and an honest
/// user's preview works afterwards.
async fn a_preview_flood_over_http1_is_capped_and_bounded(backend: Backend) {
    let daemon = daemon(backend, &flood_toml()).await;
    let ann = png(IMAGE_BYTES, 1);
    let bob = png(IMAGE_BYTES, 2);
    let urls = [
        uploaded(&daemon, "ann", &ann).await,
        uploaded(&daemon, "bob", &bob).await,
    ];
    let idle = rss_kib(daemon.pid());
    let (stop, peak) = watch_rss(daemon.pid());
    let client = reqwest::Client::new();
    let mut asked = tokio::task::JoinSet::new();
    for n in 0..FLOOD {
        let (client, url) = (client.clone(), urls[n % 2].clone());
        asked.spawn(async move { (n % 2, fetch(&client, &url).await) });
    }
    let (mut whole, mut refused) = (0, 0);
    while let Some(answer) = asked.join_next().await {
        let (owner, (status, retry, body)) = answer.expect("a preview");
        if status == 200 {
            assert!(
                body == [&ann, &bob][owner][..],
                "a preview is its image, whole"
            );
            whole += 1;
        } else {
            assert_busy(status, &retry, &body);
            refused += 1;
        }
    }
    drop(stop);
    let peak = peak.await.expect("peak");
    eprintln!(
        "{backend:?} HTTP/1 flood: {whole} whole, {refused} refused; RSS idle {} MiB, peak {} MiB",
        idle / 1024,
        peak / 1024
    );
    assert!(whole >= 16, "at least a cap's worth streamed: {whole}");
    assert!(refused > 0, "previews over the cap are refused");
    assert!(
        peak < FLOOD_RSS_BOUND_KIB,
        "RSS peaked at {} MiB (idle {} MiB)",
        peak / 1024,
        idle / 1024
    );
    honest_preview_works(&daemon).await;
    daemon.stop().await;
}

/// 300 previews over three HTTP/2 connections that never grant a window
/// update: the streams over the cap get 429 at once; those admitted each
/// hold a chunk, not an image; the daemon closes the connections once
/// nothing was taken for the write timeout, which frees every slot.
async fn a_preview_flood_over_http2_without_window_is_bounded(backend: Backend) {
    let daemon = daemon(backend, &flood_toml()).await;
    let image = png(IMAGE_BYTES, 3);
    let url = uploaded(&daemon, "ann", &image).await;
    let (addr, path) = addr_and_path(&daemon, &url);
    let idle = rss_kib(daemon.pid());
    let (stop, peak) = watch_rss(daemon.pid());
    let mut connections = Vec::new();
    let mut held = Vec::new();
    let (mut admitted, mut refused) = (0, 0);
    for _ in 0..3 {
        let tcp = TcpStream::connect(addr).await.expect("connects");
        let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
        let connection = tokio::spawn(connection);
        let admitted_before = admitted;
        let mut responses = Vec::new();
        for _ in 0..FLOOD / 3 {
            let mut client = client.clone().ready().await.expect("ready");
            let request = http::Request::get(format!("http://{addr}{path}"))
                .body(())
                .expect("request");
            let (response, _) = client.send_request(request, true).expect("sent");
            responses.push(response);
        }
        for response in responses {
            let response = tokio::time::timeout(Duration::from_secs(30), response)
                .await
                .expect("answered in time")
                .expect("a response");
            if response.status() == 200 {
                admitted += 1;
            } else {
                assert_eq!(response.status(), 429);
                refused += 1;
            }
            // Held, never read and never released: no window update.
            held.push(response.into_body());
        }
        // A connection whose answers were all refused holds nothing: its
        // bodies were sent whole, and it closes when idle like any other.
        if admitted > admitted_before {
            connections.push(connection);
        }
    }
    // One owner: her cap, held until the connections close.
    assert_eq!(admitted, 12, "previews admitted at once");
    assert_eq!(admitted + refused, FLOOD);
    // The daemon closes the connections whose admitted streams take nothing.
    let started = Instant::now();
    for connection in connections {
        let closed = tokio::time::timeout(STALL + Duration::from_secs(10), connection).await;
        assert!(
            closed.is_ok(),
            "a connection granting no window stays open:\n{}",
            daemon.log()
        );
    }
    let closed_after = started.elapsed();
    drop(stop);
    let peak = peak.await.expect("peak");
    eprintln!(
        "{backend:?} HTTP/2 flood: {admitted} admitted, {refused} refused; RSS idle {} MiB, \
         peak {} MiB; connections closed {closed_after:?} after the last answer",
        idle / 1024,
        peak / 1024
    );
    assert!(
        peak < FLOOD_RSS_BOUND_KIB,
        "RSS peaked at {} MiB (idle {} MiB)",
        peak / 1024,
        idle / 1024
    );
    drop(held);
    // The slots are free again: a whole preview of the same image.
    let (status, _, body) = fetch(&reqwest::Client::new(), &url).await;
    assert_eq!(status, 200);
    assert!(body == image, "the preview is the image, whole");
    honest_preview_works(&daemon).await;
    daemon.stop().await;
}

/// Starts an upload of `announced` bytes to `url` on a raw connection,
/// sends `sent` of them and returns the socket, which then stalls.
async fn start_upload(daemon: &Daemon, url: &str, announced: usize, sent: &[u8]) -> TcpStream {
    let (addr, path) = addr_and_path(daemon, url);
    let mut socket = TcpStream::connect(addr).await.expect("connects");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {announced}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("head sent");
    socket.write_all(sent).await.expect("start sent");
    socket
}

/// The status line's code of the answer on `socket`, read within `limit`.
async fn status_within(
    socket: &mut tokio::net::tcp::OwnedReadHalf,
    limit: Duration,
) -> Option<u16> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(limit, async {
        while !head.windows(2).any(|w| w == b"\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()?;
    String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
}

/// One upload slot in all, held by an upload that sends 4 bytes of 10 MiB
/// and stalls: another user's upload is refused at once, then succeeds
/// within seconds (the idle timeout), not five minutes; the staller gets
/// 408. One that trickles a byte at a time, never idle for long, is ended
/// by the least rate just as fast.
async fn a_stalled_or_trickling_upload_frees_its_slot_in_seconds(backend: Backend) {
    let daemon = daemon(
        backend,
        "max_concurrent_uploads = 1\nupload_idle_timeout = \"1s\"\n\
         upload_min_bytes_per_second = 1024\n",
    )
    .await;
    let small = png(4096, 5);
    for trickle in [false, true] {
        let stalled = create(&daemon, "ann", IMAGE_BYTES).await;
        let started = Instant::now();
        let socket = start_upload(&daemon, &upload_url(&stalled), IMAGE_BYTES, b"\x89PNG").await;
        let (mut answer, mut body) = socket.into_split();
        let trickler = tokio::spawn(async move {
            // A byte every half second: never idle for the timeout.
            while trickle && body.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // The stalled one keeps its socket open.
            std::future::pending::<()>().await;
        });
        // Time for the daemon to check the stalled upload and give it the slot.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let bobs = create(&daemon, "bob", small.len()).await;
        let (status, body) = upload(&upload_url(&bobs), small.clone()).await;
        assert_eq!(status, 429, "bob's upload while ann holds the slot: {body}");
        let mut done = None;
        while started.elapsed() < Duration::from_secs(30) {
            let (status, body) = upload(&upload_url(&bobs), small.clone()).await;
            if status == 200 {
                done = Some(started.elapsed());
                break;
            }
            assert_eq!(status, 429, "{body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let held = done.expect("bob's upload never got the slot");
        eprintln!(
            "{backend:?}: a {} upload held the slot {held:?}",
            if trickle { "trickling" } else { "stalled" }
        );
        assert!(held < Duration::from_secs(5), "the slot was held {held:?}");
        assert_eq!(
            status_within(&mut answer, Duration::from_secs(5)).await,
            Some(408),
            "the stalled upload is told it timed out"
        );
        trickler.abort();
    }
    daemon.stop().await;
}

/// Two uploads per user: ann's third while two of hers stall is refused
/// with 429, while bob uploads at once.
async fn one_user_is_held_to_the_per_user_upload_cap(backend: Backend) {
    let daemon = daemon(
        backend,
        "max_concurrent_uploads_per_user = 2\nupload_idle_timeout = \"10s\"\n",
    )
    .await;
    let small = png(4096, 6);
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let created = create(&daemon, "ann", IMAGE_BYTES).await;
        stalled.push(start_upload(&daemon, &upload_url(&created), IMAGE_BYTES, b"\x89PNG").await);
    }
    // Time for the daemon to check both and give them their slots.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = create(&daemon, "ann", small.len()).await;
    let (status, body) = upload(&upload_url(&third), small.clone()).await;
    assert_eq!(status, 429, "ann's third upload: {body}");
    assert_eq!(body["error"]["code"], "busy", "{body}");
    let bobs = create(&daemon, "bob", small.len()).await;
    let (status, body) = upload(&upload_url(&bobs), small.clone()).await;
    assert_eq!(status, 200, "bob uploads while ann is at her cap: {body}");
    drop(stalled);
    // Her slots come back when her stalled uploads go away.
    let uploaded = eventually(Duration::from_secs(5), || async {
        upload(&upload_url(&third), small.clone()).await.0 == 200
    })
    .await;
    assert!(uploaded, "ann's upload after hers went away");
    daemon.stop().await;
}

/// Previews on signed URLs, with no bearer, take from the owner's bucket:
/// once it is empty they get 429 `rate_limited`, and so do the owner's
/// signed uploads and bearer requests; another user is not affected.
async fn signed_urls_count_against_their_owners_rate(backend: Backend) {
    let daemon = daemon(
        backend,
        "[limits]\nrequests_per_minute_per_user = 2\nburst = 8\n",
    )
    .await;
    let image = png(4096, 7);
    // Two of ann's eight: the create and the signed upload.
    let url = uploaded(&daemon, "ann", &image).await;
    // One more: an attachment to upload once her bucket is empty.
    let pending = create(&daemon, "ann", image.len()).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, retry, body) = fetch(&client, &url).await;
        if status == 429 {
            assert!(!retry.is_empty(), "429 without Retry-After");
            let json: Value = serde_json::from_slice(&body).expect("a JSON error");
            assert_eq!(json["error"]["code"], "rate_limited", "{json}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let (status, body) = upload(&upload_url(&pending), image.clone()).await;
    assert_eq!(status, 429, "a signed upload of hers: {body}");
    let (status, _) = daemon
        .post_as(&token("ann"), json!({"type": "threads.list", "params": {}}))
        .await;
    assert_eq!(status, 429, "her bearer requests share the bucket");
    let (status, body) = daemon
        .post_as(&token("bob"), json!({"type": "threads.list", "params": {}}))
        .await;
    assert_eq!(status, 200, "bob is not affected: {body}");
    daemon.stop().await;
}

/// Sixteen 10 MiB uploads at once, then quiet: the memory they took is
/// handed back to the OS at once (large blocks are mapped on their own and
/// unmapped by whichever thread frees them), not kept at its peak by a
/// worker thread that parked right after the burst.
async fn memory_is_handed_back_after_a_burst(backend: Backend) {
    let daemon = daemon(backend, "max_concurrent_uploads_per_user = 16\n").await;
    let images: Vec<Vec<u8>> = (0..16).map(|n| png(IMAGE_BYTES, 10 + n)).collect();
    let mut urls = Vec::new();
    for _ in &images {
        urls.push(upload_url(&create(&daemon, "ann", IMAGE_BYTES).await));
    }
    let idle = rss_kib(daemon.pid());
    let (stop, peak) = watch_rss(daemon.pid());
    let mut uploads = tokio::task::JoinSet::new();
    for (url, image) in urls.into_iter().zip(images) {
        uploads.spawn(async move { upload(&url, image).await });
    }
    while let Some(done) = uploads.join_next().await {
        let (status, body) = done.expect("an upload");
        assert_eq!(status, 200, "{body}");
    }
    drop(stop);
    let peak = peak.await.expect("peak");
    let started = Instant::now();
    let handed_back = eventually(Duration::from_secs(10), || async {
        rss_kib(daemon.pid()) < idle + 32 * 1024
    })
    .await;
    let after = rss_kib(daemon.pid());
    eprintln!(
        "{backend:?} upload burst: RSS idle {} MiB, peak {} MiB, {} MiB {:?} later",
        idle / 1024,
        peak / 1024,
        after / 1024,
        started.elapsed()
    );
    assert!(
        handed_back,
        "RSS still {} MiB 10 s after a peak of {} MiB (idle {} MiB)",
        after / 1024,
        peak / 1024,
        idle / 1024
    );
    daemon.stop().await;
}

/// On Postgres, where the bytes pass through the daemon's own allocator
/// only (on SQLite, each pooled connection's thread keeps some of what
/// SQLite allocated, bounded by the pool's size).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_handed_back_after_a_burst_on_postgres() {
    memory_is_handed_back_after_a_burst(Backend::Postgres).await;
}

both_backends!(
    a_preview_flood_over_http1_is_capped_and_bounded,
    a_preview_flood_over_http2_without_window_is_bounded,
    a_stalled_or_trickling_upload_frees_its_slot_in_seconds,
    one_user_is_held_to_the_per_user_upload_cap,
    signed_urls_count_against_their_owners_rate,
);
