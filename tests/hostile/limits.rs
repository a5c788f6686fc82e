//! Size limits: oversized messages, listing pages and feedback lists are
//! refused or capped before anything is stored or buffered; an oversized
//! newest message never reaches the model; concurrent feedback writers on one
//! SQLite file all succeed; runs beyond the operator's cap get 429 at once.

use std::time::Duration;

use chatkitd::store::Store;
use chatkitd_testkit::Script;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, Daemon, add_message_body, create_body};

/// The number of rows of a table in the daemon's database.
async fn count_rows(daemon: &Daemon, table: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&daemon.store_url)
        .await
        .expect("database connects");
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    count
}

/// The error message of a refused request.
fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn oversized_messages_are_refused_before_storage(backend: Backend) {
    let daemon = Daemon::binary(backend, "[limits]\nmax_message_chars = 1000\n").await;
    // Characters, not bytes: 1000 two-byte characters fit.
    daemon.llm.push(Script::text(["ok"]));
    let (thread_id, streamed) = daemon.create_thread(&"é".repeat(1000)).await;
    assert_eq!(streamed.answer().as_deref(), Some("ok"));
    let stored_before = daemon.stored_items("dev", &thread_id).await;
    assert_eq!(stored_before.len(), 2, "{stored_before:?}");

    let (status, body) = daemon.post(create_body(&"x".repeat(1001))).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("at most 1000 characters"), "{body}");
    assert!(message(&body).contains("got 1001"), "{body}");
    assert_eq!(
        count_rows(&daemon, "threads").await,
        1,
        "no thread for a refused message"
    );

    let (status, body) = daemon
        .post(add_message_body(&thread_id, &"x".repeat(5000)))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("at most 1000 characters"), "{body}");

    // The quoted text counts with the typed text.
    let quoted = json!({
        "type": "threads.add_user_message",
        "params": {"thread_id": thread_id, "input": {
            "content": [{"type": "input_text", "text": "y".repeat(600)}],
            "quoted_text": "q".repeat(600),
            "attachments": [], "inference_options": {}
        }}
    });
    let (status, body) = daemon.post(quoted).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("got 1200"), "{body}");

    // A client tool output is stored too, so it is bounded the same way.
    let output = json!({
        "type": "threads.add_client_tool_output",
        "params": {"thread_id": thread_id, "result": {"blob": "z".repeat(2000)}}
    });
    let (status, body) = daemon.post(output).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("at most 1000 characters"), "{body}");

    assert_eq!(daemon.stored_items("dev", &thread_id).await, stored_before);
    assert_eq!(
        daemon.llm.stream_requests().len(),
        1,
        "refusals reach no model"
    );
    daemon.stop().await;
}

/// One page of `items.list`, ascending, after `after`.
async fn items_page(daemon: &Daemon, thread_id: &str, after: Option<&str>) -> (Value, usize) {
    let (status, page) = daemon
        .post(json!({"type": "items.list", "params": {
            "thread_id": thread_id, "limit": 100, "order": "asc", "after": after
        }}))
        .await;
    assert_eq!(status, 200, "items.list: {page}");
    let bytes = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|item| item.to_string().len())
        .sum();
    (page, bytes)
}

async fn listing_pages_are_capped_by_bytes(backend: Backend) {
    const CAP: usize = 64 * 1024;
    let daemon = Daemon::binary(
        backend,
        &format!("[limits]\nmax_list_bytes = {CAP}\n[agent]\nhistory_token_budget = 1000000\n"),
    )
    .await;
    daemon.llm.push(Script::text(["ok"]));
    let (thread_id, _) = daemon.create_thread(&"a".repeat(30_000)).await;
    for fill in ["b", "c", "d"] {
        daemon.llm.push(Script::text(["ok"]));
        let streamed = daemon.add_message(&thread_id, &fill.repeat(30_000)).await;
        assert_eq!(streamed.answer().as_deref(), Some("ok"));
    }
    // One item larger than a whole page.
    daemon.llm.push(Script::text(["ok"]));
    daemon.add_message(&thread_id, &"e".repeat(100_000)).await;

    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, bytes) = items_page(&daemon, &thread_id, after.as_deref()).await;
        let ids: Vec<String> = page["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|item| item["id"].as_str().expect("id").to_owned())
            .collect();
        assert!(!ids.is_empty(), "every page makes progress: {page}");
        if ids.len() > 1 {
            assert!(bytes <= CAP, "a page of {bytes} bytes passes the cap");
        }
        let has_more = page["has_more"] == true;
        pages.push((ids.clone(), bytes));
        if !has_more {
            assert_eq!(page["after"], Value::Null);
            break;
        }
        assert_eq!(page["after"].as_str(), ids.last().map(String::as_str));
        after = ids.last().cloned();
        assert!(pages.len() < 20, "pagination ends");
    }
    let counts: Vec<usize> = pages.iter().map(|(ids, _)| ids.len()).collect();
    // [a, ok, b, ok] fit 64 KiB; [c, ok, d, ok] too; e alone; then its answer.
    assert_eq!(counts, vec![4, 4, 1, 1], "{pages:?}");
    assert!(pages[2].1 > CAP, "the oversized item is served alone");
    let listed: Vec<String> = pages.into_iter().flat_map(|(ids, _)| ids).collect();
    let store = daemon.store().await;
    let stored: Vec<String> = store
        .load_history("dev", &thread_id, 100)
        .await
        .expect("history")
        .into_iter()
        .map(|item| item.id)
        .collect();
    store.close().await;
    assert_eq!(listed, stored, "every item once, in order");

    // threads.get_by_id reads its first page of items with the same cap.
    let (status, thread) = daemon.get_thread(&thread_id).await;
    assert_eq!(status, 200, "{thread}");
    assert_eq!(thread["items"]["data"].as_array().map(Vec::len), Some(4));
    assert_eq!(thread["items"]["has_more"], true);
    daemon.stop().await;
}

