//! `chatkitd check`: a deploy gate. It loads the configuration, connects to
//! the store (and says whether migrations are pending), starts every tool
//! server and lists its tools, lists each agent of `[agents]` with the tools
//! it is offered (`agents.rs`), and asks the model endpoint for its models;
//! one line per check with the time it took:
//!
//! ```text
//! ok   config       agent.toml  (1 ms)
//! ok   store        sqlite:///srv/chatkitd.db  (3 ms)  schema up to date
//! FAIL llm          http://127.0.0.1:9/v1  (1 ms)  cannot connect: Connection refused
//! ```
//!
//! `warn` lines pass; any `FAIL` makes the command exit non-zero. Passwords
//! in URLs are never printed.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{CliError, redact_url};
use crate::agent::Interactions;
use crate::auth::{Authenticator, KeyProbe};
use crate::config::LlmApi;
use crate::config::{AuthMode, Config};
use crate::llm::{LlmClient, LlmError, ModelList};
use crate::mcp::{McpManager, ModelTool};
use crate::store::schema;

mod agents;

use agents::check_agents;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but something deserves a look; does not fail the gate.
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Line {
    pub status: Status,
    pub name: String,
    pub target: String,
    pub elapsed: Duration,
    pub detail: String,
}

impl Line {
    fn new(status: Status, name: impl Into<String>, target: impl Into<String>) -> Line {
        Line {
            status,
            name: name.into(),
            target: target.into(),
            elapsed: Duration::ZERO,
            detail: String::new(),
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Line {
        self.detail = detail.into();
        self
    }

    fn since(mut self, started: Instant) -> Line {
        self.elapsed = started.elapsed();
        self
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<4} {:<12} {}  ({} ms)",
            self.status.label(),
            self.name,
            self.target,
            self.elapsed.as_millis()
        )?;
        if !self.detail.is_empty() {
            write!(f, "  {}", self.detail)?;
        }
        Ok(())
    }
}

/// Runs every check of the configuration at `path`, writing a line for each
/// to `out` as it completes. True when none failed.
pub async fn run(path: &Path, out: &mut impl Write) -> Result<bool, CliError> {
    let mut failed = 0;
    let mut total = 0;
    let mut report = |out: &mut dyn Write, line: Line| -> std::io::Result<()> {
        total += 1;
        if line.status == Status::Fail {
            failed += 1;
        }
        writeln!(out, "{line}")?;
        out.flush()
    };

    let started = Instant::now();
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            report(
                out,
                Line::new(Status::Fail, "config", path.display().to_string())
                    .since(started)
                    .detail(e.to_string()),
            )?;
            writeln!(out, "1 of 1 checks failed")?;
            return Ok(false);
        }
    };
    report(out, check_config(&config, path, started))?;
    report(out, check_auth(&config).await)?;
    report(out, check_store(&config).await)?;
    let (lines, tools) = check_tool_servers(&config).await;
    for line in lines {
        report(out, line)?;
    }
    for line in check_agents(&config, &tools) {
        report(out, line)?;
    }
    report(out, check_llm(&config).await)?;
    if failed == 0 {
        writeln!(out, "all {total} checks passed")?;
    } else {
        writeln!(out, "{failed} of {total} checks failed")?;
    }
    out.flush()?;
    Ok(failed == 0)
}

/// What the daemon reads at start besides the file: the system prompt.
fn check_config(config: &Config, path: &Path, started: Instant) -> Line {
    let target = path.display().to_string();
    if let Err(e) = config.system_prompt() {
        return Line::new(Status::Fail, "config", target)
            .since(started)
            .detail(format!("[agent] instructions: {e}"));
    }
    // Every widget template and action message, compiled as `serve` does.
    let interactions = match Interactions::load(config) {
        Ok(interactions) => interactions,
        Err(e) => {
            return Line::new(Status::Fail, "config", target)
                .since(started)
                .detail(e.to_string());
        }
    };
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let counts = interactions.counts();
    let mut detail = plural(config.mcp_servers.len(), "tool server");
    for (n, what) in [
        (counts.widgets, "widget template"),
        (counts.actions, "action"),
        (counts.client_tools, "client tool"),
    ] {
        if n > 0 {
            detail.push_str(&format!(", {}", plural(n, what)));
        }
    }
    Line::new(Status::Ok, "config", target)
        .since(started)
        .detail(detail)
}

