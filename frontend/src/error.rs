//! The one place where failures become MCP answers.
//!
//! A failed tool call is a result with `isError: true` whose text says what
//! to fix: the model reads it and can correct itself. Only protocol misuse
//! (e.g. calling a tool that does not exist) is a JSON-RPC error.

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResult, ContentBlock};
use tonic::{Code, Status};

use crate::clients::{Service, ServiceAddresses};
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

    /// The tool result the caller sees; `addresses` say where a service
    /// that cannot be reached was looked for.
    pub fn into_result(self, addresses: &ServiceAddresses) -> CallToolResult {
        let text = match &self {
            Self::Input(message) => message.clone(),
            Self::Service { service, status } => {
                metrics::backend_error(*service, status.code());
                if !is_client_fixable(status.code()) {
                    tracing::warn!(%service, code = ?status.code(), message = status.message(), "backing service call failed");
                }
                describe_status(*service, addresses.of(*service), status)
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

fn describe_status(service: Service, address: &str, status: &Status) -> String {
    let message = status.message();
    if let Some(cause) = unreachable_cause(status) {
        return format!(
            "the {service} is unavailable: it cannot be reached at {address} ({cause}); try again in a few seconds"
        );
    }
    match status.code() {
        code if is_client_fixable(code) => message.to_owned(),
        Code::Unavailable => {
            format!("the {service} at {address} is unavailable: {message}; try again in a few seconds")
        }
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
/// sockets) failed; the innermost cause says what went wrong.
fn unreachable_cause(status: &Status) -> Option<String> {
    if !matches!(status.code(), Code::Unknown | Code::Unavailable) {
        return None;
    }
    let mut source = std::error::Error::source(status);
    let mut through_transport = false;
    let mut innermost = None;
    while let Some(error) = source {
        through_transport |= error.is::<tonic::transport::Error>();
        innermost = Some(error.to_string());
        source = error.source();
    }
    through_transport.then(|| innermost.unwrap_or_else(|| status.message().to_owned()))
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
            "the executor at http://executor:50052 is unavailable: connection refused; try again in a few seconds"
        );
        let result = ToolError::registry(Status::internal("disk full")).into_result(&addresses());
        assert_eq!(text(&result), "the registry failed: disk full");
    }

    #[tokio::test]
    async fn a_service_that_cannot_be_reached_is_named_with_its_address() {
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
        assert!(
            message.starts_with(&format!(
                "the registry is unavailable: it cannot be reached at unix:{} (",
                socket.display()
            )),
            "{message}"
        );
        assert!(message.ends_with("); try again in a few seconds"), "{message}");
        assert!(!message.contains("failed"), "{message}");
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
