//! HTTP mode with MCP_AUTH_MODE=jwt: the frontend as an OAuth 2.1 resource
//! server, against a local JWKS endpoint with real RSA and EC keys.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::jwks::{ISSUER, JwksServer, SigningKey, claims, now};
use support::{Frontend, HttpSession, Stack, headers, initialize_body, post};

struct JwtStack {
    stack: Stack,
    jwks: JwksServer,
    rsa: SigningKey,
    ec: SigningKey,
    frontend: Frontend,
    audience: String,
}

impl JwtStack {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let stack = Stack::new().await;
        let rsa = SigningKey::rsa(stack.dir.path(), "rsa-1");
        let ec = SigningKey::ec(stack.dir.path(), "ec-1");
        let jwks = JwksServer::start(&[&rsa, &ec]).await;
        let mut settings = vec![
            ("MCP_AUTH_MODE", "jwt"),
            ("MCP_AUTH_JWKS_URL", jwks.url.as_str()),
            ("MCP_AUTH_ISSUER", ISSUER),
            ("MCP_AUTH_REQUIRED_SCOPES", "tools:call"),
            ("MCP_AUTH_JWKS_MIN_REFETCH_MS", "200"),
        ];
        settings.extend_from_slice(extra);
        let frontend = stack.http_frontend(&settings).await;
        // The default audience is the resource URL derived from the bound address.
        let audience = frontend.url.clone();
        Self {
            stack,
            jwks,
            rsa,
            ec,
            frontend,
            audience,
        }
    }

    fn claims(&self, subject: &str, scope: &str) -> Value {
        claims(&self.audience, subject, scope)
    }

    /// Waits (up to 10 s) until the frontend has fetched the key set more
    /// than `fetches` times.
    async fn wait_for_fetch_after(&self, fetches: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.jwks.fetches() <= fetches {
            assert!(
                std::time::Instant::now() < deadline,
                "the periodic refresh did not fetch the key set again within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn initialize(&self, token: Option<&str>) -> (StatusCode, Option<String>, Value) {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let pairs: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
        let response = post(&self.frontend.url, &headers(&pairs), &initialize_body()).await;
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, challenge, body)
    }

    /// Asserts a 401 invalid_token whose description contains `why`.
    async fn refused(&self, token: &str, why: &str) {
        let (status, challenge, body) = self.initialize(Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let challenge = challenge.expect("WWW-Authenticate");
        assert!(
            challenge.starts_with(&format!("Bearer resource_metadata=\"{}\"", self.metadata_url())),
            "{challenge}"
        );
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(challenge.contains(why), "expected '{why}' in {challenge}");
        assert_eq!(body["error"], "invalid_token");
        assert!(body["error_description"].as_str().unwrap().contains(why), "{body}");
        assert!(!challenge.contains(token) && !body.to_string().contains(token));
    }

    fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.frontend.base)
    }
}

#[tokio::test]
async fn no_token_gets_401_with_resource_metadata_and_the_metadata_is_public() {
    let jwt = JwtStack::start(&[]).await;
    let (status, challenge, body) = jwt.initialize(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.unwrap(),
        format!(
            "Bearer resource_metadata=\"{}\", scope=\"tools:call\"",
            jwt.metadata_url()
        )
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );

    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let response = reqwest::get(format!("{}{path}", jwt.frontend.base)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let metadata: Value = response.json().await.unwrap();
        assert_eq!(
            metadata,
            json!({"resource": jwt.audience, "authorization_servers": [ISSUER],
                "scopes_supported": ["tools:call", "mcp:admin"], "bearer_methods_supported": ["header"],
                "resource_name": "dynamic-mcp"})
        );
    }
    let line = jwt.stack.audit().wait_for(|l| l["action"] == "http.authenticate").await;
    assert_eq!(
        (
            &line["actor"],
            &line["result"],
            &line["target"],
            &line["details"]["reason"]
        ),
        (
            &json!("anonymous"),
            &json!("denied"),
            &json!("/mcp"),
            &json!("no_token")
        )
    );
}