async fn feedback_lists_are_capped(backend: Backend) {
    let daemon = Daemon::binary(backend, "[limits]\nmax_feedback_items = 3\n").await;
    daemon.llm.push(Script::text(["ok"]));
    let (thread_id, streamed) = daemon.create_thread("hello").await;
    let ids: Vec<String> = streamed
        .done_items()
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let feedback = |item_ids: Vec<String>| {
        json!({"type": "items.feedback", "params": {
            "thread_id": thread_id, "item_ids": item_ids, "kind": "positive"
        }})
    };
    let too_many: Vec<String> = ids.iter().cycle().take(4).cloned().collect();
    let (status, body) = daemon.post(feedback(too_many)).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("at most 3 item ids"), "{body}");
    assert_eq!(count_rows(&daemon, "feedback").await, 0);

    let (status, body) = daemon.post(feedback(vec![ids[1].clone(); 100_000])).await;
    assert_eq!(status, 400, "100k ids are refused at once: {body}");
    assert_eq!(count_rows(&daemon, "feedback").await, 0);

    let (status, body) = daemon.post(feedback(ids.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count_rows(&daemon, "feedback").await, 2);
    daemon.stop().await;
}

async fn an_oversized_newest_message_is_refused_not_sent(backend: Backend) {
    let daemon = Daemon::binary(backend, "[agent]\nhistory_token_budget = 1000\n").await;
    let streamed = daemon.stream(create_body(&"x".repeat(8000))).await;
    assert_eq!(streamed.status, 200, "{}", streamed.raw);
    let error = streamed.error().expect("an error event");
    let text = error["message"].as_str().unwrap_or_default();
    assert!(text.contains("too long"), "{error}");
    assert!(text.contains("at most 1000 fit"), "{error}");
    assert_eq!(error["allow_retry"], false, "{error}");
    assert!(streamed.answer().is_none());
    // Stored as the user sent it (it was within max_message_chars), answered
    // by nothing: no model request, for the answer or a title.
    let stored = daemon.stored_items("dev", streamed.thread_id()).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(daemon.llm.requests().is_empty(), "nothing was sent");
    daemon.stop().await;
}

/// `items.feedback` reads then writes in one transaction; on SQLite a
/// deferred one fails at once with `SQLITE_BUSY_SNAPSHOT` when another writer
/// commits between its read and its write, whatever the busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_feedback_writers_on_sqlite_all_succeed() {
    let daemon = Daemon::binary(Backend::Sqlite, "").await;
    let mut threads = Vec::new();
    for n in 0..3 {
        daemon.llm.push(Script::text(["ok"]));
        let (thread_id, streamed) = daemon.create_thread(&format!("thread {n}")).await;
        let ids: Vec<String> = streamed
            .done_items()
            .iter()
            .map(|item| item["id"].as_str().expect("id").to_owned())
            .collect();
        threads.push((thread_id, ids));
    }
    let requests = (0..60).map(|n| {
        let (thread_id, ids) = &threads[n % threads.len()];
        let kind = if n % 2 == 0 { "positive" } else { "negative" };
        daemon.post(json!({"type": "items.feedback", "params": {
            "thread_id": thread_id, "item_ids": ids, "kind": kind
        }}))
    });
    let answers = futures::future::join_all(requests).await;
    let failed: Vec<&(u16, Value)> = answers
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 60 failed: {failed:?}",
        failed.len()
    );
    assert_eq!(count_rows(&daemon, "feedback").await, 6);
    daemon.stop().await;
}

both_backends!(
    oversized_messages_are_refused_before_storage,
    listing_pages_are_capped_by_bytes,
    feedback_lists_are_capped,
    an_oversized_newest_message_is_refused_not_sent,
    runs_beyond_the_operators_cap_get_429_at_once,
);

/// With an operator's cap on answers streaming at once (`[server]
/// max_concurrent_runs`), a run beyond it is refused at once with 429 and
/// `Retry-After`, whoever asks, and nothing of it is stored; the slot is
/// free again when a run ends.
async fn runs_beyond_the_operators_cap_get_429_at_once(backend: Backend) {
    let daemon = Daemon::binary(backend, "[server]\nmax_concurrent_runs = 1\n").await;
    daemon.llm.push(Script::Text {
        chunks: vec!["word ".to_owned(); 100],
        delay: Duration::from_millis(20),
    });
    let first = {
        let url = daemon.url.clone();
        tokio::spawn(async move {
            crate::support::stream_at(&url, create_body("a long one"), |_| false)
                .await
                .0
        })
    };
    let started = crate::support::eventually(Duration::from_secs(10), || async {
        !daemon.llm.stream_requests().is_empty()
    })
    .await;
    assert!(started, "the first run reached the model");

    let asked = std::time::Instant::now();
    let refused = reqwest::Client::new()
        .post(&daemon.url)
        .json(&create_body("one too many"))
        .send()
        .await
        .expect("answered");
    let took = asked.elapsed();
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = refused.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "too_many_runs", "{body}");
    assert!(message(&body).contains("try again shortly"), "{body}");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");

    let first = first.await.expect("first stream");
    assert_eq!(first.answer().map(|a| a.len()), Some("word ".len() * 100));
    assert_eq!(
        count_rows(&daemon, "threads").await,
        1,
        "nothing of the refused run is stored"
    );
    // The slot is free again.
    let (_, next) = daemon.create_thread("now").await;
    assert_eq!(next.answer().as_deref(), Some("Hello! You said: now"));
    daemon.stop().await;
}
