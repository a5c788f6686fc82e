//! Hostile clients, model endpoints and tool servers against the real
//! `chatkitd` binary over real sockets and real child processes: each area
//! of misbehaviour is one module, and each test asserts the exact outcome
//! (the event the client gets, what is stored, that the daemon answers the
//! next request, bounded resources, a clean exit on SIGTERM with a log free
//! of colour codes), not merely that nothing panicked. The only fake is the
//! model. Two kinds of scenario run in-process instead, each saying why: a
//! stall at an exact event (only `ChatKit::handle` can hold the buffer full
//! there) and one tool pool's back-off, caps and reaping (read from its
//! counts).
//!
//! One test binary for all of them: each file under `tests/` is linked
//! against the whole daemon, and these scenarios share the harness.

#[path = "../support/mod.rs"]
mod support;

mod attachments;
mod clients;
mod ids;
mod limits;
mod model;
mod requests;
mod tools;
