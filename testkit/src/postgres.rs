//! A throwaway PostgreSQL server for tests, one per test process.
//!
//! [`shared_server`] uses the server named by `TEST_PG_URL` if that variable
//! is set (CI starts one with `scripts/pg-tmp` and shares it between test
//! binaries); otherwise it initialises a cluster under
//! `$TMPDIR/chatkitd-pg-<pid>` and runs `postgres` on a free port of
//! 127.0.0.1, as the `postgres` OS user when running as root. That server is
//! killed by the kernel (parent-death signal) when the test process exits,
//! however it exits; directories left by dead processes are swept at the next
//! start. [`PgServer::fresh_database`] creates an empty database per test with
//! `psql`, so no Postgres client crate is needed here.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::OnceCell;

/// The environment variable naming an existing server to use instead of
/// starting one, e.g. `postgres://postgres@127.0.0.1:54329/postgres`.
pub const TEST_PG_URL: &str = "TEST_PG_URL";

/// The environment variable naming the directory of the PostgreSQL binaries,
/// overriding the search of `/usr/lib/postgresql/*/bin`.
pub const PG_BIN: &str = "PG_BIN";

/// How long a started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL server that tests may create databases in.
#[derive(Debug)]
pub struct PgServer {
    /// URL of the server's `postgres` database, used for administration.
    base_url: String,
    /// Directory of `psql` and friends.
    bin_dir: PathBuf,
    /// The cluster directory when this process started the server itself.
    dir: Option<PathBuf>,
}

/// The process-wide test server, started on first use.
///
/// # Panics
/// If the server cannot be started or reached (the test environment is
/// broken); every later call panics with the same message.
/// A fresh database on the shared server, or `None` when no server can be
/// had: benchmarks then skip Postgres rather than fail.
pub async fn try_fresh_database() -> Option<String> {
    let started = tokio::spawn(async { shared_server().await.fresh_database().await });
    started.await.ok()
}

pub async fn shared_server() -> &'static PgServer {
    static SERVER: OnceCell<Result<PgServer, String>> = OnceCell::const_new();
    let server = SERVER
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| PgServer::from_env().map_err(|e| format!("{e:#}")))
                .await
                .unwrap_or_else(|e| Err(format!("server start-up task failed: {e}")))
        })
        .await;
    match server {
        Ok(server) => server,
        Err(message) => panic!("test PostgreSQL server unavailable: {message}"),
    }
}

impl PgServer {
    /// Uses `TEST_PG_URL` if set, else starts a private server. Blocking.
    pub fn from_env() -> Result<PgServer> {
        let bin_dir = pg_bin_dir()?;
        match std::env::var(TEST_PG_URL) {
            Ok(url) if !url.trim().is_empty() => {
                let server = PgServer {
                    base_url: url.trim().to_owned(),
                    bin_dir,
                    dir: None,
                };
                server
                    .psql_blocking(&server.base_url, "SELECT 1")
                    .with_context(|| {
                        format!("{TEST_PG_URL}={} is not reachable", server.base_url)
                    })?;
                Ok(server)
            }
            _ => Self::start_private(bin_dir),
        }
    }

