//! What the benchmarks share: the daemon started in the benchmark's own
//! process on the default configuration, on a given store and fake model,
//! with per-user limits lifted (one user drives every conversation) and no
//! title generation (no second model call per turn).

use chatkitd::app::App;
use chatkitd::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
