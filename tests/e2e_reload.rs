//! Reloading `agent.toml` in the running binary: `chatkitd reload` (which
//! sends SIGHUP) and SIGHUP itself, with tool servers added, changed,
//! removed and kept (real `fake-mcp` children, told apart by an environment
//! variable read from `/proc`), model settings applied to the next run, and
//! broken files that change nothing.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chatkitd_testkit::Script;
use support::{
    Backend, Daemon, chatkitd_command, children_of, eventually, process_alive, workspace_bin,
};

/// `[mcp_servers.NAME]` of a fake server marked `WHO = name` (and `extra`
/// in its environment).
fn server_table(name: &str, extra: &str) -> String {
    format!(
        "[mcp_servers.{name}]\ncommand = {:?}\nmin_idle = 1\nmax_instances = 1\nstartup_timeout = \"10s\"\ncall_timeout = \"5s\"\nenv = {{ WHO = {name:?}{extra} }}\n",
        workspace_bin("fake-mcp").display().to_string()
    )
}

/// The daemon's tool server children by their `WHO`.
fn servers_of(daemon: u32) -> BTreeMap<String, Vec<u32>> {
    let mut found: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for pid in children_of(daemon) {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        for variable in environ.split(|b| *b == 0) {
            if let Some(who) = variable.strip_prefix(b"WHO=") {
                found
                    .entry(String::from_utf8_lossy(who).into_owned())
                    .or_default()
                    .push(pid);
            }
        }
    }
    found
}

/// Edits the daemon's configuration file as TOML.
fn edit(config: &Path, change: impl FnOnce(&mut toml::Table)) {
    let text = std::fs::read_to_string(config).expect("config");
    let mut table: toml::Table = toml::from_str(&text).expect("the config is TOML");
    change(&mut table);
    std::fs::write(config, toml::to_string(&table).expect("TOML")).expect("config written");
}

/// The table at `path` in `table`.
fn table_at<'t>(table: &'t mut toml::Table, path: &[&str]) -> &'t mut toml::Table {
    path.iter().fold(table, |table, key| {
        table
            .get_mut(*key)
            .and_then(toml::Value::as_table_mut)
            .unwrap_or_else(|| panic!("no table {key}"))
    })
}

