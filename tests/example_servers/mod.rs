//! What the example tool servers of `examples/tool-servers/` need before a
//! test can run them, prepared once and reused: a Python virtual environment
//! with the pinned MCP SDK and the third-party `mcp-server-time`, and the
//! TypeScript example installed with `npm ci` and compiled with `tsc`, both
//! under `target/tool-server-examples/`. The Rust example is a workspace
//! member, so its binary sits beside `chatkitd`'s.
//!
//! Each part is redone only when its inputs change (their text is kept as a
//! stamp beside the result), under a file lock, so parallel tests and
//! concurrent `cargo test` runs never race. A setup that fails (no
//! `python3`, no `venv` module, no registry) fails every test that needs it
//! with what went wrong and the tail of the installer's log: nothing is
//! skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The third-party MCP server installed from PyPI, at a pinned version.
pub const TIME_SERVER: &str = "mcp-server-time==2026.10.19";

/// The longest one installer step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(900);

/// Where the prepared example servers are.
#[derive(Debug)]
pub struct Prepared {
    /// The virtual environment's Python, with `mcp` and `mcp-server-time`.
    pub python: PathBuf,
    /// The `mcp-server-time` program of that environment.
    pub time_server: PathBuf,
    /// The compiled TypeScript example, run with `node`.
    pub typescript: PathBuf,
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/tool-servers/` in the repository.
pub fn examples_dir() -> PathBuf {
    repo().join("examples").join("tool-servers")
}

/// `target/<profile>/`, where cargo put the `chatkitd` binary under test.
fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_chatkitd"))
        .parent()
        .expect("the chatkitd binary's directory")
        .to_path_buf()
}

/// The Rust example's binary, built with the workspace in this profile.
pub fn rust_server() -> PathBuf {
    let path = profile_dir().join("notes-mcp");
    assert!(
        path.exists(),
        "{} is missing: the Rust example is a workspace member, built by \
         `cargo build --workspace` (add --release for a release test run) or \
         `cargo test --workspace`",
        path.display()
    );
    path
}

/// The prepared servers, set up on first use in this test process.
pub fn prepared() -> &'static Prepared {
    static PREPARED: OnceLock<Result<Prepared, String>> = OnceLock::new();
    match PREPARED.get_or_init(prepare) {
        Ok(prepared) => prepared,
        Err(message) => panic!("the example tool servers could not be set up: {message}"),
    }
}

fn prepare() -> Result<Prepared, String> {
    // target/<profile>/ → target/tool-server-examples/
    let work = profile_dir()
        .parent()
        .ok_or("no target directory")?
        .join("tool-server-examples");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let lock = std::fs::File::create(work.join(".lock"))
        .map_err(|e| format!("{}: {e}", work.display()))?;
    // Held until this function returns: another test process waits here.
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", work.display()))?;
    let venv = python_env(&work)?;
    let typescript = typescript_build(&work)?;
    Ok(Prepared {
        python: venv.join("bin").join("python"),
        time_server: venv.join("bin").join("mcp-server-time"),
        typescript,
    })
}

/// `target/tool-server-examples/venv`, with the Python example's
/// requirements and [`TIME_SERVER`] installed.
fn python_env(work: &Path) -> Result<PathBuf, String> {
    let requirements = examples_dir().join("python").join("requirements.txt");
    let stamp = format!("{}\n{TIME_SERVER}\n", read(&requirements)?);
    let venv = work.join("venv");
    // A Python upgraded under the environment breaks it: check it still imports.
    let imports = || {
        Command::new(venv.join("bin").join("python"))
            .args(["-c", "import mcp, mcp_server_time"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if is_current(&venv, &stamp) && imports() {
        return Ok(venv);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let log = work.join("python-setup.log");
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv (needs Python 3.10+ with its venv module, e.g. Debian's python3-venv)",
        &log,
    )?;
    run(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--disable-pip-version-check", "--quiet", "-r"])
            .arg(&requirements)
            .arg(TIME_SERVER),
        "pip install (needs access to PyPI)",
        &log,
    )?;
    write_stamp(&venv, &stamp)?;
    Ok(venv)
}

/// The TypeScript example copied to `target/tool-server-examples/typescript`,
/// its locked dependencies installed and its source compiled: returns
/// `dist/server.js`.
fn typescript_build(work: &Path) -> Result<PathBuf, String> {
    let source = examples_dir().join("typescript");
    let files = [
        "package.json",
        "package-lock.json",
        "tsconfig.json",
        "src/server.ts",
    ];
    let mut stamp = String::new();
    for file in files {
        stamp.push_str(&read(&source.join(file))?);
    }
    let build = work.join("typescript");
    let server = build.join("dist").join("server.js");
    if is_current(&build, &stamp) && server.exists() {
        return Ok(server);
    }
    let _ = std::fs::remove_dir_all(build.join("src"));
    let _ = std::fs::remove_dir_all(build.join("dist"));
    std::fs::create_dir_all(build.join("src")).map_err(|e| format!("{}: {e}", build.display()))?;
    for file in files {
        std::fs::copy(source.join(file), build.join(file))
            .map_err(|e| format!("copying {file}: {e}"))?;
    }
    let log = work.join("typescript-setup.log");
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&build),
        "npm ci (needs Node.js 20+ with npm, and access to npm's registry)",
        &log,
    )?;
    run(
        Command::new("npm")
            .args(["run", "build"])
            .current_dir(&build),
        "npm run build (tsc)",
        &log,
    )?;
    write_stamp(&build, &stamp)?;
    Ok(server)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The stamp file of a prepared directory.
fn stamp_path(dir: &Path) -> PathBuf {
    dir.join(".chatkitd-inputs")
}

/// Whether `dir` was prepared from exactly these inputs.
fn is_current(dir: &Path, stamp: &str) -> bool {
    std::fs::read_to_string(stamp_path(dir)).is_ok_and(|done| done == stamp)
}

fn write_stamp(dir: &Path, stamp: &str) -> Result<(), String> {
    std::fs::write(stamp_path(dir), stamp).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Runs one installer step with its output appended to `log`, within
/// [`STEP_TIMEOUT`]; a failure says `what` and ends with the log's tail.
fn run(command: &mut Command, what: &str, log: &Path) -> Result<(), String> {
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let errors = output
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .map_err(|e| format!("{what}: cannot start it: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > STEP_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: no result after {STEP_TIMEOUT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{what}: {status}; the end of {}:\n{}",
        log.display(),
        tail.join("\n")
    ))
}
