//! Hostile ids and identities: every request type with ids no server could
//! have issued (NUL, control characters, 10k characters, non-ASCII, another
//! user's real ids), tokens whose `sub` cannot be a user id, a request for
//! someone else's busy thread, and the Postgres lock session killed under
//! running conversations. Each asserts only 4xx answers, no ERROR in the
//! daemon's log, and that honest users meanwhile get every answer.

use std::time::{Duration, Instant};

use chatkitd_testkit::Script;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::both_backends;
use crate::support::{
    self, Backend, Daemon, add_message_body, create_body, hs256_token, start_reading_answer,
    user_input,
};

const SECRET: &str = "hostile-ids-secret-of-at-least-32-bytes";

fn jwt_toml() -> String {
    format!("[auth]\nmode = \"jwt\"\nsecret = \"{SECRET}\"\n")
}

fn token(user: &str) -> String {
    hs256_token(SECRET, user)
}

/// Ids drawn from what an attacker tries first, plus random control
/// characters and random non-alphabet bytes.
fn hostile_ids() -> Vec<String> {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut ids: Vec<String> = [
        "thr_\u{0}",
        "\u{0}",
        "thr_\u{1}\u{2}",
        "thr\r\nx",
        "thr_\u{7f}",
        "thr_é",
        "thr_\u{202e}",
        "../../etc/passwd",
        "thr_%00",
        "thr' OR '1'='1",
        " thr_1",
        "",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    ids.push("t".repeat(10_000));
    ids.push(format!("thr_{}", "\u{0}".repeat(64)));
    for _ in 0..8 {
        let control = char::from(rng.random_range(0u8..0x20));
        let other = *b"!\"#$%&'()*+,./:;<=>?@[\\]^`{|}~"
            .get(rng.random_range(0..30usize))
            .unwrap_or(&b'!') as char;
        ids.push(format!("thr_{control}{}", rng.random_range(0..1000u32)));
        ids.push(format!("msg_{other}{}", rng.random_range(0..1000u32)));
    }
    ids
}

/// One body per request type and id field, with `id` in that field.
fn bodies_with(id: &str, thread: &str, item: &str) -> Vec<Value> {
    let input = user_input("hi");
    let input_with_attachment = json!({
        "content": [{"type": "input_text", "text": "hi"}],
        "attachments": [id],
        "inference_options": {}
    });
    vec![
        json!({"type": "threads.get_by_id", "params": {"thread_id": id}}),
        json!({"type": "threads.delete", "params": {"thread_id": id}}),
        json!({"type": "threads.update", "params": {"thread_id": id, "title": "x"}}),
        json!({"type": "threads.list", "params": {"after": id}}),
        json!({"type": "items.list", "params": {"thread_id": id}}),
        json!({"type": "items.list", "params": {"thread_id": thread, "after": id}}),
        json!({"type": "items.feedback", "params": {"thread_id": id, "item_ids": [item], "kind": "positive"}}),
        json!({"type": "items.feedback", "params": {"thread_id": thread, "item_ids": [item, id], "kind": "negative"}}),
        json!({"type": "threads.add_user_message", "params": {"thread_id": id, "input": input}}),
        json!({"type": "threads.create", "params": {"input": input_with_attachment}}),
        json!({"type": "threads.add_user_message", "params": {"thread_id": thread, "input": input_with_attachment}}),
        json!({"type": "threads.retry_after_item", "params": {"thread_id": id, "item_id": item}}),
        json!({"type": "threads.retry_after_item", "params": {"thread_id": thread, "item_id": id}}),
        json!({"type": "threads.add_client_tool_output", "params": {"thread_id": id, "result": {}}}),
        json!({"type": "threads.add_structured_input", "params": {"thread_id": id, "item_id": item, "input": {}}}),
        json!({"type": "threads.add_structured_input", "params": {"thread_id": thread, "item_id": id, "input": {}}}),
        json!({"type": "threads.custom_action", "params": {"thread_id": id, "item_id": item, "action": {"type": "x"}}}),
        json!({"type": "threads.sync_custom_action", "params": {"thread_id": thread, "item_id": id, "action": {"type": "x"}}}),
        json!({"type": "attachments.delete", "params": {"attachment_id": id}}),
    ]
}

/// The lines of a daemon's log at ERROR level.
fn error_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("ERROR")).collect()
}

