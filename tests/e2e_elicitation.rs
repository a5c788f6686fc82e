//! A tool server's questions to the user (MCP elicitation): at the tool
//! layer (the real `fake-mcp` child asks with `ask`, and the call's
//! elicitor answers, declines or is missing), then through the daemon over
//! HTTP, where a question is a `structured_input` item answered by
//! `threads.add_structured_input`.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use chatkitd::mcp::{ElicitationAnswer, ElicitationRequest, Elicitor, McpManager};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use chatkitd::config::Config;
use chatkitd::protocol::{InputStatus, ItemKind, Question, ThreadItem};
use chatkitd_testkit::{FakeToolCall, Script};
use support::{Backend, Daemon, Streamed, eventually, fake_mcp_server};

async fn manager() -> Arc<McpManager> {
    let configs = BTreeMap::from([("fake".to_owned(), fake_mcp_server())]);
    let mcp = McpManager::configure(&configs, std::path::Path::new("."), 64 * 1024);
    assert!(!mcp.tools_for("alice").await.is_empty());
    mcp
}

const ASK: &str = r#"{"message": "Which color?", "schema": {"type": "object", "properties": {"color": {"type": "string", "enum": ["red", "blue"]}}, "required": ["color"]}}"#;

#[tokio::test]
async fn a_question_reaches_the_calls_elicitor_and_its_answer_the_server() {
    let mcp = manager().await;
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    let elicitor: Elicitor = Arc::new(move |request: ElicitationRequest| {
        seen.lock().expect("asked").push(request);
        Box::pin(async {
            let mut content = serde_json::Map::new();
            content.insert("color".into(), json!("blue"));
            ElicitationAnswer::Accept(content)
        })
    });
    let answered = mcp.call("alice", "ask", ASK).asking(elicitor).await;
    assert!(!answered.is_error, "{}", answered.output);
    let reply: Value = serde_json::from_str(&answered.output).expect("JSON");
    assert_eq!(
        reply,
        json!({"action": "accept", "content": {"color": "blue"}})
    );
    let asked = asked.lock().expect("asked").clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].message, "Which color?");
    assert_eq!(
        asked[0].schema["properties"]["color"]["enum"],
        json!(["red", "blue"])
    );

    // Declined by the user; and with no elicitor, declined by chatkitd.
    let decline: Elicitor = Arc::new(|_| Box::pin(async { ElicitationAnswer::Decline }));
    let declined = mcp.call("alice", "ask", ASK).asking(decline).await;
    assert!(
        declined.output.contains("\"decline\""),
        "{}",
        declined.output
    );
    let unasked = mcp.call("alice", "ask", ASK).await;
    assert!(unasked.output.contains("\"decline\""), "{}", unasked.output);
    mcp.shutdown().await;
}

/// The daemon's default (development) user.
const USER: &str = "dev";

/// A form with each kind of question: a choice, a bounded whole number, a
/// yes/no.
fn form_call(call_id: &str) -> Script {
    let arguments = json!({
        "message": "A few details, please.",
        "schema": {
            "type": "object",
            "properties": {
                "color": {"type": "string", "title": "Color", "enum": ["red", "blue"]},
                "age": {"type": "integer", "title": "Age", "minimum": 0, "maximum": 150},
                "subscribe": {"type": "boolean", "title": "Subscribe"}
            },
            "required": ["color"]
        }
    });
    Script::ToolCalls {
        calls: vec![FakeToolCall::new(call_id, "ask", arguments.to_string())],
    }
}

/// The fake server's call timeout in [`daemon`].
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

async fn daemon(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Daemon {
    let mut server = fake_mcp_server();
    // Shorter than the user takes to answer below: the question's time
    // does not count against the call.
    server.call_timeout = CALL_TIMEOUT;
    Daemon::start_with(backend, move |config| {
        config.mcp_servers.insert("fake".into(), server);
        tweak(config);
    })
    .await
}

/// The structured input item a stream showed.
fn question_of(streamed: &Streamed) -> Value {
    streamed
        .done_items()
        .into_iter()
        .find(|i| i["type"] == "structured_input")
        .unwrap_or_else(|| panic!("a question in {:?}", streamed.types()))
}

fn answer_body(thread_id: &str, item_id: &str, input: Value) -> Value {
    json!({"type": "threads.add_structured_input", "params": {
        "thread_id": thread_id, "item_id": item_id, "input": input
    }})
}

/// Waits (up to 10 s) until a run nobody watches has stored its answer.
async fn answer_stored(daemon: &Daemon, thread_id: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        daemon
            .stored_values(USER, thread_id)
            .await
            .iter()
            .any(|i| i["type"] == "assistant_message")
    })
    .await
}

