//! The gRPC edge: decode a request, ask the store, encode the answer.
//! Errors become statuses in one place (`error.rs`).

use std::sync::Arc;

use dynamic_mcp_proto::v1 as pb;
use dynamic_mcp_proto::v1::registry_server::Registry;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::RegistryError;
use crate::feed::{self, WatchStream};
use crate::idempotency::IdempotencyKey;
use crate::rules::Violation;
use crate::store::{ToolStore, WriteContext, WriteOp, Written};
use crate::wire;

pub struct RegistryService {
    store: Arc<dyn ToolStore>,
    /// Fires on shutdown so open watch streams end and the server can stop.
    stopping: CancellationToken,
}

impl RegistryService {
    pub fn new(store: Arc<dyn ToolStore>, stopping: CancellationToken) -> Self {
        Self { store, stopping }
    }
}

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn create(&self, request: Request<pb::CreateToolRequest>) -> Result<Response<pb::ToolWriteResponse>, Status> {
        let mut request = request.into_inner();
        let write = request.write.take();
        let ctx = context("create", write, &request)?;
        let spec = request.spec.ok_or_else(|| missing("spec"))?;
        self.write(WriteOp::Create(spec), ctx, "created").await
    }

    async fn update(&self, request: Request<pb::UpdateToolRequest>) -> Result<Response<pb::ToolWriteResponse>, Status> {
        let mut request = request.into_inner();
        let write = request.write.take();
        let ctx = context("update", write, &request)?;
        let patch = request.patch.ok_or_else(|| missing("patch"))?;
        let op = WriteOp::Update {
            name: request.name,
            patch,
            expected: request.expected_revision,
        };
        self.write(op, ctx, "updated").await
    }

    async fn delete(&self, request: Request<pb::DeleteToolRequest>) -> Result<Response<pb::ToolWriteResponse>, Status> {
        let mut request = request.into_inner();
        let write = request.write.take();
        let ctx = context("delete", write, &request)?;
        let op = WriteOp::Delete {
            name: request.name,
            expected: request.expected_revision,
        };
        self.write(op, ctx, "deleted").await
    }

    async fn set_enabled(
        &self,
        request: Request<pb::SetEnabledRequest>,
    ) -> Result<Response<pb::ToolWriteResponse>, Status> {
        let mut request = request.into_inner();
        let write = request.write.take();
        let ctx = context("set_enabled", write, &request)?;
        let action = if request.enabled { "enabled" } else { "disabled" };
        let op = WriteOp::SetEnabled {
            name: request.name,
            enabled: request.enabled,
            expected: request.expected_revision,
        };
        self.write(op, ctx, action).await
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackToolRequest>,
    ) -> Result<Response<pb::ToolWriteResponse>, Status> {
        let mut request = request.into_inner();
        let write = request.write.take();
        let ctx = context("rollback", write, &request)?;
        let op = WriteOp::Rollback {
            name: request.name,
            revision: request.revision,
            expected: request.expected_revision,
        };
        self.write(op, ctx, "rolled back").await
    }

    async fn restore(
        &self,
        request: Request<pb::RestoreToolRequest>,
    ) -> Result<Response<pb::ToolWriteResponse>, Status> {
        let mut request = request.into_inner();
        let write = request.write.take();
        let ctx = context("restore", write, &request)?;
        let op = WriteOp::Restore {
            name: request.name,
            revision: request.revision,
        };
        self.write(op, ctx, "restored").await
    }

    async fn get(&self, request: Request<pb::GetToolRequest>) -> Result<Response<pb::ToolRecord>, Status> {
        let request = request.into_inner();
        let tool = self.store.get(&request.name, request.revision).await?;
        Ok(Response::new(tool.to_proto(true)))
    }

    async fn history(
        &self,
        request: Request<pb::ToolHistoryRequest>,
    ) -> Result<Response<pb::ToolHistoryResponse>, Status> {
        let request = request.into_inner();
        let limit = request.limit.map(|l| l as usize);
        let history = self.store.history(&request.name, limit).await?;
        Ok(Response::new(history.to_proto(&self.store.retention())))
    }

    async fn list(&self, request: Request<pb::ListToolsRequest>) -> Result<Response<pb::ListToolsResponse>, Status> {
        let include_code = request.into_inner().include_code;
        let catalog = self.store.catalog(include_code).await?;
        Ok(Response::new(wire::list_response(&catalog, include_code)))
    }

    type WatchChangesStream = WatchStream;

    async fn watch_changes(
        &self,
        _request: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        Ok(Response::new(feed::watch(
            Arc::clone(&self.store),
            self.stopping.clone(),
        )))
    }
}

impl RegistryService {
    async fn write(
        &self,
        op: WriteOp,
        ctx: WriteContext,
        action: &str,
    ) -> Result<Response<pb::ToolWriteResponse>, Status> {
        let written = self.store.write(op, ctx).await?;
        Ok(answer(action, written))
    }
}

/// The write's context. The key's fingerprint covers the request without its
/// write options, so a retry from another session still matches.
fn context<M: prost::Message>(
    operation: &str,
    write: Option<pb::WriteOptions>,
    request: &M,
) -> Result<WriteContext, RegistryError> {
    let options = write.unwrap_or_default();
    let idempotency = options
        .idempotency_key
        .map(|key| IdempotencyKey::new(key, operation, request))
        .transpose()?;
    Ok(WriteContext {
        actor: options.actor,
        idempotency,
        validate_only: options.validate_only,
    })
}

fn missing(field: &str) -> RegistryError {
    Violation(format!("{field} is required")).into()
}

/// Logs the write (never its code) and encodes it.
fn answer(action: &str, written: Written) -> Response<pb::ToolWriteResponse> {
    if written.changed && !written.replayed && !written.validated_only {
        tracing::info!(
            tool = %written.tool.name,
            revision = written.tool.revision,
            catalog_version = written.catalog_version,
            "tool {action}"
        );
    }
    Response::new(written.into())
}
