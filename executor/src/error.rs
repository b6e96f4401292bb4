//! Everything that can stop a call before it has an outcome, and its gRPC
//! status — converted in one place. A run that happens but fails (a throw, a
//! timeout, an OOM kill, a command's non-zero exit) is not an error: it is
//! an outcome.

use tonic::Status;

use crate::egress::{EgressError, EgressOpenError};
use crate::policy::PolicyError;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error(transparent)]
    EgressProxy(#[from] EgressOpenError),
    #[error("args_json is not valid JSON: {0}")]
    BadArgs(serde_json::Error),
    /// A request field out of bounds; the message says which and how to fix it.
    #[error("{0}")]
    BadRequest(String),
    /// Also for sessions of other callers: their existence is not revealed.
    #[error("no session '{id}' for this caller")]
    SessionNotFound { id: String },
    #[error("session '{id}' has ended (stopped, expired or its container died); start a new one")]
    SessionEnded { id: String },
    #[error(
        "sandbox session limit reached: {max} sessions are open (MCP_SANDBOX_MAX_SESSIONS); \
         stop one of yours with sandbox.stop (sandbox.session.list shows them) or retry once idle ones expire"
    )]
    TooManySessions { max: u32 },
    #[error("installing the npm dependencies failed (npm exited with code {code}):\n{summary}")]
    InstallFailed { code: i64, summary: String },
    #[error(
        "the npm registry {registry} cannot be reached from the install network '{network}', so the \
         dependencies cannot be installed:\n{cause}\nCheck MCP_SANDBOX_INSTALL_NETWORK, \
         MCP_SANDBOX_NPM_REGISTRY and (behind a TLS-intercepting proxy) MCP_SANDBOX_EXTRA_CA_FILE, \
         or leave out the dependencies"
    )]
    RegistryUnreachable {
        registry: String,
        network: String,
        cause: String,
    },
    #[error(
        "installing the npm dependencies did not finish within {seconds} s \
         (MCP_SANDBOX_INSTALL_TIMEOUT_SECONDS) and was stopped"
    )]
    InstallTimedOut { seconds: u64 },
    /// The container an exec was meant for is gone or stopped.
    #[error("the container is no longer running")]
    ContainerGone,
    #[error("executor busy: {max} containers already running (MCP_EXECUTOR_MAX_CONTAINERS); retry shortly")]
    Busy { max: u32 },
    /// Every place in a per-tool tool's containers stayed taken for a
    /// call's whole timeout.
    #[error(
        "tool '{tool}' is busy: all {places} places of its per-tool containers stayed taken for the call's \
         whole timeout of {timeout_ms} ms, so it never started; retry later, make fewer calls at once, or \
         raise MCP_SANDBOX_PER_TOOL_MAX_CALLS or MCP_SANDBOX_PER_TOOL_MAX_CONTAINERS"
    )]
    PerToolBusy {
        tool: String,
        places: usize,
        timeout_ms: u32,
    },
    #[error("the executor cannot reach the Docker engine: {0}")]
    DockerUnreachable(bollard::errors::Error),
    #[error(
        "the sandbox image '{image}' is not on the Docker engine; build it with sandbox/build-offline.sh \
         (no registry needed) or `docker build -t {image} sandbox/`"
    )]
    ImageMissing { image: String },
    #[error("the Docker engine failed to {action}: {source}")]
    Docker {
        action: &'static str,
        source: bollard::errors::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl ExecError {
    /// Whether the executor or Docker failed (worth a warning), rather than
    /// the request being refused.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::DockerUnreachable(_)
                | Self::Docker { .. }
                | Self::ContainerGone
                | Self::EgressProxy(_)
                | Self::Internal(_)
        )
    }
}

impl From<ExecError> for Status {
    fn from(err: ExecError) -> Self {
        let message = err.to_string();
        match err {
            ExecError::Policy(_) | ExecError::Egress(_) | ExecError::BadArgs(_) | ExecError::BadRequest(_) => {
                Status::invalid_argument(message)
            }
            ExecError::SessionNotFound { .. } | ExecError::SessionEnded { .. } => Status::not_found(message),
            ExecError::ImageMissing { .. }
            | ExecError::InstallFailed { .. }
            | ExecError::RegistryUnreachable { .. } => Status::failed_precondition(message),
            ExecError::InstallTimedOut { .. } => Status::deadline_exceeded(message),
            ExecError::Busy { .. } | ExecError::PerToolBusy { .. } | ExecError::TooManySessions { .. } => {
                Status::resource_exhausted(message)
            }
            // Its cause names the engine's socket or address: for the log only.
            ExecError::DockerUnreachable(_) => {
                Status::unavailable("the executor cannot reach the Docker engine (the executor's log says why)")
            }
            ExecError::Docker { .. }
            | ExecError::ContainerGone
            | ExecError::EgressProxy(_)
            | ExecError::Internal(_) => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_error_gets_a_fitting_code() {
        let cases = [
            (
                ExecError::Policy(PolicyError::TimeoutOutOfRange { got: 1, max: 2 }),
                Code::InvalidArgument,
            ),
            (
                ExecError::InstallFailed {
                    code: 1,
                    summary: "npm error code E404".into(),
                },
                Code::FailedPrecondition,
            ),
            (ExecError::InstallTimedOut { seconds: 300 }, Code::DeadlineExceeded),
            (
                ExecError::RegistryUnreachable {
                    registry: "https://registry.npmjs.org/".into(),
                    network: "bridge".into(),
                    cause: "npm error code ECONNREFUSED".into(),
                },
                Code::FailedPrecondition,
            ),
            (ExecError::SessionNotFound { id: "s".into() }, Code::NotFound),
            (ExecError::SessionEnded { id: "s".into() }, Code::NotFound),
            (ExecError::TooManySessions { max: 20 }, Code::ResourceExhausted),
            (ExecError::BadRequest("x".into()), Code::InvalidArgument),
            (
                ExecError::Egress(crate::egress::EgressError::Disabled),
                Code::InvalidArgument,
            ),
            (ExecError::Busy { max: 3 }, Code::ResourceExhausted),
            (
                ExecError::ImageMissing { image: "x:1".into() },
                Code::FailedPrecondition,
            ),
            (
                ExecError::DockerUnreachable(bollard::errors::Error::RequestTimeoutError),
                Code::Unavailable,
            ),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code, "{}", status.message());
        }
        let unreachable = Status::from(ExecError::DockerUnreachable(
            bollard::errors::Error::SocketNotFoundError("/run/secret/docker.sock".into()),
        ));
        assert!(!unreachable.message().contains("/run"), "{}", unreachable.message());
        let missing = Status::from(ExecError::ImageMissing { image: "x:1".into() });
        assert!(missing.message().contains("sandbox/build-offline.sh"));
        let full = Status::from(ExecError::TooManySessions { max: 20 });
        assert!(
            full.message().contains("20 sessions") && full.message().contains("sandbox.stop"),
            "{}",
            full.message()
        );
    }
}