#[tokio::test]
async fn valid_rsa_and_ec_tokens_are_accepted_and_name_the_caller() {
    let jwt = JwtStack::start(&[]).await;
    for (key, subject) in [(&jwt.rsa, "alice"), (&jwt.ec, "bob")] {
        let token = key.sign(&jwt.claims(subject, "tools:call"));
        let auth = format!("Bearer {token}");
        let mut session = HttpSession::open(&jwt.frontend.url, &[("authorization", &auth)]).await;
        let health = session.call_tool("system.health", json!({})).await;
        assert!(!health.is_error, "{health:?}");
    }
    // `scp` as an array works like `scope`.
    let mut with_scp = jwt.claims("carol", "");
    with_scp["scp"] = json!(["tools:call"]);
    let (status, _, body) = jwt.initialize(Some(&jwt.rsa.sign(&with_scp))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let jwt = JwtStack::start(&[]).await;
    let mut expired = jwt.claims("alice", "tools:call");
    expired["exp"] = json!(now() - 120);
    jwt.refused(&jwt.rsa.sign(&expired), "the token has expired").await;

    let mut early = jwt.claims("alice", "tools:call");
    early["nbf"] = json!(now() + 600);
    jwt.refused(&jwt.ec.sign(&early), "the token is not valid yet").await;

    // Within the leeway (30 s) both are fine.
    let mut skewed = jwt.claims("alice", "tools:call");
    skewed["nbf"] = json!(now() + 5);
    let (status, _, body) = jwt.initialize(Some(&jwt.rsa.sign(&skewed))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn wrong_issuer_audience_and_unknown_key_are_refused() {
    let jwt = JwtStack::start(&[]).await;
    let mut issuer = jwt.claims("alice", "tools:call");
    issuer["iss"] = json!("https://evil.example");
    jwt.refused(&jwt.rsa.sign(&issuer), "issued by another issuer").await;

    let mut audience = jwt.claims("alice", "tools:call");
    audience["aud"] = json!("https://other-server.example/mcp");
    jwt.refused(&jwt.rsa.sign(&audience), "not meant for this server").await;

    let stranger = SigningKey::rsa(jwt.stack.dir.path(), "stranger");
    jwt.refused(
        &stranger.sign(&jwt.claims("alice", "tools:call")),
        "kid 'stranger') is not in the authorization server's key set",
    )
    .await;
}

#[tokio::test]
async fn alg_none_and_hs256_signed_with_the_public_key_are_refused() {
    let jwt = JwtStack::start(&[]).await;
    let claims = jwt.claims("mallory", "tools:call mcp:admin");
    jwt.refused(&jwt.rsa.unsigned(&claims), "tokens signed with 'none' are not accepted")
        .await;
    jwt.refused(
        &jwt.rsa.sign_hs256_with_public_key(&claims),
        "tokens signed with 'HS256' are not accepted",
    )
    .await;
    // A token whose signature belongs to another key with the same kid.
    let forged_key = SigningKey::rsa(jwt.stack.dir.path(), "rsa-1");
    jwt.refused(&forged_key.sign(&claims), "signature is invalid").await;
}

#[tokio::test]
async fn a_missing_scope_gets_403_insufficient_scope() {
    let jwt = JwtStack::start(&[]).await;
    let token = jwt.rsa.sign(&jwt.claims("dave", "files:read"));
    let (status, challenge, body) = jwt.initialize(Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = challenge.unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"tools:call\", resource_metadata=\""),
        "{challenge}"
    );
    assert_eq!(body["error"], "insufficient_scope");
    assert!(body["error_description"].as_str().unwrap().contains("tools:call"));
    let line = jwt
        .stack
        .audit()
        .wait_for(|l| l["details"]["reason"] == "insufficient_scope")
        .await;
    assert_eq!((&line["actor"], &line["result"]), (&json!("dave"), &json!("denied")));
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_an_outage_keeps_the_cached_keys() {
    let jwt = JwtStack::start(&[("MCP_AUTH_JWKS_REFRESH_SECS", "1")]).await;
    let rotated = SigningKey::ec(jwt.stack.dir.path(), "ec-2");
    let token = rotated.sign(&jwt.claims("erin", "tools:call"));
    jwt.refused(&token, "kid 'ec-2'").await;

    // The authorization server rotates: the new kid is fetched on first sight.
    let published = jwt.jwks.fetches();
    jwt.jwks.publish(&[&jwt.rsa, &rotated]);
    // The refresher (every second) fetches the new set.
    jwt.wait_for_fetch_after(published).await;
    let (status, _, body) = jwt.initialize(Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The JWKS endpoint goes down; refreshes fail but cached keys still work.
    jwt.jwks.set_down(true);
    let fetches = jwt.jwks.fetches();
    jwt.wait_for_fetch_after(fetches).await;
    let (status, _, body) = jwt
        .initialize(Some(&jwt.rsa.sign(&jwt.claims("erin", "tools:call"))))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn unknown_kids_do_not_hammer_the_authorization_server() {
    // Enough failures allowed that all ten get the plain 401.
    let jwt = JwtStack::start(&[
        ("MCP_AUTH_JWKS_MIN_REFETCH_MS", "60000"),
        ("MCP_AUTH_FAILURES_BEFORE_BACKOFF", "100"),
    ])
    .await;
    let stranger = SigningKey::ec(jwt.stack.dir.path(), "unknown");
    let token = stranger.sign(&jwt.claims("x", "tools:call"));
    let before = jwt.jwks.fetches();
    let attempts = (0..10).map(|_| jwt.initialize(Some(&token)));
    for (status, _, _) in futures::future::join_all(attempts).await {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert!(
        jwt.jwks.fetches() - before <= 1,
        "{} fetches",
        jwt.jwks.fetches() - before
    );
}

#[tokio::test]
async fn invalid_tokens_back_off_per_address_but_a_valid_token_always_passes() {
    let jwt = JwtStack::start(&[
        ("MCP_AUTH_FAILURES_BEFORE_BACKOFF", "2"),
        ("MCP_AUTH_BACKOFF_BASE_MS", "60000"),
    ])
    .await;
    let forged = SigningKey::rsa(jwt.stack.dir.path(), "rsa-1").sign(&jwt.claims("mallory", "tools:call"));
    jwt.refused(&forged, "signature is invalid").await;
    jwt.refused(&forged, "signature is invalid").await;
    let bearer = format!("Bearer {forged}");
    let response = post(
        &jwt.frontend.url,
        &headers(&[("authorization", &bearer)]),
        &initialize_body(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "60");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("too many invalid access tokens"),
        "{body}"
    );
    // The same address with a valid token: no lock-out.
    let valid = jwt.rsa.sign(&jwt.claims("alice", "tools:call"));
    let (status, _, body) = jwt.initialize(Some(&valid)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let line = jwt
        .stack
        .audit()
        .wait_for(|l| l["action"] == "http.authenticate" && l["details"]["retryAfterMs"] == 60_000)
        .await;
    assert_eq!(line["details"]["reason"], "bad_signature");
    let metrics = jwt.frontend.metrics().await;
    assert!(
        metrics.contains(r#"mcp_auth_backoff_refusals_total{realm="bearer"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn jwt_mode_without_its_settings_refuses_to_start() {
    let stack = Stack::new().await;
    let env = support::with(stack.env(), &[("MCP_TRANSPORT", "http"), ("MCP_AUTH_MODE", "jwt")]);
    let stderr = Frontend::fails_to_start(&env).await;
    assert!(
        stderr.contains("MCP_AUTH_MODE=jwt needs MCP_AUTH_JWKS_URL and MCP_AUTH_ISSUER"),
        "{stderr}"
    );
}
