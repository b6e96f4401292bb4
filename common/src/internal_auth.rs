//! Who may call the registry and the executor: only our frontends.
//!
//! Two mechanisms, usable together. A shared token (MCP_INTERNAL_TOKEN_FILE)
//! that clients send as `authorization: Bearer …` metadata and servers check
//! in constant time; and mutual TLS (MCP_INTERNAL_TLS_CERT/_KEY/_CA), where a
//! server accepts only client certificates signed by the CA and a client
//! accepts only a server certificate signed by it. Each service wires this in
//! with [`InternalAuthArgs::load`] and [`InternalAuth::server`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::{Interceptor, InterceptorLayer};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};
use tonic::{Request, Status};
use tower::layer::util::{Identity as NoLayer, Stack};

use crate::addr::{ListenAddr, ServiceUrl};
use crate::secret::SecretDigest;

/// The metadata key the token travels in.
const TOKEN_KEY: &str = "authorization";
const BEARER: &str = "Bearer ";

/// How a process proves itself on, or checks, internal gRPC links.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InternalAuthArgs {
    /// File holding the shared internal token (one line). Servers refuse calls
    /// without it; frontends send it. Use the same file on both sides.
    #[arg(long, env = "MCP_INTERNAL_TOKEN_FILE")]
    pub internal_token_file: Option<PathBuf>,

    /// PEM certificate of this process for mutual TLS on internal links (the
    /// server identity of a registry or executor, the client certificate of a
    /// frontend). Needs MCP_INTERNAL_TLS_KEY and MCP_INTERNAL_TLS_CA.
    #[arg(long, env = "MCP_INTERNAL_TLS_CERT")]
    pub internal_tls_cert: Option<PathBuf>,

    /// PEM private key of MCP_INTERNAL_TLS_CERT.
    #[arg(long, env = "MCP_INTERNAL_TLS_KEY")]
    pub internal_tls_key: Option<PathBuf>,

    /// PEM certificate of the CA that signs every internal certificate; the
    /// peer's certificate must be signed by it.
    #[arg(long, env = "MCP_INTERNAL_TLS_CA")]
    pub internal_tls_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum InternalAuthError {
    #[error("cannot read the {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the internal token file {} is empty; put a long random secret in it", .0.display())]
    EmptyToken(PathBuf),
    #[error("the internal token must be printable ASCII without spaces (e.g. hex or base64)")]
    TokenNotPrintable,
    #[error(
        "mutual TLS needs MCP_INTERNAL_TLS_CERT, MCP_INTERNAL_TLS_KEY and MCP_INTERNAL_TLS_CA together; missing: {0}"
    )]
    IncompleteTls(String),
    #[error("the internal TLS settings are not usable: {0}")]
    Tls(#[from] tonic::transport::Error),
}

