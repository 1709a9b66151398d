//! Integration tests: each builds the daemon on its own temporary database
//! and talks to it through Rocket's local client (or, where a real process
//! is needed, the compiled binaries).
#![allow(clippy::unwrap_used)]

mod bins;
mod support;

mod auth;
mod batch;
mod buckets;
mod cli;
mod errors;
mod metrics;
mod range;
mod retention;
mod seal;
mod servers;
mod storage;
mod validation;

mod agent;
mod browser;
mod cdp;
mod daemon;
mod dashboard;
mod lifecycle;
mod openapi;
mod overview;
mod prometheus;
mod testgen;
