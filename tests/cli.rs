//! The operator's terminal commands, run as the built binary: `chat` piped
//! (answers in order, stored, resumed, tool lines, SIGINT keeps the partial
//! answer), `tools list` / `tools call` on the fake MCP server (injection
//! applied, exit 1 on a failed call), and `check` as a deploy gate. The fake
//! LLM runs in the test process.
//!
//! Why one file: each file under `tests/` is its own test binary, linked
//! against the whole daemon; this suite's scenarios share their fixtures,
//! and splitting them would add binaries to build and link in every CI run
//! without making any one scenario easier to find (each is a named test).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatkitd::protocol::{ItemKind, ThreadItem};
use chatkitd::store::sql::SqlStoreOptions;
use chatkitd::store::{SqlStore, Store};
use chatkitd_testkit::{FakeLlm, Script};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::workspace_bin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Longest a command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A `chatkitd` command that sees none of the variables that override the
/// configuration file.
fn chatkitd(config: &Path) -> Command {
    let mut command = support::chatkitd_command(config);
    command
        .env_remove("CHATKITD_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A test directory with an `agent.toml` on a SQLite store answering with
/// `base_url`, optionally with the fake MCP server as `fake`.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(base_url: &str, with_tools: bool) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut text = format!(
            r#"[store]
url = "sqlite://chatkitd.db"

[llm]
base_url = "{base_url}"
api_key = "test-key"
model = "fake-model"
connect_timeout = "2s"
request_timeout = "10s"
idle_timeout = "30s"
max_retries = 0
"#
        );
        if with_tools {
            text.push_str(&format!(
                r#"
[mcp_servers.fake]
command = {:?}
min_idle = 1
startup_timeout = "10s"
call_timeout = "5s"
inject = {{ user_id = "user.id" }}
"#,
                workspace_bin("fake-mcp").display().to_string()
            ));
        }
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, text).expect("config written");
        Setup { dir, config }
    }

    fn store_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("chatkitd.db").display())
    }

    /// `user`'s tasks, listed with `chatkitd tools call` on the tasks server.
    async fn tasks_of(&self, user: &str) -> Value {
        let args = [
            "tools",
            "call",
            "tasks",
            "list_tasks",
            "--args",
            "{}",
            "--user",
            user,
        ];
        let output = self.run(&args, "").await;
        assert!(output.status.success(), "{}", text(&output.stderr));
        let value: Value = serde_json::from_str(text(&output.stdout).trim()).expect("JSON");
        value["tasks"].clone()
    }

    /// Runs `chatkitd ARGS` with `input` on stdin, to its exit.
    async fn run(&self, args: &[&str], input: &str) -> Output {
        let mut child = chatkitd(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("chatkitd starts");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("input written");
        drop(stdin);
        tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .expect("chatkitd finishes in time")
            .expect("chatkitd runs")
    }

    /// The visible conversation of `thread_id` as (type, text) pairs, and
    /// every item's type, from the store.
    async fn stored(&self, user: &str, thread_id: &str) -> (Vec<(String, String)>, Vec<String>) {
        let store = SqlStore::connect(&self.store_url(), &SqlStoreOptions::default())
            .await
            .expect("store connects");
        let items = store
            .load_history(user, thread_id, 100)
            .await
            .expect("history loads");
        store.close().await;
        (
            conversation(&items),
            items.iter().map(|i| i.type_name().to_owned()).collect(),
        )
    }
}

