//! `chatkitd check`: a deploy gate. It loads the configuration, connects to
//! the store (and says whether migrations are pending), starts every tool
//! server and lists its tools, and asks the model endpoint for its models;
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

use serde_json::Value;

use super::{CliError, redact_url};
use crate::auth::Authenticator;
use crate::config::{AuthMode, Config};
use crate::llm::{LlmClient, install_crypto_provider};
use crate::mcp::McpManager;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

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
    for line in check_tool_servers(&config).await {
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
    let servers = config.mcp_servers.len();
    Line::new(Status::Ok, "config", target)
        .since(started)
        .detail(format!(
            "{servers} tool server{}",
            if servers == 1 { "" } else { "s" }
        ))
}

/// The auth mode: keys that load, a reachable JWKS, and no development
/// mode where `serve` would refuse it.
async fn check_auth(config: &Config) -> Line {
    let started = Instant::now();
    let auth = &config.auth;
    if let Err(e) = Authenticator::from_config(auth, &config.base_dir) {
        return Line::new(Status::Fail, "auth", "jwt")
            .since(started)
            .detail(e.to_string());
    }
    match auth.mode {
        AuthMode::None => {
            let listen = config.server.listen;
            if !auth.permits_listen(listen) {
                return Line::new(Status::Fail, "auth", "none").since(started).detail(format!(
                    "mode = \"none\" on the non-loopback {listen}: `serve` refuses this; configure mode = \"jwt\""
                ));
            }
            Line::new(Status::Warn, "auth", "none")
                .since(started)
                .detail(format!(
                    "every request acts as {:?}: for development only",
                    auth.dev_user
                ))
        }
        AuthMode::Jwt => match &auth.jwks_url {
            Some(url) => {
                let line = Line::new(Status::Ok, "auth", format!("jwt {}", redact_url(url)));
                match fetch_jwks(url).await {
                    Ok(keys) => line.since(started).detail(format!("{keys} keys")),
                    Err(reason) => Line {
                        status: Status::Fail,
                        ..line
                    }
                    .since(started)
                    .detail(reason),
                }
            }
            None => {
                let source = if auth.secret.is_some() {
                    "shared secret"
                } else {
                    "public key file"
                };
                Line::new(Status::Ok, "auth", "jwt")
                    .since(started)
                    .detail(source)
            }
        },
    }
}

/// The number of keys a JWKS document holds.
async fn fetch_jwks(url: &str) -> Result<usize, String> {
    let client = http_client(Duration::from_secs(10), Duration::from_secs(10))?;
    let response = client.get(url).send().await.map_err(request_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the JWKS URL answered HTTP {}", status.as_u16()));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("not a JWKS document: {}", request_error(e)))?;
    match body.get("keys").and_then(Value::as_array) {
        Some(keys) if !keys.is_empty() => Ok(keys.len()),
        _ => Err("the JWKS document holds no keys".to_owned()),
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
        let known = SQLITE_MIGRATIONS
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .count();
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
                "the database does not exist yet; `serve` creates it and applies {known} migration(s)"
            )),
        };
    }
    // One connection, not the daemon's pools: it fails at once with the
    // real reason (a pool retries until its acquire timeout).
    let applied = match applied_migrations(&url.connect_url()).await {
        Ok(applied) => applied,
        Err(e) => {
            return Line {
                status: Status::Fail,
                ..line
            }
            .since(started)
            .detail(e);
        }
    };
    let migrator = if url.is_sqlite() {
        &SQLITE_MIGRATIONS
    } else {
        &POSTGRES_MIGRATIONS
    };
    let known: Vec<i64> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    let pending = known.iter().filter(|v| !applied.contains(v)).count();
    let unknown = applied.iter().filter(|v| !known.contains(v)).count();
    let line = line.since(started);
    if unknown > 0 {
        return Line {
            status: Status::Warn,
            ..line
        }
        .detail(format!(
            "{unknown} applied migration(s) unknown to this build: a newer chatkitd migrated this database"
        ));
    }
    match pending {
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

/// Connects, pings, and reads the versions recorded in `_sqlx_migrations`
/// (none when the table is missing).
async fn applied_migrations(url: &str) -> Result<Vec<i64>, String> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let connect = sqlx::AnyConnection::connect(url);
    let mut connection = match tokio::time::timeout(Duration::from_secs(30), connect).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
        Err(_) => return Err("cannot connect: no answer within 30s".to_owned()),
    };
    if let Err(e) = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut connection)
        .await
    {
        return Err(format!("does not answer: {e}"));
    }
    let applied =
        sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut connection)
            .await;
    if let Err(e) = connection.close().await {
        tracing::debug!(error = %e, "closing the check's store connection");
    }
    // The only error a store that answered `SELECT 1` gives here is the
    // missing table of a database never migrated.
    Ok(applied.unwrap_or_default())
}

