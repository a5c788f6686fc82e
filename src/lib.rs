//! chatkitd: a ChatKit server backend in one binary.
//!
//! Module map, one line each (ARCHITECTURE.md has what each deliberately does
//! not know, and `tests/architecture.rs` checks it):
//! - [`http`]: the axum router, body limits, JSON errors with statuses, SSE framing.
//! - [`auth`]: who is calling: JWT verification or the development user.
//! - [`chatkit`]: dispatch of each request type onto the store and a spawned run.
//! - [`agent`]: the assistant: a run (the turn loop, tool steps, titles), the transcript the model reads, work without a run.
//! - [`elicitation`]: a tool server's question to the user as a form, answers checked, the questions waiting.
//! - [`stream`]: the event sink a run writes into and its hand-over between client streams.
//! - [`llm`]: the OpenAI-compatible client; the only code that speaks the model's wire format.
//! - [`mcp`]: tool servers: spawned or remote, pooled and called with the user injected.
//! - [`store`]: the `Store` trait and its SQL implementation (Postgres, SQLite).
//! - [`protocol`]: ChatKit wire types, serde only, no I/O.
//! - [`config`]: `agent.toml`: schema, `${ENV}` interpolation, validation.
//! - [`limits`]: per-user request rates and run slots.
//! - [`metrics`]: the Prometheus registry and the gauges read at scrape time.
//! - [`attachments`]: files and images on messages: two-phase upload, signed URLs, bytes for the model.
//! - [`app`]: wiring a configuration into a running server.
//! - [`reload`]: applying a changed `agent.toml` to a running server (SIGHUP).
//! - [`cli`]: the operator's terminal commands: `chat`, `tools`, `check`.
//! - [`text`]: cutting text short, with one rule for where and how.
//! - [`tls`]: installs rustls' crypto provider for every HTTP client.
//! - [`signal`]: a rare signal waited on beside a busy future, polled only when it wakes.
//! - [`widgets`]: ChatKit widgets: `.widget` templates, the approval card, widgets as text.

pub mod agent;
pub mod app;
pub mod attachments;
pub mod auth;
pub mod chatkit;
pub mod cli;
pub mod config;
pub mod elicitation;
pub mod http;
pub mod limits;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod protocol;
pub mod reload;
pub mod signal;
pub mod store;
pub mod stream;
pub mod text;
pub mod tls;
pub mod widgets;