fn conversation(items: &[ThreadItem]) -> Vec<(String, String)> {
    items
        .iter()
        .filter_map(|item| match &item.kind {
            ItemKind::UserMessage(m) => Some(("user".to_owned(), chatkitd::agent::user_text(m))),
            ItemKind::AssistantMessage(m) => Some(("assistant".to_owned(), m.text())),
            _ => None,
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The id in the `thread thr_…` line of a chat's stderr.
fn thread_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("thread "))
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("no `thread` line on stderr:\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_chat_answers_each_line_in_order_and_stores_the_exchange() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), false);
    llm.push(Script::text(["Hello", ", first", "."]));
    llm.push(Script::text(["Second ", "answer."]));

    let output = setup
        .run(&["chat"], "first question\n\nsecond question\n")
        .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );
    assert_eq!(
        stdout, "Hello, first.\nSecond answer.\n",
        "stderr:\n{stderr}"
    );
    let id = thread_id(&stderr);
    assert!(id.starts_with("thr_"), "{id}");

    let (messages, _) = setup.stored("dev", &id).await;
    assert_eq!(
        messages,
        [
            ("user".to_owned(), "first question".to_owned()),
            ("assistant".to_owned(), "Hello, first.".to_owned()),
            ("user".to_owned(), "second question".to_owned()),
            ("assistant".to_owned(), "Second answer.".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_chat_reports_an_error_event_and_goes_on() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), false);
    llm.push(Script::status(400));
    llm.push(Script::text(["Fine now."]));
    let output = setup.run(&["chat"], "first\nsecond\n").await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "Fine now.\n", "stderr:\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains("400")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_resumes_a_thread_with_its_history() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), false);
    llm.push(Script::text(["I will remember 42."]));
    let first = setup
        .run(&["chat", "--user", "carol"], "remember 42\n")
        .await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    let id = thread_id(&text(&first.stderr));

    // Another user cannot resume it.
    let intruder = setup.run(&["chat", "--thread", &id], "hello\n").await;
    assert!(
        !intruder.status.success(),
        "dev must not see carol's thread"
    );
    assert!(
        text(&intruder.stderr).contains("does not exist"),
        "{}",
        text(&intruder.stderr)
    );

    llm.clear_requests();
    llm.push(Script::text(["It was 42."]));
    let second = setup
        .run(
            &["chat", "--user", "carol", "--thread", &id],
            "which number?\n",
        )
        .await;
    let (stdout, stderr) = (text(&second.stdout), text(&second.stderr));
    assert!(second.status.success(), "{stderr}");
    assert_eq!(stdout, "It was 42.\n");
    assert_eq!(thread_id(&stderr), id);
    assert!(
        stderr.contains("> remember 42") && stderr.contains("I will remember 42."),
        "the last messages are shown (on stderr when piped):\n{stderr}"
    );
    let requests = llm.stream_requests();
    assert_eq!(requests.len(), 1);
    let history: Vec<Value> = requests[0].messages()[1..].to_vec();
    assert_eq!(
        history,
        [
            json!({"role": "user", "content": "remember 42"}),
            json!({"role": "assistant", "content": "I will remember 42."}),
            json!({"role": "user", "content": "which number?"}),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_shows_a_tool_call_then_the_answer() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), true);
    llm.push(Script::tool_call(
        "call_1",
        "echo",
        r#"{"text":"buy milk","user_id":"mallory"}"#,
    ));
    llm.push(Script::text(["The echo said buy milk."]));

    let output = setup.run(&["chat"], "echo buy milk\n").await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let tool_line = lines
        .iter()
        .position(|l| l.trim_start().starts_with(['*', '⚙']) && l.contains("echo"))
        .unwrap_or_else(|| panic!("no tool line:\n{stdout}"));
    assert!(
        lines[tool_line].contains(r#""text":"buy milk""#) && lines[tool_line].contains("done in "),
        "name, arguments and outcome: {}",
        lines[tool_line]
    );
    let result = lines[tool_line + 1];
    assert!(
        result.contains(r#""user_id":"dev""#) && !result.contains("mallory"),
        "the tool's output, with the injected user: {result}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("The echo said buy milk."),
        "{stdout}"
    );
    assert_eq!(lines.len(), tool_line + 3, "{stdout}");

    let (messages, types) = setup.stored("dev", &thread_id(&stderr)).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(types.iter().any(|t| t == "workflow"), "{types:?}");
}

/// A tool server's question in the terminal: each question is shown with
/// its choices numbered, a refused answer is said and the form asked again,
/// and the accepted answer goes to the tool, whose call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_asks_a_tool_servers_question_and_sends_the_answer() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), true);
    let arguments = serde_json::json!({
        "message": "Your order",
        "schema": {"type": "object", "properties": {
            "size": {"type": "string", "enum": ["small", "large"]},
            "count": {"type": "integer", "minimum": 1, "maximum": 5}
        }, "required": ["size"]}
    });
    llm.push(Script::tool_call("call_1", "ask", arguments.to_string()));
    llm.push(Script::text(["Ordered."]));

    // count 9 is refused, then the form is asked again: large, 2.
    let output = setup
        .run(
            &["chat"],
            "order please
9
2
2
2
",
        )
        .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("? Your order"), "{stdout}");
    assert!(stdout.contains("1) small  2) large"), "{stdout}");
    assert!(stderr.contains("not accepted"), "{stderr}");
    assert_eq!(stdout.lines().last(), Some("Ordered."), "{stdout}");
    let asked = llm.stream_requests();
    let result = asked[1]
        .messages()
        .iter()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .expect("the tool's result")
        .to_owned();
    assert!(
        result.contains(r#""count":2"#) && result.contains(r#""size":"large""#),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_answer_stops_it_and_keeps_the_partial_answer() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), false);
    llm.push(Script::Hang {
        chunks: vec!["Partial ".into(), "answer".into()],
    });
    let mut child = chatkitd(&setup.config)
        .arg("chat")
        .stdin(Stdio::piped())
        .spawn()
        .expect("chatkitd starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"tell me a long story\n")
        .await
        .expect("input written");
    // stdin stays open: end of input would not stop a piped answer anyway.
    let seen = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };
    let started = support::eventually(Duration::from_secs(30), || {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains("Partial answer")
        }
    })
    .await;
    assert!(started, "the partial answer streams");

    let pid = child.id().expect("running");
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = tokio::time::timeout(COMMAND_TIMEOUT, child.wait())
        .await
        .expect("exits after SIGINT")
        .expect("wait");
    let _ = reader.await;
    drop(stdin);
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    assert_eq!(status.code(), Some(130), "{stderr}");

    let (messages, types) = setup.stored("dev", &thread_id(&stderr)).await;
    assert_eq!(
        messages,
        [
            ("user".to_owned(), "tell me a long story".to_owned()),
            ("assistant".to_owned(), "Partial answer".to_owned()),
        ]
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("sdk_hidden_context"),
        "the cancellation marker follows: {types:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_the_models_view() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), true);
    let output = setup.run(&["tools", "list"], "").await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    for tool in ["echo", "pid", "sleep", "crash"] {
        assert!(
            stdout.contains(&format!("{tool}  (fake/{tool})")),
            "{tool} listed:\n{stdout}"
        );
    }
    assert!(stdout.contains("Returns its arguments."), "{stdout}");
    assert!(
        stdout.contains(r#""type": "object""#),
        "schemas, pretty:\n{stdout}"
    );
    assert!(
        !stdout.contains("user_id"),
        "the injected parameter is hidden:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_call_injects_the_user_and_fails_with_the_tool() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), true);
    let output = setup
        .run(
            &[
                "tools",
                "call",
                "fake",
                "echo",
                "--args",
                r#"{"text":"hi","user_id":"mallory"}"#,
                "--user",
                "alice",
            ],
            "",
        )
        .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    let echoed: Value = serde_json::from_str(stdout.trim()).expect("the echo's JSON");
    assert_eq!(
        echoed["arguments"],
        json!({"text": "hi", "user_id": "alice"})
    );

    let crashed = setup.run(&["tools", "call", "fake", "crash"], "").await;
    assert_eq!(crashed.status.code(), Some(1), "{}", text(&crashed.stderr));
    assert!(text(&crashed.stdout).contains("stopped during the call"));

    let unknown = setup.run(&["tools", "call", "fake", "nope"], "").await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stdout).contains("no tool named"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_good_configuration() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), true);
    let output = setup.run(&["check"], "").await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for (status, name) in [
        ("ok", "config"),
        ("ok", "store"),
        ("ok", "mcp fake"),
        ("ok", "llm"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(status) && l[4..].trim_start().starts_with(name)),
            "{status} {name}:\n{stdout}"
        );
    }
    assert!(stdout.contains("fake-model"), "{stdout}");
    assert!(stdout.contains(" ms)"), "timings:\n{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("does not exist yet") && !setup.dir.path().join("chatkitd.db").exists(),
        "a check creates no database:\n{stdout}"
    );

    let migrated = setup.run(&["migrate"], "").await;
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let output = setup.run(&["check"], "").await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok   store") && l.ends_with("schema up to date")),
        "{stdout}"
    );
}

/// With `[llm] api = "responses"`, `check` also asks whether the endpoint
/// serves `/responses`: the fake does; a server with only `/models` fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_asks_for_the_responses_route_when_it_is_used() {
    let on_responses = |setup: &Setup| {
        let mut text = std::fs::read_to_string(&setup.config).expect("config");
        text.push_str("api = \"responses\"\n");
        std::fs::write(&setup.config, text).expect("config written");
    };
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), false);
    on_responses(&setup);
    let output = setup.run(&["check"], "").await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok   llm") && l.ends_with("serves /responses")),
        "{stdout}"
    );
    assert!(
        llm.requests().is_empty(),
        "the route check is no conversation"
    );

    // A chat-completions-only server: it lists models, has no /responses.
    let models = axum::Router::new().route(
        "/v1/models",
        axum::routing::get(|| async {
            axum::Json(json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, models).await });
    let setup = Setup::new(&format!("http://{addr}/v1"), false);
    on_responses(&setup);
    let output = setup.run(&["check"], "").await;
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL llm") && l.contains("no /responses route")),
        "{stdout}"
    );
    server.abort();
}

