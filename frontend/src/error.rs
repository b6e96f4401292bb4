//! The one place where failures become MCP answers.
//!
//! A failed tool call is a result with `isError: true` whose text says what
//! to fix: the model reads it and can correct itself. Only protocol misuse
//! (e.g. calling a tool that does not exist) is a JSON-RPC error.

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResult, ContentBlock};
use tonic::{Code, Status};

use crate::clients::Service;
use crate::metrics;

/// Why a tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments were wrong; the message says how.
    #[error("{0}")]
    Input(String),
    /// The registry or the executor refused or failed.
    #[error("{}", describe_status(*service, status))]
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

    /// The tool result the caller sees.
    pub fn into_result(self) -> CallToolResult {
        if let Self::Service { service, status } = &self {
            metrics::backend_error(*service, status.code());
            if !is_client_fixable(status.code()) {
                tracing::warn!(%service, code = ?status.code(), message = status.message(), "backing service call failed");
            }
        }
        CallToolResult::error(vec![ContentBlock::text(self.to_string())])
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
    match status.code() {
        code if is_client_fixable(code) => message.to_owned(),
        Code::Unavailable => format!("the {service} is unavailable: {message}; try again"),
        Code::DeadlineExceeded | Code::Cancelled => {
            format!("the {service} did not answer in time ({message}); try again")
        }
        Code::PermissionDenied | Code::Unauthenticated => format!("the {service} refused the request: {message}"),
        _ => format!("the {service} failed: {message}"),
    }
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

    #[test]
    fn client_fixable_statuses_show_the_service_message() {
        for code in [
            Code::InvalidArgument,
            Code::AlreadyExists,
            Code::NotFound,
            Code::Aborted,
        ] {
            let result = ToolError::registry(Status::new(code, "tool 'x' already exists")).into_result();
            assert_eq!(result.is_error, Some(true));
            assert_eq!(text(&result), "tool 'x' already exists");
        }
    }

    #[test]
    fn unavailable_says_which_service_and_to_retry() {
        let result = ToolError::executor(Status::unavailable("connection refused")).into_result();
        assert_eq!(result.is_error, Some(true));
        assert_eq!(
            text(&result),
            "the executor is unavailable: connection refused; try again"
        );
        let result = ToolError::registry(Status::internal("disk full")).into_result();
        assert_eq!(text(&result), "the registry failed: disk full");
    }

    #[test]
    fn input_errors_are_tool_results() {
        let result = ToolError::input("`name` is required").into_result();
        assert_eq!((result.is_error, text(&result)), (Some(true), "`name` is required"));
    }

    #[test]
    fn unknown_tools_are_protocol_errors() {
        let error = unknown_tool("nope");
        assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert_eq!(error.message, "Unknown tool: nope");
    }
}
