//! Prometheus metrics, served at `GET /metrics` (OpenMetrics text).
//!
//! One process-wide registry ([`get`]) holds the counters and histograms,
//! recorded where things happen (HTTP requests, runs, model calls, tool
//! calls). Gauges that describe a component's state now (the MCP pools, the
//! store's connection pool) are read when scraped, by [`GaugeSet`]s that the
//! wiring (`app.rs`) registers with the daemon's [`Exporter`]; so neither the
//! component nor the HTTP layer knows the other, and each daemon's `/metrics`
//! reports its own components even when tests run several in one process.
//! Labels hold only low-cardinality values (request types, outcomes, server
//! and tool names), never user ids, thread ids or text.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `type` and `outcome` of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The ChatKit request type, or `invalid` / `unauthenticated`.
    pub r#type: String,
    /// `ok` or the HTTP status code.
    pub outcome: String,
}

/// How a run ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// One tool call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub server: String,
    pub tool: String,
    pub outcome: String,
}

/// A tool, for latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLatencyLabels {
    pub server: String,
    pub tool: String,
}

/// Direction of LLM tokens.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApprovalLabels {
    pub event: String,
}

/// A guardrail of `agent.toml`, by its configured name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardrailLabels {
    pub guardrail: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub run_duration: Histograms<OutcomeLabels>,
    pub time_to_first_token: Histogram,
    pub llm_tokens: Family<TokenLabels, Counter>,
    pub tool_calls: Family<ToolLabels, Counter>,
    pub tool_latency: Histograms<ToolLatencyLabels>,
    pub approvals: Family<ApprovalLabels, Counter>,
    pub questions: Family<ApprovalLabels, Counter>,
    pub guardrail_trips: Family<GuardrailLabels, Counter>,
    pub guardrail_failures: Family<GuardrailLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("chatkitd");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "ChatKit requests by type and outcome",
            requests.clone(),
        );
        let run_duration: Histograms<OutcomeLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "run_duration_seconds",
            "Duration of agent runs (one answer, tools included) by outcome",
            run_duration.clone(),
        );
        let time_to_first_token = latency_histogram();
        registry.register(
            "time_to_first_token_seconds",
            "From the start of a run to its first streamed text",
            time_to_first_token.clone(),
        );
        let llm_tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "llm_tokens",
            "LLM tokens in (prompt) and out (completion), as the model service reports them",
            llm_tokens.clone(),
        );
        let tool_calls = Family::<ToolLabels, Counter>::default();
        registry.register(
            "tool_calls",
            "MCP tool calls by server, tool and outcome",
            tool_calls.clone(),
        );
        let tool_latency: Histograms<ToolLatencyLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "tool_call_duration_seconds",
            "MCP tool call latency, waiting for an instance included",
            tool_latency.clone(),
        );
        let approvals = Family::<ApprovalLabels, Counter>::default();
        registry.register(
            "approvals",
            "Approval cards: asked, then approved, denied, expired (the conversation moved on) or unchanged (a repeated click)",
            approvals.clone(),
        );
        let questions = Family::<ApprovalLabels, Counter>::default();
        registry.register(
            "questions",
            "Tool servers' questions to users: asked, then answered, skipped, expired (no answer in time) or abandoned (the thread was deleted)",
            questions.clone(),
        );
        let guardrail_trips = Family::<GuardrailLabels, Counter>::default();
        registry.register(
            "guardrail_trips",
            "Guardrails that stopped a message or an answer (a failed check that blocks included)",
            guardrail_trips.clone(),
        );
        let guardrail_failures = Family::<GuardrailLabels, Counter>::default();
        registry.register(
            "guardrail_failures",
            "Guardrail checks that failed (the model erred or answered no verdict)",
            guardrail_failures.clone(),
        );
        Metrics {
            registry,
            requests,
            run_duration,
            time_to_first_token,
            llm_tokens,
            tool_calls,
            tool_latency,
            approvals,
            questions,
            guardrail_trips,
            guardrail_failures,
        }
    }

    /// Counts a guardrail's `tripped` or `failed` check.
    pub fn guardrail(&self, guardrail: &str, event: &str) {
        let labels = GuardrailLabels {
            guardrail: guardrail.to_owned(),
        };
        match event {
            "tripped" => self.guardrail_trips.get_or_create(&labels).inc(),
            _ => self.guardrail_failures.get_or_create(&labels).inc(),
        };
    }

    /// Counts one event of a tool server's question: `asked`, `answered`,
    /// `skipped`, `expired` or `abandoned`.
    pub fn question(&self, event: &'static str) {
        self.questions
            .get_or_create(&ApprovalLabels {
                event: event.to_owned(),
            })
            .inc();
    }

    /// Counts one approval event: `asked`, `approved`, `denied`, `expired`
    /// or `unchanged`.
    pub fn approval(&self, event: &'static str) {
        self.approvals
            .get_or_create(&ApprovalLabels {
                event: event.to_owned(),
            })
            .inc();
    }

    /// Counts one request.
    pub fn request(&self, kind: &str, outcome: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                r#type: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records a finished run.
    pub fn run(&self, outcome: &str, duration: Duration) {
        self.run_duration
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Records token usage reported by the model service.
    pub fn tokens(&self, prompt: u64, completion: u64) {
        for (direction, count) in [("in", prompt), ("out", completion)] {
            self.llm_tokens
                .get_or_create(&TokenLabels {
                    direction: direction.to_owned(),
                })
                .inc_by(count);
        }
    }

    /// Records one tool call. `server` is empty when the model named a tool
    /// no server offers: the name it chose is then not a label (any text the
    /// model makes up would become a series of its own on a public
    /// endpoint); every such call counts as `server="none", tool="unknown"`.
    pub fn tool_call(&self, server: &str, tool: &str, is_error: bool, duration: Duration) {
        let (server, tool) = if server.is_empty() {
            ("none", "unknown")
        } else {
            (server, tool)
        };
        self.tool_calls
            .get_or_create(&ToolLabels {
                server: server.to_owned(),
                tool: tool.to_owned(),
                outcome: if is_error { "error" } else { "ok" }.to_owned(),
            })
            .inc();
        self.tool_latency
            .get_or_create(&ToolLatencyLabels {
                server: server.to_owned(),
                tool: tool.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Reads one gauge family's samples at scrape time: label pairs and a value
/// per sample.
type ReadGauges = dyn Fn() -> Vec<(Vec<(&'static str, String)>, i64)> + Send + Sync;

/// A family of gauges whose values are read when `/metrics` is scraped, from
/// a closure the wiring provides (e.g. the MCP pools' instance counts).
pub struct GaugeSet {
    name: &'static str,
    help: &'static str,
    read: Box<ReadGauges>,
}

impl GaugeSet {
    /// `name` without the `chatkitd_` prefix; `help` is one sentence, with
    /// its full stop (the registry adds it to the other metrics' help);
    /// `read` returns every sample.
    pub fn new(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> Vec<(Vec<(&'static str, String)>, i64)> + Send + Sync + 'static,
    ) -> GaugeSet {
        GaugeSet {
            name,
            help,
            read: Box::new(read),
        }
    }
}

impl std::fmt::Debug for GaugeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaugeSet")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collector for GaugeSet {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples = (self.read)();
        let mut family =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        for (labels, value) in &samples {
            ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// What one daemon serves at `/metrics`: the process-wide counters and
/// histograms, then the gauges registered for this daemon's components.
#[derive(Debug)]
pub struct Exporter {
    gauges: Registry,
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter {
            gauges: Registry::with_prefix("chatkitd"),
        }
    }
}

impl Exporter {
    /// Adds gauges read at every scrape.
    pub fn register(&mut self, gauges: GaugeSet) {
        self.gauges.register_collector(Box::new(gauges));
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        self.render_with(get())
    }

    fn render_with(&self, metrics: &Metrics) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let encoded = encode_registry(&mut out, &metrics.registry)
            .and_then(|()| encode_registry(&mut out, &self.gauges))
            .and_then(|()| encode_eof(&mut out));
        if let Err(e) = encoded {
            tracing::error!(error = %e, "could not encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_values_and_scraped_gauges() {
        let metrics = Metrics::new();
        metrics.request("threads.list", "ok");
        metrics.tool_call("tasks", "add_task", false, Duration::from_millis(3));
        metrics.tool_call("", "made_up_by_the_model", true, Duration::from_millis(1));
        metrics.tokens(10, 5);
        let mut exporter = Exporter::default();
        exporter.register(GaugeSet::new("store_connections", "Connections.", || {
            vec![
                (vec![("state", "idle".to_owned())], 3),
                (vec![("state", "in_use".to_owned())], 1),
            ]
        }));
        let text = exporter.render_with(&metrics);
        assert!(
            text.contains(r#"chatkitd_requests_total{type="threads.list",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"chatkitd_tool_calls_total{server="tasks",tool="add_task",outcome="ok"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"chatkitd_tool_calls_total{server="none",tool="unknown",outcome="error"} 1"#
            ) && !text.contains("made_up_by_the_model"),
            "{text}"
        );
        assert!(
            text.contains(r#"chatkitd_llm_tokens_total{direction="out"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(
                "# HELP chatkitd_store_connections Connections.\n# TYPE chatkitd_store_connections gauge\n\
                 chatkitd_store_connections{state=\"idle\"} 3\nchatkitd_store_connections{state=\"in_use\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
