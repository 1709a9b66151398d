//! What the daemon, the agent and testgen share: the domain types (`model`)
//! and the JSON shapes of the API that more than one of them reads or
//! writes (`wire`). No I/O, no HTTP server and no database here, so the
//! agent and testgen can depend on this crate and on nothing of the daemon.

pub mod model;
pub mod wire;
