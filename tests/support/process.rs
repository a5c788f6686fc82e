//! Child processes in the end-to-end tests: this workspace's binaries
//! (`chatkitd`, `fake-mcp`, `tasks-mcp`), the fake MCP server's configuration
//! and what `/proc` says about process trees. Daemons run in the test process
//! live in the parent module.

use std::path::PathBuf;

use chatkitd::config::Config;

/// Path of a binary of another workspace package (`fake-mcp`, `fake-llm`,
/// `tasks-mcp`), built in this test's profile. `cargo test --workspace` builds
/// them all; a narrower `cargo test --test …` may not, so a missing one is
/// built once here.
pub fn workspace_bin(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile> directory")
        .to_path_buf();
    let path = profile_dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    // Build only what is missing: building one package alone resolves its
    // features apart from the workspace's, which would rebuild much of the
    // dependency graph (minutes in release) and churn the shared binary.
    if !path.exists() && !built.iter().any(|b| b == name) {
        let package = match name {
            "tasks-mcp" => "tasks-mcp",
            _ => "chatkitd-testkit",
        };
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "-p", package, "--bin", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success(), "building {name} failed");
        built.push(name.to_owned());
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A `chatkitd` command (this package's binary) reading `config`, that sees
/// none of the variables that override the configuration file, reads no
/// input and is killed if the test drops it. Callers choose the log and the
/// output pipes.
pub fn chatkitd_command(config: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatkitd"));
    command
        .arg("--config")
        .arg(config)
        .env_remove("DATABASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("CHATKITD_CONFIG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// The `[mcp_servers.fake]` table of the fake MCP server, with fast timeouts.
pub fn fake_mcp_server_toml() -> String {
    format!(
        "[mcp_servers.fake]\ncommand = {:?}\nmin_idle = 1\nmax_instances = 2\nstartup_timeout = \"10s\"\ncall_timeout = \"5s\"\ninject = {{ user_id = \"user.id\" }}\nenv = {{ FAKE_SETTING = \"on\" }}\n",
        workspace_bin("fake-mcp").display().to_string()
    )
}

/// [`fake_mcp_server_toml`] as the daemon reads it.
pub fn fake_mcp_server() -> chatkitd::config::McpServerConfig {
    let text = fake_mcp_server_toml();
    let config = Config::from_toml(&text, "fake.toml", PathBuf::from("."), &|_| None)
        .expect("fake MCP config is valid");
    config.mcp_servers["fake"].clone()
}

/// `@modelcontextprotocol/server-everything`, run with `npx` at a pinned
/// version (`.ci/run` puts it in npm's cache first).
pub const EVERYTHING: &str = "@modelcontextprotocol/server-everything@2026.8.31";

/// The `[mcp_servers.everything]` table of server-everything over stdio,
/// as the daemon reads it (npx's first start can be slow).
pub fn server_everything() -> chatkitd::config::McpServerConfig {
    let text = format!(
        "[mcp_servers.everything]\ncommand = \"npx\"\nargs = [\"-y\", \"{EVERYTHING}\", \"stdio\"]\n\
         startup_timeout = \"90s\"\ncall_timeout = \"60s\"\n"
    );
    let config = Config::from_toml(&text, "everything.toml", PathBuf::from("."), &|_| None)
        .expect("server-everything config is valid");
    config.mcp_servers["everything"].clone()
}

/// A `chatkitd serve` child logging (as text, at info) to `log`, started
/// on `config`, which must listen on port 0: returns the child once it is
/// listening, and the address it took (read from its log, so no port is
/// guessed and raced for).
pub async fn serve_chatkitd(
    config: &std::path::Path,
    log: &std::path::Path,
) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut child = chatkitd_command(config)
        .env("CHATKITD_LOG", "info,sqlx=warn")
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("chatkitd starts");
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let listening = text
            .lines()
            .find(|line| line.contains("chatkitd listening"))
            .and_then(|line| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
            })
            .and_then(|addr| addr.parse().ok());
        if let Some(addr) = listening {
            return (child, addr);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("chatkitd exited ({status}) before listening:\n{text}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "chatkitd not listening after 30 s:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {pid}");
}

/// The pids of processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so split after ')'.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let state = fields.first().copied().unwrap_or("");
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) && state != "Z" {
            children.push(pid);
        }
    }
    children
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
