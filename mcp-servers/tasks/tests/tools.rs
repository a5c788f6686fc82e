//! End-to-end tests: the built `tasks-mcp` binary as a child process, driven by rmcp's client,
//! on a temporary SQLite file (and on Postgres when `TEST_PG_URL` is set).

mod common;

use common::{Client, Db, close, err, ok, spawn, temp_db, unique_user};
use serde_json::{Value, json};

const TOOLS: [&str; 5] = [
    "add_task",
    "list_tasks",
    "update_task",
    "complete_task",
    "delete_task",
];

#[tokio::test]
async fn lists_five_tools_with_a_required_user_id() {
    let (_dir, db) = temp_db();
    let client = spawn(&db).await;

    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("tasks")
    );
    assert!(info.instructions.as_deref().is_some_and(|i| !i.is_empty()));

    let tools = client.list_all_tools().await.expect("list tools");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    let mut expected = TOOLS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);

    for tool in &tools {
        let schema = Value::Object((*tool.input_schema).clone());
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{} has no required list: {schema}", tool.name))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(required.contains(&"user_id"), "{}: {schema}", tool.name);
        assert_eq!(
            schema["properties"]["user_id"]["description"], "The user the task belongs to.",
            "{}",
            tool.name
        );
        assert!(tool.description.as_deref().is_some_and(|d| d.len() > 40));
        let expected_required: &[&str] = match tool.name.as_ref() {
            "add_task" => &["user_id", "title"],
            "list_tasks" => &["user_id"],
            _ => &["user_id", "task_id"],
        };
        let mut sorted = required.clone();
        sorted.sort_unstable();
        let mut want = expected_required.to_vec();
        want.sort_unstable();
        assert_eq!(sorted, want, "{}: {schema}", tool.name);
    }
    let list = tools.iter().find(|t| t.name == "list_tasks").expect("list");
    assert_eq!(
        list.input_schema["properties"]["status"]["enum"],
        json!(["open", "done", "all"])
    );
    // The annotations clients decide approval by: only delete_task destroys.
    for tool in &tools {
        let hints = tool.annotations.as_ref().expect("annotated");
        let destructive = hints.destructive_hint == Some(true);
        assert_eq!(destructive, tool.name == "delete_task", "{}", tool.name);
        let read_only = hints.read_only_hint == Some(true);
        assert_eq!(read_only, tool.name == "list_tasks", "{}", tool.name);
    }
    close(client).await;
}