impl InternalAuthArgs {
    /// Reads the token and certificate files.
    pub fn load(&self) -> Result<InternalAuth, InternalAuthError> {
        let token = self
            .internal_token_file
            .as_deref()
            .map(InternalToken::read)
            .transpose()?;
        let tls = match (&self.internal_tls_cert, &self.internal_tls_key, &self.internal_tls_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                cert: read("internal TLS certificate (MCP_INTERNAL_TLS_CERT)", cert)?,
                key: read("internal TLS key (MCP_INTERNAL_TLS_KEY)", key)?,
                ca: read("internal TLS CA certificate (MCP_INTERNAL_TLS_CA)", ca)?,
            }),
            (cert, key, ca) => {
                let missing: Vec<_> = [
                    (cert.is_none(), "MCP_INTERNAL_TLS_CERT"),
                    (key.is_none(), "MCP_INTERNAL_TLS_KEY"),
                    (ca.is_none(), "MCP_INTERNAL_TLS_CA"),
                ]
                .into_iter()
                .filter_map(|(absent, name)| absent.then_some(name))
                .collect();
                return Err(InternalAuthError::IncompleteTls(missing.join(", ")));
            }
        };
        Ok(InternalAuth { token, tls })
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, InternalAuthError> {
    std::fs::read(path).map_err(|source| InternalAuthError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The shared secret. Never printed.
#[derive(Clone)]
pub struct InternalToken {
    digest: SecretDigest,
    header: MetadataValue<Ascii>,
}

impl InternalToken {
    /// Reads a token file; surrounding whitespace (a trailing newline) is ignored.
    pub fn read(path: &Path) -> Result<Self, InternalAuthError> {
        let bytes = read("internal token file (MCP_INTERNAL_TOKEN_FILE)", path)?;
        let text = String::from_utf8_lossy(&bytes);
        let token = text.trim();
        if token.is_empty() {
            return Err(InternalAuthError::EmptyToken(path.to_owned()));
        }
        Self::new(token)
    }

    pub fn new(token: &str) -> Result<Self, InternalAuthError> {
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InternalAuthError::TokenNotPrintable);
        }
        let header = format!("{BEARER}{token}")
            .parse::<MetadataValue<Ascii>>()
            .map_err(|_| InternalAuthError::TokenNotPrintable)?;
        Ok(Self {
            digest: SecretDigest::of(token.as_bytes()),
            header,
        })
    }

    fn matches(&self, presented: &[u8]) -> bool {
        self.digest.matches(presented)
    }
}

impl fmt::Debug for InternalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InternalToken(<redacted>)")
    }
}

/// PEM files for mutual TLS.
#[derive(Clone)]
pub struct TlsFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsFiles(<pem>)")
    }
}

/// Loaded internal credentials: what a server demands and a client presents.
#[derive(Debug, Clone, Default)]
pub struct InternalAuth {
    pub token: Option<InternalToken>,
    pub tls: Option<TlsFiles>,
}

/// A gRPC server builder that refuses callers without the credentials.
pub type GuardedServer = Server<Stack<InterceptorLayer<RequireToken>, NoLayer>>;

/// A client channel that presents the credentials.
pub type InternalChannel = InterceptedService<Channel, AttachToken>;

impl InternalAuth {
    /// Only a token, e.g. one generated for services started locally.
    pub fn with_token(token: InternalToken) -> Self {
        Self {
            token: Some(token),
            tls: None,
        }
    }

    /// What protects the link, for logs.
    pub fn describe(&self) -> &'static str {
        match (&self.token, &self.tls) {
            (Some(_), Some(_)) => "token and mutual TLS",
            (Some(_), None) => "token",
            (None, Some(_)) => "mutual TLS",
            (None, None) => "none",
        }
    }

    /// The server builder for a service listening on `listen`. It warns when
    /// the service is reachable beyond this host without any credential.
    pub fn server(&self, listen: &ListenAddr) -> Result<GuardedServer, InternalAuthError> {
        let exposed = matches!(listen, ListenAddr::Tcp(addr) if !addr.ip().is_loopback());
        if exposed && self.token.is_none() && self.tls.is_none() {
            tracing::warn!(
                %listen,
                "listening beyond loopback without internal credentials: anyone who can reach it may call it; \
                 set MCP_INTERNAL_TOKEN_FILE or MCP_INTERNAL_TLS_CERT/_KEY/_CA"
            );
        }
        let mut builder = Server::builder();
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(
                ServerTlsConfig::new()
                    .identity(Identity::from_pem(&tls.cert, &tls.key))
                    .client_ca_root(Certificate::from_pem(&tls.ca)),
            )?;
        }
        tracing::info!(protection = self.describe(), "internal gRPC link protection");
        Ok(builder.layer(InterceptorLayer::new(RequireToken(self.token.clone().map(Arc::new)))))
    }

    /// A lazily connecting channel to `url` that presents these credentials.
    /// `server_name` is the name the server certificate must carry (default:
    /// the URL's host, or `localhost` for a Unix socket).
    pub fn channel(&self, url: &ServiceUrl, server_name: Option<&str>) -> Result<InternalChannel, InternalAuthError> {
        let channel = match &self.tls {
            None => url.channel(),
            Some(tls) => url.tls_channel(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&tls.ca))
                    .identity(Identity::from_pem(&tls.cert, &tls.key))
                    .domain_name(server_name.unwrap_or(url.host())),
            )?,
        };
        let header = self.token.as_ref().map(|t| t.header.clone());
        Ok(InterceptedService::new(channel, AttachToken(header)))
    }
}

