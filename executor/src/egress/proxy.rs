//! THE place egress is checked: one HTTP proxy per run (or session), on
//! that run's own Unix socket. For every request it checks, in order:
//!
//! 1. the run's credential (`Proxy-Authorization`), minted for this run;
//! 2. the destination — the CONNECT target for HTTPS, the Host header for
//!    plain HTTP (only if the operator allows plain HTTP) — against the
//!    run's `network.allow` (IP literals only if the operator allows them);
//! 3. every address the name resolves to (`addresses.rs`): the proxy
//!    connects only to one it checked.
//!
//! A refusal is an HTTP error with the reason in the body and in the
//! `x-dynamic-mcp-egress` header, which the harness's shim turns into an
//! ordinary network error naming the policy. CONNECT tunnels are opaque,
//! except for runs with secrets: those are intercepted (`intercept.rs`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use dynamic_mcp_proto::v1::EgressScheme;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, Uri};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::addresses::{AddressPolicy, Unusable};
use super::allow_list::{Rule, Target, describe};
use super::body::{self, ProxyBody};
use super::ca::InterceptCa;
use super::events::{Destination, Reason, Refusal, Reporter};
use super::intercept;
use super::rewrite::{Injection, Injector, Redactor, redact_text};
use super::secrets::RunSecret;
use super::upstream::{self, UpstreamTls};

/// The header that carries a refusal's sentence to the shim.
pub const REFUSAL_HEADER: &str = "x-dynamic-mcp-egress";

/// What every run's proxy shares: the operator's settings.
pub struct ProxyShared {
    pub addresses: AddressPolicy,
    pub allow_ip_literals: bool,
    pub allow_plain_http: bool,
    pub upstream_tls: UpstreamTls,
    /// Only when the operator defined secrets.
    pub ca: Option<Arc<InterceptCa>>,
}

/// Who a run's proxy serves, for the fix a refusal suggests.
#[derive(Debug, Clone)]
pub enum Subject {
    Tool(String),
    Session(String),
}

impl Subject {
    fn whose(&self) -> String {
        match self {
            Self::Tool(name) => format!("tool '{name}'"),
            Self::Session(_) => "this sandbox session".into(),
        }
    }

    fn how_to_add(&self) -> &'static str {
        match self {
            Self::Tool(_) => "add it to the tool's network.allow with dynamic.tool.update",
            Self::Session(_) => "start a session whose network.allow includes it",
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::Tool(name) => format!("tool '{name}'"),
            Self::Session(id) => format!("session '{id}'"),
        }
    }
}

/// One run's proxy state.
pub struct RunProxy {
    pub shared: Arc<ProxyShared>,
    pub subject: Subject,
    pub token: String,
    pub allow: Vec<Rule>,
    pub secrets: Vec<RunSecret>,
    pub reporter: Reporter,
    /// Cancelled when the run ends: every connection of it closes.
    pub stop: CancellationToken,
}

/// Serves one connection to the run's socket until it closes or the run
/// ends. `over_limit`: the run has too many connections; refuse this one.
pub async fn serve_connection(stream: UnixStream, run: Arc<RunProxy>, over_limit: bool) {
    let stop = run.stop.clone();
    let service = service_fn(move |request| {
        let run = Arc::clone(&run);
        async move { Ok::<_, Infallible>(handle(run, request, over_limit).await) }
    });
    let connection = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        served = connection => if let Err(e) = served {
            tracing::debug!(error = %e, "an egress proxy connection ended with an error");
        },
        () = stop.cancelled() => {}
    }
}