/// An honest user's conversation, `turns` messages long; returns how many
/// were answered as the fake model answers.
async fn honest_turns(daemon: &Daemon, user: &str, turns: usize) -> usize {
    let token = token(user);
    let (thread_id, first) = daemon.create_thread_as(&token, "hello").await;
    let mut answered = usize::from(first.answer().as_deref() == Some("Hello! You said: hello"));
    for turn in 1..turns {
        let text = format!("turn {turn}");
        let streamed = daemon
            .stream_as(&token, add_message_body(&thread_id, &text))
            .await;
        if streamed.answer() == Some(format!("Hello! You said: {text}")) {
            answered += 1;
        }
    }
    answered
}

/// Every request type with every hostile id, from an attacker, while two
/// honest users talk: only 4xx (400 for an id no server issues, 404 for
/// another user's real one), no ERROR logged, every honest turn answered.
async fn hostile_ids_are_refused_and_disturb_nobody(backend: Backend) {
    let daemon = Daemon::binary(backend, &jwt_toml()).await;
    let alice = token("alice");
    let (alice_thread, created) = daemon.create_thread_as(&alice, "my secret").await;
    let alice_item = created.done_items()[0]["id"]
        .as_str()
        .expect("an item id")
        .to_owned();
    let mallory = token("mallory");

    let attack = async {
        let mut refused = Vec::new();
        let mut ids = hostile_ids();
        ids.push(alice_thread.clone());
        ids.push(alice_item.clone());
        for id in &ids {
            for body in bodies_with(id, &alice_thread, &alice_item) {
                let (status, answer) = daemon.post_as(&mallory, body.clone()).await;
                refused.push((
                    status,
                    id.chars().take(40).collect::<String>(),
                    body["type"].clone(),
                    answer,
                ));
            }
        }
        refused
    };
    let (refused, bob, carol) = tokio::join!(
        attack,
        honest_turns(&daemon, "bob", 8),
        honest_turns(&daemon, "carol", 8)
    );
    assert_eq!((bob, carol), (8, 8), "honest users lost answers");
    for (status, id, kind, answer) in &refused {
        assert!(
            (400..500).contains(status),
            "{kind} with id {id:?} got {status}: {answer}"
        );
        assert!(
            answer["error"]["message"].is_string(),
            "{kind} with id {id:?}: a JSON error, got {answer}"
        );
        // Another user's real id is simply not found (or refused as a
        // cursor); anything else is refused as no id at all, naming the field.
        if *id == alice_thread || *id == alice_item {
            assert!([400, 404].contains(status), "{kind}: {status} {answer}");
        } else {
            assert_eq!(*status, 400, "{kind} with id {id:?}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("is not an id"), "{kind}: {message}");
        }
    }
    // The same in the attachment routes' path: 400, with a JSON body.
    let client = reqwest::Client::new();
    let long = "t".repeat(10_000);
    for id in [
        "atc_%00",
        "atc_%0A%0D",
        "atc_%FF%FE",
        "..%2F..%2Fetc",
        long.as_str(),
    ] {
        for (method, route) in [
            (reqwest::Method::GET, "preview"),
            (reqwest::Method::POST, "upload"),
        ] {
            let response = client
                .request(method, format!("{}/attachments/{id}/{route}", daemon.url))
                .bearer_auth(&alice)
                .send()
                .await
                .expect("sent");
            let answer = support::Answer::read(response).await;
            assert_eq!(answer.status, 400, "{route} of {id:.40}: {}", answer.text);
            assert!(
                answer.json["error"]["message"].is_string(),
                "{}",
                answer.text
            );
        }
    }
    // Alice's thread is untouched by all of that.
    let items = daemon.stored_items("alice", &alice_thread).await;
    assert_eq!(items.len(), 2, "{items:?}");
    let (status, thread) = daemon
        .post_as(
            &alice,
            json!({"type": "threads.get_by_id", "params": {"thread_id": alice_thread}}),
        )
        .await;
    assert_eq!(status, 200, "{thread}");
    assert_ne!(thread["title"], "x");
    let log = daemon.log();
    assert!(error_lines(&log).is_empty(), "{:?}", error_lines(&log));
    assert!(!log.contains("run lock session"), "{log}");
    daemon.stop().await;
}

/// Tokens whose `sub` cannot be a user id are refused (401) on every
/// request, before any store work: a NUL, a newline, an escape sequence,
/// 300 characters; a 100 KB one is refused too (401, or 431 for the
/// header's size).
async fn unusable_subjects_are_refused(backend: Backend) {
    let daemon = Daemon::binary(backend, &jwt_toml()).await;
    for sub in ["al\u{0}ice", "al\nice", "\u{1b}[31mroot", &"u".repeat(300)] {
        for body in [
            create_body("hi"),
            json!({"type": "threads.list", "params": {}}),
        ] {
            let (status, answer) = daemon.post_as(&token(sub), body).await;
            assert_eq!(status, 401, "sub {sub:?}: {answer}");
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("usable")),
                "{answer}"
            );
        }
    }
    let (status, answer) = daemon
        .post_as(
            &token(&"u".repeat(100_000)),
            json!({"type": "threads.list", "params": {}}),
        )
        .await;
    assert!([401, 431].contains(&status), "{status} {answer}");
    let log = daemon.log();
    assert!(error_lines(&log).is_empty(), "{:?}", error_lines(&log));
    daemon.stop().await;
}

