//! The gRPC contracts of dynamic-mcp (package `dynamic_mcp.v1`).
//!
//! The frontend talks to the registry (tool definitions and their change
//! feed) and to the executor (policy checks and hardened runs) only through
//! these types.

/// Generated code; a change event carries a whole tool record by value.
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("dynamic_mcp.v1");
}