async fn handle(run: Arc<RunProxy>, request: Request<Incoming>, over_limit: bool) -> Response<ProxyBody> {
    let scheme = if request.method() == Method::CONNECT {
        EgressScheme::Connect
    } else {
        EgressScheme::Http
    };
    let (target, port) = match destination(&request) {
        Ok(destination) => destination,
        Err(message) => {
            let refusal = Refusal::new(Reason::BadRequest, format!("egress refused: {message}"));
            let to = Destination {
                host: String::new(),
                port: 0,
                scheme,
            };
            run.reporter.refused(&to, &refusal);
            return refusal_response(&refusal);
        }
    };
    let to = Destination::new(&target, port, scheme);
    let checked = async {
        if over_limit {
            return Err(Refusal::new(
                Reason::TooManyConnections,
                format!("egress to {target}:{port} refused: this run has too many connections open; close some first"),
            ));
        }
        run.authorize(request.headers(), &target, port)?;
        run.permit(&target, port, scheme)?;
        run.shared
            .addresses
            .resolve(&lookup_name(&target), port)
            .await
            .map_err(|unusable| unusable_refusal(&target, port, unusable))
    };
    let addresses = match checked.await {
        Ok(addresses) => addresses,
        Err(refusal) => {
            run.reporter.refused(&to, &refusal);
            return refusal_response(&refusal);
        }
    };
    let allowed = Allowed {
        target,
        port,
        addresses,
        to,
    };
    match scheme {
        EgressScheme::Connect => connect(run, request, allowed).await,
        _ => forward_plain(run, request, allowed).await,
    }
}

/// A destination that passed every check, with the addresses it may use.
struct Allowed {
    target: Target,
    port: u16,
    addresses: Vec<SocketAddr>,
    to: Destination,
}

impl RunProxy {
    /// The run's own credential, and no other run's.
    fn authorize(&self, headers: &HeaderMap, target: &Target, port: u16) -> Result<(), Refusal> {
        let presented = headers.get(header::PROXY_AUTHORIZATION).and_then(credential);
        let message = match presented {
            Some(token) if bool::from(token.as_bytes().ct_eq(self.token.as_bytes())) => return Ok(()),
            Some(_) => "the proxy credential is not this run's",
            None => "no proxy credential was sent (the harness adds it to fetch, http and https requests)",
        };
        Err(Refusal::new(
            Reason::BadCredential,
            format!("egress to {target}:{port} refused: {message}"),
        ))
    }

    /// The run's allow-list and the operator's switches.
    fn permit(&self, target: &Target, port: u16, scheme: EgressScheme) -> Result<(), Refusal> {
        let refused = |reason, why: String| {
            Err(Refusal::new(
                reason,
                format!("egress to {target}:{port} refused by policy: {why}"),
            ))
        };
        if matches!(target, Target::Ip(_)) && !self.shared.allow_ip_literals {
            return refused(
                Reason::IpLiteralNotAllowed,
                "connecting to an IP address is not allowed; use the host name".into(),
            );
        }
        if scheme == EgressScheme::Http && !self.shared.allow_plain_http {
            return refused(
                Reason::PlainHttpDisabled,
                "plain http:// is not allowed on this server (MCP_SANDBOX_EGRESS_ALLOW_PLAIN_HTTP); use https://"
                    .into(),
            );
        }
        if !self.allow.iter().any(|rule| rule.matches(target, port)) {
            return refused(
                Reason::HostNotAllowed,
                format!(
                    "{target}:{port} is not in the network.allow of {} (allowed: {}); {}",
                    self.subject.whose(),
                    describe(&self.allow),
                    self.subject.how_to_add()
                ),
            );
        }
        Ok(())
    }
}

/// The token in `Basic base64(user:token)` or `Bearer token`.
fn credential(value: &HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
        return decoded.split_once(':').map(|(_, token)| token.to_owned());
    }
    None
}

/// Where a request wants to go: CONNECT's target, or for plain HTTP the
/// request URL's host and the Host header, which must agree.
fn destination(request: &Request<Incoming>) -> Result<(Target, u16), String> {
    if request.method() == Method::CONNECT {
        let authority = request.uri().authority().ok_or("CONNECT needs a host:port target")?;
        let target = Target::parse(authority.host())?;
        return Ok((target, authority.port_u16().unwrap_or(443)));
    }
    if request.uri().scheme_str().is_some_and(|s| s != "http") {
        return Err("only http:// requests are forwarded; https:// goes through CONNECT".into());
    }
    let host_header = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().map_err(|_| "the Host header is not text".to_owned()))
        .transpose()?
        .map(|h| Authority::from_str(h).map_err(|_| format!("the Host header '{h}' is not a host")))
        .transpose()?;
    let authority = match (request.uri().authority(), host_header) {
        (Some(url), Some(host)) if !same_authority(url, &host) => {
            return Err(format!(
                "the Host header ({host}) names a different host than the request URL ({url})"
            ));
        }
        (Some(url), _) => url.clone(),
        (None, Some(host)) => host,
        (None, None) => return Err("the request has no Host header".into()),
    };
    Ok((Target::parse(authority.host())?, authority.port_u16().unwrap_or(80)))
}

