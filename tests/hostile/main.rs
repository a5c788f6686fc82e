//! Hostile clients and endpoints against the real daemon, over real sockets:
//! each module is one kind of misbehaving peer, and each test asserts what
//! the daemon does about it, not just that it survives.
//!
//! Why one target: every file under `tests/` is its own test binary linked
//! against the whole daemon; the hostile scenarios share the harness and
//! build once.

#[path = "../support/mod.rs"]
mod support;

mod clients;
