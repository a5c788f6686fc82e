//! The example tool servers of `examples/tool-servers/` (Python with the
//! official `mcp` SDK, TypeScript with `@modelcontextprotocol/sdk`, Rust with
//! `rmcp`) and one third-party server from PyPI (`mcp-server-time`), each run
//! as a real child process through the real `chatkitd` binary's
//! `tools list`, `tools call` and `check`.
//!
//! For each example: the tools are listed as the model sees them (`user_id`
//! gone, the destructive tool marked for approval); a note added as alice
//! (with a `user_id` in the arguments that the daemon overwrites) is hers
//! alone; `list_notes` carries `structuredContent` that the shared widget
//! template renders; a tool error exits 1; `check` passes. For the
//! third-party server: its tools, a call, a tool error, and an instance
//! killed mid-call, which is a tool error and is replaced. The only fake is
//! the model endpoint `check` asks.
//!
//! The Python and TypeScript environments are prepared once under
//! `target/tool-server-examples/` (see `example_servers`); the Rust example
//! is a workspace member, built with the workspace.

mod example_servers;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use chatkitd::config::{Config, McpServerConfig};
use chatkitd::mcp::McpManager;
use chatkitd::widgets::WidgetTemplate;
use chatkitd_testkit::FakeLlm;
use example_servers::{examples_dir, prepared, rust_server};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::{children_of, eventually};

/// Longest one `chatkitd` command may take (a cold Python start included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// One of the three example servers.
#[derive(Debug, Clone, Copy)]
enum Example {
    Python,
    TypeScript,
    Rust,
}

impl Example {
    /// `command` and `args` of its `[mcp_servers.notes]` table.
    fn launch(self) -> (String, Vec<String>) {
        let path = |p: PathBuf| p.display().to_string();
        match self {
            Example::Python => (
                path(prepared().python.clone()),
                vec![path(examples_dir().join("python").join("notes_server.py"))],
            ),
            Example::TypeScript => ("node".to_owned(), vec![path(prepared().typescript.clone())]),
            Example::Rust => (path(rust_server()), vec![]),
        }
    }
}

/// The notes server's tables, as the examples' READMEs show them, with the
/// notes kept in `notes_file` and the shared widget on `list_notes`.
fn notes_toml(example: Example, notes_file: &Path) -> String {
    let (command, args) = example.launch();
    let widget = examples_dir().join("notes.widget");
    format!(
        "[mcp_servers.notes]\ncommand = {command:?}\nargs = {args:?}\n\
         env = {{ NOTES_FILE = {:?} }}\nmax_instances = 1\n\
         startup_timeout = \"60s\"\ncall_timeout = \"30s\"\n\
         inject = {{ user_id = \"user.id\" }}\n\n\
         [mcp_servers.notes.tools.list_notes]\nwidget = {:?}\n",
        notes_file.display().to_string(),
        widget.display().to_string(),
    )
}

/// `mcp-server-time` from the prepared environment, one instance at a time.
fn time_toml() -> String {
    format!(
        "[mcp_servers.time]\ncommand = {:?}\nargs = [\"--local-timezone\", \"UTC\"]\n\
         min_idle = 1\nmax_instances = 1\nstartup_timeout = \"60s\"\ncall_timeout = \"30s\"\n",
        prepared().time_server.display().to_string()
    )
}