/// Runs `chatkitd reload` on `config`: (exit code, stderr).
async fn reload_command(config: &Path) -> (i32, String) {
    let output = chatkitd_command(config)
        .arg("reload")
        .output()
        .await
        .expect("chatkitd reload runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `chatkitd reload` on the daemon's file and waits until the daemon
/// logs one more applied reload; returns the command's stderr.
async fn reload_applied(daemon: &Daemon, config: &Path) -> String {
    let applied = || daemon.log().matches("configuration reloaded").count();
    let before = applied();
    let (code, stderr) = reload_command(config).await;
    assert_eq!(code, 0, "{stderr}");
    let logged = eventually(Duration::from_secs(10), || async { applied() > before }).await;
    assert!(logged, "{}", daemon.log());
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_diffs_the_tool_servers_and_applies_model_settings_to_the_next_run() {
    let extra = format!(
        "[server]\npid_file = \"chatkitd.pid\"\n{}{}{}",
        server_table("kept", ""),
        server_table("changed", ", LEVEL = \"1\""),
        server_table("removed", ""),
    );
    let daemon = Daemon::binary(Backend::Sqlite, &extra).await;
    let pid = daemon.pid();
    let config = daemon.dir.path().join("agent.toml");
    let warm = eventually(Duration::from_secs(20), || async {
        servers_of(pid).len() == 3
    })
    .await;
    assert!(warm, "three servers started: {:?}", servers_of(pid));
    let before = servers_of(pid);

    // Added, changed, removed, kept; and a model setting for the next run.
    let added: toml::Table = toml::from_str(&server_table("added", "")).expect("TOML");
    edit(&config, |table| {
        table_at(table, &["llm"]).insert("model".into(), "reloaded-model".into());
        let servers = table_at(table, &["mcp_servers"]);
        servers.remove("removed");
        servers.extend(added["mcp_servers"].as_table().expect("servers").clone());
        table_at(table, &["mcp_servers", "changed", "env"]).insert("LEVEL".into(), "2".into());
    });
    let stderr = reload_applied(&daemon, &config).await;
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");

    let settled = eventually(Duration::from_secs(20), || async {
        let now = servers_of(pid);
        now.get("added").is_some_and(|p| p.len() == 1)
            && !now.contains_key("removed")
            && now.get("changed").is_some_and(|p| p != &before["changed"])
    })
    .await;
    let after = servers_of(pid);
    assert!(
        settled,
        "before {before:?}, after {after:?}\n{}",
        daemon.log()
    );
    assert_eq!(
        after["kept"], before["kept"],
        "the unchanged server kept its process"
    );
    for gone in before["removed"].iter().chain(&before["changed"]) {
        let stopped = eventually(Duration::from_secs(5), || async { !process_alive(*gone) }).await;
        assert!(stopped, "process {gone} stopped");
    }
    let log = daemon.log();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(log.contains("added=[\"added\"]"), "{log}");

    // The next run uses the new model setting.
    daemon.llm.push(Script::text(["Hi."]));
    let (_, streamed) = daemon.create_thread("hello").await;
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Hi."),
        "{}",
        streamed.raw
    );
    let requests = daemon.llm.stream_requests();
    assert_eq!(
        requests.last().expect("a request").body["model"],
        "reloaded-model"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_changes_nothing_by_command_or_by_signal() {
    let extra = format!(
        "[server]\npid_file = \"chatkitd.pid\"\n{}",
        server_table("kept", "")
    );
    let daemon = Daemon::binary(Backend::Sqlite, &extra).await;
    let pid = daemon.pid();
    let config = daemon.dir.path().join("agent.toml");
    let warm = eventually(Duration::from_secs(20), || async {
        servers_of(pid).contains_key("kept")
    })
    .await;
    assert!(warm);
    let before = servers_of(pid);

    // A valid-looking change with an invalid key: refused whole.
    edit(&config, |table| {
        table_at(table, &["mcp_servers", "kept"]).insert("max_instances_typo".into(), 3.into());
    });
    let (code, stderr) = reload_command(&config).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("would not be applied"), "{stderr}");
    assert!(stderr.contains("max_instances_typo"), "{stderr}");

    // The same file by SIGHUP: the daemon logs why and keeps everything.
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let logged = eventually(Duration::from_secs(10), || async {
        daemon
            .log()
            .contains("configuration not reloaded; nothing changed")
    })
    .await;
    assert!(logged, "{}", daemon.log());
    assert!(
        daemon.log().contains("max_instances_typo"),
        "{}",
        daemon.log()
    );
    assert_eq!(servers_of(pid), before);

    // The daemon still answers, and a fixed file reloads.
    daemon.llm.push(Script::text(["Still here."]));
    let (_, streamed) = daemon.create_thread("hello").await;
    assert_eq!(streamed.answer().as_deref(), Some("Still here."));
    edit(&config, |table| {
        table_at(table, &["mcp_servers", "kept"]).remove("max_instances_typo");
    });
    reload_applied(&daemon, &config).await;
    assert_eq!(
        servers_of(pid),
        before,
        "nothing changed, nothing restarted"
    );
}

/// Without a pid file or `--pid`, `chatkitd reload` says what to do.
#[tokio::test]
async fn reload_without_a_daemon_to_signal_says_how() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[llm]\nmodel = \"m\"\n").expect("written");
    let (code, stderr) = reload_command(&config).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("set [server] pid_file"), "{stderr}");
}

