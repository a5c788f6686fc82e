//! The processes a scale run measures apart from its own: the fake model
//! (this benchmark's binary, run again), nginx relaying to it, and the
//! Postgres server; and their CPU time, read from `/proc/PID/stat`.

use std::time::{Duration, Instant};

/// Set in the environment of this benchmark's own binary, run again as the
/// fake model's process: the address it serves on.
pub(crate) const MODEL_PROCESS: &str = "CHATKITD_SCALE_MODEL_PROCESS";

/// CPU time (user and system) a process has used, from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pid: &str) -> f64 {
    stat_seconds(pid, 11..13)
}

/// CPU time of a process and of its children it has waited for
/// (`utime`, `stime`, `cutime`, `cstime` of `/proc/PID/stat`).
fn cpu_seconds_with_children(pid: &str) -> f64 {
    stat_seconds(pid, 11..15)
}

/// The sum of the clock-tick `fields` of `/proc/PID/stat`, counted after
/// the command name (which is in parentheses: `utime` is the 12th field
/// after it, index 11), in seconds; zero for a process that is gone.
fn stat_seconds(pid: &str, fields: std::ops::Range<usize>) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let values: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let ticks: f64 = fields.map(|i| values.get(i).unwrap_or(&0.0)).sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / per_second.max(1.0)
}

/// The fake model in a process of its own (this binary, run again), so
/// that its CPU is counted apart; killed when dropped.
pub(crate) struct ModelProcess {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) child: std::process::Child,
}

impl ModelProcess {
    pub(crate) fn start() -> ModelProcess {
        let addr = free_address();
        let child = std::process::Command::new(std::env::current_exe().expect("this binary"))
            .env(MODEL_PROCESS, addr.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the model's process starts");
        assert!(listens(addr), "the model's process listens on {addr}");
        ModelProcess { addr, child }
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.child.id().to_string())
    }
}

impl Drop for ModelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address nothing listens on now.
pub(crate) fn free_address() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// Whether something accepts connections on `addr` within 10 s.
pub(crate) fn listens(addr: std::net::SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// nginx serving as a relay in front of the model: one process (no master,
/// one worker's work), `proxy_buffering off`, keep-alive to the model;
/// killed when dropped.
pub(crate) struct Nginx {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx in front of `model`, or says why it cannot.
    pub(crate) fn start(model: &ModelProcess) -> Result<Nginx, String> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("nginx is not installed (Debian: apt-get install nginx-light)")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = free_address();
        let config = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    upstream model {{ server {model}; keepalive 1024; }}
    server {{
        listen {addr} backlog=4096;
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"#,
            dir = dir.path().display(),
            model = model.addr,
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).expect("nginx.conf");
        let child = std::process::Command::new(binary)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("nginx does not start: {e}"))?;
        let nginx = Nginx {
            addr,
            child,
            _dir: dir,
        };
        if !listens(addr) {
            let log =
                std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
            return Err(format!("nginx does not listen on {addr}: {log}"));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process id of the Postgres server at `store_url` (the parent of a
/// backend's), or `None` for another store or a server not on this machine.
pub(crate) async fn postmaster_pid(store_url: &str) -> Option<u32> {
    if !store_url.starts_with("postgres") {
        return None;
    }
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(store_url).await.ok()?;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut connection)
        .await
        .ok()?;
    let _ = connection.close().await;
    parent_of(&backend.to_string())
}

/// The parent's id of process `pid`: the second field of `/proc/PID/stat`
/// after the command name.
fn parent_of(pid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds of a Postgres server: the postmaster's own and its reaped
/// children's (backends that ended), plus every live child's.
pub(crate) fn server_cpu_seconds(postmaster: u32) -> f64 {
    let mut total = cpu_seconds_with_children(&postmaster.to_string());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if parent_of(pid) == Some(postmaster) {
            total += cpu_seconds(pid);
        }
    }
    total
}