/// Bob's message to Alice's thread while her answer streams is not found
/// at once: it neither waits on her thread's lock nor learns that it is
/// busy; her answer is unaffected.
async fn a_foreign_busy_thread_is_not_found_at_once(backend: Backend) {
    let daemon = Daemon::binary(backend, &jwt_toml()).await;
    let alice = token("alice");
    let (thread_id, _) = daemon.create_thread_as(&alice, "hello").await;
    daemon.llm.push(Script::Text {
        chunks: vec!["word ".to_owned(); 60],
        delay: Duration::from_millis(50),
    });
    let answering = tokio::spawn({
        let url = daemon.url.clone();
        let alice = alice.clone();
        let thread_id = thread_id.clone();
        async move {
            reqwest::Client::new()
                .post(&url)
                .bearer_auth(&alice)
                .json(&add_message_body(&thread_id, "a long one"))
                .send()
                .await
                .expect("sent")
                .text()
                .await
                .expect("read")
        }
    });
    // Her run holds the lock once its first words come.
    assert!(
        support::eventually(Duration::from_secs(5), || async {
            daemon.llm.open_streams() > 0
        })
        .await
    );
    let bob = token("bob");
    for body in [
        add_message_body(&thread_id, "let me in"),
        json!({"type": "threads.add_client_tool_output", "params": {"thread_id": thread_id, "result": 1}}),
        json!({"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": "msg_x"}}),
        json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "action": {"type": "x"}}}),
    ] {
        let started = Instant::now();
        let (status, answer) = daemon.post_as(&bob, body.clone()).await;
        let took = started.elapsed();
        assert!(
            [400, 404].contains(&status),
            "{}: {status} {answer}",
            body["type"]
        );
        assert!(
            !answer.to_string().contains("busy"),
            "the thread's state leaked: {answer}"
        );
        assert!(
            took < Duration::from_secs(1),
            "{} waited {took:?} on her lock",
            body["type"]
        );
    }
    let text = answering.await.expect("her answer");
    assert!(text.contains("word word"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");
    daemon.stop().await;
}

both_backends!(
    hostile_ids_are_refused_and_disturb_nobody,
    unusable_subjects_are_refused,
    a_foreign_busy_thread_is_not_found_at_once,
);

/// NUL thread ids sent in a loop while forty users talk on one Postgres
/// replica: they never reach the lock session (whose batched statement
/// Postgres would refuse, failing the other users' takes with it), so
/// every honest message is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_ids_never_reach_the_lock_session() {
    let daemon = Daemon::binary(Backend::Postgres, &jwt_toml()).await;
    let threads: Vec<(String, String)> = futures::future::join_all((0..40).map(|i| {
        let daemon = &daemon;
        async move {
            let user = format!("user{i}");
            let (thread_id, _) = daemon.create_thread_as(&token(&user), "hi").await;
            (user, thread_id)
        }
    }))
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let attackers = futures::future::join_all((0..4).map(|_| {
        let daemon = &daemon;
        let stop = stop.clone();
        async move {
            let mut sent = 0;
            while !stop.is_cancelled() && sent < 200 {
                let body = add_message_body("thr_\u{0}", "boom");
                let (status, _) = daemon.post_as(&token("mallory"), body).await;
                assert_eq!(status, 400);
                sent += 1;
            }
        }
    }));
    let honest = async {
        let answers = futures::future::join_all(threads.iter().map(|(user, thread_id)| {
            let daemon = &daemon;
            async move {
                let mut ok = 0;
                for turn in 0..5 {
                    let text = format!("turn {turn}");
                    let streamed = daemon
                        .stream_as(&token(user), add_message_body(thread_id, &text))
                        .await;
                    ok +=
                        usize::from(streamed.answer() == Some(format!("Hello! You said: {text}")));
                }
                ok
            }
        }))
        .await;
        stop.cancel();
        answers
    };
    let (answers, _) = tokio::join!(honest, attackers);
    assert_eq!(answers.iter().sum::<usize>(), 200, "{answers:?}");
    let log = daemon.log();
    assert!(!log.contains("run lock session"), "{log}");
    assert!(error_lines(&log).is_empty(), "{:?}", error_lines(&log));
    daemon.stop().await;
}

