//! The bearer-token layer in front of the MCP endpoint (JWT mode).
//!
//! No or a bad token: 401 with `WWW-Authenticate: Bearer resource_metadata=…`
//! (plus `error="invalid_token"` and a description when a token was sent).
//! A good token without the required scopes: 403 `insufficient_scope`. A good
//! token puts its [`Principal`] in the request's extensions, where tool calls
//! find their caller. Every refusal is audited and counted.
//!
//! Invalid tokens count towards a back-off per client address
//! ([`FailedAuth`]): while one is in force, an invalid token is answered 429
//! with `Retry-After`. A valid token always passes — a signature cannot be
//! guessed, so checking it gives a guesser nothing, and an attacker sharing
//! an address with a user cannot lock that user out.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::audit::{AuditEvent, AuditLog, AuditResult};
use crate::auth::failed_auth::{FailedAuth, Key, Realm};
use crate::auth::jwt::{JwtError, JwtVerifier};
use crate::auth::{ClientAddr, Principal};
use crate::metrics;

/// What the layer needs.
pub struct BearerAuth {
    pub verifier: JwtVerifier,
    pub required_scopes: Vec<String>,
    /// Where clients find the protected resource metadata.
    pub metadata_url: String,
    pub audit: AuditLog,
    pub failed_auth: Arc<FailedAuth>,
}

/// Why a request was refused.
enum Refusal {
    NoToken,
    NotBearer,
    Invalid(JwtError),
    MissingScopes { subject: String, missing: Vec<String> },
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Self::NoToken => "no_token",
            Self::NotBearer => "not_bearer",
            Self::Invalid(e) => e.reason(),
            Self::MissingScopes { .. } => "insufficient_scope",
        }
    }

    /// Whether a credential was presented and failed (a missing token or a
    /// missing scope is no guess).
    fn is_failed_check(&self) -> bool {
        matches!(self, Self::NotBearer | Self::Invalid(_))
    }

    fn description(&self) -> String {
        match self {
            Self::NoToken => "this MCP server needs an access token: send `Authorization: Bearer <token>`; the \
                 protected resource metadata names the authorization server that issues it"
                .to_owned(),
            Self::NotBearer => "the Authorization header must be `Bearer <token>`".to_owned(),
            Self::Invalid(e) => e.to_string(),
            Self::MissingScopes { missing, .. } => {
                format!(
                    "the token lacks the scope(s) this server requires: {}",
                    missing.join(" ")
                )
            }
        }
    }
}

pub async fn require_bearer(State(auth): State<Arc<BearerAuth>>, mut request: Request, next: Next) -> Response {
    match auth.authenticate(request.headers()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(refusal) => {
            metrics::auth_rejected(refusal.reason());
            let keys: Vec<Key> = request
                .extensions()
                .get::<ClientAddr>()
                .map(|ClientAddr(addr)| Key::address(addr.ip()))
                .into_iter()
                .collect();
            let pause = if refusal.is_failed_check() {
                auth.failed_auth.failed(Realm::Bearer, &keys)
            } else {
                None
            };
            let actor = match &refusal {
                Refusal::MissingScopes { subject, .. } => subject.clone(),
                _ => "anonymous".to_owned(),
            };
            let mut details = json!({"reason": refusal.reason()});
            if let Some(id) = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()) {
                details["requestId"] = json!(id);
            }
            if let Some(pause) = pause {
                details["retryAfterMs"] = json!(pause.as_millis() as u64);
            }
            auth.audit.record(
                AuditEvent::new("http.authenticate", actor, AuditResult::Denied)
                    .target(request.uri().path())
                    .details(details),
            );
            match pause {
                Some(pause) => {
                    metrics::auth_backoff_refusal(Realm::Bearer.as_str());
                    too_many_failures(pause)
                }
                None => auth.challenge(&refusal),
            }
        }
    }
}

