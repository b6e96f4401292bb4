//! Internal links: a registry that demands the shared token or mutual TLS
//! refuses clients without them, and a frontend with them gets through.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use dynamic_mcp_common::internal_auth::{InternalAuth, InternalAuthArgs};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::pki::TestCa;
use support::{HttpSession, TestRegistry, token_file, with};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "internal-token-0b8e6f2a9c41d7";

#[tokio::test]
async fn a_token_protected_registry_refuses_clients_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (path, auth) = token_file(dir.path(), "internal.token", TOKEN);
    let registry = TestRegistry::start(dir.path(), &[format!("--internal-token-file={}", path.display())], auth).await;

    let anonymous = TestRegistry {
        url: registry.url.clone(),
        auth: InternalAuth::default(),
    };
    let refused = anonymous.health().await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("MCP_INTERNAL_TOKEN_FILE"),
        "{}",
        refused.message()
    );

    let (_, wrong) = token_file(dir.path(), "wrong.token", "not-the-internal-token");
    let guessing = TestRegistry {
        url: registry.url.clone(),
        auth: wrong,
    };
    let refused = guessing.health().await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().starts_with("wrong internal token"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn a_frontend_gets_through_only_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (path, auth) = token_file(dir.path(), "internal.token", TOKEN);
    let registry = TestRegistry::start(dir.path(), &[format!("--internal-token-file={}", path.display())], auth).await;
    let base = vec![
        ("MCP_REGISTRY_URL".to_owned(), registry.url.to_string()),
        (
            "MCP_EXECUTOR_URL".to_owned(),
            format!("unix:{}", dir.path().join("none.sock").display()),
        ),
        ("MCP_AUDIT_ENABLED".to_owned(), "false".to_owned()),
    ];

    let with_token = support::Frontend::http(&with(
        base.clone(),
        &[("MCP_INTERNAL_TOKEN_FILE", &path.display().to_string())],
    ))
    .await;
    let mut session = HttpSession::open(&with_token.url, &[]).await;
    let listed = session.call_tool("dynamic.tool.list", json!({})).await;
    assert!(!listed.is_error, "{listed:?}");

    let without = support::Frontend::http(&base).await;
    let mut session = HttpSession::open(&without.url, &[]).await;
    let refused = session.call_tool("dynamic.tool.list", json!({})).await;
    assert!(refused.is_error);
    assert!(
        refused.text.starts_with("the registry refused the request"),
        "{}",
        refused.text
    );
    let ready = reqwest::get(format!("{}/readyz", without.base)).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert!(
        body["failed"]["registry"].as_str().unwrap().contains("internal token"),
        "{body}"
    );
}

#[tokio::test]
async fn a_mutual_tls_registry_refuses_clients_without_a_certificate_from_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_path = ca.write_ca(dir.path(), "ca");
    let server = ca.issue(dir.path(), "registry", &["localhost"]);
    let client = ca.issue(dir.path(), "frontend", &["frontend"]);
    let args = |identity: &support::pki::Identity, ca: &std::path::Path| InternalAuthArgs {
        internal_token_file: None,
        internal_tls_cert: Some(identity.cert.clone()),
        internal_tls_key: Some(identity.key.clone()),
        internal_tls_ca: Some(ca.to_owned()),
    };
    let client_auth = args(&client, &ca_path).load().unwrap();
    let registry = TestRegistry::start(
        dir.path(),
        &[
            format!("--internal-tls-cert={}", server.cert.display()),
            format!("--internal-tls-key={}", server.key.display()),
            format!("--internal-tls-ca={}", ca_path.display()),
        ],
        client_auth,
    )
    .await;

    // Plain text: no TLS at all.
    let plain = HealthClient::new(registry.url.channel())
        .check(HealthCheckRequest::default())
        .await;
    assert!(plain.is_err(), "a plain-text client was served");

    // TLS that trusts the server but shows no client certificate.
    let no_cert = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert_pem))
        .domain_name("localhost");
    let anonymous = HealthClient::new(registry.url.tls_channel(no_cert).unwrap())
        .check(HealthCheckRequest::default())
        .await;
    assert!(anonymous.is_err(), "a client without a certificate was served");

    // A certificate from another CA.
    let other_ca = TestCa::new();
    let other_dir = tempfile::tempdir().unwrap();
    let stranger = other_ca.issue(other_dir.path(), "stranger", &["stranger"]);
    let stranger_auth = InternalAuthArgs {
        internal_tls_ca: Some(ca_path.clone()),
        ..args(&stranger, &ca_path)
    }
    .load()
    .unwrap();
    let refused = TestRegistry {
        url: registry.url.clone(),
        auth: stranger_auth,
    }
    .health()
    .await;
    assert!(refused.is_err(), "a certificate from another CA was accepted");

    // A frontend with a certificate from the CA gets through.
    let frontend = support::Frontend::http(&[
        ("MCP_REGISTRY_URL".to_owned(), registry.url.to_string()),
        (
            "MCP_EXECUTOR_URL".to_owned(),
            format!("unix:{}", dir.path().join("none.sock").display()),
        ),
        ("MCP_AUDIT_ENABLED".to_owned(), "false".to_owned()),
        ("MCP_INTERNAL_TLS_CERT".to_owned(), client.cert.display().to_string()),
        ("MCP_INTERNAL_TLS_KEY".to_owned(), client.key.display().to_string()),
        ("MCP_INTERNAL_TLS_CA".to_owned(), ca_path.display().to_string()),
    ])
    .await;
    let mut session = HttpSession::open(&frontend.url, &[]).await;
    let listed = session.call_tool("dynamic.tool.list", json!({})).await;
    assert!(!listed.is_error, "{listed:?}");
}