/// Terminates every lock session of the database (`pg_terminate_backend`),
/// as a failover or an operator would.
async fn kill_lock_sessions(admin: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'chatkitd run locks' AND datname = current_database()",
    )
    .fetch_one(admin)
    .await
    .expect("terminated")
}

/// A slow answer: 80 words, 50 ms apart.
fn slow_answer() -> Script {
    Script::Text {
        chunks: vec!["word ".to_owned(); 80],
        delay: Duration::from_millis(50),
    }
}

/// The lock sessions of two replicas are killed while each streams an
/// answer: each session reconnects and takes its locks back (nobody else
/// held them), both answers finish whole, and the threads take the next
/// message on the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_lock_sessions_take_their_locks_back() {
    let a = Daemon::binary(Backend::Postgres, "").await;
    let b = Daemon::binary_replica(&a, "").await;
    let (on_a, _) = a.create_thread("hello").await;
    let (on_b, _) = b.create_thread("hello").await;
    let mut admin = sqlx::PgConnection::connect(&a.store_url)
        .await
        .expect("admin connects");
    a.llm.push(slow_answer());
    b.llm.push(slow_answer());
    let reading_a = start_reading_answer(&a.url, add_message_body(&on_a, "long")).await;
    let reading_b = start_reading_answer(&b.url, add_message_body(&on_b, "long")).await;
    assert_eq!(kill_lock_sessions(&mut admin).await, 2);
    // Each notices within a quarter of a second and takes its lock back
    // (the race for it with another replica is the test below).
    let reconnected = support::eventually(Duration::from_secs(3), || async {
        [&a, &b]
            .iter()
            .all(|d| d.log().contains("the run lock session reconnected"))
    })
    .await;
    assert!(reconnected, "{}\n{}", a.log(), b.log());
    // While they run, neither thread can be taken by the other replica.
    let (status, answer) = tokio::time::timeout(
        Duration::from_millis(1500),
        b.post(add_message_body(&on_a, "too early")),
    )
    .await
    .unwrap_or((0, Value::Null));
    assert_eq!(
        status,
        0,
        "B answered on A's running thread: {answer}\n{}",
        b.log()
    );
    for reading in [reading_a, reading_b] {
        let (streamed, error) = reading.await.expect("reader");
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            streamed.streamed_text(),
            "word ".repeat(80),
            "{}",
            streamed.raw
        );
    }
    let next = b.add_message(&on_a, "after").await;
    assert_eq!(next.answer().as_deref(), Some("Hello! You said: after"));
    let next = a.add_message(&on_b, "after").await;
    assert_eq!(next.answer().as_deref(), Some("Hello! You said: after"));
    for log in [a.log(), b.log()] {
        assert!(log.contains("the run lock session reconnected"), "{log}");
        assert!(error_lines(&log).is_empty(), "{:?}", error_lines(&log));
    }
    a.stop().await;
    b.stop().await;
}

