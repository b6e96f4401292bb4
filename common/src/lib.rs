//! Pieces every dynamic-mcp process needs and that must agree between them:
//! how internal gRPC addresses are written and dialled, how internal links
//! are authenticated, which tool names are reserved for built-ins, which
//! executor a session id names, the limits every dynamic tool is held to and
//! how its JSON Schemas are compiled, how logs are written, how a process
//! learns that it should stop, how long to wait before trying a lost
//! service again, background work done every period, and a gRPC health
//! status that follows a dependency.

pub mod addr;
pub mod backoff;
pub mod health_watch;
pub mod internal_auth;
pub mod limits;
pub mod periodic;
pub mod secret;
pub mod session_id;
pub mod shutdown;
pub mod telemetry;
pub mod timestamp;
pub mod tool_names;
pub mod tool_schema;
