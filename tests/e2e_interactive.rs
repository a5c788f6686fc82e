//! The interactive half of ChatKit end to end, against the real `chatkitd`
//! binary, the fake model and the real `tasks-mcp` server: a tool result
//! shown as a widget, widget actions bound to a tool (streaming and sync)
//! and handed to the agent, approval of a destructive call (deny, approve,
//! after a restart, a second click), and a client tool call round trip.
//! Two users with JWTs check that every new path refuses the other's ids.

mod support;

use std::path::Path;

use chatkitd_testkit::{FakeToolCall, Script};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::{Backend, Daemon, Streamed, add_message_body, workspace_bin};

const SECRET: &str = "chatkitd-e2e-interactive-secret-0123456789abcdef";

fn token(user: &str) -> String {
    support::hs256_token(SECRET, user)
}

/// The daemon's configuration beside the test's: JWT auth, the tasks server
/// with the shipped task-list widget, a tool-bound and an agent-bound
/// action, a client tool.
fn interactive_toml(tasks_db: &Path) -> String {
    let widget = Path::new(env!("CARGO_MANIFEST_DIR")).join("widgets/task-list.widget");
    interactive_toml_with(tasks_db, &widget)
}

/// [`interactive_toml`] with `widget` as `list_tasks`'s template.
fn interactive_toml_with(tasks_db: &Path, widget: &Path) -> String {
    format!(
        r#"
[auth]
mode = "jwt"
secret = "{SECRET}"

[mcp_servers.tasks]
command = {command:?}
env = {{ TASKS_DB = {db:?} }}
min_idle = 1
max_instances = 2
inject = {{ user_id = "user.id" }}

[mcp_servers.tasks.tools.list_tasks]
widget = {widget:?}

[actions."tasks.complete"]
server = "tasks"
tool = "complete_task"

[actions."tasks.explain"]
message = "Tell me more about the task {{{{ action.payload.task_id }}}}."

[client_tools.get_location]
description = "Where the user is, as the browser knows it."
parameters = {{ type = "object", properties = {{ precise = {{ type = "boolean" }} }} }}
"#,
        command = workspace_bin("tasks-mcp").display().to_string(),
        db = tasks_db.display().to_string(),
        widget = widget.display().to_string(),
    )
}

fn call(id: &str, name: &str, args: Value) -> Script {
    Script::ToolCalls {
        calls: vec![FakeToolCall::new(id, name, args.to_string())],
    }
}

/// A `threads.sync_custom_action` request.
fn sync_action(thread: &str, item: Option<&str>, kind: &str, payload: Value) -> Value {
    action("threads.sync_custom_action", thread, item, kind, payload)
}

/// Sends a widget action as `token`'s bearer, streaming, and reads the stream.
async fn click(
    daemon: &Daemon,
    token: &str,
    thread: &str,
    item: Option<&str>,
    kind: &str,
    payload: Value,
) -> Streamed {
    daemon
        .stream_as(token, stream_action(thread, item, kind, payload))
        .await
}

/// A `threads.custom_action` request.
fn stream_action(thread: &str, item: Option<&str>, kind: &str, payload: Value) -> Value {
    action("threads.custom_action", thread, item, kind, payload)
}

fn action(kind: &str, thread: &str, item: Option<&str>, action: &str, payload: Value) -> Value {
    let mut params = json!({"thread_id": thread, "action": {"type": action, "payload": payload}});
    if let Some(item) = item {
        params["item_id"] = json!(item);
    }
    json!({"type": kind, "params": params})
}

/// The `chatkitd` binary on [`interactive_toml`], with the directory of
/// its tasks database (keep it alive as long as the daemon).
async fn start(backend: Backend) -> (tempfile::TempDir, Daemon) {
    let tasks = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::binary(backend, &interactive_toml(&tasks.path().join("t.db"))).await;
    (tasks, daemon)
}

/// The messages of the model's last request.
fn last_messages(daemon: &Daemon) -> Vec<Value> {
    daemon
        .llm
        .stream_requests()
        .last()
        .expect("a model request")
        .messages()
        .to_vec()
}

