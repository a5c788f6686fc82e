//! Hostile clients and endpoints, over real sockets: each module drives the
//! daemon the way a misbehaving client, model or tool would and asserts what
//! the daemon answers and what it stored afterwards.

#[path = "../support/mod.rs"]
mod support;

mod limits;
