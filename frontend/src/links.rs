//! One link to an internal service (the registry or an executor): which
//! service, its address and credentials; the gRPC clients and the health
//! check over it, with our message size limits.

use std::fmt;
use std::time::Duration;

use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_common::internal_auth::{InternalAuth, InternalAuthError, InternalChannel};
use dynamic_mcp_proto::v1::executor_client::ExecutorClient;
use dynamic_mcp_proto::v1::{executor_server, registry_server};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Tool listings with code can be large (many tools of up to 200000 chars).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Which backing service; used in messages and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Registry,
    Executor,
}

impl Service {
    pub fn binary(self) -> &'static str {
        match self {
            Self::Registry => "dynamic-mcp-registry",
            Self::Executor => "dynamic-mcp-executor",
        }
    }

    /// The gRPC service name its health reporter announces.
    fn grpc_name(self) -> &'static str {
        match self {
            Self::Registry => registry_server::SERVICE_NAME,
            Self::Executor => executor_server::SERVICE_NAME,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Registry => "registry",
            Self::Executor => "executor",
        })
    }
}

/// Where a service is and the credentials it expects from us.
#[derive(Debug, Clone)]
pub struct ServiceLink {
    pub url: ServiceUrl,
    pub auth: InternalAuth,
}

impl ServiceLink {
    /// A lazily connecting channel presenting our credentials; `server_name`
    /// is the name the service's TLS certificate must carry, if not its host.
    pub fn channel(&self, server_name: Option<&str>) -> Result<InternalChannel, InternalAuthError> {
        self.auth.channel(&self.url, server_name)
    }
}

/// Where each service is, for messages that tell a caller what failed where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddresses {
    pub registry: String,
    pub executor: String,
}

impl ServiceAddresses {
    pub fn of(&self, service: Service) -> &str {
        match service {
            Service::Registry => &self.registry,
            Service::Executor => &self.executor,
        }
    }
}

/// An executor client over `channel`, with our message size limits.
pub fn executor_client<T>(channel: T) -> ExecutorClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    ExecutorClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// What a health check asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthOf {
    /// That the process is up and serving gRPC (the overall status, "").
    Process,
    /// That the named service can do its work (readiness).
    Service(Service),
}

/// One gRPC health check over `client`.
pub async fn check_health(
    mut client: HealthClient<InternalChannel>,
    of: HealthOf,
    within: Duration,
) -> Result<(), String> {
    let service = match of {
        HealthOf::Process => "",
        HealthOf::Service(service) => service.grpc_name(),
    };
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    match tokio::time::timeout(within, client.check(request)).await {
        Err(_) => Err(format!("no answer within {} ms", within.as_millis())),
        Ok(Err(status)) => Err(format!("{}: {}", status.code(), status.message())),
        Ok(Ok(response)) => match response.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(format!("reports {}", other.as_str_name())),
        },
    }
}

/// A health client for a service that is not wired into [`Services`] yet.
pub fn health_client(link: &ServiceLink) -> Result<HealthClient<InternalChannel>, InternalAuthError> {
    Ok(HealthClient::new(link.channel(None)?))
}