impl BearerAuth {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Refusal> {
        let token = bearer_token(headers)?;
        let principal = self.verifier.verify(token).await.map_err(Refusal::Invalid)?;
        let missing: Vec<String> = self
            .required_scopes
            .iter()
            .filter(|scope| !principal.has_scope(scope))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Refusal::MissingScopes {
                subject: principal.subject,
                missing,
            });
        }
        Ok(principal)
    }

    /// The 401 or 403 response with its RFC 6750 / RFC 9728 challenge.
    fn challenge(&self, refusal: &Refusal) -> Response {
        let description = quoted(&refusal.description());
        let metadata = format!("resource_metadata=\"{}\"", quoted(&self.metadata_url));
        let scope = (!self.required_scopes.is_empty()).then(|| format!("scope=\"{}\"", self.required_scopes.join(" ")));
        let (status, error, parts) = match refusal {
            // RFC 6750 §3.1: no error code when the request had no credentials.
            Refusal::NoToken => (StatusCode::UNAUTHORIZED, "unauthorized", vec![Some(metadata), scope]),
            Refusal::NotBearer | Refusal::Invalid(_) => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                vec![
                    Some(metadata),
                    Some("error=\"invalid_token\"".to_owned()),
                    Some(format!("error_description=\"{description}\"")),
                ],
            ),
            Refusal::MissingScopes { .. } => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                vec![
                    Some("error=\"insufficient_scope\"".to_owned()),
                    scope,
                    Some(metadata),
                    Some(format!("error_description=\"{description}\"")),
                ],
            ),
        };
        let challenge = format!("Bearer {}", parts.into_iter().flatten().collect::<Vec<_>>().join(", "));
        let mut response = (
            status,
            Json(json!({"error": error, "error_description": refusal.description()})),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// 429 while a client backs off after invalid tokens.
fn too_many_failures(pause: std::time::Duration) -> Response {
    let seconds = pause.as_secs_f64().ceil().max(1.0) as u64;
    let description = format!(
        "too many invalid access tokens came from this address; retry in {seconds} s with a valid token \
         (the pause doubles with every further invalid token)"
    );
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": "invalid_token", "error_description": description})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The token of an `Authorization: Bearer <token>` header. Tokens in the
/// query string are never read (the spec forbids them).
fn bearer_token(headers: &HeaderMap) -> Result<&str, Refusal> {
    let value = headers.get(header::AUTHORIZATION).ok_or(Refusal::NoToken)?;
    let value = value.to_str().map_err(|_| Refusal::NotBearer)?;
    let (scheme, token) = value.split_once(' ').ok_or(Refusal::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Refusal::NotBearer);
    }
    Ok(token)
}

/// Text safe inside a quoted-string of a challenge.
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '\''
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::middleware;
    use axum::routing::post;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::failed_auth::Backoff;
    use crate::auth::jwks::JwksCache;
    use crate::auth::jwt::JwtRules;

    const METADATA: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

    /// The layer in front of the MCP endpoint. Its JWKS is never fetched:
    /// these requests fail before a key is looked up.
    fn app(failures_before_backoff: u32) -> Router {
        let jwks = JwksCache::new("http://127.0.0.1:9/jwks".parse().unwrap(), Duration::from_secs(60)).unwrap();
        let auth = BearerAuth {
            verifier: JwtVerifier::new(
                jwks,
                JwtRules {
                    issuer: "https://auth.example.com".into(),
                    audience: "https://mcp.example.com/mcp".into(),
                    leeway: Duration::ZERO,
                },
            ),
            required_scopes: vec!["tools:call".into()],
            metadata_url: METADATA.into(),
            audit: AuditLog::disabled(),
            failed_auth: Arc::new(FailedAuth::new(Backoff {
                failures_before: failures_before_backoff,
                base: Duration::from_secs(2),
                max: Duration::from_secs(60),
            })),
        };
        Router::new()
            .route("/mcp", post(|| async { "reached the endpoint" }))
            .layer(middleware::from_fn_with_state(Arc::new(auth), require_bearer))
    }

    fn request(authorization: Option<&str>, from: &str) -> Request {
        let mut request = Request::post("/mcp");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let mut request = request.body(Body::empty()).unwrap();
        let from: SocketAddr = from.parse().unwrap();
        request.extensions_mut().insert(ClientAddr(from));
        request
    }

    async fn json_of(response: Response) -> Value {
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap()).unwrap()
    }

    fn challenge(response: &Response) -> &str {
        response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap()
    }

    #[tokio::test]
    async fn no_token_gets_a_challenge_naming_the_metadata_and_scopes() {
        let response = app(5).oneshot(request(None, "192.0.2.1:1")).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenge(&response),
            format!("Bearer resource_metadata=\"{METADATA}\", scope=\"tools:call\"")
        );
        let body = json_of(response).await;
        assert_eq!(body["error"], "unauthorized");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer <token>")
        );
    }

    #[tokio::test]
    async fn a_bad_token_gets_an_invalid_token_challenge() {
        for authorization in ["Basic dXNlcjpwdw==", "Bearer not-a-jwt"] {
            let response = app(5)
                .oneshot(request(Some(authorization), "192.0.2.1:1"))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{authorization}");
            let challenge = challenge(&response).to_owned();
            assert!(
                challenge.starts_with(&format!(
                    "Bearer resource_metadata=\"{METADATA}\", error=\"invalid_token\", error_description=\""
                )),
                "{challenge}"
            );
            assert_eq!(json_of(response).await["error"], "invalid_token");
        }
    }

    #[tokio::test]
    async fn repeated_bad_tokens_from_one_address_are_answered_429() {
        let app = app(2);
        let mut statuses = Vec::new();
        for port in 4000..4004 {
            let from = format!("192.0.2.7:{port}");
            let response = app
                .clone()
                .oneshot(request(Some("Bearer not-a-jwt"), &from))
                .await
                .unwrap();
            statuses.push(response.status());
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                let retry_after: u64 = response.headers()[header::RETRY_AFTER]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry_after), "{retry_after}");
                assert_eq!(json_of(response).await["error"], "invalid_token");
            }
        }
        assert_eq!(statuses[0], StatusCode::UNAUTHORIZED, "{statuses:?}");
        assert_eq!(
            statuses[3],
            StatusCode::TOO_MANY_REQUESTS,
            "the back-off is per address, whatever the port: {statuses:?}"
        );
        let other = app
            .oneshot(request(Some("Bearer not-a-jwt"), "198.51.100.1:1"))
            .await
            .unwrap();
        assert_eq!(
            other.status(),
            StatusCode::UNAUTHORIZED,
            "another address is not held back"
        );
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_bearer_headers_carry_a_token() {
        assert_eq!(bearer_token(&headers("Bearer abc.def.ghi")).ok(), Some("abc.def.ghi"));
        assert_eq!(bearer_token(&headers("bearer  abc")).ok(), Some("abc"));
        assert!(matches!(
            bearer_token(&headers("Basic dXNlcg==")),
            Err(Refusal::NotBearer)
        ));
        assert!(matches!(bearer_token(&headers("Bearer ")), Err(Refusal::NotBearer)));
        assert!(matches!(bearer_token(&HeaderMap::new()), Err(Refusal::NoToken)));
    }

    #[test]
    fn challenge_text_is_quoted_safely() {
        assert_eq!(quoted("a \"b\" c\\d\n"), "a 'b' c'd'");
    }
}
