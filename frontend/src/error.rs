//! The one place where failures become MCP answers.
//!
//! A failed tool call is a result with `isError: true` whose text says what
//! to fix: the model reads it and can correct itself. Only protocol misuse
//! (e.g. calling a tool that does not exist) is a JSON-RPC error.
//!
//! What a client reads never names internal addresses, sockets or files:
//! those go to the log, next to the full status.

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResult, ContentBlock};
use tonic::{Code, Status};

use crate::links::{Service, ServiceAddresses};
use crate::metrics;

/// Why a tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments were wrong; the message says how.
    #[error("{0}")]
    Input(String),
    /// The registry or the executor refused or failed.
    #[error("the {service} answered {}: {}", status.code(), status.message())]
    Service { service: Service, status: Status },
}

impl ToolError {
    pub fn input(message: impl Into<String>) -> Self {
        Self::Input(message.into())
    }

    pub fn registry(status: Status) -> Self {
        Self::Service {
            service: Service::Registry,
            status,
        }
    }

    pub fn executor(status: Status) -> Self {
        Self::Service {
            service: Service::Executor,
            status,
        }
    }

    /// The tool result the caller sees; `addresses` (where each service
    /// was looked for) go to the log only.
    pub fn into_result(self, addresses: &ServiceAddresses) -> CallToolResult {
        let text = match &self {
            Self::Input(message) => message.clone(),
            Self::Service { service, status } => {
                metrics::backend_error(*service, status.code());
                if !is_client_fixable(status.code()) {
                    tracing::warn!(%service, address = addresses.of(*service), code = ?status.code(),
                        message = status.message(), cause = ?innermost_cause(status), "backing service call failed");
                }
                describe_status(*service, status)
            }
        };
        CallToolResult::error(vec![ContentBlock::text(text)])
    }
}

/// Errors whose message tells the caller what to change.
fn is_client_fixable(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::AlreadyExists
            | Code::NotFound
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::OutOfRange
    )
}

fn describe_status(service: Service, status: &Status) -> String {
    let message = status.message();
    if let Some(why) = unreachable(status) {
        return format!("the {service} is unavailable: it cannot be reached ({why}); try again in a few seconds");
    }
    if connection_broke(status) {
        return format!(
            "the {service} stopped during the call (it crashed or restarted), so the call's work was lost; \
             the call can be retried"
        );
    }
    match status.code() {
        code if is_client_fixable(code) => message.to_owned(),
        Code::Unavailable => format!("the {service} is unavailable: {message}; try again in a few seconds"),
        Code::DeadlineExceeded | Code::Cancelled => {
            format!("the {service} did not answer in time ({message}); try again")
        }
        Code::PermissionDenied | Code::Unauthenticated => format!("the {service} refused the request: {message}"),
        _ => format!("the {service} failed: {message}"),
    }
}

/// Why the service could not be reached at all, when that is what happened:
/// tonic reports a failed connection as UNAVAILABLE when it dialled itself,
/// but as UNKNOWN "transport error" when a custom connector (our Unix
/// sockets) failed. Said in a few fixed words: the underlying error names
/// the address.
fn unreachable(status: &Status) -> Option<&'static str> {
    if !matches!(status.code(), Code::Unknown | Code::Unavailable) || !in_chain::<tonic::transport::Error>(status) {
        return None;
    }
    let kind = sources(status)
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .last()
        .map(std::io::Error::kind);
    Some(match kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused",
        Some(std::io::ErrorKind::NotFound) => "nothing listens at its address",
        Some(std::io::ErrorKind::PermissionDenied) => "permission denied",
        Some(std::io::ErrorKind::TimedOut) => "the connection timed out",
        _ => "the connection failed",
    })
}

/// Whether the connection to the service broke in the middle of a call,
/// as it does when the service crashes or restarts.
fn connection_broke(status: &Status) -> bool {
    matches!(status.code(), Code::Unknown | Code::Internal | Code::Unavailable)
        && (status.message().starts_with("h2 protocol error") || in_chain::<hyper::Error>(status))
}

fn sources(status: &Status) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(std::error::Error::source(status), |e| e.source())
}

fn in_chain<E: std::error::Error + 'static>(status: &Status) -> bool {
    sources(status).any(|e| e.is::<E>())
}

/// The deepest error under a status, for the log.
fn innermost_cause(status: &Status) -> Option<String> {
    sources(status).last().map(ToString::to_string)
}

/// `tools/call` for a name that is not in `tools/list`.
pub fn unknown_tool(name: &str) -> McpError {
    McpError::invalid_params(format!("Unknown tool: {name}"), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(result: &CallToolResult) -> &str {
        &result.content[0].as_text().unwrap().text
    }

    fn addresses() -> ServiceAddresses {
        ServiceAddresses {
            registry: "unix:/run/registry.sock".into(),
            executor: "http://executor:50052".into(),
        }
    }

    #[test]
    fn client_fixable_statuses_show_the_service_message() {
        for code in [
            Code::InvalidArgument,
            Code::AlreadyExists,
            Code::NotFound,
            Code::Aborted,
        ] {
            let result = ToolError::registry(Status::new(code, "tool 'x' already exists")).into_result(&addresses());
            assert_eq!(result.is_error, Some(true));
            assert_eq!(text(&result), "tool 'x' already exists");
        }
    }

    #[test]
    fn unavailable_says_which_service_and_to_retry() {
        let result = ToolError::executor(Status::unavailable("connection refused")).into_result(&addresses());
        assert_eq!(result.is_error, Some(true));
        assert_eq!(
            text(&result),
            "the executor is unavailable: connection refused; try again in a few seconds"
        );
        let result = ToolError::registry(Status::internal("disk full")).into_result(&addresses());
        assert_eq!(text(&result), "the registry failed: disk full");
    }

    #[test]
    fn a_connection_that_broke_mid_call_says_the_call_can_be_retried() {
        let broken = Status::unknown("h2 protocol error: error reading a body from connection");
        let result = ToolError::executor(broken).into_result(&addresses());
        assert_eq!(
            text(&result),
            "the executor stopped during the call (it crashed or restarted), so the call's work was lost; \
             the call can be retried"
        );
    }

    #[tokio::test]
    async fn a_service_that_cannot_be_reached_is_named_without_its_address() {
        use dynamic_mcp_common::addr::ServiceUrl;
        use dynamic_mcp_proto::v1::registry_client::RegistryClient;

        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("absent.sock");
        let mut registry = RegistryClient::new(ServiceUrl::Unix(socket.clone()).channel());
        let status = registry
            .get(dynamic_mcp_proto::v1::GetToolRequest {
                name: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        let addresses = ServiceAddresses {
            registry: format!("unix:{}", socket.display()),
            executor: String::new(),
        };
        let message = text(&ToolError::registry(status).into_result(&addresses)).to_owned();
        assert_eq!(
            message,
            "the registry is unavailable: it cannot be reached (nothing listens at its address); try again in a \
             few seconds"
        );
        assert!(!message.contains(dir.path().to_str().unwrap()), "{message}");
    }

    #[test]
    fn input_errors_are_tool_results() {
        let result = ToolError::input("`name` is required").into_result(&addresses());
        assert_eq!((result.is_error, text(&result)), (Some(true), "`name` is required"));
    }

    #[test]
    fn unknown_tools_are_protocol_errors() {
        let error = unknown_tool("nope");
        assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert_eq!(error.message, "Unknown tool: nope");
    }
}
