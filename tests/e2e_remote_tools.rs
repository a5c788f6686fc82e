//! Tool servers over MCP's streamable HTTP transport (`url`): `fake-mcp
//! --http` as a real HTTP server on loopback, reached through rmcp's client
//! transport with configured headers; restarted, stopped and refusing.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chatkitd::config::{Config, McpServerConfig};
use chatkitd::mcp::McpManager;
use chatkitd_testkit::Script;
use serde_json::Value;
use support::{Backend, Daemon, eventually, workspace_bin};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A running `fake-mcp --http` and the URL it serves.
struct HttpServer {
    child: tokio::process::Child,
    url: String,
}

impl HttpServer {
    /// Starts the server on `address` (`127.0.0.1:0` for any port), asking
    /// for `header` (`name=value`) on every request when given.
    async fn start(address: &str, header: Option<&str>) -> HttpServer {
        let mut command = tokio::process::Command::new(workspace_bin("fake-mcp"));
        command
            .args(["--http", address])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(header) = header {
            command.args(["--require-header", header]);
        }
        let mut child = command.spawn().expect("fake-mcp starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("fake-mcp prints its URL")
            .expect("reads stdout")
            .expect("a URL line");
        HttpServer { child, url }
    }

    /// `host:port` it listens on.
    fn address(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .to_owned()
    }

    async fn kill(&mut self) {
        self.child.kill().await.expect("kill fake-mcp");
    }
}

/// `[mcp_servers.remote]` for `url` with `call_timeout`, parsed as the
/// daemon would, with `TOKEN` set to `token` in its environment.
fn remote_config(url: &str, call_timeout: &str, token: &str) -> McpServerConfig {
    let text = format!(
        "[mcp_servers.remote]\nurl = {url:?}\nheaders = {{ Authorization = \"Bearer ${{TOKEN}}\" }}\nmin_idle = 1\nmax_instances = 2\nstartup_timeout = \"5s\"\ncall_timeout = {call_timeout:?}\ninject = {{ user_id = \"user.id\" }}\n"
    );
    let token = token.to_owned();
    let config = Config::from_toml(&text, "remote.toml", PathBuf::from("."), &move |name| {
        (name == "TOKEN").then(|| token.clone())
    })
    .expect("remote config is valid");
    config.mcp_servers["remote"].clone()
}

/// A manager of that one server, its tool list fetched.
async fn manager(server: McpServerConfig) -> std::sync::Arc<McpManager> {
    let configs = BTreeMap::from([("remote".to_owned(), server)]);
    let mcp = McpManager::configure(&configs, std::path::Path::new("."), 64 * 1024);
    assert!(
        !mcp.tools_for("alice").await.is_empty(),
        "the remote server's tools are listed"
    );
    mcp
}

/// Through the daemon: the model's call reaches the remote server with the
/// user injected, its progress updates the task, and the header was sent
/// (the server refuses requests without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_serves_the_agent_with_headers_identity_and_progress() {
    let server = HttpServer::start("127.0.0.1:0", Some("authorization=Bearer s3cret")).await;
    let remote = remote_config(&server.url, "5s", "s3cret");
    let daemon = Daemon::start_with(Backend::Sqlite, |config| {
        config.mcp_servers.insert("remote".to_owned(), remote);
    })
    .await;
    daemon.llm.push(Script::tool_call(
        "call_e",
        "echo",
        r#"{"text": "hi", "user_id": "mallory"}"#,
    ));
    daemon
        .llm
        .push(Script::tool_call("call_p", "progress", r#"{"steps": 2}"#));
    daemon.llm.push(Script::text(["Done."]));
    let (_, streamed) = daemon.create_thread("go").await;
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Done."),
        "{}",
        streamed.raw
    );
    let requests = daemon.llm.stream_requests();
    let echoed = requests[1]
        .messages()
        .iter()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .expect("the echo result")
        .to_owned();
    let echoed: Value = serde_json::from_str(&echoed).expect("echo answers JSON");
    assert_eq!(echoed["arguments"]["user_id"], "dev", "{echoed}");
    assert_eq!(echoed["arguments"]["text"], "hi");
    let contents: Vec<String> = streamed
        .events
        .iter()
        .filter(|e| e["update"]["type"] == "workflow.task.updated")
        .filter_map(|e| e["update"]["task"]["content"].as_str().map(str::to_owned))
        .collect();
    assert!(
        contents
            .iter()
            .any(|c| c.contains("progress: 1/2 (50%) - step 1")),
        "{contents:#?}"
    );
}

/// A wrong token is a failure that says what the server answered, and the
/// header's value never reaches the log.
#[tokio::test]
async fn a_refused_header_fails_with_the_servers_answer() {
    let server = HttpServer::start("127.0.0.1:0", Some("authorization=Bearer s3cret")).await;
    let configs = BTreeMap::from([(
        "remote".to_owned(),
        remote_config(&server.url, "5s", "wrong-token"),
    )]);
    let mcp = McpManager::configure(&configs, std::path::Path::new("."), 64 * 1024);
    let started = Instant::now();
    let error = mcp
        .probe("remote", "alice")
        .await
        .expect_err("a wrong token is refused");
    let message = error.to_string();
    assert!(message.contains("remote"), "{message}");
    assert!(
        message.contains("401") || message.to_lowercase().contains("unauthorized"),
        "{message}"
    );
    assert!(!message.contains("wrong-token"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5), "{message}");
}

/// The server restarts between two calls: the next call opens a new
/// session by itself. While it is down, a call is a tool error at once,
/// not a wait for the call timeout.
#[tokio::test]
async fn a_restarted_server_gets_a_new_session_and_a_down_one_is_a_prompt_tool_error() {
    let mut server = HttpServer::start("127.0.0.1:0", None).await;
    let address = server.address();
    let mcp = manager(remote_config(&server.url, "5s", "t")).await;
    let first = mcp.call("alice", "pid", "{}").await;
    assert!(!first.is_error, "{}", first.output);

    server.kill().await;
    let mut server = HttpServer::start(&address, None).await;
    let second = mcp.call("alice", "pid", "{}").await;
    assert!(!second.is_error, "{}", second.output);
    assert_ne!(first.output, second.output, "a new server process answered");

    server.kill().await;
    // Failed before its own call timeout (5 s) could fire, and not by it.
    let down = tokio::time::timeout(Duration::from_secs(5), mcp.call("alice", "pid", "{}"))
        .await
        .expect("a down server fails the call before its timeout");
    assert!(down.is_error, "{}", down.output);
    assert!(!down.output.contains("did not answer"), "{}", down.output);
    let again = mcp.call("alice", "pid", "{}").await;
    assert!(again.is_error, "{}", again.output);

    // Back up: calls succeed again once the back-off has passed.
    let _server = HttpServer::start(&address, None).await;
    let back = eventually(Duration::from_secs(10), || async {
        !mcp.call("alice", "pid", "{}").await.is_error
    })
    .await;
    assert!(back, "calls work again after the server is back");
    mcp.shutdown().await;
}

/// A server that dies in the middle of a call fails that call as a tool
/// error, and a hung one is bounded by `call_timeout`.
#[tokio::test]
async fn a_remote_crash_mid_call_and_a_hang_are_tool_errors() {
    let mut server = HttpServer::start("127.0.0.1:0", None).await;
    let mcp = manager(remote_config(&server.url, "1s", "t")).await;
    // The call timeout ended it (the message says so), and not much later
    // than it should: the outer bound is ten times the call timeout, so a
    // loaded machine does not fail it.
    let hung = tokio::time::timeout(Duration::from_secs(10), mcp.call("alice", "hang", "{}"))
        .await
        .expect("the call timeout ends a hung call");
    assert!(hung.is_error, "{}", hung.output);
    assert!(
        hung.output.contains("did not answer within 1s"),
        "{}",
        hung.output
    );
    mcp.shutdown().await;
    // The crash, under a long call timeout: the call fails soon after the
    // server is gone, not at the timeout.
    let mcp = manager(remote_config(&server.url, "30s", "t")).await;
    let crashed = tokio::time::timeout(Duration::from_secs(30), mcp.call("alice", "crash", "{}"))
        .await
        .expect("a crash fails the call before its timeout");
    assert!(crashed.is_error, "{}", crashed.output);
    assert!(
        !crashed.output.contains("did not answer"),
        "{}",
        crashed.output
    );
    let exited = tokio::time::timeout(Duration::from_secs(5), server.child.wait())
        .await
        .expect("the server exited mid-call")
        .expect("wait");
    assert_eq!(exited.code(), Some(3), "{}", crashed.output);
    mcp.shutdown().await;
}

/// A configuration mixing the transports' keys is refused with its line.
#[test]
fn remote_keys_are_validated_with_their_lines() {
    let load = |body: &str| {
        Config::from_toml(
            &format!("[mcp_servers.r]\n{body}\n"),
            "agent.toml",
            PathBuf::from("."),
            &|_| None,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let cases = [
        (
            "url = \"http://x/mcp\"\ncommand = \"y\"",
            "agent.toml:2: `mcp_servers.r.url`: set `command` (a program to spawn) or `url` (a streamable HTTP server), not both",
        ),
        (
            "min_idle = 1",
            "agent.toml:1: `mcp_servers.r.command`: set `command` (a program to spawn) or `url` (a streamable HTTP server)",
        ),
        (
            "url = \"ftp://x/mcp\"",
            "agent.toml:2: `mcp_servers.r.url`: \"ftp://x/mcp\" is not an http:// or https:// URL",
        ),
        (
            "url = \"http://x/mcp\"\nheaders = { \"Mcp-Session-Id\" = \"1\" }",
            "agent.toml:3: `mcp_servers.r.headers`: `Mcp-Session-Id` is set by the MCP transport itself",
        ),
        (
            "url = \"http://x/mcp\"\nheaders = { \"bad header\" = \"1\" }",
            "agent.toml:3: `mcp_servers.r.headers`: \"bad header\" is not a header name",
        ),
        (
            "url = \"http://x/mcp\"\nenv = { A = \"1\" }",
            "agent.toml:3: `mcp_servers.r.env`: applies to `command` servers, not to a `url` server",
        ),
        (
            "url = \"http://x/mcp\"\nscope = \"per_user\"",
            "agent.toml:3: `mcp_servers.r.scope`: `per_user` starts a process per user and applies to `command` servers; a `url` server learns the user through `inject`",
        ),
        (
            "command = \"x\"\nheaders = { A = \"1\" }",
            "agent.toml:3: `mcp_servers.r.headers`: `A`: headers are sent to `url` servers; a `command` server gets `env`",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(load(body).expect_err(body), expected, "{body}");
    }
    assert!(
        load("url = \"https://tools.example.com/mcp\"\nheaders = { Authorization = \"Bearer x\" }")
            .is_ok()
    );
}

/// The third-party `@modelcontextprotocol/server-everything` (pinned; CI
/// caches it) over streamable HTTP: listed, called, a tool error, progress
/// reported, and killed in the middle of a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_over_streamable_http() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = tokio::process::Command::new("npx")
        .args(["-y", support::EVERYTHING, "streamableHttp"])
        .env("PORT", port.to_string())
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("npx runs (Node.js and npm are needed)");
    let group = server.id().expect("server-everything runs") as i32;
    let listening = eventually(Duration::from_secs(60), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(listening, "server-everything listens on {port}");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mcp = manager(remote_config(&url, "20s", "t")).await;
    let names: Vec<String> = mcp.current_tools().iter().map(|t| t.name.clone()).collect();
    for expected in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }

    let echoed = mcp
        .call("alice", "echo", r#"{"message": "over HTTP"}"#)
        .await;
    assert!(
        !echoed.is_error && echoed.output.contains("over HTTP"),
        "{}",
        echoed.output
    );
    let refused = mcp
        .call("alice", "get-sum", r#"{"a": "one", "b": 2}"#)
        .await;
    assert!(refused.is_error, "{}", refused.output);

    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = reports.clone();
    let reporter: chatkitd::mcp::ProgressReporter = std::sync::Arc::new(move |p| {
        sink.lock().expect("reports").push(p);
    });
    let long = mcp
        .call(
            "alice",
            "trigger-long-running-operation",
            r#"{"duration": 1, "steps": 3}"#,
        )
        .reporting(reporter)
        .await;
    assert!(!long.is_error, "{}", long.output);
    let seen: Vec<f64> = reports
        .lock()
        .expect("reports")
        .iter()
        .map(|p| p.progress)
        .collect();
    assert_eq!(seen, [1.0, 2.0, 3.0]);

    // Killed mid-call (once its first progress report shows it is working):
    // a tool error soon, not at the call timeout.
    let (working, mut first_report) = tokio::sync::mpsc::unbounded_channel();
    let reporter: chatkitd::mcp::ProgressReporter = std::sync::Arc::new(move |_| {
        let _ = working.send(());
    });
    let killer = tokio::spawn(async move {
        first_report.recv().await.expect("a progress report");
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe { libc::killpg(group, libc::SIGKILL) };
    });
    let killed = mcp
        .call(
            "alice",
            "trigger-long-running-operation",
            r#"{"duration": 15, "steps": 15}"#,
        )
        .reporting(reporter)
        .await;
    killer.await.expect("killer");
    assert!(killed.is_error, "{}", killed.output);
    // Failed by the server's death, not by the call timeout (20 s).
    assert!(
        !killed.output.contains("did not answer"),
        "{}",
        killed.output
    );
    let _ = server.wait().await;
    mcp.shutdown().await;
}

/// A hostile streamable HTTP server: it answers the handshake properly, then
/// answers a call with a 20 MiB body. The call is a tool error; nothing
/// reads the body into memory whole.
#[tokio::test]
async fn a_remote_server_answering_with_a_huge_body_is_a_tool_error() {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    async fn mcp(body: String) -> axum::response::Response {
        let request: Value = serde_json::from_str(&body).unwrap_or_default();
        let id = request["id"].clone();
        let json = |value: Value| {
            (
                [(header::CONTENT_TYPE, "application/json")],
                value.to_string(),
            )
                .into_response()
        };
        match request["method"].as_str().unwrap_or_default() {
            "initialize" => json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "hostile", "version": "1"}
            }})),
            "tools/list" => json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {
                "tools": [{"name": "flood", "inputSchema": {"type": "object"}}]
            }})),
            "tools/call" => {
                let text = "x".repeat(20 << 20);
                json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {
                    "content": [{"type": "text", "text": text}]
                }}))
            }
            _ => StatusCode::ACCEPTED.into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new().route("/mcp", axum::routing::post(mcp));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mcp = manager(remote_config(&format!("http://{address}/mcp"), "10s", "t")).await;
    let flooded = mcp.call("alice", "flood", "{}").await;
    assert!(
        flooded.is_error,
        "{}",
        &flooded.output[..flooded.output.len().min(200)]
    );
    assert!(
        flooded.output.len() < 4096,
        "{} bytes",
        flooded.output.len()
    );
    mcp.shutdown().await;
}