    /// Starts a private server in `$TMPDIR/chatkitd-pg-<pid>`. Blocking.
    fn start_private(bin_dir: PathBuf) -> Result<PgServer> {
        let tmp = std::env::temp_dir();
        sweep_stale_dirs(&tmp);
        let dir = tmp.join(format!("chatkitd-pg-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("removing stale {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let as_root = is_root();
        if as_root {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir))
                .context("giving the cluster directory to the postgres user")?;
        }
        let data = dir.join("data");
        let mut initdb = pg_command(as_root, false, &bin_dir.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data)
            .current_dir(&dir);
        run(&mut initdb).context("initdb failed")?;

        // Retry on a port taken between probing it and postgres binding it.
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            match start_postgres(as_root, &bin_dir, &dir, port) {
                Ok(()) => {
                    return Ok(PgServer {
                        base_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                        bin_dir,
                        dir: Some(dir),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("postgres did not start")))
    }

    /// URL of the server's `postgres` database.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The cluster directory, if this process started the server.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The URL of database `name` on this server (same user, host and port).
    pub fn url_for(&self, name: &str) -> String {
        with_database(&self.base_url, name)
    }

    /// Creates an empty database with a unique name `t_<pid>_<n>_<random>`
    /// and returns its URL.
    ///
    /// # Panics
    /// If the database cannot be created.
    pub async fn fresh_database(&self) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_{}_{n}_{:08x}", std::process::id(), random_u32());
        let sql = format!("CREATE DATABASE \"{name}\"");
        let mut attempt = 0;
        loop {
            match self.psql(&self.base_url, &sql).await {
                Ok(_) => return self.url_for(&name),
                // Another session is briefly connected to template1.
                Err(e)
                    if attempt < 10
                        && format!("{e:#}").contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => panic!("creating test database {name} failed: {e:#}"),
            }
        }
    }

    /// Runs `sql` with `psql` against `db_url` (any database, e.g. one from
    /// [`PgServer::fresh_database`]) and returns its unaligned, tuples-only
    /// output (`-tA`: one row a line, columns separated by `|`).
    pub async fn psql(&self, db_url: &str, sql: &str) -> Result<String> {
        let mut cmd = tokio::process::Command::new(self.bin_dir.join("psql"));
        cmd.args(psql_args(db_url, sql))
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = cmd.output().await.context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql {sql:?} on {db_url} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn psql_blocking(&self, db_url: &str, sql: &str) -> Result<String> {
        let mut cmd = Command::new(self.bin_dir.join("psql"));
        cmd.args(psql_args(db_url, sql))
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null());
        run(&mut cmd)
    }
}

fn psql_args(db_url: &str, sql: &str) -> Vec<String> {
    [
        "-X",
        "-q",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        db_url,
        "-c",
        sql,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Replaces the database (path) of a `postgres://user@host:port/db?query` URL.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = before_query
        .split_once('/')
        .map_or(before_query, |(a, _)| a);
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// The directory holding `initdb`, `postgres` and `psql`: `$PG_BIN`, else the
/// newest `/usr/lib/postgresql/<version>/bin`.
pub fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(PG_BIN) {
        return Ok(PathBuf::from(dir));
    }
    let preferred = PathBuf::from("/usr/lib/postgresql/15/bin");
    if preferred.join("postgres").exists() {
        return Ok(preferred);
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no PostgreSQL binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql-15, or set {PG_BIN} or {TEST_PG_URL})"
        ),
    }
}

/// Whether this process runs as root (postgres then runs as user `postgres`).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            // Uid: real effective saved fs
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// A command for a PostgreSQL binary, run as user `postgres` when root, and
/// killed by the kernel when the spawning thread dies if `pdeathsig`.
fn pg_command(as_root: bool, pdeathsig: bool, program: &Path) -> Command {
    if !as_root && !pdeathsig {
        return Command::new(program);
    }
    let mut cmd = Command::new("setpriv");
    if pdeathsig {
        cmd.args(["--pdeathsig", "KILL"]);
    }
    if as_root {
        cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
    }
    cmd.arg("--").arg(program);
    cmd
}

/// Runs a command to completion, returning stdout or an error with stderr.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("probing for a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Removes `chatkitd-pg-<pid>` directories whose process is gone.
fn sweep_stale_dirs(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("chatkitd-pg-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Starts postgres on `port` from a thread that lives as long as postgres,
/// so the parent-death signal fires only when this process dies, and waits
/// until it accepts connections.
fn start_postgres(as_root: bool, bin_dir: &Path, dir: &Path, port: u16) -> Result<()> {
    let log_path = dir.join(format!("postgres-{port}.log"));
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = pg_command(as_root, true, &bin_dir.join("postgres"));
    cmd.arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=400"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log handle")?)
        .stderr(log);

    // None while running; Some(description) once spawning failed or it exited.
    let exited: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (spawned_tx, spawned_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let exited_in_thread = exited.clone();
    std::thread::Builder::new()
        .name(format!("chatkitd-pg-{port}"))
        .spawn(move || {
            let outcome = match cmd.spawn() {
                Ok(mut child) => {
                    let _ = spawned_tx.send(Ok(()));
                    // Blocks for the life of postgres, keeping this thread
                    // (the child's parent for PR_SET_PDEATHSIG) alive.
                    match child.wait() {
                        Ok(status) => format!("postgres exited: {status}"),
                        Err(e) => format!("waiting for postgres failed: {e}"),
                    }
                }
                Err(e) => {
                    let message = format!("spawning postgres failed: {e}");
                    let _ = spawned_tx.send(Err(e));
                    message
                }
            };
            if let Ok(mut slot) = exited_in_thread.lock() {
                *slot = Some(outcome);
            }
        })
        .context("spawning the postgres guardian thread")?;
    spawned_rx
        .recv()
        .context("the postgres guardian thread died")?
        .context("spawning postgres (is util-linux setpriv installed?)")?;

    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(why) = exited.lock().ok().and_then(|slot| slot.clone()) {
            bail!("{why}; log {}:\n{}", log_path.display(), tail(&log_path));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            && is_ready(bin_dir, port)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "postgres on port {port} not ready after {READY_TIMEOUT:?}; log {}:\n{}",
                log_path.display(),
                tail(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pg_isready` reports the server accepting connections.
fn is_ready(bin_dir: &Path, port: u16) -> bool {
    Command::new(bin_dir.join("pg_isready"))
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The last 2 KiB of a log file, for error messages.
fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(2048)));
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// A random number without a random-number crate: std's per-process random
/// hash keys mixed with the time.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:54329/postgres", "t_1"),
            "postgres://postgres@127.0.0.1:54329/t_1"
        );
        assert_eq!(
            with_database("postgresql://u:p@h:5/db?sslmode=disable", "x"),
            "postgresql://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    }
}
