//! The shipped task assistant end to end: the fake LLM asks for the real
//! `tasks-mcp` server's tools, the daemon runs them for the authenticated
//! user, and what the tools stored belongs to that user only.

mod support;

use std::path::Path;

use chatkitd::config::{Config, McpServerConfig};
use chatkitd_testkit::{FakeToolCall, Script};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::{Backend, Daemon, workspace_bin};

fn tasks_server(db: &Path) -> McpServerConfig {
    let text = format!(
        "[mcp_servers.tasks]\ncommand = {:?}\nenv = {{ TASKS_DB = {:?} }}\nmin_idle = 1\nmax_instances = 2\ninject = {{ user_id = \"user.id\" }}\n",
        workspace_bin("tasks-mcp").display().to_string(),
        db.display().to_string(),
    );
    Config::from_toml(&text, "tasks.toml", ".".into(), &|_| None)
        .expect("valid")
        .mcp_servers["tasks"]
        .clone()
}

async fn daemon_for(backend: Backend, user: &str, db: &Path) -> Daemon {
    let server = tasks_server(db);
    let user = user.to_owned();
    Daemon::start_with(backend, move |config| {
        config.auth.dev_user = user;
        config.mcp_servers.insert("tasks".into(), server);
    })
    .await
}

fn call(id: &str, name: &str, args: Value) -> Script {
    Script::ToolCalls {
        calls: vec![FakeToolCall::new(id, name, args.to_string())],
    }
}

async fn add_task_buy_milk(backend: Backend) {
    let shared = tempfile::tempdir().expect("temp dir");
    let db = shared.path().join("tasks.db");
    let alice = daemon_for(backend, "alice", &db).await;

    // The model tries to file the task under bob; the daemon's user wins.
    alice.llm.push(call(
        "c1",
        "add_task",
        json!({"title": "buy milk", "user_id": "bob"}),
    ));
    alice.llm.push(Script::text(["Added ", "\"buy milk\"."]));
    let (thread_id, streamed) = alice.create_thread("add task buy milk").await;
    assert_eq!(streamed.answer().as_deref(), Some("Added \"buy milk\"."));
    assert_eq!(streamed.streamed_text(), "Added \"buy milk\".");

    let offered = &alice.llm.stream_requests()[0];
    let add_task = offered.body["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|t| t["function"]["name"] == "add_task")
        .expect("add_task offered")
        .clone();
    let properties = add_task["function"]["parameters"]["properties"]
        .as_object()
        .expect("props");
    assert!(!properties.contains_key("user_id"), "{properties:?}");
    assert!(properties.contains_key("title"));
    let created = support::last_tool_json(&alice);
    assert_eq!(created["title"], "buy milk");
    assert_eq!(created["status"], "open");

    // The reloaded thread shows the tool activity.
    let items = alice.items(&thread_id).await;
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| i["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["user_message", "workflow", "assistant_message"]);
    assert_eq!(items[1]["workflow"]["tasks"][0]["title"], "add_task");

    // The next turn's history includes the call and its result.
    alice.llm.push(call("c2", "list_tasks", json!({})));
    alice.llm.push(Script::text(["You have one task."]));
    alice.add_message(&thread_id, "what are my tasks?").await;
    let second_turn = &alice.llm.stream_requests()[2];
    let replayed: Vec<&str> = second_turn
        .messages()
        .iter()
        .map(|m| m["role"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        replayed,
        ["system", "user", "assistant", "tool", "assistant", "user"]
    );
    let listed = support::last_tool_json(&alice);
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["tasks"][0]["title"], "buy milk");

    // Bob, on the same task store, sees nothing of Alice's.
    let bob = daemon_for(backend, "bob", &db).await;
    bob.llm
        .push(call("c3", "list_tasks", json!({"status": "all"})));
    bob.llm.push(Script::text(["None."]));
    bob.create_thread("my tasks?").await;
    assert_eq!(support::last_tool_json(&bob), json!({"tasks": []}));
    let task_id = created["id"].as_str().expect("task id").to_owned();
    bob.llm
        .push(call("c4", "complete_task", json!({"task_id": task_id})));
    bob.llm.push(Script::text(["Cannot."]));
    bob.create_thread("complete it").await;
    let refused = support::last_tool_json(&bob);
    assert!(
        refused
            .as_str()
            .is_some_and(|t| t.contains("No task with id")),
        "{refused}"
    );

    alice.stop().await;
    bob.stop().await;
}

both_backends!(add_task_buy_milk);
