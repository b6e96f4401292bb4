//! THE seam for "get a container". A run, a session or an install asks a
//! `ContainerSource` for a started, attached container; `ColdStart` creates
//! a fresh one per call; `WarmPool` (pool.rs) hands out pre-started
//! single-use ones and falls back to `ColdStart`.

use std::sync::Arc;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{AttachContainerOptionsBuilder, CreateContainerOptionsBuilder};

use super::cap::{ContainerCap, ContainerSlot};
use super::hardening::{SandboxLimits, container_body};
use super::lease::{Lease, OwnedContainer};
use super::{ContainerSpec, EgressMount};
use crate::docker::{Engine, call_failed, create_failed};
use crate::error::ExecError;
use crate::socket_dir::{SocketDir, SocketDirs};

#[async_trait]
pub trait ContainerSource: Send + Sync {
    /// A started container for `spec`, attached, reserved for one caller,
    /// and counted against the container cap until it is removed.
    async fn acquire(&self, spec: &ContainerSpec) -> Result<Lease, ExecError>;
}

/// A fresh container per call: create → attach → start.
pub struct ColdStart {
    engine: Arc<Engine>,
    cap: ContainerCap,
    limits: SandboxLimits,
    executor_id: String,
    /// Where egress and channel directories are made.
    socket_dirs: SocketDirs,
}

impl ColdStart {
    pub fn new(
        engine: Arc<Engine>,
        cap: ContainerCap,
        limits: SandboxLimits,
        executor_id: String,
        socket_dirs: SocketDirs,
    ) -> Self {
        Self {
            engine,
            cap,
            limits,
            executor_id,
            socket_dirs,
        }
    }

    /// Where this executor makes its containers' socket directories.
    pub fn socket_dirs(&self) -> &SocketDirs {
        &self.socket_dirs
    }

    /// A fresh egress directory for a spec that wants one.
    fn egress_dir(&self, spec: &ContainerSpec) -> Result<Option<SocketDir>, ExecError> {
        if spec.egress != EgressMount::Wanted {
            return Ok(None);
        }
        self.socket_dirs
            .make(None)
            .map(Some)
            .map_err(|e| ExecError::Internal(format!("cannot make an egress directory: {e}")))
    }
}

impl ColdStart {
    /// A slot under the container cap, or `Busy` at once.
    pub fn reserve(&self) -> Result<ContainerSlot, ExecError> {
        self.cap.try_reserve()
    }

    /// A slot that leaves another one free (see `ContainerCap::try_reserve_spare`).
    pub fn reserve_spare(&self) -> Result<ContainerSlot, ExecError> {
        self.cap.try_reserve_spare()
    }

    /// Creates, attaches and starts a container for `spec` in `slot`.
    pub async fn start(&self, spec: &ContainerSpec, slot: ContainerSlot) -> Result<Lease, ExecError> {
        let docker = self.engine.docker().await?.clone();
        let egress_dir = self.egress_dir(spec)?;
        let body = match &egress_dir {
            Some(dir) => {
                let mut spec = spec.clone();
                spec.egress = EgressMount::At(dir.mount_source().to_owned());
                container_body(&spec, &self.limits, &self.executor_id)
            }
            None => container_body(spec, &self.limits, &self.executor_id),
        };
        let name = format!("dynamic-mcp-{}-{}", spec.role.label(), uuid::Uuid::new_v4().simple());
        // In its own task so a cancelled caller cannot cut creation short and
        // leak a container: a lease nobody collects is dropped when the task
        // ends, which removes its container.
        let mut lease = tokio::spawn(start_fresh(docker, name, body, slot))
            .await
            .map_err(|e| ExecError::Internal(format!("starting a container failed: {e}")))??;
        lease.egress_dir = egress_dir;
        Ok(lease)
    }
}

#[async_trait]
impl ContainerSource for ColdStart {
    async fn acquire(&self, spec: &ContainerSpec) -> Result<Lease, ExecError> {
        let slot = self.reserve()?;
        self.start(spec, slot).await
    }
}

async fn start_fresh(
    docker: Docker,
    name: String,
    body: ContainerCreateBody,
    slot: ContainerSlot,
) -> Result<Lease, ExecError> {
    let image = body.image.clone().unwrap_or_default();
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| create_failed(&image, e))?;
    let container = OwnedContainer::new(docker.clone(), created.id, slot);
    // Attach before start, so not one byte of output is missed.
    let options = AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .logs(false)
        .build();
    let attached = docker
        .attach_container(container.id(), Some(options))
        .await
        .map_err(|e| call_failed("attach to a container", e))?;
    docker
        .start_container(container.id(), None)
        .await
        .map_err(|e| call_failed("start a container", e))?;
    Ok(Lease {
        container,
        stdin: attached.input,
        output: attached.output,
        egress_dir: None,
    })
}
