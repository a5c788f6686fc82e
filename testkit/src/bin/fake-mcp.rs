//! `fake-mcp`: an MCP server for testing the daemon's tool layer, on stdio,
//! or with `--http ADDR` over streamable HTTP at `http://ADDR/mcp` (it prints
//! that URL on stdout once listening; `--require-header NAME=VALUE` answers
//! 401 to requests without that header).
//!
//! Its tools misbehave on request, so tests can prove what the pool does
//! when a server crashes, hangs, changes its tool list or starts children:
//! - `echo {…}`: returns every argument it received, plus its user env var.
//! - `env_names {}`: the names of its environment variables.
//! - `pid {}`: its process id (which instance answered).
//! - `sleep {ms}`: answers after `ms` milliseconds.
//! - `crash {}`: exits mid-call.
//! - `hang {}`: never answers.
//! - `spawn_child {}`: starts `sleep 600` in its process group, returns its pid.
//! - `big {bytes}`: a text of that many bytes.
//! - `allocate {mb}`: allocates and touches `mb` MiB, then frees them.
//! - `spin {ms}`: keeps a CPU busy for `ms` milliseconds.
//! - `log {message}`: sends `message` as a warning log notification.
//! - `progress {steps}`: reports steps 1..=steps of `steps` (when the call
//!   carries a progress token), 200 ms apart, then answers.
//! - `image {}`: a text and a 1x1 PNG image block.
//! - `media {}`: an audio block, an embedded text resource and a resource
//!   link, none of which the model can be shown as such.
//! - `ask {message, schema}`: asks the user through `elicitation/create`
//!   with `schema` as the requested schema; returns the answer as JSON
//!   (`{"action": …, "content": …}`) or the error as a tool error.
//! - `add_tool {}`: offers one more tool, `late_tool`, and notifies the client.
//! - `stderr_noise {bytes}`: writes a line that is not UTF-8, then `bytes`
//!   bytes without a newline, to stderr; exits (as a server killed by
//!   SIGPIPE would) if stderr is no longer read.
//!
//! Logs go to stderr (one line at start), as a real server's would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::response::IntoResponse;
use rmcp::model::{
    AudioContent, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    ElicitRequestParams, EmbeddedResource, ErrorData, ImageContent, Implementation,
    ListToolsResult, PaginatedRequestParams, Resource, ResourceContents, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};

#[derive(Clone, Default)]
struct Fake {
    late_tool: Arc<AtomicBool>,
}

fn tool(name: &'static str, description: &'static str, schema: Value) -> Tool {
    let Value::Object(schema) = schema else {
        unreachable!("schemas are objects")
    };
    Tool::new(name, description, Arc::new(schema))
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

impl Fake {
    fn tools(&self) -> Vec<Tool> {
        let mut tools = vec![
            tool(
                "echo",
                "Returns its arguments.",
                object(
                    json!({"text": {"type": "string"}, "user_id": {"type": "string", "description": "The user"}}),
                    &["text", "user_id"],
                ),
            ),
            tool(
                "env_names",
                "Lists environment variable names.",
                object(json!({}), &[]),
            ),
            tool("pid", "Returns the process id.", object(json!({}), &[])),
            tool(
                "sleep",
                "Sleeps.",
                object(json!({"ms": {"type": "integer"}}), &["ms"]),
            ),
            tool("crash", "Exits mid-call.", object(json!({}), &[])),
            tool("hang", "Never answers.", object(json!({}), &[])),
            tool(
                "spawn_child",
                "Starts a long-lived child process.",
                object(json!({}), &[]),
            ),
            tool(
                "big",
                "A long text.",
                object(json!({"bytes": {"type": "integer"}}), &["bytes"]),
            ),
            tool(
                "allocate",
                "Allocates memory.",
                object(json!({"mb": {"type": "integer"}}), &["mb"]),
            ),
            tool(
                "spin",
                "Uses CPU.",
                object(json!({"ms": {"type": "integer"}}), &["ms"]),
            ),
            tool(
                "progress",
                "Reports progress.",
                object(json!({"steps": {"type": "integer"}}), &["steps"]),
            ),
            tool(
                "log",
                "Logs a message.",
                object(json!({"message": {"type": "string"}}), &["message"]),
            ),
            tool("image", "A tiny image.", object(json!({}), &[])),
            tool("media", "Audio and resources.", object(json!({}), &[])),
            tool(
                "ask",
                "Asks the user.",
                object(
                    json!({"message": {"type": "string"}, "schema": {"type": "object"},
                           "give_up_after_ms": {"type": "integer"}}),
                    &["message"],
                ),
            ),
            tool("add_tool", "Offers one more tool.", object(json!({}), &[])),
            tool(
                "stderr_noise",
                "Writes invalid UTF-8 and a long line to stderr.",
                object(json!({"bytes": {"type": "integer"}}), &["bytes"]),
            ),
        ];
        if self.late_tool.load(Ordering::SeqCst) {
            tools.push(tool("late_tool", "Appeared later.", object(json!({}), &[])));
        }
        tools
    }
}

/// A 1x1 PNG, base64.
const TINY_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

fn text(value: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(value.into())]).into()
}

