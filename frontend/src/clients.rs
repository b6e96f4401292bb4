//! The bundle of gRPC clients every request handler shares: the registry
//! and the executors, with calls whose failures come back as the
//! [`ToolError`] a caller reads.

use std::time::Duration;

use dynamic_mcp_common::internal_auth::InternalChannel;
use dynamic_mcp_proto::v1::executor_client::ExecutorClient;
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use tonic::{Response, Status};
use tonic_health::pb::health_client::HealthClient;

use crate::error::ToolError;
use crate::executors::{Executors, ExecutorsError, MemberChannel, RunChannel};
use crate::links::{HealthOf, MAX_MESSAGE_BYTES, Service, ServiceAddresses, ServiceLink, check_health};

/// Connections to both services. Cheap to clone; channels reconnect by themselves.
#[derive(Clone)]
pub struct Services {
    pub registry: RegistryClient<InternalChannel>,
    pub executors: Executors,
    pub addresses: ServiceAddresses,
    registry_health: HealthClient<InternalChannel>,
}

impl Services {
    pub fn connect(
        registry: &ServiceLink,
        executors: &[ServiceLink],
        server_name: Option<&str>,
    ) -> Result<Self, ExecutorsError> {
        let executors = Executors::connect(executors, server_name)?;
        let addresses = ServiceAddresses {
            registry: registry.url.to_string(),
            executor: executors.addresses(),
        };
        let registry = registry.channel(server_name)?;
        Ok(Self {
            addresses,
            registry: RegistryClient::new(registry.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            executors,
            registry_health: HealthClient::new(registry),
        })
    }

    /// Whether `service` says it can do its work (for the executors: that at
    /// least one reaches Docker), within `within`.
    pub async fn check(&self, service: Service, within: Duration) -> Result<(), String> {
        match service {
            Service::Registry => check_health(self.registry_health.clone(), HealthOf::Service(service), within).await,
            Service::Executor => self.executors.check(within).await,
        }
    }

    /// One registry call.
    pub async fn registry_call<T, F, Fut>(&self, call: F) -> Result<T, ToolError>
    where
        F: FnOnce(RegistryClient<InternalChannel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        answer(call(self.registry.clone()).await, ToolError::registry)
    }

    /// One executor call, on the executor in rotation with the least load
    /// ([`Executors::balanced`]).
    pub async fn executor_call<R, T, F, Fut>(&self, request: R, call: F) -> Result<T, ToolError>
    where
        R: Clone,
        F: FnMut(ExecutorClient<RunChannel>, R) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        answer(self.executors.balanced(request, call).await, ToolError::executor)
    }

    /// One call on the executor that owns `session_id` ([`Executors::in_session`]).
    pub async fn session_call<T, F, Fut>(&self, session_id: &str, call: F) -> Result<T, ToolError>
    where
        F: FnOnce(ExecutorClient<MemberChannel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        answer(self.executors.in_session(session_id, call).await, ToolError::executor)
    }
}

fn answer<T>(answer: Result<Response<T>, Status>, failed: fn(Status) -> ToolError) -> Result<T, ToolError> {
    answer.map(Response::into_inner).map_err(failed)
}
