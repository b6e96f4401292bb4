//! Bearer JWT verification, as an OAuth 2.1 resource server does it.
//!
//! Only asymmetric algorithms from a fixed allow-list are accepted, and the
//! key must come from the authorization server's JWKS and belong to the
//! token's algorithm family: `alg: none`, HMAC tokens (including HS256
//! "signed" with the public key) and algorithm/key mismatches are refused.
//! Issuer, audience, expiry and not-before are checked with a small leeway.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::KeyAlgorithm;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use super::caller::Principal;
use super::jwks::JwksCache;

/// Signature algorithms we accept: asymmetric only.
const ALLOWED: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// Why a token was refused. The messages go to the client (401
/// `error_description`), so they say what is wrong without echoing the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the bearer token is not a JWT (header.payload.signature)")]
    Malformed,
    #[error(
        "tokens signed with '{0}' are not accepted; use an asymmetric algorithm (RS256/384/512, PS256/384/512, \
         ES256/384 or EdDSA)"
    )]
    AlgorithmNotAllowed(String),
    #[error("the token header has no key id (kid)")]
    NoKeyId,
    #[error("the token's signing key (kid '{0}') is not in the authorization server's key set")]
    UnknownKey(String),
    #[error("the token's algorithm does not match its signing key")]
    KeyMismatch,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the token was issued by another issuer; this server accepts tokens from '{0}'")]
    WrongIssuer(String),
    #[error("the token is not meant for this server; its audience (aud) must be '{0}'")]
    WrongAudience(String),
    #[error("the token has no '{0}' claim")]
    MissingClaim(String),
    #[error("the token's claims are not valid: {0}")]
    BadClaims(String),
}

impl JwtError {
    /// A short, bounded label for metrics and audit lines.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::NoKeyId => "no_kid",
            Self::UnknownKey(_) => "unknown_kid",
            Self::KeyMismatch => "key_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer(_) => "wrong_issuer",
            Self::WrongAudience(_) => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::BadClaims(_) => "bad_claims",
        }
    }
}

/// What a verifier checks.
#[derive(Debug, Clone)]
pub struct JwtRules {
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
}

/// Verifies bearer tokens against the cached JWKS.
#[derive(Clone)]
pub struct JwtVerifier {
    jwks: JwksCache,
    rules: JwtRules,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<ScopeClaim>,
}

/// `scp` is an array at some authorization servers and a string at others.
#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    One(String),
    Many(Vec<String>),
}

impl JwtVerifier {
    pub fn new(jwks: JwksCache, rules: JwtRules) -> Self {
        Self { jwks, rules }
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, JwtError> {
        let (alg, kid) = read_header(token)?;
        let key = self
            .jwks
            .find(&kid)
            .await
            .ok_or_else(|| JwtError::UnknownKey(printable(&kid)))?;
        if key
            .common
            .key_algorithm
            .is_some_and(|declared| declared != KeyAlgorithm::from(alg))
        {
            return Err(JwtError::KeyMismatch);
        }
        let decoding_key = DecodingKey::from_jwk(&key).map_err(|_| JwtError::KeyMismatch)?;
        if decoding_key.family() != alg.family() {
            return Err(JwtError::KeyMismatch);
        }
        // One algorithm per Validation: decode refuses a list spanning families.
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.rules.issuer]);
        validation.set_audience(&[&self.rules.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.rules.leeway.as_secs();
        let claims = jsonwebtoken::decode::<Claims>(token, &decoding_key, &validation)
            .map_err(|e| self.explain(e.into_kind()))?
            .claims;
        if claims.sub.is_empty() {
            return Err(JwtError::MissingClaim("sub".into()));
        }
        Ok(Principal {
            subject: claims.sub,
            scopes: scopes(claims.scope, claims.scp),
        })
    }

    fn explain(&self, kind: ErrorKind) -> JwtError {
        match kind {
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidIssuer => JwtError::WrongIssuer(self.rules.issuer.clone()),
            ErrorKind::InvalidAudience => JwtError::WrongAudience(self.rules.audience.clone()),
            ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
                JwtError::KeyMismatch
            }
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => JwtError::Malformed,
            ErrorKind::Json(e) => JwtError::BadClaims(e.to_string()),
            ErrorKind::InvalidClaimFormat(claim) => JwtError::BadClaims(format!("'{claim}' has the wrong type")),
            other => JwtError::BadClaims(format!("{other:?}")),
        }
    }
}

/// The header's `alg` (allow-listed) and `kid`. Read by hand so that refused
/// algorithms such as `none` get a precise message instead of a parse error.
fn read_header(token: &str) -> Result<(Algorithm, String), JwtError> {
    #[derive(Deserialize)]
    struct Header {
        alg: String,
        kid: Option<String>,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| JwtError::Malformed)?;
    let header: Header = serde_json::from_slice(&header).map_err(|_| JwtError::Malformed)?;
    let alg = ALLOWED
        .iter()
        .find(|(name, _)| *name == header.alg)
        .map(|(_, alg)| *alg)
        .ok_or_else(|| JwtError::AlgorithmNotAllowed(printable(&header.alg)))?;
    let kid = header.kid.filter(|k| !k.is_empty()).ok_or(JwtError::NoKeyId)?;
    Ok((alg, kid))
}

/// Attacker-chosen text for a message: short and without quotes.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .take(64)
        .collect()
}

fn scopes(scope: Option<String>, scp: Option<ScopeClaim>) -> Vec<String> {
    let from_scp = match scp {
        None => Vec::new(),
        Some(ScopeClaim::One(text)) => vec![text],
        Some(ScopeClaim::Many(items)) => items,
    };
    let mut scopes: Vec<String> = Vec::new();
    for text in scope.into_iter().chain(from_scp) {
        for item in text.split_whitespace() {
            if !scopes.iter().any(|s| s == item) {
                scopes.push(item.to_owned());
            }
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with_header(header: &str) -> String {
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn refuses_none_and_hmac_before_looking_at_keys() {
        let none = read_header(&token_with_header(r#"{"alg":"none","kid":"k"}"#)).unwrap_err();
        assert_eq!(none, JwtError::AlgorithmNotAllowed("none".into()));
        let hs = read_header(&token_with_header(r#"{"alg":"HS256","kid":"k"}"#)).unwrap_err();
        assert!(
            hs.to_string()
                .starts_with("tokens signed with 'HS256' are not accepted"),
            "{hs}"
        );
        assert_eq!(
            read_header(&token_with_header(r#"{"alg":"RS256"}"#)).unwrap_err(),
            JwtError::NoKeyId
        );
        assert_eq!(
            read_header(&token_with_header(r#"{"alg":"ES256","kid":"k1"}"#)).unwrap(),
            (Algorithm::ES256, "k1".into())
        );
        assert_eq!(read_header("abc").unwrap_err(), JwtError::Malformed);
        assert_eq!(read_header("a.b.c.d").unwrap_err(), JwtError::Malformed);
    }

    #[test]
    fn scopes_come_from_scope_and_scp() {
        assert_eq!(
            scopes(Some("a b".into()), Some(ScopeClaim::Many(vec!["b".into(), "c".into()]))),
            ["a", "b", "c"]
        );
        assert_eq!(scopes(None, Some(ScopeClaim::One("x y".into()))), ["x", "y"]);
        assert!(scopes(None, None).is_empty());
    }

    #[test]
    fn attacker_text_is_cleaned() {
        assert_eq!(printable("a\"b\\c\nd"), "abcd");
        assert_eq!(printable(&"x".repeat(100)).len(), 64);
    }
}
