//! A local authorization server for the JWT tests: real RSA and EC keys
//! (generated at test time with the openssl CLI), a JWKS endpoint over real
//! HTTP whose key set the test can change or take down, and token minting.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://auth.test.example";

/// A signing key with its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Jwk,
    /// The public key as PEM (for the HS256-with-public-key attack).
    pub public_pem: Vec<u8>,
}

impl SigningKey {
    pub fn rsa(dir: &Path, kid: &str) -> Self {
        Self::generate(
            dir,
            kid,
            Algorithm::RS256,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        )
    }

    pub fn ec(dir: &Path, kid: &str) -> Self {
        Self::generate(
            dir,
            kid,
            Algorithm::ES256,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        )
    }

    fn generate(dir: &Path, kid: &str, alg: Algorithm, keygen: &[&str]) -> Self {
        let private = dir.join(format!("{kid}.pem"));
        openssl(&[&["genpkey"], keygen, &["-out", private.to_str().unwrap()]].concat());
        let public = dir.join(format!("{kid}.pub.pem"));
        openssl(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        let pem = std::fs::read(&private).unwrap();
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
            public_pem: std::fs::read(&public).unwrap(),
        }
    }

    /// A signed token with these claims.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// The same claims "signed" with HS256, using the public key as the HMAC
    /// secret: the classic algorithm-confusion attack.
    pub fn sign_hs256_with_public_key(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&self.public_pem)).unwrap()
    }

    /// An unsigned token (`alg: none`).
    pub fn unsigned(&self, claims: &Value) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.kid});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("the JWT tests need the openssl CLI (apt-get install openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Claims valid for an hour for `audience`, with `scope`.
pub fn claims(audience: &str, subject: &str, scope: &str) -> Value {
    json!({"iss": ISSUER, "aud": audience, "sub": subject, "scope": scope,
        "iat": now(), "exp": now() + 3600})
}

#[derive(Default)]
struct Published {
    keys: Mutex<Vec<Jwk>>,
    down: AtomicBool,
    fetches: AtomicUsize,
}

/// The JWKS endpoint.
#[derive(Clone)]
pub struct JwksServer {
    pub url: String,
    published: Arc<Published>,
}

impl JwksServer {
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let published = Arc::new(Published::default());
        *published.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
        let app = Router::new()
            .route("/jwks.json", get(serve_keys))
            .with_state(published.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, published }
    }

    /// Publishes these keys from now on (key rotation).
    pub fn publish(&self, keys: &[&SigningKey]) {
        *self.published.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// Makes the endpoint answer 503 (an outage), or serve again.
    pub fn set_down(&self, down: bool) {
        self.published.down.store(down, Ordering::SeqCst);
    }

    pub fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }
}

async fn serve_keys(State(published): State<Arc<Published>>) -> Response {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    if published.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let keys = published.keys.lock().unwrap().clone();
    Json(JwkSet { keys }).into_response()
}
