//! The ChatKit protocol over real HTTP, request type by request type, on both
//! backends: what a client sends, what it sees on the wire, what ends up
//! stored, and what the model is asked.
//!
//! Why one file: each file under `tests/` is its own test binary, linked
//! against the whole daemon; this suite's scenarios share their fixtures,
//! and splitting them would add binaries to build and link in every CI run
//! without making any one scenario easier to find (each is a named test).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use chatkitd::config::ClientToolConfig;
use chatkitd::protocol::{IdKind, ThreadItem, ThreadMetadata, ThreadStatus, Timestamp, new_id};
use chatkitd::store::Store;
use chatkitd_testkit::Script;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::{Backend, Daemon, add_message_body, create_body, user_input};

/// The system prompt when no instructions file is configured
/// (`Config::system_prompt` with the default agent name).
const DEFAULT_SYSTEM_PROMPT: &str = "You are Assistant, a helpful assistant.";

/// The user every request acts as (`auth.mode = "none"`, default `dev_user`).
const DEV_USER: &str = "dev";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A response read without assuming its shape.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    content_type: String,
    body: Value,
    text: String,
}

/// POSTs raw bytes and keeps the status, the content type and the body.
async fn post_bytes(daemon: &Daemon, body: impl Into<Vec<u8>>) -> RawResponse {
    let answer = daemon.post_raw_as(None, body.into()).await;
    RawResponse {
        status: answer.status,
        content_type: answer.header("content-type"),
        body: answer.json,
        text: answer.text,
    }
}

/// POSTs a JSON document, see [`post_bytes`].
async fn post_json(daemon: &Daemon, body: Value) -> RawResponse {
    post_bytes(daemon, serde_json::to_vec(&body).expect("json")).await
}

/// Asserts the error shape chatkitd answers before any stream starts:
/// `status`, `application/json`, and exactly `{"error":{"code","message"}}`
/// with a message that mentions `mentions`.
fn assert_error(response: &RawResponse, status: u16, code: &str, mentions: &str) {
    assert_eq!(
        (response.status, response.content_type.as_str()),
        (status, "application/json"),
        "answer: {}",
        response.text
    );
    let message = response.body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {}", response.text))
        .to_owned();
    assert_eq!(
        response.body,
        json!({"error": {"code": code, "message": message}})
    );
    assert!(
        message.contains(mentions),
        "error message {message:?} should mention {mentions:?}"
    );
}

/// Checks that a `created_at` is chatkitd's UTC form, e.g.
/// `2026-11-23T23:06:46.605090Z`, and returns it.
fn timestamp_of(value: &Value) -> String {
    let text = value["created_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no created_at in {value}"))
        .to_owned();
    assert!(
        text.len() == 27 && text.ends_with('Z') && Timestamp::parse(&text).is_some(),
        "created_at {text:?} is not UTC with microseconds"
    );
    text
}

fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

fn ids(values: &[Value]) -> Vec<String> {
    values.iter().map(id_of).collect()
}

/// An `output_text` part.
fn output_text(text: &str) -> Value {
    json!({"annotations": [], "text": text, "type": "output_text"})
}

/// A stored assistant message as the wire carries it.
fn assistant_item(id: &str, thread_id: &str, created_at: &str, text: &str) -> Value {
    json!({
        "id": id,
        "thread_id": thread_id,
        "created_at": created_at,
        "type": "assistant_message",
        "content": [output_text(text)],
    })
}

/// The events of one plain-text answer streamed in `chunks`: added (empty
/// content), part added, one delta per chunk, part done, item done.
fn answer_events(item_id: &str, thread_id: &str, created_at: &str, chunks: &[&str]) -> Vec<Value> {
    let text = chunks.concat();
    let mut events = vec![
        json!({"type": "thread.item.added", "item": {
            "id": item_id, "thread_id": thread_id, "created_at": created_at,
            "type": "assistant_message", "content": [],
        }}),
        json!({"type": "thread.item.updated", "item_id": item_id, "update": {
            "type": "assistant_message.content_part.added", "content_index": 0, "content": output_text(""),
        }}),
    ];
    events.extend(chunks.iter().map(|delta| {
        json!({"type": "thread.item.updated", "item_id": item_id, "update": {
            "type": "assistant_message.content_part.text_delta", "content_index": 0, "delta": delta,
        }})
    }));
    events.push(json!({"type": "thread.item.updated", "item_id": item_id, "update": {
        "type": "assistant_message.content_part.done", "content_index": 0, "content": output_text(&text),
    }}));
    events.push(json!({"type": "thread.item.done", "item": assistant_item(item_id, thread_id, created_at, &text)}));
    events
}

/// The first `thread.item.added` of a stream: the assistant message being streamed.
fn added_item(streamed: &support::Streamed) -> Value {
    streamed
        .events
        .iter()
        .find(|e| e["type"] == "thread.item.added")
        .map(|e| e["item"].clone())
        .unwrap_or_else(|| panic!("no thread.item.added in {}", streamed.raw))
}

/// A thread as every response but `get_by_id` carries it: an empty items page.
fn listed_thread(id: &str, created_at: &str, title: Option<&str>) -> Value {
    let mut thread = json!({
        "id": id,
        "created_at": created_at,
        "status": {"type": "active"},
        "metadata": {},
        "items": {"data": [], "has_more": false},
    });
    if let Some(title) = title {
        thread["title"] = json!(title);
    }
    thread
}

/// A chat-completions message.
fn chat(role: &str, content: &str) -> Value {
    json!({"role": role, "content": content})
}

/// Follows `after` from the first page to the last with pages of `limit`,
/// checking the page rules on the way (full pages until the last, `after` =
/// last id exactly when `has_more`); returns the ids in the order visited.
async fn walk_pages(daemon: &Daemon, kind: &str, params: Value, limit: usize) -> Vec<String> {
    let mut params = params;
    params["limit"] = json!(limit);
    let mut visited = Vec::new();
    for _ in 0..1000 {
        let (status, page) = daemon
            .post(json!({"type": kind, "params": params.clone()}))
            .await;
        assert_eq!(status, 200, "{kind} {params}: {page}");
        let data = page["data"].as_array().expect("data").clone();
        visited.extend(ids(&data));
        if page["has_more"] == json!(true) {
            assert_eq!(data.len(), limit, "a page before the last is full: {page}");
            assert_eq!(
                page["after"],
                json!(id_of(data.last().expect("non-empty"))),
                "`after` is the last id of the page: {page}"
            );
            params["after"] = page["after"].clone();
        } else {
            assert_eq!(page["has_more"], json!(false), "{page}");
            assert!(
                page.get("after").is_none(),
                "`after` only when has_more: {page}"
            );
            assert!(data.len() <= limit, "{page}");
            return visited;
        }
    }
    panic!("{kind} never reached its last page");
}