/// With `[agents]`, `check` lists each agent with its model, the tools it
/// is offered of those the servers list, and whom it hands off to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_the_agents_and_their_tools() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), true);
    let mut text_of = std::fs::read_to_string(&setup.config).expect("config");
    text_of.push_str(
        "\n[agents.billing]\ninstructions_text = \"You bill.\"\nmodel = \"billing-model\"\nenabled_tools = [\"echo\"]\nhandoffs = [\"entry\"]\n",
    );
    std::fs::write(&setup.config, text_of).expect("config written");
    let output = setup.run(&["check"], "").await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("ok   agent {name}")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"))
            .to_owned()
    };
    let billing = line("billing");
    assert!(
        billing.contains("billing-model")
            && billing.contains("1 tools: echo")
            && billing.ends_with("hands off to entry"),
        "{billing}"
    );
    assert!(line("entry").contains("pid"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_when_the_llm_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let setup = Setup::new(&format!("http://127.0.0.1:{closed}/v1"), false);
    let output = setup.run(&["check"], "").await;
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    let fail = stdout
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .unwrap_or_else(|| panic!("a FAIL line:\n{stdout}"));
    assert!(
        fail.contains("llm") && fail.contains(&closed.to_string()),
        "{fail}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("store")),
        "the other checks still run:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_on_a_bad_configuration_and_hides_passwords() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[server]\nlisten = \"localhost\"\n").expect("written");
    let output = chatkitd(&config).arg("check").output().await.expect("runs");
    let stdout = text(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.starts_with("FAIL config") && stdout.contains("server.listen"),
        "{stdout}"
    );

    std::fs::write(
        &config,
        "[store]\nurl = \"postgres://app:s3cret@127.0.0.1:1/chat\"\n",
    )
    .expect("written");
    let output = tokio::time::timeout(COMMAND_TIMEOUT, chatkitd(&config).arg("check").output())
        .await
        .expect("in time")
        .expect("runs");
    let stdout = text(&output.stdout);
    assert!(!output.status.success());
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("postgres://app:***@127.0.0.1:1/chat")),
        "{stdout}"
    );
}

