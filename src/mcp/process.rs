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

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Environment variable that carries the user of a `per_user` instance.
pub const USER_ENV: &str = "CHATKITD_USER_ID";

/// Longest stderr line logged, in bytes; the rest of a longer line is skipped.
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
    pub limits: ProcessLimits,
}

/// Resource limits set on the child before it runs (`setrlimit`, soft and
/// hard alike, so it cannot raise them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// `RLIMIT_AS`, bytes of address space.
    pub memory: Option<u64>,
    /// `RLIMIT_CPU`, seconds (the hard limit a second later: SIGXCPU, then
    /// SIGKILL).
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_NOFILE`.
    pub open_files: Option<u64>,
}

impl ProcessLimits {
    /// `(resource, soft, hard)` of each limit set.
    fn rlimits(&self) -> Vec<(libc::__rlimit_resource_t, u64, u64)> {
        let mut limits = Vec::new();
        if let Some(bytes) = self.memory {
            limits.push((libc::RLIMIT_AS, bytes, bytes));
        }
        if let Some(seconds) = self.cpu_seconds {
            limits.push((libc::RLIMIT_CPU, seconds, seconds.saturating_add(1)));
        }
        if let Some(files) = self.open_files {
            limits.push((libc::RLIMIT_NOFILE, files, files));
        }
        limits
    }
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
    // Computed before the fork: the child may not allocate.
    let rlimits = launch.limits.rlimits();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, setrlimit, getppid, _exit) on memory
    // allocated before the fork.
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for &(resource, soft, hard) in &rlimits {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
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
    tokio::spawn(drain_log(stderr, MAX_LOG_LINE, move |line| {
        tracing::info!(target: "chatkitd::mcp::server", server = %server, pid, "{line}");
    }));
    Ok(Spawned {
        stdin,
        stdout,
        guard: ProcessGuard { child, pgid },
    })
}

/// Reads a child's log to its end, handing each line to `log`. It reads
/// bytes, not text: a byte that is not UTF-8 is shown as U+FFFD and reading
/// goes on (stopping would close the pipe, and the child would die of SIGPIPE
/// on its next write). At most `max_line` bytes of a line are kept: a longer
/// one is logged cut, marked `…`, and the rest of it is skipped unread into
/// memory, so a child that never writes a newline costs a bounded buffer.
pub async fn drain_log(
    mut reader: impl AsyncRead + Unpin,
    max_line: usize,
    mut log: impl FnMut(&str),
) {
    let mut chunk = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::with_capacity(256);
    // The current line was cut and logged; skip to its newline.
    let mut skipping = false;
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for piece in chunk[..read].split_inclusive(|b| *b == b'\n') {
            let (text, ends_line) = match piece.split_last() {
                Some((b'\n', text)) => (text, true),
                _ => (piece, false),
            };
            if !skipping {
                let room = max_line.saturating_sub(line.len());
                line.extend_from_slice(&text[..text.len().min(room)]);
                if text.len() > room {
                    log(&format!("{}…", String::from_utf8_lossy(&line)));
                    line.clear();
                    skipping = true;
                }
            }
            if ends_line {
                if !skipping {
                    log(&String::from_utf8_lossy(&line));
                }
                line.clear();
                skipping = false;
            }
        }
    }
    if !line.is_empty() && !skipping {
        log(&String::from_utf8_lossy(&line));
    }
}

#[cfg(test)]
mod tests {
    use super::drain_log;

    async fn lines_of(input: &[u8], max_line: usize) -> Vec<String> {
        let mut lines = Vec::new();
        drain_log(input, max_line, |line| lines.push(line.to_owned())).await;
        lines
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced_and_reading_goes_on() {
        let lines = lines_of(b"ok\nbad \xff\xfe byte\nafter\nlast", 100).await;
        assert_eq!(lines, ["ok", "bad \u{fffd}\u{fffd} byte", "after", "last"]);
    }

    #[tokio::test]
    async fn a_long_line_is_cut_and_the_rest_of_it_skipped() {
        let mut input = vec![b'y'; 100_000];
        input.extend_from_slice(b"\nnext line\n");
        let lines = lines_of(&input, 10).await;
        assert_eq!(lines, ["yyyyyyyyyy…", "next line"]);
        // Exactly the bound is not cut; one byte more is.
        assert_eq!(lines_of(b"0123456789\n", 10).await, ["0123456789"]);
        assert_eq!(lines_of(b"0123456789a", 10).await, ["0123456789…"]);
    }
}
