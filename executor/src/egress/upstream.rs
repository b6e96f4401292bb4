//! The proxy's side towards the world: TCP to an address `addresses.rs`
//! checked, and — for intercepted connections — TLS that verifies the real
//! server against public roots (plus the operator's extra CA, if any).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use super::allow_list::Target;
use super::body::ProxyBody;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamCaError {
    #[error("cannot read the CA file {path} (MCP_SANDBOX_EGRESS_UPSTREAM_CA_FILE): {reason}")]
    Read { path: String, reason: String },
    #[error("the CA file {path} (MCP_SANDBOX_EGRESS_UPSTREAM_CA_FILE) holds no usable certificate")]
    Empty { path: String },
}

/// Connects to the first of `addresses` that answers.
pub async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("no address to try");
    for address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = format!("{address}: {e}"),
            Err(_) => last = format!("{address}: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        }
    }
    Err(last)
}

/// An HTTP/1.1 client on `io`, its connection driven until it closes or
/// `stop` (the run's end) fires.
pub async fn http1_client<T>(io: T, stop: CancellationToken) -> Result<SendRequest<ProxyBody>, hyper::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        tokio::select! {
            _ = connection => {}
            () = stop.cancelled() => {}
        }
    });
    Ok(sender)
}

/// TLS towards real servers, for intercepted connections.
#[derive(Clone)]
pub struct UpstreamTls {
    connector: TlsConnector,
}

impl UpstreamTls {
    /// Public roots, plus every certificate in `extra_ca_file`.
    pub fn new(extra_ca_file: Option<&Path>) -> Result<Self, UpstreamCaError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca_file {
            let shown = path.display().to_string();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| UpstreamCaError::Read {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(UpstreamCaError::Empty { path: shown });
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| UpstreamCaError::Read {
                path: String::new(),
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    pub async fn handshake(&self, target: &Target, stream: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let name = match target {
            Target::Name(name) => ServerName::try_from(name.clone()).map_err(|e| e.to_string())?,
            Target::Ip(ip) => ServerName::IpAddress((*ip).into()),
        };
        tokio::time::timeout(CONNECT_TIMEOUT, self.connector.connect(name, stream))
            .await
            .map_err(|_| format!("no TLS handshake within {} s", CONNECT_TIMEOUT.as_secs()))?
            .map_err(|e| e.to_string())
    }
}