/// Skips the whole form of question `item_id`: the answer's stream.
async fn skip(daemon: &Daemon, thread_id: &str, item_id: &str) -> Streamed {
    let skipped = json!({"status": "skipped"});
    daemon
        .stream(answer_body(thread_id, item_id, skipped))
        .await
}

/// Posts an answer that must be refused with `status`; returns the refusal.
async fn refusal(
    daemon: &Daemon,
    thread_id: &str,
    item_id: &str,
    input: Value,
    status: u16,
) -> String {
    let (got, refused) = daemon.post(answer_body(thread_id, item_id, input)).await;
    assert_eq!(got, status, "{refused}");
    refused.to_string()
}

async fn stored_question(daemon: &Daemon, thread_id: &str, item_id: &str) -> Value {
    let items = daemon.stored_values(USER, thread_id).await;
    items
        .into_iter()
        .find(|i| i["id"] == item_id)
        .expect("the question is stored")
}

async fn a_question_is_answered_and_the_call_goes_on(backend: Backend) {
    let daemon = daemon(backend, |_| {}).await;
    daemon.llm.push(form_call("call_1"));
    daemon.llm.push(Script::text(["Thanks, noted."]));
    let (thread_id, asked) = daemon.create_thread("sign me up").await;
    let shown = Instant::now();
    let question = question_of(&asked);
    let item_id = question["id"].as_str().expect("id").to_owned();
    assert_eq!(question["status"], "pending");
    // One question per field (in the schema's key order, as the server's
    // SDK sends it), the server's message leading the first.
    let inputs = question["inputs"].as_array().expect("inputs");
    let ids: Vec<&str> = inputs.iter().filter_map(|q| q["id"].as_str()).collect();
    assert_eq!(ids, ["age", "color", "subscribe"]);
    assert_eq!(inputs[0]["type"], "freeform");
    assert_eq!(inputs[0]["question"], "A few details, please.\n\nAge");
    assert_eq!(inputs[0]["description"], "a whole number, from 0 to 150");
    assert_eq!(inputs[1]["type"], "multiple_choice");
    assert_eq!(inputs[1]["options"][1]["value"], "blue");
    assert_eq!(inputs[2]["options"][0]["value"], "yes");
    // The stream ended on the question: no answer yet, no error.
    assert!(
        asked.answer().is_none() && asked.error().is_none(),
        "{:?}",
        asked.types()
    );
    assert_eq!(daemon.llm.stream_requests().len(), 1);

    // The thread waits for the answer: a message is refused at once.
    let started = Instant::now();
    let (status, refused) = daemon
        .post(support::add_message_body(&thread_id, "hello?"))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused.to_string().contains("waiting for your answer"),
        "{refused}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // A wrong answer is refused with why, and the question stays open.
    let wrong = json!({"answers": {"color": {"values": ["blue"]}, "age": {"values": ["200"]}}});
    let refused = refusal(&daemon, &thread_id, &item_id, wrong, 400).await;
    assert!(refused.contains("Age"), "{refused}");
    // A required answer is missing.
    let missing = json!({"answers": {"age": {"values": ["7"]}}});
    refusal(&daemon, &thread_id, &item_id, missing, 400).await;
    // Past max_message_chars of JSON: refused before it is read.
    let huge = json!({"answers": {"color": {"values": ["x".repeat(200_000)]}}});
    let refused = refusal(&daemon, &thread_id, &item_id, huge, 400).await;
    assert!(refused.contains("at most"), "{refused}");
    for malformed in [
        json!({"status": "maybe"}),
        json!({"answers": {"color": "blue"}}),
        json!({"answers": {"color": {"values": "blue"}}}),
        json!("answered"),
    ] {
        refusal(&daemon, &thread_id, &item_id, malformed, 400).await;
    }
    assert_eq!(
        stored_question(&daemon, &thread_id, &item_id).await["status"],
        "pending"
    );

    // Answered after longer than the call's own timeout: here the wait is
    // the scenario (the question's time must not count against the call),
    // so it is a wait for time itself, and only for what the refusals above
    // have not already taken. The call began before the question was shown.
    let past_the_timeout = CALL_TIMEOUT + CALL_TIMEOUT / 2;
    if let Some(rest) = past_the_timeout.checked_sub(shown.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    assert!(shown.elapsed() > CALL_TIMEOUT);
    let answered = daemon
        .stream(answer_body(
            &thread_id,
            &item_id,
            json!({"answers": {
                "color": {"values": ["blue"]},
                "age": {"values": ["42"]},
                "subscribe": {"values": ["yes"]}
            }}),
        ))
        .await;
    let types = answered.types();
    assert_eq!(
        types[..2],
        ["stream_options", "thread.item.replaced"],
        "{types:?}"
    );
    let replaced = &answered.events[1]["item"];
    assert_eq!(replaced["status"], "answered");
    assert_eq!(
        replaced["inputs"][1]["answer"],
        json!({"values": ["blue"], "skipped": false})
    );
    // The rest of the run streams to the client that answered.
    assert_eq!(answered.answer().as_deref(), Some("Thanks, noted."));
    assert_eq!(
        support::last_tool_json(&daemon),
        json!({"action": "accept", "content": {"color": "blue", "age": 42, "subscribe": true}})
    );
    let stored = stored_question(&daemon, &thread_id, &item_id).await;
    assert_eq!(&stored, replaced);

    // Answered once: again is refused; the thread takes messages again.
    refusal(
        &daemon,
        &thread_id,
        &item_id,
        json!({"status": "skipped"}),
        409,
    )
    .await;
    daemon.llm.push(Script::text(["Hello again."]));
    let next = daemon.add_message(&thread_id, "hello").await;
    assert_eq!(next.answer().as_deref(), Some("Hello again."));
    let (status, metrics) = daemon.get("/metrics").await;
    assert_eq!(status, 200);
    for event in ["asked", "answered"] {
        let line = format!("chatkitd_questions_total{{event=\"{event}\"}}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    daemon.stop().await;
}

async fn a_skipped_question_is_declined(backend: Backend) {
    let daemon = daemon(backend, |_| {}).await;
    daemon.llm.push(form_call("call_1"));
    daemon.llm.push(Script::text(["Fine, skipped."]));
    let (thread_id, asked) = daemon.create_thread("sign me up").await;
    let item_id = question_of(&asked)["id"].as_str().expect("id").to_owned();
    let skipped = skip(&daemon, &thread_id, &item_id).await;
    let replaced = &skipped.events[1]["item"];
    assert_eq!(replaced["status"], "skipped");
    assert_eq!(
        replaced["inputs"][1]["answer"],
        json!({"values": [], "skipped": true})
    );
    assert_eq!(skipped.answer().as_deref(), Some("Fine, skipped."));
    assert_eq!(support::last_tool_json(&daemon)["action"], "decline");
    daemon.stop().await;
}

/// The same answer sent twice at once (a double click, two tabs): exactly
/// one is taken, the tool gets it, the other is refused with 409 and
/// changes nothing, and the question stays stored as answered, never
/// skipped. Several rounds, since the two race differently each time.
async fn a_double_answer_is_taken_once_and_stays_answered(backend: Backend) {
    let daemon = daemon(backend, |_| {}).await;
    for round in 0..6 {
        daemon.llm.push(form_call(&format!("call_{round}")));
        daemon.llm.push(Script::text(["Thanks, noted."]));
        let (thread_id, asked) = daemon.create_thread("sign me up").await;
        let item_id = question_of(&asked)["id"].as_str().expect("id").to_owned();
        let answer = json!({"answers": {"color": {"values": ["red"]}}});
        let body = answer_body(&thread_id, &item_id, answer);
        let (first, second) = tokio::join!(daemon.post(body.clone()), daemon.post(body));
        let mut statuses = [first.0, second.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}: {first:?} {second:?}");
        let refused = if first.0 == 409 { &first.1 } else { &second.1 };
        assert!(
            refused["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("already closed")),
            "{refused}"
        );
        assert!(answer_stored(&daemon, &thread_id).await, "round {round}");
        assert_eq!(
            support::last_tool_json(&daemon),
            json!({"action": "accept", "content": {"color": "red"}})
        );
        // Read once the run is over: nothing wrote the question after it.
        let stored = stored_question(&daemon, &thread_id, &item_id).await;
        assert_eq!(stored["status"], "answered", "round {round}: {stored}");
    }
    daemon.stop().await;
}

both_backends!(
    a_question_is_answered_and_the_call_goes_on,
    a_skipped_question_is_declined,
    a_double_answer_is_taken_once_and_stays_answered,
);

/// Nobody answers within `question_timeout`: the call is told `cancel`,
/// the item closes as skipped, the model answers unseen and that answer is
/// stored; a late answer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_question_expires_and_the_run_finishes() {
    let daemon = daemon(Backend::Sqlite, |config| {
        config.agent.question_timeout = Duration::from_millis(700);
    })
    .await;
    daemon.llm.push(form_call("call_1"));
    daemon.llm.push(Script::text(["No answer; moving on."]));
    let (thread_id, asked) = daemon.create_thread("sign me up").await;
    let item_id = question_of(&asked)["id"].as_str().expect("id").to_owned();
    let finished = answer_stored(&daemon, &thread_id).await;
    assert!(finished, "the run finished after the question expired");
    assert_eq!(support::last_tool_json(&daemon)["action"], "cancel");
    let question = stored_question(&daemon, &thread_id, &item_id).await;
    assert_eq!(question["status"], "skipped");
    let late = json!({"answers": {"color": {"values": ["red"]}}});
    refusal(&daemon, &thread_id, &item_id, late, 409).await;
    daemon.stop().await;
}

/// A pending question no run waits for (its daemon restarted): the answer
/// is refused with why, and the question closes as skipped. Another user
/// cannot even see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_nobody_waits_for_is_closed_not_answered() {
    let daemon = daemon(Backend::Sqlite, |_| {}).await;
    daemon.llm.push(Script::text(["Hi."]));
    let (thread_id, _) = daemon.create_thread("hello").await;
    let orphan = ThreadItem::new(
        "msg_orphan",
        thread_id.clone(),
        ItemKind::StructuredInput {
            status: InputStatus::Pending,
            inputs: vec![Question::freeform("name", "Name?")],
        },
    );
    let store = daemon.store().await;
    chatkitd::store::Store::add_item(&store, USER, &orphan)
        .await
        .expect("stored");
    store.close().await;

    let answer = json!({"answers": {"name": {"values": ["Ann"]}}});
    let refused = refusal(&daemon, &thread_id, "msg_orphan", answer, 409).await;
    assert!(refused.contains("nobody waits"), "{refused}");
    let closed = stored_question(&daemon, &thread_id, "msg_orphan").await;
    assert_eq!(closed["status"], "skipped");
    assert_eq!(
        closed["inputs"][0]["answer"],
        json!({"values": [], "skipped": true})
    );

    let (status, _) = daemon
        .post(answer_body("thr_nope", "msg_orphan", json!({})))
        .await;
    assert_eq!(status, 404);
    daemon.stop().await;
}

/// The third-party server-everything over stdio: it lists its elicitation
/// tool only to clients that declare the capability; its form (strings with
/// formats, bounded numbers, enums of three spellings, a multiple choice)
/// is asked as structured input, answered once and skipped once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_asks_and_is_answered_then_skipped() {
    let server = support::server_everything();
    let daemon = Daemon::start_with(Backend::Sqlite, |config| {
        config.mcp_servers.insert("everything".into(), server);
    })
    .await;
    let trigger = || Script::ToolCalls {
        calls: vec![FakeToolCall::new(
            "call_ask",
            "trigger-elicitation-request",
            "{}",
        )],
    };
    daemon.llm.push(trigger());
    daemon.llm.push(Script::text(["Got your details."]));
    let (thread_id, asked) = daemon.create_thread("ask me").await;
    let offered = daemon.llm.stream_requests()[0].tool_names();
    assert!(
        offered.iter().any(|t| t == "trigger-elicitation-request"),
        "{offered:?}"
    );
    let question = question_of(&asked);
    let item_id = question["id"].as_str().expect("id").to_owned();
    let by_id = |id: &str| {
        question["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .find(|q| q["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {question}"))
    };
    assert_eq!(by_id("check")["type"], "multiple_choice");
    assert_eq!(by_id("titledMultipleSelectEnum")["multiple"], true);
    assert_eq!(by_id("legacyTitledEnum")["options"][1]["label"], "Dogs");
    assert_eq!(by_id("email")["type"], "freeform");

    // A malformed email is refused before the server sees anything.
    let malformed = json!({"answers": {
        "name": {"values": ["Ann Smith"]}, "email": {"values": ["not-an-email"]}
    }});
    refusal(&daemon, &thread_id, &item_id, malformed, 400).await;
    let answered = daemon
        .stream(answer_body(
            &thread_id,
            &item_id,
            json!({"answers": {
                "name": {"values": ["Ann Smith"]},
                "check": {"values": ["yes"]},
                "email": {"values": ["ann@example.com"]},
                "integer": {"values": ["7"]},
                "titledMultipleSelectEnum": {"values": ["fish-1", "fish-3"]}
            }}),
        ))
        .await;
    assert_eq!(
        answered.answer().as_deref(),
        Some("Got your details."),
        "{:?}",
        answered.types()
    );
    let output = support::last_tool_json(&daemon).to_string();
    for shown in [
        "User provided the requested information",
        "Name: Ann Smith",
        "Agreed to terms: true",
        "Email: ann@example.com",
        "Favorite Integer: 7",
    ] {
        assert!(output.contains(shown), "{shown} in {output}");
    }

    daemon.llm.push(trigger());
    daemon.llm.push(Script::text(["Skipped."]));
    let asked = daemon.add_message(&thread_id, "ask me again").await;
    let item_id = question_of(&asked)["id"].as_str().expect("id").to_owned();
    let skipped = skip(&daemon, &thread_id, &item_id).await;
    assert_eq!(skipped.answer().as_deref(), Some("Skipped."));
    let output = support::last_tool_json(&daemon).to_string();
    assert!(output.contains("User declined"), "{output}");
    daemon.stop().await;
}

/// Two replicas on one Postgres database: a question waits in the replica
/// whose run asked it. The other replica refuses the answer with a 409 that
/// says so, and changes nothing; the replica that asked takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_reaching_another_replica_is_refused_with_why() {
    let first = daemon(Backend::Postgres, |_| {}).await;
    let second = Daemon::start_replica(&first).await;
    first.llm.push(form_call("call_1"));
    first.llm.push(Script::text(["Thanks."]));
    let (thread_id, asked) = first.create_thread("sign me up").await;
    let item_id = question_of(&asked)["id"].as_str().expect("id").to_owned();
    let answer = json!({"answers": {"color": {"values": ["red"]}}});

    let started = Instant::now();
    let refused = refusal(&second, &thread_id, &item_id, answer.clone(), 409).await;
    assert!(refused.contains("another server"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        stored_question(&first, &thread_id, &item_id).await["status"],
        "pending"
    );

    let answered = first
        .stream(answer_body(&thread_id, &item_id, answer))
        .await;
    assert_eq!(answered.answer().as_deref(), Some("Thanks."));
    assert_eq!(
        support::last_tool_json(&first)["content"],
        json!({"color": "red"})
    );
    second.stop().await;
    first.stop().await;
}

/// Three calls of one step ask at once: one question is shown at a time,
/// each answer's stream shows the next question, and the last one carries
/// the model's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_of_concurrent_calls_are_asked_one_at_a_time() {
    let daemon = daemon(Backend::Sqlite, |config| {
        if let Some(fake) = config.mcp_servers.get_mut("fake") {
            fake.max_instances = 3;
        }
    })
    .await;
    let ask = |n: usize| {
        FakeToolCall::new(
            format!("call_{n}"),
            "ask",
            json!({"message": format!("Question {n}"), "schema": {"type": "object", "properties": {
                "ok": {"type": "boolean"}
            }}})
            .to_string(),
        )
    };
    daemon.llm.push(Script::ToolCalls {
        calls: (1..=3).map(ask).collect(),
    });
    daemon.llm.push(Script::text(["All three answered."]));
    let (thread_id, mut streamed) = daemon.create_thread("ask thrice").await;
    let mut asked = Vec::new();
    for _ in 0..3 {
        let question = question_of(&streamed);
        let text = question["inputs"][0]["question"]
            .as_str()
            .expect("text")
            .to_owned();
        asked.push(text.lines().next().unwrap_or_default().to_owned());
        let item_id = question["id"].as_str().expect("id").to_owned();
        streamed = daemon
            .stream(answer_body(
                &thread_id,
                &item_id,
                json!({"answers": {"ok": {"values": ["yes"]}}}),
            ))
            .await;
        assert_eq!(streamed.types()[1], "thread.item.replaced");
    }
    asked.sort();
    assert_eq!(asked, ["Question 1", "Question 2", "Question 3"]);
    assert_eq!(streamed.answer().as_deref(), Some("All three answered."));
    let requests = daemon.llm.stream_requests();
    let results: Vec<&Value> = requests[1]
        .messages()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(results.len(), 3);
    for result in results {
        assert!(
            result["content"]
                .as_str()
                .unwrap_or_default()
                .contains("\"ok\":true"),
            "{result}"
        );
    }
    daemon.stop().await;
}

/// A thread deleted while its question waits: the call is told `cancel` at
/// once, so the run ends and frees the user's only run slot, instead of
/// holding it until the question expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_thread_ends_its_question() {
    let daemon = daemon(Backend::Sqlite, |config| {
        config.limits.max_concurrent_runs_per_user = 1;
    })
    .await;
    daemon.llm.push(form_call("call_1"));
    let (thread_id, asked) = daemon.create_thread("sign me up").await;
    question_of(&asked);
    let (status, refused) = daemon.post(support::create_body("another thread")).await;
    assert_eq!(status, 429, "the waiting run holds the slot: {refused}");

    let (status, _) = daemon
        .post(json!({"type": "threads.delete", "params": {"thread_id": thread_id}}))
        .await;
    assert_eq!(status, 200);
    daemon.llm.push(Script::text(["Hello."]));
    let freed = eventually(Duration::from_secs(5), || async {
        daemon.post(support::create_body("another thread")).await.0 != 429
    })
    .await;
    assert!(freed, "the slot is free again");
    daemon.stop().await;
}