/// Posts each request as `token`'s bearer: each is a 400 whose message
/// says what is expected.
async fn assert_refused(daemon: &Daemon, token: &str, cases: &[(Value, &str)]) {
    for (body, expected) in cases {
        let (status, answer) = daemon.post_as(token, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(expected), "{body}: {message}");
    }
}

/// The visible items of a thread, as `token`'s bearer lists them.
async fn items_as(daemon: &Daemon, token: &str, thread: &str) -> Vec<Value> {
    let (status, page) = daemon
        .post_as(
            token,
            json!({"type": "items.list", "params": {"thread_id": thread, "limit": 100}}),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().expect("data").clone()
}

fn widget_of(streamed: &Streamed) -> Value {
    streamed
        .done_items()
        .into_iter()
        .find(|i| i["type"] == "widget")
        .unwrap_or_else(|| panic!("no widget in {}", streamed.raw))
}

/// `(action type, payload)` of every server action in a widget tree.
fn actions_of(widget: &Value) -> Vec<(String, Value)> {
    chatkitd::widgets::offered_actions(widget)
}

fn text_of(widget: &Value) -> String {
    chatkitd::widgets::plain_text(widget)
}

/// Adds tasks through the model and returns their ids, in order.
async fn add_tasks(daemon: &Daemon, alice: &str, titles: &[&str]) -> (String, Vec<String>) {
    let calls = titles
        .iter()
        .enumerate()
        .map(|(i, title)| {
            FakeToolCall::new(
                format!("add{i}"),
                "add_task",
                json!({"title": title}).to_string(),
            )
        })
        .collect();
    daemon.llm.push(Script::ToolCalls { calls });
    daemon.llm.push(Script::text(["Added."]));
    let (thread, streamed) = daemon.create_thread_as(alice, "add my tasks").await;
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Added."),
        "{}",
        streamed.raw
    );
    let ids = last_messages(daemon)
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            let task: Value =
                serde_json::from_str(m["content"].as_str().expect("text")).expect("json");
            task["id"].as_str().expect("an id").to_owned()
        })
        .collect();
    (thread, ids)
}

