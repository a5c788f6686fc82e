//! A fake OpenAI-compatible chat-completions server for tests.
//!
//! [`FakeLlm`] serves `POST /v1/chat/completions`, `POST /v1/responses` (the
//! same scripts as the Responses API's events), `GET /v1/models` and
//! `POST /v1/audio/transcriptions` (recorded raw, answered from a queue) on
//! 127.0.0.1 with axum, speaking the real wire format (JSON completions and
//! `text/event-stream` chunk streams ending in `data: [DONE]`), so the real
//! client runs against it unmodified. Every chat request is recorded as a
//! [`RecordedRequest`]; replies are scripted with [`Script`]s taken from two
//! FIFO queues, one for streaming requests and one for non-streaming ones, with
//! a deterministic echo reply when a queue is empty. Every recorded request is
//! checked with [`check_request_well_formed`] when the fake is dropped, unless
//! a test said it sends malformed history on purpose
//! ([`FakeLlm::expect_malformed_requests`]).
//!
//! - `script`: the script language ([`Script`], [`FakeToolCall`]) and the
//!   default replies.
//! - `recording`: [`RecordedRequest`] and helpers reading messages.
//! - `invariants`: what a well-formed request is.
//! - `reply`: how one script plays out as an HTTP response, streamed or not.
//! - `server`: [`FakeLlm`], its routes and shared state.
//!
//! The submodules are private; everything public is re-exported here, so
//! paths such as `fake_llm::message_text` stay as they were.

mod invariants;
mod recording;
mod reply;
mod script;
mod server;

pub use invariants::{check_request_well_formed, check_responses_request_well_formed};
pub use recording::{RecordedRequest, last_user_text, message_text};
pub use script::{FakeToolCall, Script};
pub use server::{FakeLlm, TRANSCRIBED, TranscriptionRequest};

/// The model name reported when a request names none, and listed by `/v1/models`.
pub const FAKE_MODEL: &str = "fake-model";