impl ServerHandler for Fake {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("fake-mcp", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args: Map<String, Value> = request.arguments.clone().unwrap_or_default();
        let number = |key: &str| args.get(key).and_then(Value::as_u64).unwrap_or(0);
        Ok(match request.name.as_ref() {
            "echo" => {
                let user_env = std::env::var("CHATKITD_USER_ID").ok();
                text(json!({"arguments": args, "user_env": user_env}).to_string())
            }
            "env_names" => {
                let mut names: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                names.sort();
                text(json!(names).to_string())
            }
            "pid" => text(std::process::id().to_string()),
            "sleep" => {
                tokio::time::sleep(std::time::Duration::from_millis(number("ms"))).await;
                text("slept")
            }
            "crash" => {
                eprintln!("fake-mcp: crashing as asked");
                std::process::exit(3);
            }
            "hang" => {
                context.ct.cancelled().await;
                text("cancelled")
            }
            "spawn_child" => {
                let child = std::process::Command::new("sleep")
                    .arg("600")
                    .spawn()
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                text(child.id().to_string())
            }
            "big" => text("x".repeat(number("bytes") as usize)),
            "allocate" => {
                let block = vec![1u8; number("mb") as usize * 1024 * 1024];
                text(format!(
                    "allocated {} bytes",
                    std::hint::black_box(block).len()
                ))
            }
            "spin" => {
                let until =
                    std::time::Instant::now() + std::time::Duration::from_millis(number("ms"));
                let mut n = 0u64;
                while std::time::Instant::now() < until {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                text(format!("spun {n} times"))
            }
            "progress" => {
                let steps = number("steps");
                if let Some(token) = context.meta.get_progress_token() {
                    for step in 1..=steps {
                        let report =
                            rmcp::model::ProgressNotificationParam::new(token.clone(), step as f64)
                                .with_total(steps as f64)
                                .with_message(format!("step {step}"));
                        if let Err(e) = context.peer.notify_progress(report).await {
                            eprintln!("fake-mcp: could not report progress: {e}");
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
                text(format!("{steps} steps done"))
            }
            "log" => {
                let message = args.get("message").cloned().unwrap_or_default();
                #[allow(deprecated)]
                let notice = rmcp::model::LoggingMessageNotificationParam::new(
                    rmcp::model::LoggingLevel::Warning,
                    message,
                )
                .with_logger("fake.logger");
                #[allow(deprecated)]
                let sent = context.peer.notify_logging_message(notice).await;
                if let Err(e) = sent {
                    eprintln!("fake-mcp: could not log: {e}");
                }
                text("logged")
            }
            "image" => CallToolResult::success(vec![
                ContentBlock::text("A 1x1 red pixel."),
                ContentBlock::Image(ImageContent::new(TINY_PNG, "image/png")),
            ])
            .into(),
            "media" => CallToolResult::success(vec![
                ContentBlock::Audio(AudioContent::new("UklGRgAAAABXQVZF", "audio/wav")),
                ContentBlock::Resource(EmbeddedResource::new(
                    ResourceContents::TextResourceContents {
                        uri: "file:///notes.md".into(),
                        mime_type: Some("text/markdown".into()),
                        text: "# Notes".into(),
                        meta: None,
                    },
                )),
                ContentBlock::ResourceLink(Resource::new("https://example.com/report", "report")),
            ])
            .into(),
            "ask" => {
                let schema = args
                    .get("schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                let schema = serde_json::from_value(schema)
                    .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
                let message = args.get("message").and_then(Value::as_str).unwrap_or("?");
                let asking =
                    context
                        .peer
                        .create_elicitation(ElicitRequestParams::FormElicitationParams {
                            meta: None,
                            message: message.to_owned(),
                            requested_schema: schema,
                        });
                // `give_up_after_ms`: stop waiting for the user, as a server
                // with a deadline of its own would.
                let asked = match args.get("give_up_after_ms").and_then(Value::as_u64) {
                    Some(ms) => {
                        match tokio::time::timeout(std::time::Duration::from_millis(ms), asking)
                            .await
                        {
                            Ok(asked) => asked,
                            Err(_) => return Ok(text("gave up waiting for the user")),
                        }
                    }
                    None => asking.await,
                };
                match asked {
                    Ok(answer) => text(
                        json!({"action": answer.action, "content": answer.content}).to_string(),
                    ),
                    Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
                        "elicitation failed: {e}"
                    ))])
                    .into(),
                }
            }
            "add_tool" => {
                self.late_tool.store(true, Ordering::SeqCst);
                if let Err(e) = context.peer.notify_tool_list_changed().await {
                    eprintln!("fake-mcp: could not notify: {e}");
                }
                text("added")
            }
            "stderr_noise" => {
                use std::io::Write;
                let mut noise = b"fake-mcp: not UTF-8: \xff\xfe\xc3\n".to_vec();
                noise.extend(std::iter::repeat_n(b'y', number("bytes") as usize));
                let written = std::io::stderr()
                    .lock()
                    .write_all(&noise)
                    .and_then(|()| std::io::stderr().lock().flush());
                if written.is_err() {
                    std::process::exit(141);
                }
                text("noisy")
            }
            "late_tool" if self.late_tool.load(Ordering::SeqCst) => text("late"),
            other => {
                CallToolResult::error(vec![ContentBlock::text(format!("unknown tool {other}"))])
                    .into()
            }
        })
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let Some(address) = flag("--http") {
        serve_http(&address, flag("--require-header")).await;
        return;
    }
    eprintln!("fake-mcp: started, pid {}", std::process::id());
    let service = match Fake::default().serve(rmcp::transport::stdio_pipes()).await {
        Ok(service) => service,
        Err(e) => {
            eprintln!("fake-mcp: initialize failed: {e}");
            std::process::exit(1);
        }
    };
    let _ = service.waiting().await;
}

/// Serves every session at `http://ADDRESS/mcp` until killed.
async fn serve_http(address: &str, required: Option<String>) {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let service = StreamableHttpService::new(
        || Ok(Fake::default()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let required = required.map(|header| {
        let (name, value) = header.split_once('=').unwrap_or((header.as_str(), ""));
        (name.to_ascii_lowercase(), value.to_owned())
    });
    let check = move |request: axum::extract::Request, next: axum::middleware::Next| {
        let required = required.clone();
        async move {
            if let Some((name, value)) = &required {
                let sent = request
                    .headers()
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok());
                if sent != Some(value.as_str()) {
                    return axum::http::StatusCode::UNAUTHORIZED.into_response();
                }
            }
            next.run(request).await
        }
    };
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(check));
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fake-mcp: cannot listen on {address}: {e}");
            std::process::exit(1);
        }
    };
    let Ok(bound) = listener.local_addr() else {
        std::process::exit(1);
    };
    println!("http://{bound}/mcp");
    eprintln!("fake-mcp: listening on {bound}, pid {}", std::process::id());
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("fake-mcp: {e}");
    }
}
