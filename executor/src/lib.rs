//! dynamic-mcp's executor: the only process with Docker access. It checks
//! what a tool may ask for (image, timeout, dependencies) and runs a tool's
//! JavaScript once in a fresh, hardened container, reporting one outcome
//! over gRPC (`dynamic_mcp.v1.Executor`). Containers always go away: after
//! the run, when the caller cancels, and — for leftovers — at start and stop.

pub mod config;
pub mod container;
pub mod docker;
pub mod error;
pub mod harness;
pub mod output;
pub mod policy;
pub mod reaper;
pub mod run;
pub mod service;
