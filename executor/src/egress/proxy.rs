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
use dynamic_mcp_proto::v1::EgressScheme;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::uri::{Authority, Uri};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;
use tokio::net::UnixStream;

use super::addresses::Unusable;
use super::allow_list::{Target, describe};
use super::answers::{pass_back, strip_hop_by_hop};
use super::body::{self, ProxyBody};
use super::events::{Destination, Reason, Refusal};
use super::intercept;
use super::rewrite::{Injection, Injector};
use super::run_proxy::RunProxy;
use super::upstream;

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
            return run.refuse(&to, &refusal);
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
        Err(refusal) => return run.refuse(&to, &refusal),
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
        Err(why) => return cannot_connect(&run, &to, &why),
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
    run.refuse(to, &refusal)
}

fn cannot_connect(run: &RunProxy, to: &Destination, why: &str) -> Response<ProxyBody> {
    failed(run, to, Reason::ConnectFailed, format!("cannot connect ({why})"))
}

/// An allowed plain-HTTP request, forwarded by its Host header. Secrets
/// never go over plain HTTP: a placeholder in it goes out as it is.
async fn forward_plain(run: Arc<RunProxy>, request: Request<Incoming>, allowed: Allowed) -> Response<ProxyBody> {
    let Allowed { target, port, to, .. } = &allowed;
    let port = *port;
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
                return run.refuse(to, &refusal);
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
    let tcp = match upstream::connect(&allowed.addresses).await {
        Ok(tcp) => tcp,
        Err(why) => return cannot_connect(&run, to, &why),
    };
    let sent = async {
        let mut sender = upstream::http1_client(tcp, run.stop.clone()).await?;
        sender.send_request(Request::from_parts(parts, body)).await
    };
    match sent.await {
        Ok(response) => {
            run.reporter.allowed(to, report.injected, report.withheld);
            pass_back(response, &run.secrets)
        }
        Err(e) => failed(
            &run,
            to,
            Reason::ConnectFailed,
            format!("the server did not answer ({e})"),
        ),
    }
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
}