/// The auth mode: keys that load, a reachable JWKS, and no development
/// mode where `serve` would refuse it.
async fn check_auth(config: &Config) -> Line {
    let started = Instant::now();
    let auth = &config.auth;
    let target = match (&auth.mode, &auth.jwks_url) {
        (AuthMode::None, _) => "none".to_owned(),
        (AuthMode::Jwt, Some(url)) => format!("jwt {}", redact_url(url)),
        (AuthMode::Jwt, None) => "jwt".to_owned(),
    };
    let line = Line::new(Status::Ok, "auth", target);
    let probed = match Authenticator::from_config(auth, &config.base_dir) {
        Ok(authenticator) => authenticator.probe_keys().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let line = line.since(started);
    match probed {
        Err(reason) => Line {
            status: Status::Fail,
            ..line
        }
        .detail(reason),
        Ok(KeyProbe::Development { user }) => {
            let listen = config.server.listen;
            if !auth.permits_listen(listen) {
                return Line {
                    status: Status::Fail,
                    ..line
                }
                .detail(format!(
                    "mode = \"none\" on the non-loopback {listen}: `serve` refuses this; configure mode = \"jwt\""
                ));
            }
            Line {
                status: Status::Warn,
                ..line
            }
            .detail(format!(
                "every request acts as {user:?}: for development only"
            ))
        }
        Ok(KeyProbe::SharedSecret) => line.detail("shared secret"),
        Ok(KeyProbe::PublicKey) => line.detail("public key file"),
        Ok(KeyProbe::Jwks { keys }) => line.detail(format!("{keys} keys")),
    }
}

/// Connects, pings and compares the applied migrations with this build's.
async fn check_store(config: &Config) -> Line {
    let started = Instant::now();
    let url = &config.store.url;
    let line = Line::new(Status::Ok, "store", url.to_string());
    if let Some(file) = url.sqlite_file()
        && !file.exists()
    {
        // Connecting would create it: say what `serve` will do instead.
        let line = line.since(started);
        return match file.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => Line {
                status: Status::Fail,
                ..line
            }
            .detail(format!("the directory {} does not exist", dir.display())),
            _ if !config.store.migrate_on_start => Line {
                status: Status::Fail,
                ..line
            }
            .detail("the database does not exist yet and migrate_on_start = false: run `chatkitd migrate`"),
            _ => line.detail(format!(
                "the database does not exist yet; `serve` creates it and applies {} migration(s)",
                schema::migrations_for(url)
            )),
        };
    }
    let status = schema::inspect(url, Duration::from_secs(30)).await;
    let line = line.since(started);
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            return Line {
                status: Status::Fail,
                ..line
            }
            .detail(e.to_string());
        }
    };
    if status.unknown > 0 {
        return Line {
            status: Status::Warn,
            ..line
        }
        .detail(format!(
            "{} applied migration(s) unknown to this build: a newer chatkitd migrated this database",
            status.unknown
        ));
    }
    match status.pending {
        0 => line.detail("schema up to date"),
        n if config.store.migrate_on_start => line.detail(format!(
            "{n} migration(s) pending; `serve` applies them at start"
        )),
        n => Line {
            status: Status::Fail,
            ..line
        }
        .detail(format!(
            "{n} migration(s) pending and migrate_on_start = false: run `chatkitd migrate`"
        )),
    }
}

