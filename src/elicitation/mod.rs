//! Elicitation: a tool server's question to the user mid-call, as ChatKit
//! structured input. The requested schema read into questions and an
//! answer checked back against it (`form/`), a user's submission read and
//! recorded on its item (`answers.rs`), and the questions waiting in this
//! process, registered by runs and claimed by answers (`waiting.rs`, which
//! has the whole flow).
//!
//! It knows no HTTP, no store and no run: the run's side (parking the tool
//! step, streaming the pending item) is `agent/run/asking.rs`, the
//! request's side (claiming a question with the answer's stream) is
//! `chatkit/questions.rs`.

mod answers;
mod form;
mod waiting;

pub use answers::{Answer, Submission};
pub use form::Form;
pub use waiting::{Claimed, Questions};
pub(crate) use waiting::{Open, Reply};
