//! The bundle of gRPC clients every request handler shares: the registry
//! and the executors.

use std::time::Duration;

use dynamic_mcp_common::internal_auth::InternalChannel;
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use tonic_health::pb::health_client::HealthClient;

use crate::executors::{Executors, ExecutorsError};
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
}
