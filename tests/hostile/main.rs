//! Hostile clients, model endpoints and tool servers: each module tries one
//! area's misbehaviour over real sockets and real child processes, and
//! asserts the daemon holds (answers on time, bounded resources, nothing
//! lost). The only fake is the model.

#[path = "../support/mod.rs"]
mod support;

mod tools;
