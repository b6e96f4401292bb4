//! TLS interception, for runs that use secrets: the proxy ends the code's
//! TLS with a certificate from its own CA (which only such runs trust),
//! reads each request, puts each secret's value in place of its placeholder
//! only if the connection goes to one of that secret's hosts, and sends the
//! request on over its own, verified TLS connection to the real server.
//! Responses come back with every secret value replaced by its placeholder.
//! Requests that carried a placeholder are reported, injected or withheld.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use dynamic_mcp_proto::v1::EgressScheme;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::client::TlsStream;

use super::allow_list::Target;
use super::answers::{pass_back, status_response, strip_hop_by_hop};
use super::body::{self, ProxyBody};
use super::events::{Destination, Reason, Refusal};
use super::rewrite::{Injection, Injector};
use super::run_proxy::RunProxy;
use super::upstream;

/// The upstream side of one intercepted connection, reopened if the server
/// closes it between requests.
struct Upstream {
    sender: Option<SendRequest<ProxyBody>>,
    addresses: Vec<SocketAddr>,
}

/// Serves the code's side of an intercepted CONNECT until it closes or the
/// run ends. `tls` is the already verified connection to the real server.
pub async fn serve(
    run: Arc<RunProxy>,
    on_upgrade: OnUpgrade,
    tls: TlsStream<TcpStream>,
    target: Target,
    port: u16,
    addresses: Vec<SocketAddr>,
) {
    let stop = run.stop.clone();
    let served = async {
        let upgraded = on_upgrade
            .await
            .map_err(|e| format!("the CONNECT was not upgraded: {e}"))?;
        let ca = run.shared.ca.as_ref().ok_or("no interception CA")?;
        let config = ca.server_config(&target).map_err(|e| e.to_string())?;
        let code_side = TlsAcceptor::from(config)
            .accept(TokioIo::new(upgraded))
            .await
            .map_err(|e| format!("the code's TLS handshake failed: {e}"))?;
        let upstream = Arc::new(Mutex::new(Upstream {
            sender: Some(open(&run, tls).await?),
            addresses,
        }));
        let service = service_fn(move |request| {
            let (run, upstream, target) = (Arc::clone(&run), Arc::clone(&upstream), target.clone());
            async move { Ok::<_, Infallible>(forward(&run, &upstream, &target, port, request).await) }
        });
        http1::Builder::new()
            .serve_connection(TokioIo::new(code_side), service)
            .await
            .map_err(|e| format!("the intercepted connection failed: {e}"))
    };
    tokio::select! {
        result = served => if let Err(why) = result {
            tracing::debug!(%why, "an intercepted connection ended");
        },
        () = stop.cancelled() => {}
    }
}

/// An HTTP/1.1 client on a verified TLS connection.
async fn open(run: &RunProxy, tls: TlsStream<TcpStream>) -> Result<SendRequest<ProxyBody>, String> {
    upstream::http1_client(tls, run.stop.clone())
        .await
        .map_err(|e| e.to_string())
}

impl Upstream {
    /// A sender ready for the next request, reconnecting if need be.
    async fn ready(&mut self, run: &RunProxy, target: &Target) -> Result<&mut SendRequest<ProxyBody>, String> {
        let usable = match &mut self.sender {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let tcp = upstream::connect(&self.addresses).await?;
            let tls = run.shared.upstream_tls.handshake(target, tcp).await?;
            self.sender = Some(open(run, tls).await?);
        }
        self.sender.as_mut().ok_or_else(|| "no connection".to_owned())
    }
}

async fn forward(
    run: &RunProxy,
    upstream: &Mutex<Upstream>,
    target: &Target,
    port: u16,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let to = Destination::new(target, port, EgressScheme::Connect);
    let refuse = |reason, why: String| {
        let refusal = Refusal::new(reason, format!("egress to {target}:{port} refused: {why}"));
        run.refuse(&to, &refusal)
    };
    if let Some(host) = request.headers().get(header::HOST) {
        let named = host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<hyper::http::uri::Authority>().ok())
            .and_then(|a| Target::parse(a.host()).ok());
        if named.as_ref() != Some(target) {
            return refuse(
                Reason::BadRequest,
                "the request's Host header names another host than the one connected to".into(),
            );
        }
    }
    let (mut parts, incoming) = request.into_parts();
    let bytes = match body::buffered(incoming).await {
        Ok(bytes) => bytes,
        Err(unbuffered) => return refuse(unbuffered.reason(), unbuffered.why()),
    };
    let mut report = Injection::default();
    let bytes = match inject(run, target, port, &mut parts, bytes, &mut report) {
        Ok(bytes) => bytes,
        Err(why) => return refuse(Reason::BadRequest, why),
    };
    if !report.is_empty() {
        run.reporter.secret_use(&to, report.injected, report.withheld);
    }
    let mut upstream = upstream.lock().await;
    let sender = match upstream.ready(run, target).await {
        Ok(sender) => sender,
        Err(why) => {
            return status_response(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach {target}:{port}: {why}\n"),
            );
        }
    };
    match sender.send_request(Request::from_parts(parts, body::full(bytes))).await {
        Ok(response) => pass_back(response, &run.secrets),
        Err(e) => status_response(
            StatusCode::BAD_GATEWAY,
            format!("{target}:{port} did not answer: {e}\n"),
        ),
    }
}

/// Puts the secrets allowed for `target:port` into the request's path,
/// headers and body; asks for an unencoded response, so that redaction can
/// read it.
fn inject(
    run: &RunProxy,
    target: &Target,
    port: u16,
    parts: &mut Parts,
    bytes: Bytes,
    report: &mut Injection,
) -> Result<Bytes, String> {
    let injector = Injector::new(&run.secrets, target, port);
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    let path = injector
        .inject(path.as_bytes(), report)
        .unwrap_or_else(|| path.into_bytes());
    parts.uri =
        Uri::from_maybe_shared(Bytes::from(path)).map_err(|_| "a secret cannot go into a URL as it is".to_owned())?;
    for (name, value) in parts.headers.iter_mut() {
        if let Some(injected) = injector.inject_header(value.as_bytes(), report) {
            *value =
                HeaderValue::from_bytes(&injected).map_err(|_| format!("a secret cannot go into the {name} header"))?;
        }
    }
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    Ok(injector.inject(&bytes, report).map_or(bytes, Bytes::from))
}
