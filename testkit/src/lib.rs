//! Test and benchmark support for chatkitd.
//!
//! - [`fake_llm`]: a fake OpenAI-compatible chat-completions server with
//!   scriptable replies and request recording.
//! - [`postgres`]: a throwaway PostgreSQL server shared by a test process,
//!   handing out a fresh database per test.
//! - [`figures`]: percentiles and milliseconds of timing samples, for the
//!   benchmarks.

pub mod fake_llm;
pub mod figures;
pub mod postgres;

pub use fake_llm::{FakeLlm, FakeToolCall, RecordedRequest, Script};
pub use postgres::{PgServer, shared_server, try_fresh_database};
