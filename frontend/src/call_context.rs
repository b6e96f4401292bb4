//! What one tool call knows besides its arguments: who calls, over what,
//! with which admin header and request id, its cancellation and where its
//! progress goes. Read once from the MCP request, then passed everywhere.

use std::net::IpAddr;

use rmcp::RoleServer;
use rmcp::service::RequestContext;
use tokio_util::sync::CancellationToken;

use crate::auth::{Caller, ClientAddr, Principal};
use crate::progress::Progress;

/// The HTTP header that carries the admin token.
const ADMIN_TOKEN_HEADER: &str = "x-mcp-admin-token";

/// What a tool call knows besides its arguments. Not `Debug`: it may hold
/// the admin token from the request header.
pub struct CallContext {
    pub caller: Caller,
    /// Whether the call came over Streamable HTTP.
    pub over_http: bool,
    /// The HTTP client's address.
    pub client: Option<IpAddr>,
    /// The X-MCP-Admin-Token header, if sent.
    pub admin_header: Option<String>,
    /// The HTTP request's `x-request-id`, for audit lines.
    pub request_id: Option<String>,
    /// Fires when the client cancels the call or goes away.
    pub cancel: CancellationToken,
    /// Where progress notifications go, if the client asked for them.
    pub progress: Option<Progress>,
}

impl CallContext {
    pub fn of(request: &RequestContext<RoleServer>) -> Self {
        let parts = request.extensions.get::<http::request::Parts>();
        let header = |name: &str| {
            parts
                .and_then(|p| p.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let caller = match parts {
            None => Caller::Local,
            Some(parts) => parts
                .extensions
                .get::<Principal>()
                .cloned()
                .map_or(Caller::Anonymous, Caller::Authenticated),
        };
        Self {
            caller,
            over_http: parts.is_some(),
            client: parts
                .and_then(|p| p.extensions.get::<ClientAddr>())
                .map(|ClientAddr(addr)| addr.ip()),
            admin_header: header(ADMIN_TOKEN_HEADER),
            request_id: header("x-request-id"),
            cancel: request.ct.clone(),
            progress: Progress::of(request),
        }
    }
}
