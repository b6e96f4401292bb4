//! The connection to the Docker engine. It is made lazily and kept once it
//! works, so the executor starts (and answers policy checks) even while
//! Docker is down, and recovers once Docker is back.

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use tokio::sync::OnceCell;

use crate::error::ExecError;

/// For each API call until its response starts. Long waits (attach, wait)
/// are streamed bodies and are bounded by the run's own timeout instead.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// A health ping that takes longer than this counts as a failure.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
pub struct Engine {
    docker: OnceCell<Docker>,
}

impl Engine {
    /// The connected engine, connecting first if needed.
    pub async fn docker(&self) -> Result<&Docker, ExecError> {
        self.docker.get_or_try_init(connect).await
    }

    /// The engine if a connection was ever made.
    pub fn connected(&self) -> Option<&Docker> {
        self.docker.get()
    }

    /// Pings the engine now (connecting first if needed): why it does not
    /// answer, if it does not.
    pub async fn ping(&self) -> Result<(), ExecError> {
        let ping = async { self.docker().await?.ping().await.map_err(ExecError::DockerUnreachable) };
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(answer) => answer.map(|_| ()),
            Err(_elapsed) => Err(ExecError::Internal(format!(
                "the Docker engine did not answer a ping within {} s",
                PING_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Local defaults, or `DOCKER_HOST`. The API version is negotiated because
/// bollard's default is newer than older engines (20.10 speaks 1.41) accept.
async fn connect() -> Result<Docker, ExecError> {
    let docker = Docker::connect_with_defaults().map_err(ExecError::DockerUnreachable)?;
    let docker = docker
        .with_timeout(API_TIMEOUT)
        .negotiate_version()
        .await
        .map_err(ExecError::DockerUnreachable)?;
    tracing::info!(api_version = %docker.client_version(), "connected to the Docker engine");
    Ok(docker)
}

/// Warns at start when the default image is missing: every run would fail.
pub async fn warn_if_image_missing(docker: &Docker, image: &str) {
    match docker.inspect_image(image).await {
        Ok(_) => tracing::info!(image, "default sandbox image is present"),
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => {
            tracing::warn!("{}", ExecError::ImageMissing { image: image.into() })
        }
        Err(e) => tracing::warn!(image, error = %e, "cannot check the default sandbox image"),
    }
}

/// Sorts a failed Docker call into "engine unreachable" or "engine refused".
pub fn call_failed(action: &'static str, source: DockerError) -> ExecError {
    match source {
        DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HttpClientError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::SocketNotFoundError(_)
        | DockerError::RequestTimeoutError => ExecError::DockerUnreachable(source),
        source => ExecError::Docker { action, source },
    }
}

/// Like [`call_failed`], but a missing image gets its own, actionable error.
pub fn create_failed(image: &str, source: DockerError) -> ExecError {
    match source {
        DockerError::DockerResponseServerError { status_code: 404, .. } => ExecError::ImageMissing {
            image: image.to_owned(),
        },
        source => call_failed("create a container", source),
    }
}

/// True when the error says the object is already gone.
pub fn is_not_found(err: &DockerError) -> bool {
    matches!(err, DockerError::DockerResponseServerError { status_code: 404, .. })
}
