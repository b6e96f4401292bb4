//! The proxy's own answers (refusals, failures) and the upstream answers
//! it passes back to the code, for plain and intercepted requests alike.

use std::str::FromStr;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::body::{self, ProxyBody};
use super::events::{Reason, Refusal};
use super::rewrite::{Redactor, redact_text};
use super::secrets::RunSecret;

/// The header that carries a refusal's sentence to the shim.
pub const REFUSAL_HEADER: &str = "x-dynamic-mcp-egress";

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

/// An answer of the proxy's own with a status and a text body.
pub fn status_response(status: StatusCode, text: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
