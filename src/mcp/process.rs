//! Starting an MCP server as a child process that cannot outlive the daemon.
//!
//! The child gets only the environment its configuration declares, plus
//! `PATH` and `HOME` (the daemon's own secrets are not inherited). It runs in
//! a process group of its own, so everything it starts can be signalled at
//! once, and with a parent-death signal, so it dies even when the daemon is
//! killed with SIGKILL. [`ProcessGuard`] kills the group when dropped: from a
//! plain `Drop`, with no need for a runtime, so it also works while the runtime
//! shuts down or a panic unwinds.
//!
//! Only this module (with its siblings in `mcp`) spawns processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Environment variable that carries the user of a `per_user` instance.
pub const USER_ENV: &str = "CHATKITD_USER_ID";

/// Longest stderr line logged; the rest is cut.
const MAX_LOG_LINE: usize = 4096;

/// What to run.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Server name, for logs.
    pub server: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

/// A running child and its pipes.
pub struct Spawned {
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub guard: ProcessGuard,
}

/// Kills the child's whole process group when dropped.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Child,
    pgid: Option<i32>,
}

impl ProcessGuard {
    /// The child's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits up to `grace` for the child to exit by itself (its stdin closed),
    /// then kills the group.
    pub async fn stop(mut self, grace: std::time::Duration) {
        let _ = tokio::time::timeout(grace, self.child.wait()).await;
        // Drop kills whatever is left of the group.
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg has no memory-safety preconditions; a stale group
            // id at worst fails with ESRCH.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
        // Reap the leader if it is already gone; tokio reaps it later otherwise.
        let _ = self.child.try_wait();
    }
}

/// Spawns the server. `user` (per-user scope) is passed as [`USER_ENV`].
pub fn spawn(launch: &Launch, user: Option<&str>) -> std::io::Result<Spawned> {
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .current_dir(&launch.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for inherited in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(inherited) {
            command.env(inherited, value);
        }
    }
    command.envs(&launch.env);
    if let Some(user) = user {
        command.env(USER_ENV, user);
    }
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The daemon may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let pgid = child.id().and_then(|pid| i32::try_from(pid).ok());
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("the child's pipes were not created"));
    };
    // The child's stderr is its log: drain it into ours, tagged with the
    // server name (an undrained pipe would block the child once full).
    let server = launch.server.clone();
    let pid = child.id();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = crate::text::cut_chars(&line, MAX_LOG_LINE, "…");
            tracing::info!(target: "chatkitd::mcp::server", server = %server, pid, "{line}");
        }
    });
    Ok(Spawned {
        stdin,
        stdout,
        guard: ProcessGuard { child, pgid },
    })
}
