//! What the benchmarks share: the daemon on the default configuration, on a
//! given store and fake model, with per-user limits lifted (one user drives
//! every conversation) and no title generation (no second model call per
//! turn), started either in the benchmark's own process ([`InProcess`]) or
//! as the `chatkitd` binary in a child process ([`Child`]), as it is
//! deployed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chatkitd::app::App;
use chatkitd::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A daemon serving in a child process, killed when dropped.
pub struct Child {
    /// The ChatKit endpoint's URL.
    pub url: String,
    /// The child's process id.
    pub pid: u32,
    process: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Child {
    /// The binary this benchmark was built with.
    pub fn this_build() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_chatkitd"))
    }

    /// Starts `binary` on `store_url`, answered by the model at
    /// `llm_base_url` through `api` (`[llm] api`: `chat_completions` or
    /// `responses`), with `store_connections` query connections when given
    /// (the default otherwise), and waits until it listens.
    pub async fn start(
        binary: &Path,
        store_url: &str,
        llm_base_url: &str,
        store_connections: Option<u32>,
        api: &str,
    ) -> Child {
        Child::start_with(binary, store_url, llm_base_url, store_connections, api, "").await
    }

    /// [`Child::start`] with `extra` (whole TOML tables, such as
    /// `[guardrails.NAME]`) at the end of its configuration.
    pub async fn start_with(
        binary: &Path,
        store_url: &str,
        llm_base_url: &str,
        store_connections: Option<u32>,
        api: &str,
        extra: &str,
    ) -> Child {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("agent.toml");
        let connections =
            store_connections.map_or(String::new(), |n| format!("max_connections = {n}\n"));
        std::fs::write(
            &config,
            format!(
                r#"[server]
listen = "127.0.0.1:0"
[store]
url = "{store_url}"
{connections}[llm]
base_url = "{llm_base_url}"
api_key = "bench"
api = "{api}"
[agent]
title_generation = false
[limits]
max_concurrent_runs_per_user = 0
requests_per_minute_per_user = 0
{extra}
"#
            ),
        )
        .expect("config written");
        let log = dir.path().join("chatkitd.log");
        let process = tokio::process::Command::new(binary)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("CHATKITD_LOG", "info,sqlx=warn")
            .env_remove("DATABASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", binary.display()));
        let pid = process.id().expect("running");
        let url = format!("http://{}/api/chatkit", listening_address(&log).await);
        Child {
            url,
            pid,
            process,
            _dir: dir,
        }
    }

    /// Kills it and waits until it is gone.
    pub async fn stop(mut self) {
        let _ = self.process.start_kill();
        let _ = self.process.wait().await;
    }
}

/// The address the daemon logging to `log` says it listens on.
async fn listening_address(log: &Path) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find(|l| l.contains("chatkitd listening"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
        {
            return addr.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chatkitd did not start:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A daemon serving in this process; [`InProcess::stop`] ends it.
pub struct InProcess {
    /// The ChatKit endpoint's URL.
    pub url: String,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts it on `store_url`, answered by the model at `llm_base_url`,
    /// with `store_connections` query connections.
    pub async fn start(store_url: &str, llm_base_url: &str, store_connections: u32) -> InProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::from_toml("", "bench.toml", dir.path().to_path_buf(), &|_| None)
            .expect("default config");
        config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.store.url = store_url.parse().expect("a store URL");
        config.store.max_connections = store_connections;
        config.llm.base_url = llm_base_url.to_owned();
        config.llm.api_key = Some("bench".into());
        config.agent.title_generation = false;
        config.limits.max_concurrent_runs_per_user = 0;
        config.limits.requests_per_minute_per_user = 0;
        let app = App::build(config).await.expect("daemon builds");
        let listener = app.bind(None).await.expect("bind");
        let url = format!(
            "http://{}/api/chatkit",
            listener.local_addr().expect("addr")
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        InProcess {
            url,
            stop,
            server,
            _dir: dir,
        }
    }

    /// Shuts it down and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}