/// Starts every server (concurrently) and fetches its tool list.
async fn check_tool_servers(config: &Config) -> (Vec<Line>, Vec<ModelTool>) {
    if config.mcp_servers.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mcp = McpManager::configure(
        &config.mcp_servers,
        &config.base_dir,
        config.agent.max_tool_output_bytes,
    );
    let user = config.auth.dev_user.as_str();
    let probes = config.mcp_servers.iter().map(|(name, server)| {
        let mcp = mcp.clone();
        let mut target = server
            .command
            .clone()
            .or_else(|| server.url.clone())
            .unwrap_or_default();
        for arg in &server.args {
            target.push(' ');
            target.push_str(arg);
        }
        async move {
            let started = Instant::now();
            let line = Line::new(Status::Ok, format!("mcp {name}"), target);
            let probed = mcp.probe(name, user).await;
            let tools = probed.as_ref().map(|t| t.to_vec()).unwrap_or_default();
            let line = match probed {
                Ok(tools) if tools.is_empty() => Line {
                    status: Status::Warn,
                    ..line
                }
                .since(started)
                .detail("started, but offers no tools (see enabled_tools / disabled_tools)"),
                Ok(tools) => {
                    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
                    line.since(started).detail(format!(
                        "{} tools: {}",
                        names.len(),
                        names.join(", ")
                    ))
                }
                Err(e) => Line {
                    status: Status::Fail,
                    ..line
                }
                .since(started)
                .detail(e.to_string()),
            };
            (line, tools)
        }
    });
    let (lines, tools): (Vec<Line>, Vec<Vec<ModelTool>>) =
        futures::future::join_all(probes).await.into_iter().unzip();
    mcp.shutdown().await;
    (lines, tools.into_iter().flatten().collect())
}

/// The endpoint's model list, and whether it names the configured model.
async fn check_llm(config: &Config) -> Line {
    let started = Instant::now();
    let llm = &config.llm;
    let line = Line::new(Status::Ok, "llm", redact_url(&llm.base_url));
    let fail = |line: Line, detail: String| {
        Line {
            status: Status::Fail,
            ..line
        }
        .since(started)
        .detail(detail)
    };
    let client = match LlmClient::new(llm) {
        Err(e) => return fail(line, e.to_string()),
        Ok(client) if !client.is_configured() => {
            return fail(
                line,
                "no API key: set OPENAI_API_KEY or [llm] api_key, or point base_url at a server that needs none"
                    .to_owned(),
            );
        }
        Ok(client) => client,
    };
    let models = match client.list_models().await {
        Ok(list) => list,
        // A success whose body lists nothing readable: reachable, unchecked.
        Err(LlmError::Protocol(_)) => ModelList::default(),
        Err(LlmError::NoModelsRoute) => {
            return Line {
                status: Status::Warn,
                ..line
            }
            .since(started)
            .detail(
                "reachable, but it has no /models route (HTTP 404); the model name is not checked",
            );
        }
        Err(LlmError::Api {
            status: status @ (401 | 403),
            ..
        }) => {
            return fail(
                line,
                format!("the endpoint refused the API key (HTTP {status})"),
            );
        }
        Err(LlmError::Api { status, message }) => {
            return fail(
                line,
                format!(
                    "HTTP {status}: {}",
                    super::one_line(&message, 200, "…").trim()
                ),
            );
        }
        Err(LlmError::Timeout(_)) => {
            return fail(
                line,
                "no answer in time (connect_timeout / request_timeout)".to_owned(),
            );
        }
        Err(LlmError::Transport(reason)) => return fail(line, reason),
        Err(other) => return fail(line, other.to_string()),
    };
    let models = models.ids();
    let line = if models.is_empty() {
        line.detail(format!("reachable; model {:?} not checked", llm.model))
    } else if models.contains(&llm.model.as_str()) {
        line.detail(format!(
            "model {:?} available ({} listed)",
            llm.model,
            models.len()
        ))
    } else {
        let mut listed: Vec<&str> = models.iter().take(8).copied().collect();
        if models.len() > listed.len() {
            listed.push("…");
        }
        Line {
            status: Status::Warn,
            ..line
        }
        .detail(format!(
            "model {:?} is not among the {} models listed: {}",
            llm.model,
            models.len(),
            listed.join(", ")
        ))
    };
    if llm.api != LlmApi::Responses {
        return line.since(started);
    }
    // `api = "responses"`: the route must be there too.
    match client.serves_responses().await {
        Ok(true) => {
            let detail = format!("{}; serves /responses", line.detail);
            line.since(started).detail(detail)
        }
        Ok(false) => fail(
            line,
            "no /responses route (HTTP 404): this endpoint speaks chat completions only; set [llm] api = \"chat_completions\"".to_owned(),
        ),
        Err(e) => Line {
            status: Status::Warn,
            ..line
        }
        .since(started)
        .detail(format!("whether it serves /responses is unknown: {e}")),
    }
}