/// Server side: refuses calls without the token (when one is configured).
#[derive(Clone)]
pub struct RequireToken(Option<Arc<InternalToken>>);

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.0 else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get(TOKEN_KEY)
            .and_then(|v| v.as_bytes().strip_prefix(BEARER.as_bytes()));
        match presented {
            Some(token) if expected.matches(token) => Ok(request),
            Some(_) => Err(Status::unauthenticated(
                "wrong internal token: give the caller the same MCP_INTERNAL_TOKEN_FILE as this service",
            )),
            None => Err(Status::unauthenticated(
                "this service only accepts dynamic-mcp frontends with the internal token: \
                 set MCP_INTERNAL_TOKEN_FILE on the caller to the same file as here",
            )),
        }
    }
}

/// Client side: adds the token to every call.
#[derive(Clone)]
pub struct AttachToken(Option<MetadataValue<Ascii>>);

impl Interceptor for AttachToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.0 {
            request.metadata_mut().insert(TOKEN_KEY, header.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(check: &mut RequireToken, header: Option<&str>) -> Result<(), Status> {
        let mut request = Request::new(());
        if let Some(h) = header {
            request.metadata_mut().insert(TOKEN_KEY, h.parse().unwrap());
        }
        check.call(request).map(|_| ())
    }

    #[test]
    fn the_token_is_required_and_compared() {
        let mut check = RequireToken(Some(Arc::new(InternalToken::new("s3cret-token").unwrap())));
        assert!(call(&mut check, Some("Bearer s3cret-token")).is_ok());
        let wrong = call(&mut check, Some("Bearer s3cret-tokeN")).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(wrong.message().contains("wrong internal token"));
        let missing = call(&mut check, None).unwrap_err();
        assert!(
            missing.message().contains("MCP_INTERNAL_TOKEN_FILE"),
            "{}",
            missing.message()
        );
        assert!(call(&mut check, Some("s3cret-token")).is_err());
        assert!(call(&mut RequireToken(None), None).is_ok());
    }

    #[test]
    fn the_client_attaches_what_the_server_expects() {
        let token = InternalToken::new("abc123").unwrap();
        let mut attach = AttachToken(Some(token.header.clone()));
        let request = attach.call(Request::new(())).unwrap();
        let mut check = RequireToken(Some(Arc::new(token)));
        assert!(check.call(request).is_ok());
    }

    #[test]
    fn token_files_are_trimmed_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "tok-123\n").unwrap();
        let token = InternalToken::read(&path).unwrap();
        assert!(token.matches(b"tok-123"));
        assert!(!format!("{token:?}").contains("tok-123"));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            InternalToken::read(&path),
            Err(InternalAuthError::EmptyToken(_))
        ));
        assert!(InternalToken::new("has space").is_err());
    }

    #[test]
    fn tls_needs_all_three_files() {
        let args = InternalAuthArgs {
            internal_tls_cert: Some("/c.pem".into()),
            ..Default::default()
        };
        let err = args.load().unwrap_err().to_string();
        assert!(
            err.contains("missing: MCP_INTERNAL_TLS_KEY, MCP_INTERNAL_TLS_CA"),
            "{err}"
        );
        let err = InternalAuthArgs {
            internal_token_file: Some("/nonexistent/token".into()),
            ..Default::default()
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/token"), "{err}");
    }
}