/// Inserts a thread straight into the store, bypassing the daemon and the model.
async fn seed_thread(daemon: &Daemon) -> String {
    let store = daemon.store().await;
    let thread = ThreadMetadata::new(new_id(IdKind::Thread), Timestamp::now());
    store
        .create_thread(DEV_USER, &thread)
        .await
        .expect("thread");
    store.close().await;
    thread.id
}

/// Appends an item straight into the store.
async fn seed_item(daemon: &Daemon, thread_id: &str, id: &str, item: Value) -> ThreadItem {
    let mut item = item;
    item["id"] = json!(id);
    item["thread_id"] = json!(thread_id);
    item["created_at"] = json!(Timestamp::now().to_string());
    let item: ThreadItem = serde_json::from_value(item).expect("a valid item");
    let store = daemon.store().await;
    store.add_item(DEV_USER, &item).await.expect("item added");
    store.close().await;
    item
}

/// Feedback rows `(item_id, kind)` read straight from the database.
async fn stored_feedback(daemon: &Daemon) -> Vec<(String, String)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&daemon.store_url)
        .await
        .expect("database");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT item_id, kind FROM feedback ORDER BY item_id")
            .fetch_all(&pool)
            .await
            .expect("feedback rows");
    pool.close().await;
    rows
}

fn threads_list(params: Value) -> Value {
    json!({"type": "threads.list", "params": params})
}

fn items_list(params: Value) -> Value {
    json!({"type": "items.list", "params": params})
}

// ---------------------------------------------------------------------------
// 1. threads.create
// ---------------------------------------------------------------------------

async fn create_streams_the_reference_event_order_and_stores_what_it_streamed(backend: Backend) {
    // The composer's choices below must be offered, or the message is a 400.
    let daemon = Daemon::start_with(backend, |config| {
        config.llm.models = vec!["fake-model".into(), "gpt-test".into()];
        config.client_tools.insert(
            "shopping_list".into(),
            ClientToolConfig {
                description: "The user's shopping list.".into(),
                parameters: json!({"type": "object", "properties": {}}),
            },
        );
    })
    .await;
    let chunks = ["Milk, ", "eggs ", "and bread."];
    daemon.llm.push(Script::text(chunks));
    daemon
        .llm
        .push_unary(Script::text(["Groceries for the week"]));

    // A message with everything a JSON encoder can get wrong.
    let text = "Grüße, 日本語 ✓ — \"quoted\" and back\\slash\nsecond line";
    let content = json!([{"type": "input_text", "text": text}]);
    let inference_options = json!({"tool_choice": {"id": "shopping_list"}, "model": "gpt-test"});
    let streamed = daemon
        .stream(json!({"type": "threads.create", "params": {"input": {
            "content": content,
            "attachments": [],
            "quoted_text": "what do we need?",
            "inference_options": inference_options,
        }}}))
        .await;
    assert_eq!(
        (streamed.status, streamed.content_type.as_str()),
        (200, "text/event-stream"),
        "{}",
        streamed.raw
    );

    // The ids and timestamps are the server's; everything else is fixed.
    let thread = &streamed.events[0]["thread"];
    let thread_id = id_of(thread);
    assert!(thread_id.starts_with("thr_"), "{thread_id}");
    let thread_created = timestamp_of(thread);
    let user = &streamed.events[1]["item"];
    let user_id = id_of(user);
    assert!(user_id.starts_with("msg_"), "{user_id}");
    let user_created = timestamp_of(user);
    let answer = added_item(&streamed);
    let answer_id = id_of(&answer);
    assert!(answer_id.starts_with("msg_"), "{answer_id}");
    let answer_created = timestamp_of(&answer);

    let user_item = json!({
        "id": user_id,
        "thread_id": thread_id,
        "created_at": user_created,
        "type": "user_message",
        "content": content,
        "attachments": [],
        "quoted_text": "what do we need?",
        "inference_options": inference_options,
    });
    let mut expected = vec![
        json!({"type": "thread.created", "thread": listed_thread(&thread_id, &thread_created, None)}),
        json!({"type": "thread.item.done", "item": user_item}),
        json!({"type": "stream_options", "stream_options": {"allow_cancel": true}}),
    ];
    expected.extend(answer_events(
        &answer_id,
        &thread_id,
        &answer_created,
        &chunks,
    ));
    expected.push(json!({"type": "thread.updated", "thread": listed_thread(
        &thread_id, &thread_created, Some("Groceries for the week"),
    )}));
    assert_eq!(streamed.events, expected);

    // Framed as the reference frames it: one compact `data:` line per event,
    // nothing else, non-ASCII characters written as themselves.
    let frames: Vec<&str> = streamed.raw.split_terminator("\n\n").collect();
    assert_eq!(frames.len(), expected.len(), "{}", streamed.raw);
    for frame in &frames {
        assert!(
            frame.starts_with("data: {") && !frame.contains('\n') && !frame.contains("\": "),
            "not a compact data line: {frame:?}"
        );
    }
    assert!(streamed.raw.ends_with("\n\n"));
    let encoded = serde_json::to_string(text).expect("json");
    assert!(
        streamed.raw.contains(&encoded),
        "{encoded} not found verbatim in {}",
        streamed.raw
    );

    // What was streamed as done is exactly what is listed.
    let listed = daemon.items(&thread_id).await;
    assert_eq!(listed, streamed.done_items());

    let (status, fetched) = daemon.get_thread(&thread_id).await;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(
        fetched,
        json!({
            "title": "Groceries for the week",
            "id": thread_id,
            "created_at": thread_created,
            "status": {"type": "active"},
            "metadata": {},
            "items": {"data": listed, "has_more": false},
        })
    );
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 2. The model's input
// ---------------------------------------------------------------------------

async fn the_model_reads_the_real_transcript(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    daemon
        .llm
        .push(Script::text(["Paris is the ", "capital of France."]));
    daemon.llm.push(Script::text(["About 2.1 million."]));

    let (thread_id, _) = daemon.create_thread("What is the capital of France?").await;
    let second = daemon
        .add_message(&thread_id, "And how many people live there?")
        .await;
    assert_eq!(second.answer().as_deref(), Some("About 2.1 million."));

    let streamed = daemon.llm.stream_requests();
    assert_eq!(streamed.len(), 2);
    assert_eq!(
        streamed[0].messages(),
        [
            chat("system", DEFAULT_SYSTEM_PROMPT),
            chat("user", "What is the capital of France?"),
        ]
    );
    assert_eq!(
        streamed[1].messages(),
        [
            chat("system", DEFAULT_SYSTEM_PROMPT),
            chat("user", "What is the capital of France?"),
            chat("assistant", "Paris is the capital of France."),
            chat("user", "And how many people live there?"),
        ]
    );
    daemon.stop().await;
}

async fn a_configured_instructions_file_is_the_system_message(backend: Backend) {
    let prompts = tempfile::tempdir().expect("temp dir");
    let instructions = "You are Pip, the pantry helper.\nAnswer in one short line.\n";
    std::fs::write(prompts.path().join("pip.md"), instructions).expect("instructions written");
    // A relative path resolves against the configuration's directory.
    let base_dir = prompts.path().to_path_buf();
    let daemon = Daemon::start_with(backend, move |config| {
        config.base_dir = base_dir;
        config.agent.instructions = Some(PathBuf::from("pip.md"));
    })
    .await;

    let (_, streamed) = daemon.create_thread("Do we have rice?").await;
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Hello! You said: Do we have rice?")
    );
    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].messages(),
        [
            chat("system", instructions),
            chat("user", "Do we have rice?")
        ]
    );
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Titles
// ---------------------------------------------------------------------------