/// A test directory with an `agent.toml` of `servers` on a SQLite store and
/// the model endpoint `llm` (only `check` asks it).
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(servers: impl FnOnce(&Path) -> String, llm: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            "[store]\nurl = \"sqlite://chatkitd.db\"\n\n[llm]\nbase_url = \"{llm}\"\n\
             api_key = \"test-key\"\nmodel = \"fake-model\"\nmax_retries = 0\n\n{}",
            servers(dir.path())
        );
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, text).expect("config written");
        Setup { dir, config }
    }

    /// Runs `chatkitd ARGS` to its exit.
    async fn run(&self, args: &[&str]) -> Output {
        let child = support::chatkitd_command(&self.config)
            .env_remove("CHATKITD_LOG")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chatkitd starts");
        tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .expect("chatkitd finishes in time")
            .expect("chatkitd runs")
    }

    /// `chatkitd tools call SERVER TOOL --args ARGS --user USER`: exit
    /// status 0 or not, and what it printed.
    async fn call(&self, call: [&str; 2], args: &str, user: &str) -> (bool, String) {
        let [server, tool] = call;
        let output = self
            .run(&[
                "tools", "call", server, tool, "--args", args, "--user", user,
            ])
            .await;
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        match output.status.code() {
            Some(0) => (true, stdout),
            Some(1) => {
                assert!(stderr.contains("the call failed"), "{stderr}");
                (false, stdout)
            }
            other => panic!("tools call {server}/{tool} exited with {other:?}:\n{stderr}"),
        }
    }

    /// The configured server `name` as the daemon reads it.
    fn server(&self, name: &str) -> McpServerConfig {
        let text = std::fs::read_to_string(&self.config).expect("config");
        let config = Config::from_toml(&text, "agent.toml", self.dir.path().into(), &|_| None)
            .expect("a valid configuration");
        config.mcp_servers[name].clone()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `chatkitd tools list`: what it printed, after checking it succeeded.
async fn tools_list(setup: &Setup) -> String {
    let output = setup.run(&["tools", "list"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

/// The line that introduces `tool` in `tools list`'s output.
fn tool_line<'a>(listing: &'a str, tool: &str) -> &'a str {
    listing
        .lines()
        .find(|line| line.starts_with(&format!("{tool}  (")))
        .unwrap_or_else(|| panic!("{tool} is not listed:\n{listing}"))
}

const APPROVAL: &str = "[asks the user's approval]";

/// Everything one example must do, through the binary and the pool.
async fn notes_example(example: Example) {
    let llm = FakeLlm::start().await;
    let setup = Setup::new(
        |dir| notes_toml(example, &dir.join("notes.json")),
        &llm.base_url(),
    );

    let listing = tools_list(&setup).await;
    assert!(
        tool_line(&listing, "delete_note").ends_with(APPROVAL),
        "{listing}"
    );
    for tool in ["list_notes", "add_note"] {
        assert!(!tool_line(&listing, tool).contains(APPROVAL), "{listing}");
    }
    assert!(
        listing.contains("\"note_id\"") && listing.contains("\"text\""),
        "{listing}"
    );
    assert!(
        !listing.contains("user_id"),
        "the injected parameter is hidden:\n{listing}"
    );

    // The model cannot act for someone else: its user_id is overwritten.
    let add = r#"{"text":"Buy milk","user_id":"bob"}"#;
    let (ok, added) = setup.call(["notes", "add_note"], add, "alice").await;
    assert!(ok, "{added}");
    assert!(added.contains("Added note n1: Buy milk"), "{added}");
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(setup.dir.path().join("notes.json")).expect("the notes file"),
    )
    .expect("JSON");
    assert_eq!(stored, json!({"alice": [{"id": "n1", "text": "Buy milk"}]}));

    let (ok, bobs) = setup.call(["notes", "list_notes"], "{}", "bob").await;
    assert!(
        ok && bobs.contains("no notes") && !bobs.contains("Buy milk"),
        "{bobs}"
    );
    let (ok, alices) = setup.call(["notes", "list_notes"], "{}", "alice").await;
    assert!(ok && alices.contains("n1: Buy milk"), "{alices}");

    // A tool error (bob has no note n1) exits 1 with the server's words.
    let (ok, refused) = setup
        .call(["notes", "delete_note"], r#"{"note_id":"n1"}"#, "bob")
        .await;
    assert!(!ok && refused.contains("No note with id"), "{refused}");

    // structuredContent, read through the daemon's pool, renders the widget;
    // the model reads the text, which is not the JSON.
    let servers = BTreeMap::from([("notes".to_owned(), setup.server("notes"))]);
    let manager = McpManager::configure(&servers, setup.dir.path(), 16 * 1024);
    let listed = manager
        .call_tool("alice", "notes", "list_notes", "{}")
        .await;
    manager.shutdown().await;
    assert!(!listed.is_error, "{listed:?}");
    let data = listed.structured.clone().expect("structuredContent");
    assert_eq!(data, json!({"notes": [{"id": "n1", "text": "Buy milk"}]}));
    assert!(listed.output.starts_with("1 note(s):"), "{}", listed.output);
    let template = WidgetTemplate::load(&examples_dir().join("notes.widget")).expect("widget");
    let widget = template.render(&data).expect("the widget renders");
    assert_eq!(widget["type"], "ListView");
    assert!(widget.to_string().contains("Buy milk"), "{widget}");

    let output = setup.run(&["check"]).await;
    let report = text(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        text(&output.stderr)
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("ok   mcp notes") && l.contains("3 tools")),
        "{report}"
    );

    let (ok, deleted) = setup
        .call(["notes", "delete_note"], r#"{"note_id":"n1"}"#, "alice")
        .await;
    assert!(ok && deleted.contains("Deleted note n1"), "{deleted}");
    let (ok, empty) = setup.call(["notes", "list_notes"], "{}", "alice").await;
    assert!(ok && empty.contains("no notes"), "{empty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_keeps_notes_per_user() {
    notes_example(Example::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_example_keeps_notes_per_user() {
    notes_example(Example::TypeScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_example_keeps_notes_per_user() {
    notes_example(Example::Rust).await;
}

/// A setup with only the time server (no command here asks the model).
fn time_setup() -> Setup {
    Setup::new(|_| time_toml(), "http://127.0.0.1:9/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_servers_tools_are_listed() {
    let listing = tools_list(&time_setup()).await;
    for tool in ["get_current_time", "convert_time"] {
        let line = tool_line(&listing, tool);
        assert!(line.contains(&format!("(time/{tool})")), "{line}");
        assert!(
            !line.contains(APPROVAL),
            "read-only tools run at once: {line}"
        );
    }
    assert!(listing.contains("\"timezone\""), "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_server_answers_a_call() {
    let setup = time_setup();
    let args = r#"{"timezone":"Europe/Paris"}"#;
    let (ok, answer) = setup.call(["time", "get_current_time"], args, "ann").await;
    assert!(ok, "{answer}");
    let answer: Value = serde_json::from_str(answer.trim()).expect("the result's JSON text");
    assert_eq!(answer["timezone"], "Europe/Paris");
    assert!(answer["datetime"].is_string(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_timezone_is_a_tool_error() {
    let setup = time_setup();
    let args = r#"{"timezone":"Mars/Olympus_Mons"}"#;
    let (ok, answer) = setup.call(["time", "get_current_time"], args, "ann").await;
    assert!(!ok, "{answer}");
    assert!(answer.contains("Invalid timezone"), "{answer}");
}

/// The pids of the time servers this test process started itself.
fn time_servers() -> Vec<u32> {
    children_of(std::process::id())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("mcp-server-time"))
        })
        .collect()
}

fn signal(signal: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_server_killed_mid_call_is_a_tool_error_and_is_replaced() {
    // The daemon's own pool, in this process, so that its instance is this
    // process's child and its counts can be read.
    let setup = time_setup();
    let servers = BTreeMap::from([("time".to_owned(), setup.server("time"))]);
    let manager = McpManager::start(&servers, setup.dir.path(), 16 * 1024).await;
    let args = r#"{"timezone":"UTC"}"#;
    let warm = manager
        .call_tool("ann", "time", "get_current_time", args)
        .await;
    assert!(!warm.is_error, "{warm:?}");
    let [pid] = time_servers()[..] else {
        panic!("one time server: {:?}", time_servers());
    };

    // Stopped, the server cannot answer: the next call is surely in flight
    // when it is killed.
    signal("-STOP", pid);
    let call = tokio::spawn({
        let manager = manager.clone();
        async move {
            manager
                .call_tool("ann", "time", "get_current_time", args)
                .await
        }
    });
    let busy = eventually(Duration::from_secs(10), || {
        let manager = manager.clone();
        async move { manager.pool_counts()[0].busy == 1 }
    })
    .await;
    assert!(
        busy,
        "the call reached the instance: {:?}",
        manager.pool_counts()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal("-KILL", pid);
    let killed = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call ends when its server dies")
        .expect("the call's task");
    assert!(killed.is_error, "{killed:?}");
    assert!(
        killed.output.contains("stopped during the call"),
        "{}",
        killed.output
    );

    let next = manager
        .call_tool("ann", "time", "get_current_time", args)
        .await;
    assert!(!next.is_error, "a fresh instance answers: {next:?}");
    let counts = &manager.pool_counts()[0];
    assert_eq!(counts.replaced, 1, "{counts:?}");
    let now = time_servers();
    assert!(now.len() == 1 && now[0] != pid, "{pid} replaced: {now:?}");
    manager.shutdown().await;
}