fn same_authority(a: &Authority, b: &Authority) -> bool {
    a.host().eq_ignore_ascii_case(b.host()) && a.port_u16().unwrap_or(80) == b.port_u16().unwrap_or(80)
}

/// The name to resolve: IP literals without brackets.
fn lookup_name(target: &Target) -> String {
    match target {
        Target::Name(name) => name.clone(),
        Target::Ip(ip) => ip.to_string(),
    }
}

fn unusable_refusal(target: &Target, port: u16, unusable: Unusable) -> Refusal {
    match unusable {
        Unusable::Unresolvable(why) => Refusal::new(
            Reason::Unresolvable,
            format!("egress to {target}:{port} failed: the name does not resolve ({why})"),
        ),
        Unusable::Internal { ip, why } => Refusal::new(
            Reason::AddressForbidden,
            format!(
                "egress to {target}:{port} refused by policy: it resolves to {ip}, {}, which code may not reach \
                 (the operator can allow a network with MCP_SANDBOX_EGRESS_ALLOWED_NETWORKS)",
                why.describe()
            ),
        ),
    }
}

/// The proxy's own answer to a refused or failed request.
pub fn refusal_response(refusal: &Refusal) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(format!("{}\n", refusal.message)));
    *response.status_mut() = refusal.reason.status();
    let headers = response.headers_mut();
    // Printable ASCII only, so it is always a valid header value.
    let sentence: String = refusal
        .message
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&sentence) {
        headers.insert(HeaderName::from_static(REFUSAL_HEADER), value);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if refusal.reason == Reason::BadCredential {
        headers.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"dynamic-mcp egress\""),
        );
    }
    response
}

/// An allowed CONNECT: the upstream connection first (so a failure is an
/// answer, not a broken tunnel), then a tunnel — or, for runs with
/// secrets, TLS interception.
async fn connect(run: Arc<RunProxy>, request: Request<Incoming>, allowed: Allowed) -> Response<ProxyBody> {
    let Allowed {
        target,
        port,
        addresses,
        to,
    } = allowed;
    let tcp = match upstream::connect(&addresses).await {
        Ok(tcp) => tcp,
        Err(why) => return failed(&run, &to, Reason::ConnectFailed, format!("cannot connect ({why})")),
    };
    let on_upgrade = hyper::upgrade::on(request);
    let intercepting = !run.secrets.is_empty();
    if intercepting {
        let tls = match run.shared.upstream_tls.handshake(&target, tcp).await {
            Ok(tls) => tls,
            Err(why) => {
                return failed(
                    &run,
                    &to,
                    Reason::UpstreamTlsFailed,
                    format!("TLS with the server failed ({why})"),
                );
            }
        };
        run.reporter.allowed(&to, Vec::new(), Vec::new());
        tokio::spawn(intercept::serve(
            Arc::clone(&run),
            on_upgrade,
            tls,
            target,
            port,
            addresses,
        ));
    } else {
        run.reporter.allowed(&to, Vec::new(), Vec::new());
        let stop = run.stop.clone();
        tokio::spawn(async move {
            let mut tcp = tcp;
            match on_upgrade.await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut tcp) => {}
                        () = stop.cancelled() => {}
                    }
                }
                Err(e) => tracing::debug!(error = %e, "a CONNECT was not upgraded"),
            }
        });
    }
    Response::new(body::empty())
}

fn failed(run: &RunProxy, to: &Destination, reason: Reason, why: String) -> Response<ProxyBody> {
    let refusal = Refusal::new(reason, format!("egress to {}:{} failed: {why}", to.host, to.port));
    run.reporter.refused(to, &refusal);
    refusal_response(&refusal)
}

