//! chatkitd: a ChatKit server backend in one binary.
//!
//! Module map (data flows top to bottom; see `design.md` for the invariants):
//! - [`http`]: the axum router, authentication, body limits, SSE framing. Only
//!   this module knows HTTP status codes and headers.
//! - [`chatkit`]: dispatch of each request type onto the store and the agent.
//! - [`agent`]: the turn loop: history building, streaming the model's answer
//!   as ChatKit events, persistence as items complete, titles.
//! - [`llm`]: the OpenAI-compatible client: streaming chat completions,
//!   tolerant chunk parsing, retries, timeouts; the only code that speaks
//!   the model's wire format.
//! - [`store`]: the `Store` trait and its SQL implementation (Postgres, SQLite).
//! - [`protocol`]: ChatKit wire types, serde only, no I/O.
//! - [`config`]: `agent.toml`: schema, `${ENV}` interpolation, validation.
//! - [`app`]: wiring a configuration into a running server.
//! - [`cli`]: the operator's terminal commands: `chat`, `tools`, `check`.
//! - [`tls`]: installs rustls' crypto provider for every HTTP client.

pub mod agent;
pub mod app;
pub mod auth;
pub mod chatkit;
pub mod cli;
pub mod config;
pub mod http;
pub mod limits;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod protocol;
pub mod store;
pub mod text;
pub mod tls;
