//! The gRPC edge: decode a request, ask the store, encode the answer.
//! Errors become statuses in one place (`error.rs`).

use std::sync::Arc;

use dynamic_mcp_proto::v1 as pb;
use dynamic_mcp_proto::v1::registry_server::Registry;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::RegistryError;
use crate::feed::{self, WatchStream};
use crate::record;
use crate::rules::Violation;
use crate::store::{ToolStore, Written};

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
        let spec = request.into_inner().spec.ok_or_else(|| missing("spec"))?;
        let written = self.store.create(spec).await?;
        Ok(answer("created", written))
    }

    async fn update(&self, request: Request<pb::UpdateToolRequest>) -> Result<Response<pb::ToolWriteResponse>, Status> {
        let request = request.into_inner();
        let patch = request.patch.ok_or_else(|| missing("patch"))?;
        let written = self
            .store
            .update(request.name, patch, request.expected_revision)
            .await?;
        Ok(answer("updated", written))
    }

    async fn delete(&self, request: Request<pb::DeleteToolRequest>) -> Result<Response<pb::ToolWriteResponse>, Status> {
        let request = request.into_inner();
        let written = self.store.delete(request.name, request.expected_revision).await?;
        Ok(answer("deleted", written))
    }

    async fn set_enabled(
        &self,
        request: Request<pb::SetEnabledRequest>,
    ) -> Result<Response<pb::ToolWriteResponse>, Status> {
        let request = request.into_inner();
        let written = self
            .store
            .set_enabled(request.name, request.enabled, request.expected_revision)
            .await?;
        Ok(answer(if request.enabled { "enabled" } else { "disabled" }, written))
    }

    async fn get(&self, request: Request<pb::GetToolRequest>) -> Result<Response<pb::ToolRecord>, Status> {
        let tool = self.store.get(&request.into_inner().name).await?;
        Ok(Response::new(tool.to_proto(true)))
    }

    async fn list(&self, request: Request<pb::ListToolsRequest>) -> Result<Response<pb::ListToolsResponse>, Status> {
        let include_code = request.into_inner().include_code;
        let catalog = self.store.catalog(include_code).await?;
        Ok(Response::new(record::list_response(&catalog, include_code)))
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

fn missing(field: &str) -> RegistryError {
    Violation(format!("{field} is required")).into()
}

/// Logs the write (never its code) and encodes it.
fn answer(action: &str, written: Written) -> Response<pb::ToolWriteResponse> {
    tracing::info!(
        tool = %written.tool.name,
        revision = written.tool.revision,
        catalog_version = written.catalog_version,
        "tool {action}"
    );
    Response::new(written.into())
}
