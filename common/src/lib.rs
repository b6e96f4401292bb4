//! Pieces every dynamic-mcp process needs and that must agree between them:
//! how internal gRPC addresses are written and dialled, how internal links
//! are authenticated, which tool names are reserved for built-ins, how logs
//! are written, and how a process learns that it should stop.

pub mod addr;
pub mod internal_auth;
pub mod shutdown;
pub mod telemetry;
pub mod tool_names;