/// An allowed plain-HTTP request, forwarded by its Host header. Secrets
/// never go over plain HTTP: a placeholder in it goes out as it is.
async fn forward_plain(run: Arc<RunProxy>, request: Request<Incoming>, allowed: Allowed) -> Response<ProxyBody> {
    let Allowed {
        target,
        port,
        addresses,
        to,
    } = allowed;
    let (mut parts, incoming) = request.into_parts();
    let origin_form = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    parts.uri = origin_form.parse().unwrap_or_else(|_| Uri::from_static("/"));
    let host = if port == 80 {
        target.to_string()
    } else {
        format!("{target}:{port}")
    };
    if let Ok(host) = HeaderValue::from_str(&host) {
        parts.headers.insert(header::HOST, host);
    }
    strip_hop_by_hop(&mut parts.headers);
    let mut report = Injection::default();
    let body = if run.secrets.is_empty() {
        body::passed(incoming)
    } else {
        let bytes = match body::buffered(incoming).await {
            Ok(bytes) => bytes,
            Err(unbuffered) => {
                let refusal = Refusal::new(
                    unbuffered.reason(),
                    format!("egress to {target}:{port} refused: {}", unbuffered.why()),
                );
                run.reporter.refused(&to, &refusal);
                return refusal_response(&refusal);
            }
        };
        let watcher = Injector::watching(&run.secrets);
        watcher.inject(origin_form.as_bytes(), &mut report);
        for value in parts.headers.values() {
            watcher.inject_header(value.as_bytes(), &mut report);
        }
        watcher.inject(&bytes, &mut report);
        body::full(bytes)
    };
    let tcp = match upstream::connect(&addresses).await {
        Ok(tcp) => tcp,
        Err(why) => return failed(&run, &to, Reason::ConnectFailed, format!("cannot connect ({why})")),
    };
    let sent = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        let stop = run.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                () = stop.cancelled() => {}
            }
        });
        sender.send_request(Request::from_parts(parts, body)).await
    };
    match sent.await {
        Ok(response) => {
            run.reporter.allowed(&to, report.injected, report.withheld);
            pass_back(response, &run.secrets)
        }
        Err(e) => failed(
            &run,
            &to,
            Reason::ConnectFailed,
            format!("the server did not answer ({e})"),
        ),
    }
}

/// An upstream response on its way to the code: hop-by-hop headers off,
/// and for runs with secrets every secret value replaced by its placeholder.
pub fn pass_back(response: Response<Incoming>, secrets: &[RunSecret]) -> Response<ProxyBody> {
    let (mut parts, incoming) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if secrets.is_empty() {
        return Response::from_parts(parts, body::passed(incoming));
    }
    for value in parts.headers.values_mut() {
        if let Ok(text) = value.to_str()
            && let Some(redacted) = redact_text(text, secrets)
            && let Ok(redacted) = HeaderValue::from_str(&redacted)
        {
            *value = redacted;
        }
    }
    // The redacted body may differ in length.
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body::redacted(incoming, Redactor::new(secrets)))
}

/// Headers meant for one hop only (RFC 9110 7.6.1), and our credential.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_str(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("proxy-connection"),
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// The body of an answer that is the proxy's own, for `intercept.rs`.
pub fn status_response(status: StatusCode, text: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_basic_or_bearer() {
        let basic = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("run:tok-1"))).unwrap();
        assert_eq!(credential(&basic).as_deref(), Some("tok-1"));
        assert_eq!(
            credential(&HeaderValue::from_static("Bearer tok-2")).as_deref(),
            Some("tok-2")
        );
        assert_eq!(credential(&HeaderValue::from_static("Digest x")), None);
        assert_eq!(credential(&HeaderValue::from_static("Basic !!!")), None);
    }

    #[test]
    fn hop_by_hop_headers_and_the_credential_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic x"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn a_refusal_carries_its_sentence_in_a_header() {
        let refusal = Refusal::new(Reason::HostNotAllowed, "egress to x:443 refused by policy: …");
        let response = refusal_response(&refusal);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[REFUSAL_HEADER],
            "egress to x:443 refused by policy: ?"
        );
        let response = refusal_response(&Refusal::new(Reason::BadCredential, "no"));
        assert_eq!(response.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        assert!(response.headers().contains_key(header::PROXY_AUTHENTICATE));
    }
}