/// add → list → update → complete → list done → delete → list all, for one fresh user.
async fn round_trip(client: &Client) {
    let user = unique_user("alice");
    let first = ok(
        client,
        "add_task",
        json!({ "user_id": user, "title": "  Buy milk ", "due": "2030-01-15" }),
    )
    .await;
    let id = first["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("task_") && id.len() == 17, "{id}");
    assert_eq!(first["title"], "Buy milk");
    assert_eq!(first["status"], "open");
    assert_eq!(first["due"], "2030-01-15");
    assert!(first.get("user_id").is_none(), "the owner is not echoed");
    assert!(first.get("completed_at").is_none());

    let second = ok(
        client,
        "add_task",
        json!({ "user_id": user, "title": "Call mum", "notes": "about Sunday" }),
    )
    .await;
    let id2 = second["id"].as_str().expect("id").to_owned();

    let open = ok(client, "list_tasks", json!({ "user_id": user })).await;
    let ids: Vec<&str> = open["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str(), id2.as_str()], "oldest first");

    let updated = ok(
        client,
        "update_task",
        json!({ "user_id": user, "task_id": id, "title": "Buy oat milk", "notes": "2 litres", "due": "" }),
    )
    .await;
    assert_eq!(updated["title"], "Buy oat milk");
    assert_eq!(updated["notes"], "2 litres");
    assert!(
        updated.get("due").is_none(),
        "empty due clears it: {updated}"
    );
    assert_eq!(updated["created_at"], first["created_at"]);

    let done = ok(
        client,
        "complete_task",
        json!({ "user_id": user, "task_id": id }),
    )
    .await;
    assert_eq!(done["status"], "done");
    let completed_at = done["completed_at"]
        .as_str()
        .expect("completed_at")
        .to_owned();
    let again = ok(
        client,
        "complete_task",
        json!({ "user_id": user, "task_id": id }),
    )
    .await;
    assert_eq!(again["completed_at"], completed_at.as_str(), "idempotent");

    let open = ok(
        client,
        "list_tasks",
        json!({ "user_id": user, "status": "open" }),
    )
    .await;
    assert_eq!(open["tasks"].as_array().map(Vec::len), Some(1));
    let done_list = ok(
        client,
        "list_tasks",
        json!({ "user_id": user, "status": "done" }),
    )
    .await;
    assert_eq!(done_list["tasks"][0]["id"], id.as_str());

    let deleted = ok(
        client,
        "delete_task",
        json!({ "user_id": user, "task_id": id }),
    )
    .await;
    assert_eq!(deleted, json!({ "deleted": id }));
    let all = ok(
        client,
        "list_tasks",
        json!({ "user_id": user, "status": "all" }),
    )
    .await;
    assert_eq!(all["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(all["tasks"][0]["id"], id2.as_str());
    let gone = err(
        client,
        "delete_task",
        json!({ "user_id": user, "task_id": id }),
    )
    .await;
    assert!(gone.contains("No task with id"), "{gone}");
}

/// User B can neither see nor touch user A's task, and is told exactly what "unknown" says.
async fn isolation(client: &Client) {
    let a = unique_user("a");
    let b = unique_user("b");
    let task = ok(
        client,
        "add_task",
        json!({ "user_id": a, "title": "A's secret" }),
    )
    .await;
    let id = task["id"].as_str().expect("id");

    let seen = ok(
        client,
        "list_tasks",
        json!({ "user_id": b, "status": "all" }),
    )
    .await;
    assert_eq!(seen, json!({ "tasks": [] }));

    let unknown_id = "task_000000000000";
    for (tool, extra) in [
        ("update_task", json!({ "title": "hijacked" })),
        ("complete_task", json!({})),
        ("delete_task", json!({})),
    ] {
        let mut theirs = json!({ "user_id": b, "task_id": id });
        let mut unknown = json!({ "user_id": b, "task_id": unknown_id });
        for (k, v) in extra.as_object().expect("object") {
            theirs[k] = v.clone();
            unknown[k] = v.clone();
        }
        let theirs_msg = err(client, tool, theirs).await;
        let unknown_msg = err(client, tool, unknown).await;
        assert_eq!(
            theirs_msg.replace(id, "ID"),
            unknown_msg.replace(unknown_id, "ID")
        );
    }

    let still = ok(client, "list_tasks", json!({ "user_id": a })).await;
    assert_eq!(still["tasks"][0]["title"], "A's secret");
    assert_eq!(still["tasks"][0]["status"], "open");
}

#[tokio::test]
async fn round_trip_on_sqlite() {
    let (_dir, db) = temp_db();
    let client = spawn(&db).await;
    round_trip(&client).await;
    close(client).await;
}

#[tokio::test]
async fn users_are_isolated_on_sqlite() {
    let (_dir, db) = temp_db();
    let client = spawn(&db).await;
    isolation(&client).await;
    close(client).await;
}

#[tokio::test]
async fn mistakes_are_tool_errors_not_protocol_errors() {
    let (_dir, db) = temp_db();
    let client = spawn(&db).await;
    let user = unique_user("v");
    let c = &client;

    let cases = [
        (
            "add_task",
            json!({ "user_id": user, "title": "   " }),
            "title must not be empty",
        ),
        (
            "add_task",
            json!({ "user_id": user, "title": "x".repeat(501) }),
            "too long (501",
        ),
        (
            "add_task",
            json!({ "user_id": user, "title": "t", "due": "2025-02-30" }),
            "YYYY-MM-DD",
        ),
        (
            "add_task",
            json!({ "user_id": user, "title": "t", "due": "next friday" }),
            "YYYY-MM-DD",
        ),
        (
            "add_task",
            json!({ "user_id": "", "title": "t" }),
            "user_id is required",
        ),
        (
            "list_tasks",
            json!({ "user_id": " " }),
            "user_id is required",
        ),
        (
            "list_tasks",
            json!({ "user_id": user, "status": "closed" }),
            "status must be",
        ),
        (
            "update_task",
            json!({ "user_id": user, "task_id": "task_000000000000" }),
            "Nothing to update",
        ),
        (
            "update_task",
            json!({ "user_id": user, "task_id": "task_000000000000", "title": "t" }),
            "No task with id",
        ),
        (
            "complete_task",
            json!({ "user_id": user, "task_id": "nope" }),
            "No task with id \"nope\"",
        ),
        (
            "delete_task",
            json!({ "user_id": user, "task_id": "" }),
            "task_id is required",
        ),
    ];
    for (tool, args, expected) in cases {
        let message = err(c, tool, args.clone()).await;
        assert!(message.contains(expected), "{tool} {args}: {message}");
    }

    // A bad update leaves the task unchanged.
    let task = ok(c, "add_task", json!({ "user_id": user, "title": "keep" })).await;
    let id = task["id"].as_str().expect("id");
    let message = err(
        c,
        "update_task",
        json!({ "user_id": user, "task_id": id, "title": "new", "due": "2025-13-01" }),
    )
    .await;
    assert!(message.contains("YYYY-MM-DD"), "{message}");
    let list = ok(c, "list_tasks", json!({ "user_id": user })).await;
    assert_eq!(list["tasks"][0]["title"], "keep");
    close(client).await;
}

#[tokio::test]
async fn two_servers_share_one_sqlite_file() {
    let (_dir, db) = temp_db();
    // Both start on a file that does not exist yet: schema creation and WAL must not collide.
    let (one, two) = tokio::join!(spawn(&db), spawn(&db));
    let user = unique_user("shared");

    let mut expected = Vec::new();
    for round in 0..10 {
        let (a, b) = tokio::join!(
            ok(
                &one,
                "add_task",
                json!({ "user_id": user, "title": format!("one {round}") })
            ),
            ok(
                &two,
                "add_task",
                json!({ "user_id": user, "title": format!("two {round}") })
            ),
        );
        expected.push(a["id"].as_str().expect("id").to_owned());
        expected.push(b["id"].as_str().expect("id").to_owned());
    }
    let from_one = ok(&one, "list_tasks", json!({ "user_id": user })).await;
    let from_two = ok(&two, "list_tasks", json!({ "user_id": user })).await;
    assert_eq!(from_one, from_two);
    let mut ids: Vec<String> = from_one["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);

    // A task added by one server is completed through the other.
    let done = ok(
        &two,
        "complete_task",
        json!({ "user_id": user, "task_id": expected[0] }),
    )
    .await;
    assert_eq!(done["status"], "done");
    close(one).await;
    close(two).await;
}

#[tokio::test]
async fn round_trip_and_isolation_on_postgres() {
    let Ok(url) = std::env::var("TEST_PG_URL") else {
        eprintln!("skipped: set TEST_PG_URL=postgres://… to run the Postgres test");
        return;
    };
    let db = Db::Url(url);
    // Two servers starting together race on CREATE TABLE IF NOT EXISTS; both must come up.
    let (client, other) = tokio::join!(spawn(&db), spawn(&db));
    round_trip(&client).await;
    isolation(&other).await;
    close(client).await;
    close(other).await;
}