/// A's lock session is killed and, before it can take its lock back,
/// another session takes the thread: A's run stops at once with an error
/// event and writes nothing more, so two runs never overlap; the thread
/// goes on elsewhere once the other holder lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_lost_to_another_replica_stops_its_run() {
    let a = Daemon::binary(Backend::Postgres, "").await;
    let b = Daemon::binary_replica(&a, "").await;
    let (thread_id, _) = a.create_thread("hello").await;
    let mut admin = sqlx::PgConnection::connect(&a.store_url)
        .await
        .expect("admin connects");
    let mut rival = sqlx::PgConnection::connect(&a.store_url)
        .await
        .expect("rival connects");
    // The killed session may win the race for its lock now and then (it
    // checks its connection every quarter second): try again on a new answer.
    let mut stopped = None;
    for _ in 0..5 {
        a.llm.push(Script::Text {
            chunks: vec!["word ".to_owned(); 200],
            delay: Duration::from_millis(50),
        });
        let reading = start_reading_answer(&a.url, add_message_body(&thread_id, "long")).await;
        kill_lock_sessions(&mut admin).await;
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(&thread_id)
                .fetch_one(&mut rival)
                .await
                .expect("rival tries");
        if taken {
            stopped = Some(reading.await.expect("reader"));
            break;
        }
        let (streamed, _) = reading.await.expect("reader");
        assert!(streamed.error().is_none(), "{}", streamed.raw);
    }
    let (streamed, _) = stopped.expect("the rival took the lock in one of five tries");
    let error = streamed.error().expect("an error event ends A's answer");
    assert!(
        error.to_string().contains("another server took over"),
        "{error}"
    );
    assert!(streamed.streamed_text().len() < "word ".len() * 200);
    // A writes nothing more once stopped.
    let stored = a.stored_items("dev", &thread_id).await.len();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(a.stored_items("dev", &thread_id).await.len(), stored);
    assert!(
        a.log().contains("lost the thread's run lock"),
        "{}",
        a.log()
    );
    // Released by the rival, the thread goes on on B.
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(&thread_id)
        .execute(&mut rival)
        .await
        .expect("released");
    let next = b.add_message(&thread_id, "go on").await;
    assert_eq!(
        next.answer().as_deref(),
        Some("Hello! You said: go on"),
        "{}",
        next.raw
    );
    a.stop().await;
    b.stop().await;
}

/// At the store: a take that meets the killed session is served by the
/// session that replaces it, and a held lock is taken back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_on_a_killed_session_is_served_by_its_replacement() {
    use chatkitd::store::sql::SqlStoreOptions;
    use chatkitd::store::{SqlStore, Store};
    let url = chatkitd_testkit::shared_server()
        .await
        .fresh_database()
        .await;
    let options = SqlStoreOptions {
        lock_timeout: Duration::from_millis(500),
        ..SqlStoreOptions::default()
    };
    let store = SqlStore::connect(&url, &options).await.expect("store");
    store.migrate().await.expect("migrated");
    let held = store.lock_thread("thr_held").await.expect("first take");
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("admin");
    assert_eq!(kill_lock_sessions(&mut admin).await, 1);
    let next = store.lock_thread("thr_next").await;
    assert!(next.is_ok(), "{next:?}");
    assert!(!held.lost().is_cancelled());
    // The held lock is this session's again: another session cannot take it.
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind("thr_held")
        .fetch_one(&mut admin)
        .await
        .expect("tried");
    assert!(!taken);
}
