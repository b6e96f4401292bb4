//! A started container handed to exactly one caller, and the guarantee that
//! it is removed afterwards: on success, on error, and when the caller's
//! future is simply dropped (a cancelled gRPC stream).

use std::pin::Pin;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::{Stream, StreamExt};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::cap::ContainerSlot;
use crate::docker::{call_failed, is_not_found};
use crate::error::ExecError;
use crate::socket_dir::SocketDir;

/// The container's stdin, attached before it started.
pub type Stdin = Pin<Box<dyn AsyncWrite + Send>>;
/// The container's stdout and stderr, multiplexed, attached before it started.
pub type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A running container with its attached streams. Take it apart freely: the
/// removal guarantee lives in `container`.
pub struct Lease {
    pub container: OwnedContainer,
    pub stdin: Stdin,
    pub output: Output,
    /// The container's empty egress directory, if its spec wanted one.
    pub egress_dir: Option<SocketDir>,
}

/// A container we must remove. Dropping it removes the container (in the
/// background, force) and only then frees its slot under the container cap.
pub struct OwnedContainer {
    docker: Docker,
    id: String,
    slot: Option<ContainerSlot>,
    /// Dropped with this handle, which tells whoever watches it (`on_end`).
    ended: Option<oneshot::Sender<()>>,
}

impl OwnedContainer {
    pub fn new(docker: Docker, id: String, slot: ContainerSlot) -> Self {
        Self {
            docker,
            id,
            slot: Some(slot),
            ended: None,
        }
    }

    /// Fires (as a closed channel) when this handle is dropped, or once
    /// `remove_and_release` is done: whatever used the container is done
    /// with it. One watcher per handle.
    pub fn on_end(&mut self) -> oneshot::Receiver<()> {
        debug_assert!(self.ended.is_none(), "a container's end is watched once");
        let (tx, rx) = oneshot::channel();
        self.ended = Some(tx);
        rx
    }

    /// Lets go of the container in two steps, in the background: `on_end`
    /// fires `ended_after` from now, and the container is removed
    /// `removed_after` from now.
    pub fn retire_later(mut self, ended_after: Duration, removed_after: Duration) {
        tokio::spawn(async move {
            tokio::time::sleep(ended_after).await;
            self.ended.take();
            tokio::time::sleep(removed_after.saturating_sub(ended_after)).await;
            drop(self);
        });
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Removes the container now, whoever else still holds it; its slot
    /// under the cap is freed when this handle is dropped.
    pub async fn remove_now(&self) {
        remove(&self.docker, &self.id).await;
    }

    /// Removes the container now and frees its slot under the cap as soon
    /// as it is gone, rather than in the background.
    pub async fn remove_and_release(mut self) {
        remove(&self.docker, &self.id).await;
        // Nothing left for `drop`: no second removal, and the slot goes now.
        self.id.clear();
        self.slot = None;
    }

    /// Waits until the container is no longer running; returns its exit code.
    pub async fn wait_exit(&self) -> Result<i64, ExecError> {
        let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
        match self.docker.wait_container(&self.id, Some(options)).next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit as an error.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(call_failed("wait for a container", e)),
            None => Err(ExecError::Internal(format!(
                "the Docker engine ended the wait for container {} without an exit code",
                self.id
            ))),
        }
    }

    /// SIGKILL: a run past its timeout gets no chance to clean up.
    pub async fn kill(&self) -> Result<(), ExecError> {
        let options = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
        match self.docker.kill_container(&self.id, Some(options)).await {
            Ok(()) => Ok(()),
            // 409: it already stopped on its own.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => Ok(()),
            Err(e) => Err(call_failed("kill a container", e)),
        }
    }

    /// Whether the kernel's OOM killer ended the container.
    pub async fn oom_killed(&self) -> Result<bool, ExecError> {
        let inspected = self
            .docker
            .inspect_container(&self.id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| call_failed("inspect a container", e))?;
        Ok(inspected.state.and_then(|s| s.oom_killed).unwrap_or(false))
    }
}

impl Drop for OwnedContainer {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return;
        }
        let docker = self.docker.clone();
        let id = std::mem::take(&mut self.id);
        let slot = self.slot.take();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(container = %id, "no runtime to remove the container; the reaper will at the next start");
            return;
        };
        runtime.spawn(async move {
            remove(&docker, &id).await;
            drop(slot);
        });
    }
}

/// Force-removes a container; one already gone is fine.
pub async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => tracing::debug!(container = %id, "container removed"),
        // Gone already, or someone else's removal of it is under way.
        Err(e) if is_not_found(&e) => {}
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {}
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "cannot remove a container; the reaper will retry at shutdown")
        }
    }
}