async fn a_title_is_generated_once_after_the_first_exchange(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    daemon
        .llm
        .push_unary(Script::text(["Groceries for the week"]));

    let (thread_id, first) = daemon
        .create_thread("What should I buy for the week?")
        .await;
    let last = first.events.last().expect("events");
    assert_eq!(last["type"], "thread.updated", "{}", first.raw);
    assert_eq!(last["thread"]["title"], "Groceries for the week");

    // The title request went out once, about the first message.
    let unary = daemon.llm.unary_requests();
    assert_eq!(unary.len(), 1);
    assert_eq!(
        unary[0].last_user_text().as_deref(),
        Some("What should I buy for the week?")
    );

    let second = daemon.add_message(&thread_id, "Add coffee too.").await;
    assert_eq!(second.status, 200, "{}", second.raw);
    assert!(
        !second.types().contains(&"thread.updated".to_owned()),
        "{:?}",
        second.types()
    );
    assert_eq!(
        daemon.llm.unary_requests().len(),
        1,
        "no title for the second message"
    );

    let (_, fetched) = daemon.get_thread(&thread_id).await;
    assert_eq!(fetched["title"], "Groceries for the week");
    daemon.stop().await;
}

async fn a_rename_while_the_first_answer_streams_beats_the_generated_title(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    daemon.llm.push(Script::Text {
        chunks: vec!["Slow ".into(), "answer ".into(), "here.".into()],
        delay: Duration::from_millis(300),
    });
    daemon.llm.push_unary(Script::Slow {
        chunks: vec!["Generated title".into()],
        first_token_delay: Duration::from_millis(1500),
        delay: Duration::ZERO,
    });

    let create = daemon.stream(create_body("plan my week"));
    let rename = async {
        // Both the answer and the title are being generated.
        daemon
            .llm
            .wait_for_requests(2, Duration::from_secs(10))
            .await;
        let (status, page) = daemon.post(threads_list(json!({}))).await;
        assert_eq!(status, 200, "{page}");
        let thread_id = id_of(&page["data"][0]);
        let items_at_rename = daemon.items(&thread_id).await;
        let (status, renamed) = daemon
            .post(json!({"type": "threads.update", "params": {"thread_id": thread_id, "title": "My week"}}))
            .await;
        assert_eq!(status, 200, "{renamed}");
        (thread_id, items_at_rename, renamed)
    };
    let (streamed, (thread_id, items_at_rename, renamed)) = tokio::join!(create, rename);

    // The rename really happened mid-answer: only the user message was stored.
    assert_eq!(
        items_at_rename
            .iter()
            .map(|i| i["type"].clone())
            .collect::<Vec<_>>(),
        [json!("user_message")]
    );
    let created = timestamp_of(&streamed.events[0]["thread"]);
    assert_eq!(
        renamed,
        listed_thread(&thread_id, &created, Some("My week"))
    );

    // The generated title arrived later and was dropped: no thread.updated.
    assert_eq!(streamed.status, 200, "{}", streamed.raw);
    assert_eq!(streamed.answer().as_deref(), Some("Slow answer here."));
    assert!(
        !streamed.types().contains(&"thread.updated".to_owned()),
        "{:?}",
        streamed.types()
    );
    assert_eq!(
        streamed.events.last().map(|e| e["type"].clone()),
        Some(json!("thread.item.done"))
    );
    assert_eq!(daemon.llm.unary_requests().len(), 1);
    let (_, fetched) = daemon.get_thread(&thread_id).await;
    assert_eq!(fetched["title"], "My week");
    daemon.stop().await;
}

