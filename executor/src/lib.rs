//! dynamic-mcp's executor: the only process with Docker access. It checks
//! what a tool may ask for (image, timeout, dependencies), installs a tool's
//! npm dependencies once into a read-only cache, runs a tool's JavaScript
//! once in a fresh, hardened container, and keeps sandbox sessions —
//! long-lived hardened containers, each visible only to its owner — all over
//! gRPC (`dynamic_mcp.v1.Executor`). Hot, trusted tools may instead share a
//! long-lived hardened container per tool revision (`per_tool/`), each call
//! in a fresh JS realm. Containers always go away: after a run,
//! when the caller cancels, when a session stops or idles out, and — for
//! leftovers — at start and stop. Code that a tool or session allows to
//! reach the network gets there only through the executor's egress proxy
//! (`egress/`), which enforces its allow-list and puts in secrets the code
//! never sees.

pub mod config;
pub mod container;
mod content;
pub mod deps;
pub mod docker;
mod durations;
pub mod egress;
pub mod error;
pub mod harness;
pub mod health;
pub mod outcome;
mod output;
pub mod per_tool;
mod policy;
mod progress;
pub mod reaper;
pub mod run;
pub mod service;
pub mod session;
pub mod setting_values;
pub mod socket_dir;
pub mod streams;