async fn a_listing_is_a_widget_whose_buttons_complete_tasks_in_place(backend: Backend) {
    let (_tasks, daemon) = start(backend).await;
    let (alice, bob) = (token("alice"), token("bob"));
    let (thread, ids) = add_tasks(&daemon, &alice, &["buy milk", "call Ann"]).await;

    daemon.llm.push(call("l1", "list_tasks", json!({})));
    daemon.llm.push(Script::text(["Here is your list."]));
    let listed = daemon
        .stream_as(&alice, add_message_body(&thread, "show my tasks"))
        .await;
    assert_eq!(listed.answer().as_deref(), Some("Here is your list."));
    let item = widget_of(&listed);
    let widget_id = item["id"].as_str().expect("id").to_owned();
    assert_eq!(item["widget"]["type"], "ListView");
    assert_eq!(
        actions_of(&item["widget"]),
        vec![
            ("tasks.complete".to_owned(), json!({"task_id": ids[0]})),
            ("tasks.complete".to_owned(), json!({"task_id": ids[1]})),
        ]
    );
    // The model still read the tool's text, and the widget came after the
    // tool activity, before the answer.
    assert_eq!(
        support::last_tool_json(&daemon)["tasks"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let kinds: Vec<Value> = listed
        .done_items()
        .iter()
        .map(|i| i["type"].clone())
        .collect();
    assert_eq!(
        kinds[kinds.len() - 3..],
        [
            json!("workflow"),
            json!("widget"),
            json!("assistant_message")
        ]
    );
    let (status, stored) = daemon
        .post_as(
            &alice,
            json!({"type": "threads.get_by_id", "params": {"thread_id": thread}}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        stored["items"]["data"]
            .as_array()
            .expect("items")
            .contains(&item),
        "{stored}"
    );

    // Done on "buy milk", streaming: the widget is replaced in place, no model call.
    let model_calls = daemon.llm.stream_requests().len();
    let done = click(
        &daemon,
        &alice,
        &thread,
        Some(&widget_id),
        "tasks.complete",
        json!({"task_id": ids[0]}),
    )
    .await;
    assert_eq!(
        done.types(),
        ["stream_options", "thread.item.replaced"],
        "{}",
        done.raw
    );
    let replaced = &done.events[1]["item"];
    assert_eq!(replaced["id"], widget_id.as_str());
    assert_eq!(text_of(&replaced["widget"]), "call Ann  [Done]");
    assert_eq!(daemon.llm.stream_requests().len(), model_calls);

    // The model learns what the button did before it next answers.
    daemon.llm.push(Script::text(["One left."]));
    daemon
        .stream_as(&alice, add_message_body(&thread, "what is left?"))
        .await;
    let told = last_messages(&daemon)
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .find(|text| text.contains("pressed a button"))
        .expect("the action is in history");
    assert!(
        told.contains("complete_task") && told.contains(&ids[0]),
        "{told}"
    );
    let (bobs_thread, bobs_ids) = add_tasks(&daemon, &bob, &["bob's task"]).await;
    let model_calls = daemon.llm.stream_requests().len();

    // A tool error: sync is a 422 with the tool's words, streaming an error event.
    let missing = json!({"task_id": "task_000000000000"});
    let (status, body) = daemon
        .post_as(
            &alice,
            sync_action(&thread, Some(&widget_id), "tasks.complete", missing.clone()),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("action_failed")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("task_000000000000"),
        "{body}"
    );
    let failed = click(
        &daemon,
        &alice,
        &thread,
        Some(&widget_id),
        "tasks.complete",
        missing,
    )
    .await;
    assert_eq!(
        failed.types(),
        ["stream_options", "error"],
        "{}",
        failed.raw
    );

    // While the widget still offers the button: a payload that is not the
    // tool's arguments is refused, and Alice cannot name Bob as the
    // payload's user (identity is injected: his task is not hers).
    assert_refused(
        &daemon,
        &alice,
        &[(
            sync_action(&thread, Some(&widget_id), "tasks.complete", json!([1])),
            "must be a JSON object",
        )],
    )
    .await;
    let (status, answer) = daemon
        .post_as(
            &alice,
            sync_action(
                &thread,
                Some(&widget_id),
                "tasks.complete",
                json!({"task_id": bobs_ids[0], "user_id": "bob"}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{answer}");

    // Done on "call Ann", sync: the updated item comes back and is stored.
    let (status, body) = daemon
        .post_as(
            &alice,
            sync_action(
                &thread,
                Some(&widget_id),
                "tasks.complete",
                json!({"task_id": ids[1]}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["updated_item"]["id"], widget_id.as_str());
    assert_eq!(text_of(&body["updated_item"]["widget"]), "No tasks here.");
    let items = items_as(&daemon, &alice, &thread).await;
    assert!(
        items.contains(&body["updated_item"]),
        "stored in place: {items:?}"
    );
    assert_eq!(
        daemon.llm.stream_requests().len(),
        model_calls,
        "no model call for actions"
    );

    // Refusals, before anything runs.
    let refusals = [
        (
            sync_action(&thread, Some(&widget_id), "tasks.reopen", json!({})),
            "no action of type \"tasks.reopen\"",
        ),
        (
            sync_action(&thread, Some(&widget_id), "tasks.explain", json!({})),
            "offers no \"tasks.explain\" action",
        ),
        (
            sync_action(&thread, None, "tasks.complete", json!({"task_id": ids[0]})),
            "must name the widget that offers it in `item_id`",
        ),
        (
            stream_action(&thread, None, "tasks.complete", json!({"task_id": ids[0]})),
            "must name the widget that offers it in `item_id`",
        ),
        (
            sync_action(&thread, None, "tool.approve", json!({})),
            "threads.custom_action (streaming)",
        ),
    ];
    assert_refused(&daemon, &alice, &refusals).await;

    // Only widgets send actions.
    let answer_id = listed
        .done_items()
        .iter()
        .find(|i| i["type"] == "assistant_message")
        .and_then(|i| i["id"].as_str())
        .expect("an answer")
        .to_owned();
    assert_refused(
        &daemon,
        &alice,
        &[(
            sync_action(&thread, Some(&answer_id), "tasks.complete", json!({})),
            "is a assistant_message, not a widget",
        )],
    )
    .await;

    // Bob: Alice's thread, or Alice's widget from his own thread, is not found.
    for body in [
        sync_action(
            &thread,
            Some(&widget_id),
            "tasks.complete",
            json!({"task_id": ids[0]}),
        ),
        stream_action(
            &thread,
            Some(&widget_id),
            "tasks.complete",
            json!({"task_id": ids[0]}),
        ),
        sync_action(
            &bobs_thread,
            Some(&widget_id),
            "tasks.complete",
            json!({"task_id": ids[0]}),
        ),
        stream_action(
            &bobs_thread,
            Some(&widget_id),
            "tool.approve",
            json!({"call_ids": []}),
        ),
    ] {
        let (status, answer) = daemon.post_as(&bob, body.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (404, json!("not_found")),
            "{body}: {answer}"
        );
    }
    daemon.stop().await;
}

/// A delete ends on an approval card; deny keeps the task and the model is
/// told; a second click changes nothing.
async fn a_denied_delete_keeps_the_task_and_the_model_is_told(backend: Backend) {
    let (_tasks, daemon) = start(backend).await;
    let (alice, bob) = (token("alice"), token("bob"));
    let (thread, ids) = add_tasks(&daemon, &alice, &["old plan"]).await;

    daemon
        .llm
        .push(call("del1", "delete_task", json!({"task_id": ids[0]})));
    let model_calls = daemon.llm.stream_requests().len();
    let asked = daemon
        .stream_as(&alice, add_message_body(&thread, "delete it"))
        .await;
    assert_eq!(
        daemon.llm.stream_requests().len(),
        model_calls + 1,
        "the run waits for the user"
    );
    assert!(asked.error().is_none(), "{}", asked.raw);
    let card = widget_of(&asked);
    assert_eq!(
        asked.done_items().last(),
        Some(&card),
        "the card ends the turn"
    );
    let card_id = card["id"].as_str().expect("id").to_owned();
    let payload = json!({"call_ids": ["del1"]});
    assert_eq!(
        actions_of(&card["widget"]),
        vec![
            ("tool.approve".to_owned(), payload.clone()),
            ("tool.deny".to_owned(), payload.clone())
        ]
    );
    let text = text_of(&card["widget"]);
    assert!(
        text.starts_with("Run delete_task?") && text.contains(&ids[0]),
        "{text}"
    );

    // Bob cannot settle it.
    let (bobs_thread, _) = daemon.create_thread_as(&bob, "hi").await;
    for thread_id in [&thread, &bobs_thread] {
        let (status, _) = daemon
            .post_as(
                &bob,
                stream_action(thread_id, Some(&card_id), "tool.approve", payload.clone()),
            )
            .await;
        assert_eq!(status, 404);
    }

    daemon.llm.push(Script::text(["OK, I kept it."]));
    let denied = click(
        &daemon,
        &alice,
        &thread,
        Some(&card_id),
        "tool.deny",
        payload.clone(),
    )
    .await;
    assert_eq!(
        denied.types()[..2],
        ["stream_options", "thread.item.replaced"],
        "{}",
        denied.raw
    );
    let settled = &denied.events[1]["item"];
    assert!(text_of(&settled["widget"]).starts_with("Denied: delete_task"));
    assert!(
        actions_of(&settled["widget"]).is_empty(),
        "no buttons once settled"
    );
    assert_eq!(denied.answer().as_deref(), Some("OK, I kept it."));
    assert_eq!(
        support::last_tool_json(&daemon),
        Value::String(chatkitd::agent::DENIED.to_owned())
    );

    // A second click, either way, changes nothing and asks nobody.
    let model_calls = daemon.llm.stream_requests().len();
    for verdict in ["tool.approve", "tool.deny"] {
        let again = click(
            &daemon,
            &alice,
            &thread,
            Some(&card_id),
            verdict,
            payload.clone(),
        )
        .await;
        assert_eq!(
            again.types(),
            ["stream_options", "thread.item.replaced"],
            "{}",
            again.raw
        );
        assert_eq!(&again.events[1]["item"], settled);
    }
    assert_eq!(daemon.llm.stream_requests().len(), model_calls);
    let (status, metrics) = daemon.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "chatkitd_approvals_total{event=\"asked\"} 1",
        "chatkitd_approvals_total{event=\"denied\"} 1",
        "chatkitd_approvals_total{event=\"unchanged\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }

    // The task is still there.
    daemon.llm.push(call("l1", "list_tasks", json!({})));
    daemon.llm.push(Script::text(["Still there."]));
    daemon
        .stream_as(&alice, add_message_body(&thread, "list"))
        .await;
    assert_eq!(
        support::last_tool_json(&daemon)["tasks"][0]["id"],
        ids[0].as_str()
    );
    daemon.stop().await;
}

both_backends!(
    a_listing_is_a_widget_whose_buttons_complete_tasks_in_place,
    a_denied_delete_keeps_the_task_and_the_model_is_told,
);

/// The card outlives the daemon: another process on the same database
/// approves it, runs the delete and streams the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_after_a_restart_runs_the_call_and_the_answer_streams() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let toml = interactive_toml(&tasks.path().join("t.db"));
    let mut first = Daemon::binary(Backend::Postgres, &toml).await;
    let alice = token("alice");
    let (thread, ids) = add_tasks(&first, &alice, &["stale task"]).await;
    first
        .llm
        .push(call("del1", "delete_task", json!({"task_id": ids[0]})));
    let asked = first
        .stream_as(&alice, add_message_body(&thread, "delete it"))
        .await;
    let card_id = widget_of(&asked)["id"].as_str().expect("id").to_owned();
    first.kill().await;

    let second = Daemon::binary_replica(&first, &toml).await;
    second.llm.push(Script::text(["Deleted it."]));
    let approved = click(
        &second,
        &alice,
        &thread,
        Some(&card_id),
        "tool.approve",
        json!({"call_ids": ["del1"]}),
    )
    .await;
    assert!(approved.error().is_none(), "{}", approved.raw);
    assert_eq!(approved.types()[1], "thread.item.replaced");
    assert!(text_of(&approved.events[1]["item"]["widget"]).starts_with("Approved: delete_task"));
    assert!(
        approved
            .done_items()
            .iter()
            .any(|i| i["type"] == "workflow"),
        "the call shows as activity"
    );
    assert_eq!(approved.answer().as_deref(), Some("Deleted it."));
    assert_eq!(support::last_tool_json(&second), json!({"deleted": ids[0]}));
    // The model's history pairs the call with its result.
    let messages = last_messages(&second);
    let asked_at = messages
        .iter()
        .position(|m| m["tool_calls"][0]["id"] == "del1")
        .expect("the call");
    assert_eq!(messages[asked_at + 1]["tool_call_id"], "del1");

    second.llm.push(call("l1", "list_tasks", json!({})));
    second.llm.push(Script::text(["Empty."]));
    second
        .stream_as(&alice, add_message_body(&thread, "list"))
        .await;
    assert_eq!(support::last_tool_json(&second)["tasks"], json!([]));
    second.stop().await;
    first.stop().await;
}

/// A client tool call ends the stream as a pending item; its output
/// resumes the run, and the model reads the call and the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_tool_call_round_trips_through_the_browser() {
    let (_tasks, daemon) = start(Backend::Sqlite).await;
    let (alice, bob) = (token("alice"), token("bob"));
    daemon
        .llm
        .push(call("loc1", "get_location", json!({"precise": true})));
    let (thread, asked) = daemon.create_thread_as(&alice, "where am I?").await;
    let offered = daemon.llm.stream_requests()[0].tool_names();
    assert!(offered.contains(&"get_location".to_owned()), "{offered:?}");
    let pending = asked.done_items().last().cloned().expect("an item");
    assert_eq!(pending["type"], "client_tool_call", "{}", asked.raw);
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["call_id"], "loc1");
    assert_eq!(pending["arguments"], json!({"precise": true}));

    let output = json!({"type": "threads.add_client_tool_output",
        "params": {"thread_id": thread, "result": {"city": "Paris"}}});
    let (status, _) = daemon.post_as(&bob, output.clone()).await;
    assert_eq!(status, 404, "bob cannot answer alice's call");

    daemon.llm.push(Script::text(["You are in Paris."]));
    let resumed = daemon.stream_as(&alice, output.clone()).await;
    assert_eq!(
        resumed.answer().as_deref(),
        Some("You are in Paris."),
        "{}",
        resumed.raw
    );
    let messages = last_messages(&daemon);
    let at = messages
        .iter()
        .position(|m| m["tool_calls"][0]["function"]["name"] == "get_location")
        .expect("the call in history");
    assert_eq!(messages[at + 1]["tool_call_id"], "loc1");
    assert_eq!(
        serde_json::from_str::<Value>(messages[at + 1]["content"].as_str().expect("text"))
            .expect("json"),
        json!({"city": "Paris"})
    );
    let completed = items_as(&daemon, &alice, &thread)
        .await
        .into_iter()
        .find(|i| i["type"] == "client_tool_call")
        .expect("stored");
    assert_eq!(
        (completed["status"].clone(), completed["output"].clone()),
        (json!("completed"), json!({"city": "Paris"}))
    );
    // Answered once: a second output finds nothing pending.
    let (status, _) = daemon.post_as(&alice, output).await;
    assert_eq!(status, 400);
    daemon.stop().await;
}

/// An action handed to the agent is answered as the user's words, and the
/// next turn's history replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_for_the_agent_is_answered_and_replayed() {
    let (_tasks, daemon) = start(Backend::Sqlite).await;
    let alice = token("alice");
    let (thread, _) = daemon.create_thread_as(&alice, "hello").await;
    daemon.llm.push(Script::text(["It is due Friday."]));
    let explained = click(
        &daemon,
        &alice,
        &thread,
        None,
        "tasks.explain",
        json!({"task_id": "task_42"}),
    )
    .await;
    assert_eq!(
        explained.answer().as_deref(),
        Some("It is due Friday."),
        "{}",
        explained.raw
    );
    let said = "Tell me more about the task task_42.";
    assert_eq!(
        last_messages(&daemon).last().expect("message")["content"],
        said
    );
    daemon
        .stream_as(&alice, add_message_body(&thread, "thanks"))
        .await;
    let replayed: Vec<Value> = last_messages(&daemon)
        .iter()
        .map(|m| m["content"].clone())
        .collect();
    assert!(replayed.contains(&json!(said)), "{replayed:?}");
    assert!(
        replayed.contains(&json!("It is due Friday.")),
        "{replayed:?}"
    );

    let refusals = [
        (
            sync_action(&thread, None, "tasks.explain", json!({"task_id": "x"})),
            "threads.custom_action (streaming)",
        ),
        (
            stream_action(&thread, None, "tasks.explain", json!({})),
            "does not fit its message",
        ),
    ];
    assert_refused(&daemon, &alice, &refusals).await;
    daemon.stop().await;
}

/// A card the conversation moved past (the user wrote something else
/// instead of answering) runs nothing when clicked later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_the_conversation_moved_past_runs_nothing() {
    let (_tasks, daemon) = start(Backend::Sqlite).await;
    let alice = token("alice");
    let (thread, ids) = add_tasks(&daemon, &alice, &["keep me"]).await;
    daemon
        .llm
        .push(call("del1", "delete_task", json!({"task_id": ids[0]})));
    let asked = daemon
        .stream_as(&alice, add_message_body(&thread, "delete it"))
        .await;
    let card_id = widget_of(&asked)["id"].as_str().expect("id").to_owned();
    // The user changes the subject; the model never sees the waiting call.
    daemon
        .stream_as(
            &alice,
            add_message_body(&thread, "never mind, what is 2+2?"),
        )
        .await;
    let messages = last_messages(&daemon);
    assert!(
        messages.iter().all(|m| m["tool_calls"]
            .as_array()
            .is_none_or(|calls| calls.iter().all(|c| c["id"] != "del1"))),
        "an unanswered call is not replayed: {messages:?}"
    );

    let model_calls = daemon.llm.stream_requests().len();
    let late = click(
        &daemon,
        &alice,
        &thread,
        Some(&card_id),
        "tool.approve",
        json!({"call_ids": ["del1"]}),
    )
    .await;
    assert_eq!(
        late.types(),
        ["stream_options", "thread.item.replaced"],
        "{}",
        late.raw
    );
    let settled = &late.events[1]["item"]["widget"];
    assert!(
        text_of(settled).starts_with("Not run: delete_task"),
        "{}",
        text_of(settled)
    );
    assert!(actions_of(settled).is_empty());
    assert_eq!(
        daemon.llm.stream_requests().len(),
        model_calls,
        "no model call"
    );

    // Nothing ran: the task is still there.
    daemon.llm.push(call("l1", "list_tasks", json!({})));
    daemon.llm.push(Script::text(["Still there."]));
    daemon
        .stream_as(&alice, add_message_body(&thread, "list"))
        .await;
    assert_eq!(
        support::last_tool_json(&daemon)["tasks"][0]["id"],
        ids[0].as_str()
    );

    // Malformed settlements are refused before anything runs.
    let refusals = [
        (
            stream_action(&thread, None, "tool.approve", json!({"call_ids": ["del1"]})),
            "must name its approval card",
        ),
        (
            stream_action(
                &thread,
                Some(&card_id),
                "tool.deny",
                json!({"call_ids": "del1"}),
            ),
            "{\"call_ids\": [ids]}",
        ),
    ];
    assert_refused(&daemon, &alice, &refusals).await;
    daemon.stop().await;
}

/// A template that cannot render the result is a warning in the log: the
/// call still shows as activity, the model still reads its result, the
/// stream ends normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widget_that_does_not_render_leaves_the_plain_activity() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let broken = tasks.path().join("broken.widget");
    let template =
        r#"{"type": "Card", "children": [{"type": "Text", "value": {{ missing | tojson }}}]}"#;
    std::fs::write(
        &broken,
        json!({"version": "1.0", "name": "Broken", "template": template, "jsonSchema": {}})
            .to_string(),
    )
    .expect("written");
    let daemon = Daemon::binary(
        Backend::Sqlite,
        &interactive_toml_with(&tasks.path().join("t.db"), &broken),
    )
    .await;
    let alice = token("alice");
    let (thread, _) = add_tasks(&daemon, &alice, &["one"]).await;
    daemon.llm.push(call("l1", "list_tasks", json!({})));
    daemon.llm.push(Script::text(["Here it is."]));
    let listed = daemon
        .stream_as(&alice, add_message_body(&thread, "list"))
        .await;
    assert!(listed.error().is_none(), "{}", listed.raw);
    assert_eq!(listed.answer().as_deref(), Some("Here it is."));
    assert!(
        listed.done_items().iter().all(|i| i["type"] != "widget"),
        "{}",
        listed.raw
    );
    assert!(listed.done_items().iter().any(|i| i["type"] == "workflow"));
    assert_eq!(support::last_tool_json(&daemon)["tasks"][0]["title"], "one");
    assert!(
        support::eventually(std::time::Duration::from_secs(5), || async {
            daemon.log().contains("did not render")
        })
        .await,
        "the warning is logged:\n{}",
        daemon.log()
    );
    daemon.stop().await;
}
