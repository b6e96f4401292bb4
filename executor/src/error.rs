//! Everything that can stop a run before it has an outcome, and its gRPC
//! status — converted in one place. A run that happens but fails (a throw, a
//! timeout, an OOM kill) is not an error: it is an outcome.

use tonic::Status;

use crate::policy::PolicyError;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("this executor does not install npm dependencies yet; remove `dependencies`")]
    DependenciesUnsupported,
    #[error("args_json is not valid JSON: {0}")]
    BadArgs(serde_json::Error),
    #[error("executor busy: {max} containers already running (MCP_EXECUTOR_MAX_CONTAINERS); retry shortly")]
    Busy { max: u32 },
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

impl From<ExecError> for Status {
    fn from(err: ExecError) -> Self {
        let message = err.to_string();
        match err {
            ExecError::Policy(_) | ExecError::BadArgs(_) => Status::invalid_argument(message),
            ExecError::DependenciesUnsupported | ExecError::ImageMissing { .. } => Status::failed_precondition(message),
            ExecError::Busy { .. } => Status::resource_exhausted(message),
            ExecError::DockerUnreachable(_) => Status::unavailable(message),
            ExecError::Docker { .. } | ExecError::Internal(_) => Status::internal(message),
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
            (ExecError::DependenciesUnsupported, Code::FailedPrecondition),
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
        let missing = Status::from(ExecError::ImageMissing { image: "x:1".into() });
        assert!(missing.message().contains("sandbox/build-offline.sh"));
    }
}