/// The shipped task assistant in the terminal: a piped message makes the
/// model call `add_task` on the real `tasks-mcp`, the answer is printed, and
/// the task is stored for the chatting user only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_chat_adds_a_task_with_the_tasks_server() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), false);
    let mut config = std::fs::read_to_string(&setup.config).expect("config");
    config.push_str(&format!(
        "\n[mcp_servers.tasks]\ncommand = {:?}\nenv = {{ TASKS_DB = \"tasks.db\" }}\ninject = {{ user_id = \"user.id\" }}\n",
        workspace_bin("tasks-mcp").display().to_string()
    ));
    std::fs::write(&setup.config, config).expect("config written");
    llm.push(Script::tool_call(
        "call_1",
        "add_task",
        r#"{"title":"buy milk"}"#,
    ));
    llm.push(Script::text(["Added buy milk."]));

    let output = setup
        .run(&["chat", "--user", "alice"], "add task buy milk\n")
        .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("add_task") && l.contains("buy milk")),
        "the tool line: {stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("Added buy milk."), "{stdout}");
    let (messages, types) = setup.stored("alice", &thread_id(&stderr)).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(types.iter().any(|t| t == "workflow"), "{types:?}");

    // The task belongs to alice, and only to her.
    assert_eq!(
        setup.tasks_of("alice").await.as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(setup.tasks_of("bob").await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_chat_shows_widgets_and_answers_an_approval_card() {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(&llm.base_url(), false);
    let mut config = std::fs::read_to_string(&setup.config).expect("config");
    let widget = Path::new(env!("CARGO_MANIFEST_DIR")).join("widgets/task-list.widget");
    config.push_str(&format!(
        "\n[mcp_servers.tasks]\ncommand = {:?}\nenv = {{ TASKS_DB = \"tasks.db\" }}\ninject = {{ user_id = \"user.id\" }}\n[mcp_servers.tasks.tools.list_tasks]\nwidget = {:?}\n",
        workspace_bin("tasks-mcp").display().to_string(),
        widget.display().to_string(),
    ));
    std::fs::write(&setup.config, config).expect("config written");
    let added = setup
        .run(
            &[
                "tools",
                "call",
                "tasks",
                "add_task",
                "--args",
                r#"{"title":"old plan"}"#,
                "--user",
                "alice",
            ],
            "",
        )
        .await;
    assert!(added.status.success(), "{}", text(&added.stderr));
    let task: Value = serde_json::from_str(text(&added.stdout).trim()).expect("JSON");
    let task_id = task["id"].as_str().expect("id");
    let listed = text(&setup.run(&["tools", "list"], "").await.stdout);
    assert!(
        listed.contains("delete_task  (tasks/delete_task)  [asks the user's approval]"),
        "the destructive tool is marked:\n{listed}"
    );
    assert!(
        listed.contains("list_tasks  (tasks/list_tasks)\n"),
        "{listed}"
    );

    llm.push(Script::tool_call("call_1", "list_tasks", "{}"));
    llm.push(Script::text(["Here is your list."]));
    llm.push(Script::tool_call(
        "call_2",
        "delete_task",
        format!(r#"{{"task_id":"{task_id}"}}"#),
    ));
    llm.push(Script::text(["Deleted it."]));
    let output = setup
        .run(
            &["chat", "--user", "alice"],
            "show my tasks\ndelete the old plan\ny\n",
        )
        .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    // The card's glyph depends on the locale.
    let stdout = stdout.replace('│', "|");
    let lines: Vec<&str> = stdout.lines().collect();
    for (line, what) in [
        ("  | old plan  [Done]", "the task card"),
        ("  | Run delete_task?", "the approval card"),
        ("  | [Approve]  [Deny]", "its buttons"),
        ("  | Approved: delete_task", "the settled card"),
    ] {
        assert!(lines.contains(&line), "{what}: {stdout}");
    }
    assert_eq!(lines.last(), Some(&"Deleted it."), "{stdout}");
    assert_eq!(setup.tasks_of("alice").await, json!([]), "deleted");

    // Resumed, the thread shows its cards with its messages.
    let thread = thread_id(&stderr);
    let resumed = setup
        .run(&["chat", "--user", "alice", "--thread", &thread], "")
        .await;
    let history = text(&resumed.stderr).replace('│', "|");
    assert!(history.contains("  | old plan  [Done]"), "{history}");
    assert!(history.contains("  | Approved: delete_task"), "{history}");
}
