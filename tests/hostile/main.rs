//! Hostile clients, model endpoints and tool servers against the daemon over
//! real sockets and real child processes: each area of misbehaviour is one
//! module, and each test asserts the exact outcome (the event the client
//! gets, what is stored, that the daemon answers the next request, bounded
//! resources), not merely that nothing panicked. The only fake is the model.
//!
//! One test binary for all of them: each file under `tests/` is linked
//! against the whole daemon, and these scenarios share the harness.

#[path = "../support/mod.rs"]
mod support;

mod clients;
mod limits;
mod model;
mod tools;