async fn title_generation_can_be_turned_off(backend: Backend) {
    let daemon = Daemon::start_with(backend, |config| {
        config.agent.title_generation = false;
    })
    .await;
    let (thread_id, streamed) = daemon.create_thread("What should I buy?").await;
    assert!(
        !streamed.types().contains(&"thread.updated".to_owned()),
        "{:?}",
        streamed.types()
    );
    assert_eq!(daemon.llm.unary_requests().len(), 0);
    assert_eq!(daemon.llm.stream_requests().len(), 1);
    let (_, fetched) = daemon.get_thread(&thread_id).await;
    assert_eq!(fetched.get("title"), None, "{fetched}");
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 4. threads.list
// ---------------------------------------------------------------------------

async fn threads_list_pages_newest_first_and_validates_its_params(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let mut threads = Vec::new();
    for n in 1..=5 {
        let (_, streamed) = daemon.create_thread(&format!("Thread number {n}")).await;
        let updated = streamed.events.last().expect("events");
        assert_eq!(updated["type"], "thread.updated", "{}", streamed.raw);
        threads.push(updated["thread"].clone());
    }
    let oldest_first = ids(&threads);
    let newest_first: Vec<String> = oldest_first.iter().rev().cloned().collect();

    // Default: newest first, every thread with an empty items page.
    let (status, page) = daemon.post(threads_list(json!({}))).await;
    assert_eq!(status, 200, "{page}");
    let mut expected: Vec<Value> = threads.iter().rev().cloned().collect();
    assert_eq!(page, json!({"data": expected.clone(), "has_more": false}));
    expected.reverse();
    let (_, page) = daemon.post(threads_list(json!({"order": "asc"}))).await;
    assert_eq!(page, json!({"data": expected, "has_more": false}));

    // Paging visits every thread exactly once, in either order.
    for limit in [1, 2, 3] {
        assert_eq!(
            walk_pages(&daemon, "threads.list", json!({}), limit).await,
            newest_first,
            "desc, limit {limit}"
        );
        assert_eq!(
            walk_pages(&daemon, "threads.list", json!({"order": "asc"}), limit).await,
            oldest_first,
            "asc, limit {limit}"
        );
    }
    let (_, page) = daemon.post(threads_list(json!({"limit": 2}))).await;
    assert_eq!(
        (
            ids(page["data"].as_array().expect("data")),
            &page["has_more"],
            &page["after"]
        ),
        (
            newest_first[..2].to_vec(),
            &json!(true),
            &json!(newest_first[1])
        )
    );

    // Bad params are refused.
    let negative = post_json(&daemon, threads_list(json!({"limit": -1}))).await;
    assert_error(&negative, 400, "invalid_request", "limit");
    let unknown_after =
        post_json(&daemon, threads_list(json!({"after": "thr_doesnotexist"}))).await;
    assert_error(&unknown_after, 400, "invalid_request", "thr_doesnotexist");

    // With 125 threads: no limit or 0 means 20, huge limits are capped at 100.
    let store = daemon.store().await;
    for _ in 0..120 {
        let thread = ThreadMetadata::new(new_id(IdKind::Thread), Timestamp::now());
        store
            .create_thread(DEV_USER, &thread)
            .await
            .expect("thread");
    }
    store.close().await;
    for (params, expected_len) in [
        (json!({}), 20),
        (json!({"limit": 0}), 20),
        (json!({"limit": null}), 20),
        (json!({"limit": 1000}), 100),
        (json!({"limit": 100}), 100),
    ] {
        let (status, page) = daemon.post(threads_list(params.clone())).await;
        assert_eq!(status, 200, "{params}: {page}");
        let data = page["data"].as_array().expect("data");
        assert_eq!(
            (data.len(), &page["has_more"], &page["after"]),
            (
                expected_len,
                &json!(true),
                &json!(id_of(&data[expected_len - 1]))
            ),
            "{params}"
        );
    }
    let everything = walk_pages(&daemon, "threads.list", json!({"order": "asc"}), 100).await;
    assert_eq!(everything.len(), 125);
    assert_eq!(everything[..5], oldest_first[..]);
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 5. items.list
// ---------------------------------------------------------------------------

async fn items_list_pages_visible_items_only(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let (thread_id, _) = daemon.create_thread("first question").await;
    seed_item(
        &daemon,
        &thread_id,
        "hci_between_turns",
        json!({"type": "hidden_context_item", "content": {"note": "between turns"}}),
    )
    .await;
    daemon.add_message(&thread_id, "second question").await;
    seed_item(
        &daemon,
        &thread_id,
        "hci_at_the_end",
        json!({"type": "hidden_context_item", "content": "at the end"}),
    )
    .await;

    // The store holds six items; the client sees four.
    let stored: Vec<String> = daemon
        .stored_items(DEV_USER, &thread_id)
        .await
        .iter()
        .map(|i| i.type_name().to_owned())
        .collect();
    assert_eq!(
        stored,
        [
            "user_message",
            "assistant_message",
            "hidden_context_item",
            "user_message",
            "assistant_message",
            "hidden_context_item"
        ]
    );
    let visible = daemon.items(&thread_id).await;
    assert_eq!(
        visible
            .iter()
            .map(|i| i["type"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        [
            "user_message",
            "assistant_message",
            "user_message",
            "assistant_message"
        ]
    );
    let oldest_first = ids(&visible);
    let newest_first: Vec<String> = oldest_first.iter().rev().cloned().collect();

    // Default order is newest first.
    let (status, page) = daemon
        .post(items_list(json!({"thread_id": thread_id})))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut reversed = visible.clone();
    reversed.reverse();
    assert_eq!(page, json!({"data": reversed, "has_more": false}));

    for limit in [1, 2, 3] {
        assert_eq!(
            walk_pages(
                &daemon,
                "items.list",
                json!({"thread_id": thread_id}),
                limit
            )
            .await,
            newest_first,
            "desc, limit {limit}"
        );
        assert_eq!(
            walk_pages(
                &daemon,
                "items.list",
                json!({"thread_id": thread_id, "order": "asc"}),
                limit
            )
            .await,
            oldest_first,
            "asc, limit {limit}"
        );
    }

    // get_by_id embeds the visible items oldest first, hidden ones left out.
    let (_, fetched) = daemon.get_thread(&thread_id).await;
    assert_eq!(
        fetched["items"],
        json!({"data": visible, "has_more": false})
    );

    // An unknown cursor is refused, and so is an unknown thread.
    let unknown_after = post_json(
        &daemon,
        items_list(json!({"thread_id": thread_id, "after": "msg_doesnotexist"})),
    )
    .await;
    assert_error(&unknown_after, 400, "invalid_request", "msg_doesnotexist");
    let unknown_thread = post_json(
        &daemon,
        items_list(json!({"thread_id": "thr_doesnotexist"})),
    )
    .await;
    assert_error(&unknown_thread, 404, "not_found", "thr_doesnotexist");
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 6. threads.retry_after_item
// ---------------------------------------------------------------------------

async fn retry_answers_a_user_message_again_and_forgets_what_followed(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    daemon.llm.push(Script::text(["First ", "answer."]));
    daemon.llm.push(Script::text(["Second answer."]));
    let (thread_id, _) = daemon.create_thread("first question").await;
    daemon.add_message(&thread_id, "second question").await;
    let before = daemon.items(&thread_id).await;
    assert_eq!(before.len(), 4);
    let first_question = before[0].clone();
    seed_item(
        &daemon,
        &thread_id,
        "hci_after_the_second_answer",
        json!({"type": "hidden_context_item", "content": "context for the next turn"}),
    )
    .await;
    assert_eq!(daemon.stored_items(DEV_USER, &thread_id).await.len(), 5);

    let chunks = ["Better ", "first ", "answer."];
    daemon.llm.push(Script::text(chunks));
    let retried = daemon
        .stream(json!({"type": "threads.retry_after_item", "params": {
            "thread_id": thread_id, "item_id": id_of(&first_question),
        }}))
        .await;
    assert_eq!(retried.status, 200, "{}", retried.raw);

    // stream_options, then the new answer only: no user message, no removals.
    let answer = added_item(&retried);
    let answer_id = id_of(&answer);
    assert!(!ids(&before).contains(&answer_id));
    let mut expected =
        vec![json!({"type": "stream_options", "stream_options": {"allow_cancel": true}})];
    expected.extend(answer_events(
        &answer_id,
        &thread_id,
        &timestamp_of(&answer),
        &chunks,
    ));
    assert_eq!(retried.events, expected);

    // Everything after the first question is gone, hidden or not; it is untouched.
    let after = daemon.items(&thread_id).await;
    assert_eq!(
        after,
        [first_question.clone(), retried.done_items()[0].clone()]
    );
    assert_eq!(daemon.stored_items(DEV_USER, &thread_id).await.len(), 2);

    // The model was asked about the first question only.
    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[2].messages(),
        [
            chat("system", DEFAULT_SYSTEM_PROMPT),
            chat("user", "first question")
        ]
    );

    // Only a user message can be retried; nothing is deleted otherwise.
    let retry = |item_id: &str, thread: &str| json!({"type": "threads.retry_after_item", "params": {"thread_id": thread, "item_id": item_id}});
    let on_answer = post_json(&daemon, retry(&answer_id, &thread_id)).await;
    assert_error(&on_answer, 400, "invalid_request", &answer_id);
    let unknown_item = post_json(&daemon, retry("msg_doesnotexist", &thread_id)).await;
    assert_error(&unknown_item, 404, "not_found", "msg_doesnotexist");
    let unknown_thread =
        post_json(&daemon, retry(&id_of(&first_question), "thr_doesnotexist")).await;
    assert_error(&unknown_thread, 404, "not_found", "thr_doesnotexist");
    assert_eq!(daemon.items(&thread_id).await, after);
    assert_eq!(daemon.llm.stream_requests().len(), 3);
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 7. threads.delete
// ---------------------------------------------------------------------------

async fn a_deleted_thread_is_gone_everywhere(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let (doomed, _) = daemon.create_thread("delete me").await;
    let (kept, _) = daemon.create_thread("keep me").await;

    let deleted = post_json(
        &daemon,
        json!({"type": "threads.delete", "params": {"thread_id": doomed}}),
    )
    .await;
    assert_eq!(
        (
            deleted.status,
            deleted.content_type.as_str(),
            deleted.text.as_str()
        ),
        (200, "application/json", "{}")
    );

    let get = post_json(
        &daemon,
        json!({"type": "threads.get_by_id", "params": {"thread_id": doomed}}),
    )
    .await;
    assert_error(&get, 404, "not_found", &doomed);
    let list = post_json(&daemon, items_list(json!({"thread_id": doomed}))).await;
    assert_error(&list, 404, "not_found", &doomed);
    let add = post_json(&daemon, add_message_body(&doomed, "hello?")).await;
    assert_error(&add, 404, "not_found", &doomed);
    let rename = post_json(
        &daemon,
        json!({"type": "threads.update", "params": {"thread_id": doomed, "title": "too late"}}),
    )
    .await;
    assert_error(&rename, 404, "not_found", &doomed);
    let again = post_json(
        &daemon,
        json!({"type": "threads.delete", "params": {"thread_id": doomed}}),
    )
    .await;
    assert_error(&again, 404, "not_found", &doomed);

    let (_, page) = daemon.post(threads_list(json!({}))).await;
    assert_eq!(ids(page["data"].as_array().expect("data")), [kept.as_str()]);
    assert_eq!(
        daemon.stored_items(DEV_USER, &doomed).await,
        Vec::<ThreadItem>::new()
    );
    assert_eq!(daemon.items(&kept).await.len(), 2);
    // The message to the deleted thread never reached the model.
    assert_eq!(daemon.llm.stream_requests().len(), 2);
    daemon.stop().await;
}

/// A locked or closed thread refuses new messages with its reason, and
/// nothing is stored or sent to the model; it answers again once active.
async fn a_locked_thread_refuses_messages_and_stores_nothing(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let (thread_id, _) = daemon.create_thread("hello").await;
    let store = daemon.store().await;
    let mut thread = store
        .load_thread(DEV_USER, &thread_id)
        .await
        .expect("thread");
    for status in [
        ThreadStatus::Locked {
            reason: Some("archived by an admin".into()),
        },
        ThreadStatus::Closed { reason: None },
    ] {
        thread.status = status;
        store.save_thread(DEV_USER, &thread).await.expect("saved");
        let add = post_json(&daemon, add_message_body(&thread_id, "anyone there?")).await;
        assert_error(&add, 409, "conflict", "does not accept messages");
        if matches!(thread.status, ThreadStatus::Locked { .. }) {
            assert!(add.text.contains("archived by an admin"), "{}", add.text);
        }
    }
    assert_eq!(daemon.stored_items(DEV_USER, &thread_id).await.len(), 2);
    assert_eq!(daemon.llm.stream_requests().len(), 1);

    thread.status = ThreadStatus::Active;
    store.save_thread(DEV_USER, &thread).await.expect("saved");
    store.close().await;
    let answered = daemon.add_message(&thread_id, "back again").await;
    assert!(answered.error().is_none(), "{:?}", answered.types());
    assert_eq!(daemon.stored_items(DEV_USER, &thread_id).await.len(), 4);
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 8. items.feedback
// ---------------------------------------------------------------------------

async fn feedback_is_stored_for_known_items_only(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let (thread_id, streamed) = daemon.create_thread("rate me").await;
    let items = streamed.done_items();
    let (question, answer) = (id_of(&items[0]), id_of(&items[1]));
    let feedback = |thread: &str, item_ids: Value, kind: &str| json!({"type": "items.feedback", "params": {"thread_id": thread, "item_ids": item_ids, "kind": kind}});

    for kind in ["positive", "negative"] {
        let response = post_json(&daemon, feedback(&thread_id, json!([answer]), kind)).await;
        assert_eq!(
            (
                response.status,
                response.content_type.as_str(),
                response.text.as_str()
            ),
            (200, "application/json", "{}"),
            "{kind}"
        );
    }
    // The second vote replaced the first.
    assert_eq!(
        stored_feedback(&daemon).await,
        [(answer.clone(), "negative".to_owned())]
    );

    // One unknown id refuses the whole request: the known one is not stored either.
    let unknown_item = post_json(
        &daemon,
        feedback(
            &thread_id,
            json!([question, "msg_doesnotexist"]),
            "positive",
        ),
    )
    .await;
    assert_error(&unknown_item, 404, "not_found", "msg_doesnotexist");
    let unknown_thread = post_json(
        &daemon,
        feedback("thr_doesnotexist", json!([answer]), "positive"),
    )
    .await;
    assert_error(&unknown_thread, 404, "not_found", "thr_doesnotexist");
    let bad_kind = post_json(&daemon, feedback(&thread_id, json!([answer]), "meh")).await;
    assert_error(&bad_kind, 400, "invalid_request", "items.feedback");
    assert_eq!(
        stored_feedback(&daemon).await,
        [(answer.clone(), "negative".to_owned())]
    );
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 9. Malformed requests
// ---------------------------------------------------------------------------

async fn malformed_requests_get_precise_json_errors_and_never_reach_the_model(backend: Backend) {
    let daemon = Daemon::start_with(backend, |config| {
        config.server.max_body_bytes = 4096;
    })
    .await;
    // A thread whose last item is a user message: no client tool call is pending.
    let thread_id = seed_thread(&daemon).await;
    let question = seed_item(
        &daemon,
        &thread_id,
        "msg_seeded_question",
        json!({"type": "user_message", "content": [{"type": "input_text", "text": "hi"}],
               "attachments": [], "inference_options": {}}),
    )
    .await;

    let bad_request = "invalid_request";
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        ("invalid JSON", b"{not json".to_vec(), 400, bad_request, "JSON"),
        ("empty body", Vec::new(), 400, bad_request, "JSON"),
        ("JSON array", b"[]".to_vec(), 400, bad_request, "object"),
        (
            "unknown type",
            br#"{"type":"threads.explode","params":{}}"#.to_vec(),
            400,
            bad_request,
            "threads.explode",
        ),
        (
            "missing params",
            br#"{"type":"threads.list"}"#.to_vec(),
            400,
            bad_request,
            "params",
        ),
        (
            "numeric thread_id",
            br#"{"type":"threads.get_by_id","params":{"thread_id":123}}"#.to_vec(),
            400,
            bad_request,
            "threads.get_by_id",
        ),
        (
            "order sideways",
            br#"{"type":"threads.list","params":{"order":"sideways"}}"#.to_vec(),
            400,
            bad_request,
            "threads.list",
        ),
        (
            "create without input",
            br#"{"type":"threads.create","params":{}}"#.to_vec(),
            400,
            bad_request,
            "input",
        ),
        (
            "an unknown attachment in the input",
            serde_json::to_vec(&json!({"type": "threads.create", "params": {"input": {
                "content": [{"type": "input_text", "text": "see attached"}],
                "attachments": ["atc_0123"], "inference_options": {},
            }}}))
            .expect("json"),
            404,
            "not_found",
            "atc_0123",
        ),
        (
            "attachments.create of a type not allowed",
            br#"{"type":"attachments.create","params":{"name":"a.exe","size":10,"mime_type":"application/x-msdownload"}}"#.to_vec(),
            400,
            bad_request,
            "allowed types",
        ),
        (
            "attachments.delete of an unknown id",
            br#"{"type":"attachments.delete","params":{"attachment_id":"atc_0123"}}"#.to_vec(),
            404,
            "not_found",
            "atc_0123",
        ),
        (
            "input.transcribe",
            br#"{"type":"input.transcribe","params":{"audio_base64":"AAAA","mime_type":"audio/webm"}}"#.to_vec(),
            501,
            "not_implemented",
            "transcription",
        ),
        (
            "custom action on an unknown thread",
            br#"{"type":"threads.custom_action","params":{"thread_id":"thr_doesnotexist","action":{"type":"x","payload":{}}}}"#.to_vec(),
            404,
            "not_found",
            "thr_doesnotexist",
        ),
        (
            "client tool output without a pending call",
            serde_json::to_vec(&json!({"type": "threads.add_client_tool_output",
                "params": {"thread_id": thread_id, "result": {"ok": true}}}))
            .expect("json"),
            400,
            bad_request,
            "pending",
        ),
        (
            "a body over max_body_bytes",
            serde_json::to_vec(&json!({"type": "threads.create",
                "params": {"input": user_input(&"x".repeat(10_000))}}))
            .expect("json"),
            413,
            "payload_too_large",
            "4096",
        ),
    ];
    for (case, body, status, code, mentions) in cases {
        let response = post_bytes(&daemon, body).await;
        assert!(
            response.status == status,
            "{case}: expected {status}, got {} {}",
            response.status,
            response.text
        );
        assert_error(&response, status, code, mentions);
    }

    // Nothing reached the model, and nothing was created or changed.
    assert_eq!(daemon.llm.requests().len(), 0);
    let (status, page) = daemon.post(threads_list(json!({}))).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        ids(page["data"].as_array().expect("data")),
        [thread_id.as_str()]
    );
    assert_eq!(daemon.stored_items(DEV_USER, &thread_id).await, [question]);

    // And the daemon still answers normally.
    let (_, streamed) = daemon.create_thread("still there?").await;
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Hello! You said: still there?")
    );
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 10. Unknown fields
// ---------------------------------------------------------------------------

async fn unknown_fields_are_ignored_at_every_level(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let streamed = daemon
        .stream(json!({
            "type": "threads.create",
            "future_envelope_field": {"x": 1},
            "metadata": {"anything": ["goes"]},
            "params": {
                "future_param": true,
                "input": {
                    "content": [{"type": "input_text", "text": "hello", "future_part_field": 7}],
                    "attachments": [],
                    "inference_options": {"future_option": "on"},
                    "future_input_field": null,
                },
            },
        }))
        .await;
    assert_eq!(streamed.status, 200, "{}", streamed.raw);
    let thread_id = id_of(&streamed.events[0]["thread"]);
    let user = &streamed.done_items()[0];
    assert_eq!(
        user,
        &json!({
            "id": id_of(user), "thread_id": thread_id, "created_at": timestamp_of(user),
            "type": "user_message",
            "content": [{"type": "input_text", "text": "hello"}],
            "attachments": [],
            "inference_options": {},
        })
    );
    assert_eq!(streamed.answer().as_deref(), Some("Hello! You said: hello"));

    let next = daemon
        .stream(json!({
            "type": "threads.add_user_message", "extra": 1,
            "params": {"thread_id": thread_id, "extra": 2, "input": {
                "content": [{"type": "input_text", "text": "again", "extra": 3}],
                "attachments": [], "inference_options": {}, "extra": 4,
            }},
        }))
        .await;
    assert_eq!(next.answer().as_deref(), Some("Hello! You said: again"));
    let (status, page) = daemon
        .post(json!({"type": "items.list", "extra": 1, "params": {"thread_id": thread_id, "order": "asc", "extra": 2}}))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"], json!(daemon.items(&thread_id).await));
    let (status, page) = daemon
        .post(json!({"type": "threads.list", "params": {"extra": 2}, "extra": 1}))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(page["data"].as_array().expect("data")), [thread_id]);
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 11. @-mentions
// ---------------------------------------------------------------------------

async fn an_input_tag_reaches_the_model_as_a_mention_with_its_data(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let content = json!([
        {"type": "input_text", "text": "Please email "},
        {"type": "input_tag", "id": "user_42", "text": "Ann Lee",
         "data": {"email": "ann@example.com", "team": "ops"}, "group": "People", "interactive": true},
        {"type": "input_text", "text": " about the launch."},
    ]);
    let streamed = daemon
        .stream(json!({"type": "threads.create", "params": {"input": {
            "content": content, "attachments": [], "inference_options": {},
        }}}))
        .await;
    assert_eq!(streamed.status, 200, "{}", streamed.raw);
    let thread_id = id_of(&streamed.events[0]["thread"]);
    // The tag is stored and echoed as sent.
    assert_eq!(streamed.done_items()[0]["content"], content);

    let mention = "Please email @Ann Lee about the launch.\n\nMentioned entities:\n\
                   @Ann Lee: {\"email\":\"ann@example.com\",\"team\":\"ops\"}";
    let requests = daemon.llm.stream_requests();
    assert_eq!(
        requests[0].messages(),
        [chat("system", DEFAULT_SYSTEM_PROMPT), chat("user", mention)]
    );

    // A tag without data is just the mention; its data defaults to {}.
    let next = daemon
        .stream(json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": {
            "content": [{"type": "input_text", "text": "cc "}, {"type": "input_tag", "id": "user_7", "text": "Bo"}],
            "attachments": [], "inference_options": {},
        }}}))
        .await;
    assert_eq!(
        next.done_items()[0]["content"],
        json!([
            {"type": "input_text", "text": "cc "},
            {"type": "input_tag", "id": "user_7", "text": "Bo", "data": {}, "interactive": false},
        ])
    );
    let requests = daemon.llm.stream_requests();
    assert_eq!(requests[1].messages().last(), Some(&chat("user", "cc @Bo")));
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// 1b. Control characters
// ---------------------------------------------------------------------------

async fn control_characters_in_a_message_survive_the_round_trip(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    // U+0000 is valid JSON (`\u0000`) but PostgreSQL cannot store it, so the
    // daemon replaces it with U+FFFD on both backends alike, in the echo, the
    // store and the model's input; every other control character is kept.
    let text = "nul:\u{0} unit-separator:\u{1f} delete:\u{7f} end";
    let kept = "nul:\u{FFFD} unit-separator:\u{1f} delete:\u{7f} end";
    let streamed = daemon.stream(create_body(text)).await;
    assert_eq!(streamed.status, 200, "{}", streamed.raw);
    let thread_id = id_of(&streamed.events[0]["thread"]);
    let done = streamed.done_items();
    assert_eq!(
        done[0]["content"],
        json!([{"type": "input_text", "text": kept}])
    );
    let echoed = format!("Hello! You said: {kept}");
    assert_eq!(streamed.answer(), Some(echoed.clone()));
    assert_eq!(daemon.items(&thread_id).await, done);
    assert_eq!(
        daemon.llm.stream_requests()[0].last_user_text().as_deref(),
        Some(kept)
    );
    daemon.stop().await;
}

/// Voice input: the audio reaches the model service's
/// `/audio/transcriptions` as a multipart upload with the configured model
/// and a file name that tells its format; the text comes back; bad input is
/// a precise 400 before any call, a failing service a 502, and a server
/// without a transcription model says how to enable it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_transcribe_round_trips_and_refuses_bad_audio() {
    use base64::Engine;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let daemon = Daemon::start_with(Backend::Sqlite, |config| {
        config.llm.transcription_model = Some("fake-transcribe".into());
        config.llm.max_audio_bytes = 2048;
    })
    .await;
    let transcribe = |audio: String, mime: &str| json!({"type": "input.transcribe", "params": {"audio_base64": audio, "mime_type": mime}});
    let audio = b"\x1aE\xdf\xa3 fake webm bytes".to_vec();
    let (status, body) = daemon
        .post(transcribe(encode(&audio), "audio/webm;codecs=opus"))
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"text": chatkitd_testkit::fake_llm::TRANSCRIBED})
        )
    );
    let sent = daemon.llm.transcription_requests();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .content_type
            .starts_with("multipart/form-data; boundary="),
        "{}",
        sent[0].content_type
    );
    assert_eq!(sent[0].authorization.as_deref(), Some("Bearer test-key"));
    let text = sent[0].body_text();
    assert!(
        text.contains("name=\"model\"\r\n\r\nfake-transcribe\r\n"),
        "{text}"
    );
    assert!(text.contains("filename=\"audio.webm\""), "{text}");
    assert!(text.contains("Content-Type: audio/webm\r\n"), "{text}");
    assert!(
        sent[0]
            .body
            .windows(audio.len())
            .any(|w| w == audio.as_slice()),
        "the audio bytes, unchanged"
    );

    daemon.llm.push_transcription(Err(500));
    let (status, body) = daemon.post(transcribe(encode(&audio), "audio/ogg")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (502, json!("upstream_failed")),
        "{body}"
    );

    for (request, expected) in [
        (
            transcribe("not base64!".into(), "audio/webm"),
            "not valid base64",
        ),
        (transcribe(encode(&audio), "video/mp4"), "not supported"),
        (transcribe(encode(&[0; 4096]), "audio/mp4"), "at most 2048"),
        (transcribe(String::new(), "audio/webm"), "empty"),
    ] {
        let (status, body) = daemon.post(request.clone()).await;
        assert_eq!(status, 400, "{request}: {body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(
        daemon.llm.transcription_requests().len(),
        2,
        "no call for refused input"
    );
    daemon.stop().await;

    let plain = Daemon::start(Backend::Sqlite).await;
    let (status, body) = plain.post(transcribe(encode(&audio), "audio/webm")).await;
    assert_eq!(status, 501, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("transcription_model")
    );
    plain.stop().await;
}