/// A server removed while one of its calls runs: the call finishes and the
/// answer goes on; then its process stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_server_finishes_the_call_in_flight_then_stops() {
    let extra = format!(
        "[server]\npid_file = \"chatkitd.pid\"\n{}",
        server_table("busy", "")
    );
    let daemon = std::sync::Arc::new(Daemon::binary(Backend::Sqlite, &extra).await);
    let pid = daemon.pid();
    let config = daemon.dir.path().join("agent.toml");
    let warm = eventually(Duration::from_secs(20), || async {
        servers_of(pid).contains_key("busy")
    })
    .await;
    assert!(warm);
    let busy = servers_of(pid)["busy"].clone();
    daemon
        .llm
        .push(Script::tool_call("call_s", "sleep", r#"{"ms": 2500}"#));
    daemon.llm.push(Script::text(["Woke up."]));
    let answering = {
        let daemon = daemon.clone();
        tokio::spawn(async move { daemon.create_thread("sleep a bit").await })
    };
    // Once the call is in flight (the model was asked once), remove the server.
    let in_flight = eventually(Duration::from_secs(10), || async {
        daemon.llm.stream_requests().len() == 1
    })
    .await;
    assert!(in_flight);
    // The call holds its instance: the pool counts it busy.
    let holding = eventually(Duration::from_secs(10), || async {
        let (_, metrics) = daemon.get("/metrics").await;
        metrics.lines().any(|line| {
            line.starts_with("chatkitd_mcp_instances{")
                && line.contains(r#"server="busy""#)
                && line.contains(r#"state="busy""#)
                && line.ends_with(" 1")
        })
    })
    .await;
    assert!(holding, "the call reaches the busy server");
    edit(&config, |table| {
        table.remove("mcp_servers");
    });
    reload_applied(&daemon, &config).await;
    assert!(
        process_alive(busy[0]),
        "the busy instance outlives the reload"
    );

    let (_, streamed) = answering.await.expect("the answer");
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Woke up."),
        "{}",
        streamed.raw
    );
    let requests = daemon.llm.stream_requests();
    let result = requests[1]
        .messages()
        .iter()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(result, "slept");
    let stopped = eventually(Duration::from_secs(10), || async {
        !process_alive(busy[0])
    })
    .await;
    assert!(stopped, "the retired instance stops after its call");
    assert!(servers_of(pid).is_empty(), "{:?}", servers_of(pid));
}

/// A pid file that holds no process id is refused with its path.
#[tokio::test]
async fn a_garbage_pid_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[server]\npid_file = \"d.pid\"\n").expect("written");
    std::fs::write(dir.path().join("d.pid"), "not a pid\n").expect("written");
    let (code, stderr) = reload_command(&config).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("does not hold a process id"), "{stderr}");
    std::fs::write(dir.path().join("d.pid"), "0\n").expect("written");
    let (code, stderr) = reload_command(&config).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is not a daemon's process id"), "{stderr}");
}

/// A SIGHUP while the daemon is still starting its tool servers does not
/// end it (SIGHUP's default action): it is caught from the start, and the
/// reload happens once the daemon serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_during_start_up_does_not_end_the_daemon() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.toml");
    let slow = format!("sleep 3; exec {}", workspace_bin("fake-mcp").display());
    let text = format!(
        "{}\n[mcp_servers.slow]\ncommand = \"sh\"\nargs = [\"-c\", {slow:?}]\nstartup_timeout = \"20s\"\n",
        support::test_config_toml(
            &format!("sqlite://{}", dir.path().join("c.db").display()),
            "http://127.0.0.1:9/v1"
        )
    );
    std::fs::write(&config, text).expect("written");
    let log = dir.path().join("chatkitd.log");
    let mut child = chatkitd_command(&config)
        .env("CHATKITD_LOG", "info,sqlx=warn")
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("chatkitd starts");
    let pid = child.id().expect("running");
    // SigCgt has bit 1 (SIGHUP) once the handler is in place.
    let caught = eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))
                    .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            })
            .is_some_and(|mask| mask & (1 << (libc::SIGHUP - 1)) != 0)
    })
    .await;
    assert!(caught, "the daemon catches SIGHUP");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("chatkitd listening"),
        "still starting: {text}"
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let served = eventually(Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("chatkitd listening") && text.contains("configuration reloaded")
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(served, "{text}");
    assert!(child.try_wait().expect("wait").is_none(), "{text}");
    child.kill().await.expect("kill");
}
