//! Internal gRPC addresses. Services listen on `host:port` or `unix:/path`;
//! clients dial `http://host:port` or `unix:/path`. A Unix socket is the
//! default way to keep the executor reachable only from this host.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_stream::Stream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    #[error("'{0}' is not an address: use host:port (e.g. 127.0.0.1:50051) or unix:/path/to.sock")]
    BadListen(String),
    #[error("'{0}' is not a service URL: use http://host:port or unix:/path/to.sock")]
    BadUrl(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
}

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddrError::BadListen(s.into()));
            }
            return Ok(Self::Unix(path.into()));
        }
        std::net::ToSocketAddrs::to_socket_addrs(s)
            .ok()
            .and_then(|mut addrs| addrs.next())
            .map(Self::Tcp)
            .ok_or_else(|| AddrError::BadListen(s.into()))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl ListenAddr {
    /// Binds the address. A stale socket file from a crashed run is replaced,
    /// and a new socket is made owner/group-only (0660).
    pub async fn bind(&self) -> Result<Incoming, AddrError> {
        let bind_err = |source| AddrError::Bind {
            addr: self.to_string(),
            source,
        };
        match self {
            Self::Tcp(addr) => Ok(Incoming::Tcp(TcpListener::bind(addr).await.map_err(bind_err)?)),
            Self::Unix(path) => {
                remove_stale_socket(path).map_err(bind_err)?;
                let listener = UnixListener::bind(path).map_err(bind_err)?;
                restrict_socket(path).map_err(bind_err)?;
                Ok(Incoming::Unix(listener))
            }
        }
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn restrict_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
}

/// Accepted connections of either kind, as one stream tonic can serve.
/// TCP connections get TCP_NODELAY here: tonic's own `tcp_nodelay` setting
/// applies only to listeners it binds itself.
pub enum Incoming {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Incoming {
    /// The bound TCP address (useful when listening on port 0).
    pub fn local_tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(_) => None,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let accepted = match self.get_mut() {
            Self::Tcp(l) => l.poll_accept(cx).map_ok(|(s, _)| {
                // Small frames (events, results) should not wait for Nagle.
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }),
            Self::Unix(l) => l.poll_accept(cx).map_ok(|(s, _)| Conn::Unix(s)),
        };
        accepted.map(Some)
    }
}

/// One accepted connection.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Where a client finds a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceUrl {
    Http(Uri),
    Unix(PathBuf),
}

impl std::str::FromStr for ServiceUrl {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddrError::BadUrl(s.into()));
            }
            return Ok(Self::Unix(path.into()));
        }
        match s.parse::<Uri>() {
            Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
                Ok(Self::Http(uri))
            }
            _ => Err(AddrError::BadUrl(s.into())),
        }
    }
}

impl std::fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(uri) => write!(f, "{uri}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl From<&ListenAddr> for ServiceUrl {
    #[expect(
        clippy::expect_used,
        reason = "a SocketAddr always formats as a valid http authority"
    )]
    fn from(addr: &ListenAddr) -> Self {
        match addr {
            ListenAddr::Tcp(a) => Self::Http(
                format!("http://{a}")
                    .parse()
                    .expect("a socket address is a valid authority"),
            ),
            ListenAddr::Unix(p) => Self::Unix(p.clone()),
        }
    }
}

impl ServiceUrl {
    /// A channel that connects on first use and reconnects after failures,
    /// so a client can start before the service it needs.
    pub fn channel(&self) -> Channel {
        match self {
            Self::Http(uri) => endpoint(uri.clone()).connect_lazy(),
            Self::Unix(path) => unix_channel(endpoint(Uri::from_static("http://unix.socket")), path.clone()),
        }
    }

    /// Like [`ServiceUrl::channel`], over TLS. tonic speaks TLS only to
    /// `https` URIs, so the scheme is switched; `tls` names the server.
    pub fn tls_channel(&self, tls: ClientTlsConfig) -> Result<Channel, tonic::transport::Error> {
        match self {
            Self::Http(uri) => {
                let mut parts = uri.clone().into_parts();
                parts.scheme = Some(http::uri::Scheme::HTTPS);
                let uri = Uri::from_parts(parts).unwrap_or_else(|_| uri.clone());
                Ok(endpoint(uri).tls_config(tls)?.connect_lazy())
            }
            Self::Unix(path) => Ok(unix_channel(
                endpoint(Uri::from_static("https://unix.socket")).tls_config(tls)?,
                path.clone(),
            )),
        }
    }

    /// The host a server certificate should name, when none is configured.
    pub fn host(&self) -> &str {
        match self {
            Self::Http(uri) => uri.host().unwrap_or("localhost"),
            Self::Unix(_) => "localhost",
        }
    }
}

/// The URI is required by tonic but unused: the connector dials the socket.
fn unix_channel(endpoint: Endpoint, path: PathBuf) -> Channel {
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { UnixStream::connect(path).await.map(hyper_util::rt::TokioIo::new) }
    }))
}

fn endpoint(uri: Uri) -> Endpoint {
    Endpoint::from(uri)
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            "127.0.0.1:50051".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:50051".parse().unwrap())
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/x.sock".into())
        );
        assert!("nonsense".parse::<ListenAddr>().is_err());
        assert!("unix:".parse::<ListenAddr>().is_err());
    }

    #[tokio::test]
    async fn accepted_tcp_connections_do_not_wait_for_nagle() {
        use tokio_stream::StreamExt;

        let listen: ListenAddr = "127.0.0.1:0".parse().unwrap();
        let mut incoming = listen.bind().await.unwrap();
        let addr = incoming.local_tcp_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let Some(Ok(Conn::Tcp(accepted))) = incoming.next().await else {
            panic!("a TCP connection");
        };
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn parses_service_urls() {
        assert!(matches!(
            "http://127.0.0.1:50051".parse::<ServiceUrl>(),
            Ok(ServiceUrl::Http(_))
        ));
        assert_eq!(
            "unix:/run/x.sock".parse::<ServiceUrl>().unwrap(),
            ServiceUrl::Unix("/run/x.sock".into())
        );
        assert!("127.0.0.1:50051".parse::<ServiceUrl>().is_err());
        assert!("ftp://x".parse::<ServiceUrl>().is_err());
    }
}