// ---------------------------------------------------------------------------
// The model's thinking
// ---------------------------------------------------------------------------

/// The `thread.item.updated` events of one workflow, as
/// `(update type, task index, thought)`.
fn thought_updates(streamed: &support::Streamed, workflow_id: &str) -> Vec<(String, u64, String)> {
    streamed
        .events
        .iter()
        .filter(|e| e["type"] == "thread.item.updated" && e["item_id"] == workflow_id)
        .map(|e| {
            let update = &e["update"];
            assert_eq!(update["task"]["type"], "thought", "{update}");
            (
                update["type"].as_str().unwrap_or_default().to_owned(),
                update["task_index"].as_u64().unwrap_or(u64::MAX),
                update["task"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// A reasoning model's thinking (`reasoning_content` deltas) streams as a
/// `reasoning` workflow of thoughts, one per paragraph, closed with its
/// duration before the answer's message starts; it is stored and listed,
/// and not sent back to a chat-completions model on the next turn.
async fn reasoning_streams_as_a_workflow_of_thoughts_before_the_answer(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    daemon.llm.push(Script::Thinking {
        field: "reasoning_content",
        reasoning: vec![
            "The user".to_owned(),
            " greets me.\n".to_owned(),
            "\nI will".to_owned(),
            " greet back.".to_owned(),
        ],
        chunks: vec!["Hi".to_owned(), " there!".to_owned()],
        calls: Vec::new(),
    });
    let (thread_id, streamed) = daemon.create_thread("hello").await;
    let types = streamed.types();
    let added = &streamed.events[types
        .iter()
        .position(|t| t == "thread.item.added")
        .expect("an item added")];
    assert_eq!(added["item"]["type"], "workflow", "{}", streamed.raw);
    assert_eq!(
        added["item"]["workflow"],
        json!({"type": "reasoning", "tasks": [], "expanded": false})
    );
    let workflow_id = added["item"]["id"].as_str().expect("an id").to_owned();
    let update = |kind: &str, index: u64, text: &str| {
        (format!("workflow.task.{kind}"), index, text.to_owned())
    };
    assert_eq!(
        thought_updates(&streamed, &workflow_id),
        [
            update("added", 0, "The user"),
            update("updated", 0, "The user greets me."),
            update("added", 1, "I will"),
            update("updated", 1, "I will greet back."),
        ]
    );
    let done = streamed.done_items();
    // The user's message, the thinking, then the answer.
    assert_eq!(done.len(), 3, "{}", streamed.raw);
    assert_eq!(done[1]["id"], workflow_id.as_str());
    let workflow = &done[1]["workflow"];
    assert_eq!(workflow["type"], "reasoning");
    assert_eq!(workflow["expanded"], false);
    assert!(workflow["summary"]["duration"].is_u64(), "{workflow}");
    assert_eq!(
        workflow["tasks"],
        json!([
            {"type": "thought", "status_indicator": "none", "content": "The user greets me."},
            {"type": "thought", "status_indicator": "none", "content": "I will greet back."},
        ])
    );
    // The workflow is done before the message is even added.
    let workflow_done = streamed
        .events
        .iter()
        .position(|e| e["type"] == "thread.item.done" && e["item"]["id"] == workflow_id.as_str())
        .expect("the workflow done");
    let message_added = streamed
        .events
        .iter()
        .position(|e| e["type"] == "thread.item.added" && e["item"]["type"] == "assistant_message")
        .expect("the message added");
    assert!(workflow_done < message_added, "{}", streamed.raw);
    assert_eq!(streamed.answer().as_deref(), Some("Hi there!"));

    // Stored as sent, listed between the question and the answer.
    let stored = daemon.stored_values(DEV_USER, &thread_id).await;
    assert_eq!(stored, done);
    let listed: Vec<Value> = daemon.items(&thread_id).await;
    assert_eq!(listed, done);

    // The next turn's model request leaves the thinking out.
    daemon.add_message(&thread_id, "again").await;
    let requests = daemon.llm.stream_requests();
    assert_eq!(
        requests[1].messages(),
        [
            chat("system", DEFAULT_SYSTEM_PROMPT),
            chat("user", "hello"),
            chat("assistant", "Hi there!"),
            chat("user", "again"),
        ]
    );
    daemon.stop().await;
}

/// OpenRouter's and Ollama's `reasoning` field shows the same way; with
/// `[agent] show_reasoning = false` nothing of the thinking is shown or
/// stored, and the answer is unchanged.
async fn reasoning_under_its_other_name_and_show_reasoning_off(backend: Backend) {
    let script = || Script::Thinking {
        field: "reasoning",
        reasoning: vec!["Short.".to_owned()],
        chunks: vec!["Answer.".to_owned()],
        calls: Vec::new(),
    };
    let daemon = Daemon::start(backend).await;
    daemon.llm.push(script());
    let (_, streamed) = daemon.create_thread("hello").await;
    let done = streamed.done_items();
    assert_eq!(done[1]["workflow"]["tasks"][0]["content"], "Short.");
    assert_eq!(streamed.answer().as_deref(), Some("Answer."));
    daemon.stop().await;

    let daemon = Daemon::start_with(backend, |config| config.agent.show_reasoning = false).await;
    daemon.llm.push(script());
    let (thread_id, streamed) = daemon.create_thread("hello").await;
    assert!(
        !streamed.raw.contains("workflow"),
        "no thinking shown: {}",
        streamed.raw
    );
    assert_eq!(streamed.answer().as_deref(), Some("Answer."));
    let stored: Vec<String> = daemon
        .stored_items(DEV_USER, &thread_id)
        .await
        .iter()
        .map(|i| i.type_name().to_owned())
        .collect();
    assert_eq!(stored, ["user_message", "assistant_message"]);
    daemon.stop().await;
}

/// A stream cut while the model thinks keeps the thinking shown so far,
/// stored and done, then ends with an `error` event; a chunk that carries
/// the last thought and the first text shows them in that order.
async fn thinking_cut_short_is_kept_and_a_mixed_chunk_keeps_its_order(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let thought = |text: &str| {
        json!({"choices": [{"index": 0, "delta": {"reasoning_content": text}}]}).to_string()
    };
    daemon.llm.push(Script::Raw {
        events: vec![thought("Weighing"), thought(" the options")],
    });
    let (thread_id, streamed) = daemon.create_thread("decide").await;
    let done = streamed.done_items();
    assert_eq!(done.len(), 2, "{}", streamed.raw);
    assert_eq!(
        done[1]["workflow"]["tasks"][0]["content"],
        "Weighing the options"
    );
    assert!(streamed.error().is_some(), "{}", streamed.raw);
    assert_eq!(daemon.stored_values(DEV_USER, &thread_id).await, done);

    daemon.llm.push(Script::Raw {
        events: vec![
            thought("Maybe."),
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": " Yes.", "content": "Yes, then."}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string(),
            "[DONE]".to_owned(),
        ],
    });
    let streamed = daemon.add_message(&thread_id, "again").await;
    let kinds: Vec<String> = streamed
        .done_items()
        .iter()
        .map(|i| i["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, ["user_message", "workflow", "assistant_message"]);
    assert_eq!(
        streamed.done_items()[1]["workflow"]["tasks"][0]["content"],
        "Maybe. Yes."
    );
    assert_eq!(streamed.answer().as_deref(), Some("Yes, then."));
    daemon.stop().await;
}

both_backends!(
    reasoning_streams_as_a_workflow_of_thoughts_before_the_answer,
    reasoning_under_its_other_name_and_show_reasoning_off,
    thinking_cut_short_is_kept_and_a_mixed_chunk_keeps_its_order,
    create_streams_the_reference_event_order_and_stores_what_it_streamed,
    control_characters_in_a_message_survive_the_round_trip,
    the_model_reads_the_real_transcript,
    a_configured_instructions_file_is_the_system_message,
    a_title_is_generated_once_after_the_first_exchange,
    a_rename_while_the_first_answer_streams_beats_the_generated_title,
    title_generation_can_be_turned_off,
    threads_list_pages_newest_first_and_validates_its_params,
    items_list_pages_visible_items_only,
    retry_answers_a_user_message_again_and_forgets_what_followed,
    a_deleted_thread_is_gone_everywhere,
    a_locked_thread_refuses_messages_and_stores_nothing,
    feedback_is_stored_for_known_items_only,
    malformed_requests_get_precise_json_errors_and_never_reach_the_model,
    unknown_fields_are_ignored_at_every_level,
    an_input_tag_reaches_the_model_as_a_mention_with_its_data,
);