/// Starts every server (concurrently) and fetches its tool list.
async fn check_tool_servers(config: &Config) -> Vec<Line> {
    if config.mcp_servers.is_empty() {
        return Vec::new();
    }
    let mcp = McpManager::configure(
        &config.mcp_servers,
        &config.base_dir,
        config.agent.max_tool_output_bytes,
    );
    let user = config.auth.dev_user.as_str();
    let probes = config.mcp_servers.iter().map(|(name, server)| {
        let mcp = mcp.clone();
        let mut target = server.command.clone();
        for arg in &server.args {
            target.push(' ');
            target.push_str(arg);
        }
        async move {
            let started = Instant::now();
            let line = Line::new(Status::Ok, format!("mcp {name}"), target);
            match mcp.probe(name, user).await {
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
            }
        }
    });
    let lines = futures::future::join_all(probes).await;
    mcp.shutdown().await;
    lines
}

/// `GET {base_url}/models` with the configured key.
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
    match LlmClient::new(llm) {
        Err(e) => return fail(line, e.to_string()),
        Ok(client) if !client.is_configured() => {
            return fail(
                line,
                "no API key: set OPENAI_API_KEY or [llm] api_key, or point base_url at a server that needs none"
                    .to_owned(),
            );
        }
        Ok(_) => {}
    }
    let client = match http_client(llm.connect_timeout, llm.request_timeout) {
        Ok(client) => client,
        Err(e) => return fail(line, e),
    };
    let url = format!("{}/models", llm.base_url.trim_end_matches('/'));
    let mut request = client.get(&url);
    if let Some(key) = llm.api_key.as_deref().filter(|k| !k.is_empty()) {
        request = request.bearer_auth(key);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return fail(line, request_error(e)),
    };
    let status = response.status().as_u16();
    match status {
        200..=299 => {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let models: Vec<&str> = body
                .get("data")
                .and_then(Value::as_array)
                .map(|data| {
                    data.iter()
                        .filter_map(|m| m.get("id").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            let line = line.since(started);
            if models.is_empty() {
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
            }
        }
        404 => Line {
            status: Status::Warn,
            ..line
        }
        .since(started)
        .detail("reachable, but it has no /models route (HTTP 404); the model name is not checked"),
        401 | 403 => fail(
            line,
            format!("the endpoint refused the API key (HTTP {status})"),
        ),
        _ => {
            let body = response.text().await.unwrap_or_default();
            fail(
                line,
                format!("HTTP {status}: {}", super::one_line(&body, 200, "…").trim()),
            )
        }
    }
}

fn http_client(connect: Duration, total: Duration) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// A request failure with its causes, without the URL (already shown).
fn request_error(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return "no answer in time (connect_timeout / request_timeout)".to_owned();
    }
    let prefix = if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut reasons = vec![error.to_string()];
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reasons.iter().any(|r| r.contains(&text)) {
            reasons.push(text);
        }
        source = cause.source();
    }
    format!("{prefix}: {}", reasons.join(": "))
}