/// The server stops waiting for the user (a deadline of its own): its call
/// ends while the question is open. The question is closed as skipped, the
/// run goes on (unseen: its stream ended on the question) and stores the
/// model's answer, and a late answer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_stops_asking_closes_its_question() {
    let daemon = daemon(Backend::Sqlite, |_| {}).await;
    let arguments = json!({
        "message": "Quick, which?",
        "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        "give_up_after_ms": 300
    });
    daemon.llm.push(Script::ToolCalls {
        calls: vec![FakeToolCall::new("call_1", "ask", arguments.to_string())],
    });
    daemon.llm.push(Script::text(["It stopped waiting."]));
    let (thread_id, asked) = daemon.create_thread("ask quickly").await;
    let item_id = question_of(&asked)["id"].as_str().expect("id").to_owned();
    let finished = answer_stored(&daemon, &thread_id).await;
    assert!(finished, "the run went on once the call ended");
    assert_eq!(
        support::last_tool_json(&daemon),
        Value::String("gave up waiting for the user".into())
    );
    let closed = stored_question(&daemon, &thread_id, &item_id).await;
    assert_eq!(closed["status"], "skipped");
    let late = json!({"answers": {"ok": {"values": ["yes"]}}});
    refusal(&daemon, &thread_id, &item_id, late, 409).await;
    // The thread is free again.
    daemon.llm.push(Script::text(["Hi."]));
    let next = daemon.add_message(&thread_id, "hello").await;
    assert_eq!(next.answer().as_deref(), Some("Hi."));
    daemon.stop().await;
}
