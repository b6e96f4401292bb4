//! JWT mode's setup: settings → the resource URL, the protected resource
//! metadata, and a bearer layer whose verifier uses a cached, refreshed JWKS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use url::Url;

use super::bearer_auth::BearerAuth;
use super::resource_metadata::{self, ProtectedResource};
use crate::audit::AuditLog;
use crate::auth::failed_auth::FailedAuth;
use crate::auth::jwks::{JwksCache, JwksError};
use crate::auth::jwt::{JwtRules, JwtVerifier};
use crate::config::JwtArgs;

#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    #[error(
        "MCP_AUTH_MODE=jwt needs {0}: set MCP_AUTH_JWKS_URL to the authorization server's JWKS URL and \
         MCP_AUTH_ISSUER to its issuer"
    )]
    Missing(&'static str),
    #[error("cannot derive the resource URL from MCP_HOST '{host}' and MCP_PORT {port}; set MCP_AUTH_RESOURCE_URL")]
    ResourceUrl { host: String, port: u16 },
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

/// What the HTTP router needs in JWT mode.
pub struct JwtEndpoint {
    pub auth: Arc<BearerAuth>,
    pub metadata: Arc<ProtectedResource>,
    pub resource: Url,
}

/// The settings JWT mode cannot do without; checked before anything starts.
pub fn check_settings(args: &JwtArgs) -> Result<(&Url, &str), JwtSetupError> {
    match (&args.jwks_url, args.issuer.as_deref().filter(|i| !i.is_empty())) {
        (Some(jwks), Some(issuer)) => Ok((jwks, issuer)),
        (None, None) => Err(JwtSetupError::Missing("MCP_AUTH_JWKS_URL and MCP_AUTH_ISSUER")),
        (None, _) => Err(JwtSetupError::Missing("MCP_AUTH_JWKS_URL")),
        (_, None) => Err(JwtSetupError::Missing("MCP_AUTH_ISSUER")),
    }
}

/// Builds the endpoint for a server bound at `bound`, fetching the JWKS once
/// (a failure is logged; tokens fail until a later refresh succeeds) and
/// refreshing it until `stop`.
pub async fn start(
    args: &JwtArgs,
    host: &str,
    bound: SocketAddr,
    mcp_path: &str,
    audit: AuditLog,
    failed_auth: Arc<FailedAuth>,
    stop: CancellationToken,
) -> Result<JwtEndpoint, JwtSetupError> {
    let (jwks_url, issuer) = check_settings(args)?;
    let resource = match &args.resource_url {
        Some(url) => url.clone(),
        None => derived_resource(host, bound.port(), mcp_path)?,
    };
    let audience = args
        .audience
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| resource_metadata::canonical(&resource));
    let jwks = JwksCache::new(jwks_url.clone(), Duration::from_millis(args.jwks_min_refetch_ms))?;
    match jwks.refresh().await {
        Ok(keys) => tracing::info!(keys, url = %jwks_url, "JWKS loaded"),
        Err(e) => tracing::warn!("{e}; tokens are refused until the JWKS can be fetched"),
    }
    jwks.spawn_refresher(Duration::from_secs(args.jwks_refresh_secs), stop);
    let verifier = JwtVerifier::new(
        jwks,
        JwtRules {
            issuer: issuer.to_owned(),
            audience: audience.clone(),
            leeway: Duration::from_secs(args.leeway_secs),
        },
    );
    let mut scopes = args.required_scopes.0.clone();
    if !args.admin_scope.is_empty() && !scopes.contains(&args.admin_scope) {
        scopes.push(args.admin_scope.clone());
    }
    let metadata = ProtectedResource::new(&resource, issuer, scopes);
    tracing::info!(resource = %metadata.resource, %audience, %issuer, "JWT authentication on");
    Ok(JwtEndpoint {
        auth: Arc::new(BearerAuth {
            verifier,
            required_scopes: args.required_scopes.0.clone(),
            metadata_url: resource_metadata::metadata_url(&resource),
            audit,
            failed_auth,
        }),
        metadata: Arc::new(metadata),
        resource,
    })
}

/// `http://MCP_HOST:port/path`, for servers without MCP_AUTH_RESOURCE_URL.
fn derived_resource(host: &str, port: u16, path: &str) -> Result<Url, JwtSetupError> {
    let unusable = || JwtSetupError::ResourceUrl {
        host: host.to_owned(),
        port,
    };
    let ip = host.parse::<std::net::IpAddr>().ok();
    if ip.is_some_and(|ip| ip.is_unspecified()) {
        tracing::warn!(
            "MCP_HOST {host} is not a name clients use; set MCP_AUTH_RESOURCE_URL to this server's public URL"
        );
    }
    let authority = match ip {
        Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    format!("http://{authority}{path}").parse().map_err(|_| unusable())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FrontendConfig;
    use clap::Parser;

    fn args(extra: &[&str]) -> JwtArgs {
        FrontendConfig::try_parse_from(std::iter::once("dynamic-mcp").chain(extra.iter().copied()))
            .unwrap()
            .jwt
    }

    #[test]
    fn jwt_mode_names_the_missing_settings() {
        let err = check_settings(&args(&["--auth-mode=jwt"])).unwrap_err().to_string();
        assert!(
            err.starts_with("MCP_AUTH_MODE=jwt needs MCP_AUTH_JWKS_URL and MCP_AUTH_ISSUER"),
            "{err}"
        );
        let err = check_settings(&args(&["--auth-mode=jwt", "--auth-issuer=https://as"]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("MCP_AUTH_MODE=jwt needs MCP_AUTH_JWKS_URL:"), "{err}");
        assert!(check_settings(&args(&["--auth-jwks-url=https://as/jwks", "--auth-issuer=https://as"])).is_ok());
    }

    #[test]
    fn the_resource_url_is_derived_from_the_listen_address() {
        assert_eq!(
            derived_resource("127.0.0.1", 8788, "/mcp").unwrap().as_str(),
            "http://127.0.0.1:8788/mcp"
        );
        assert_eq!(
            derived_resource("::1", 9, "/mcp").unwrap().as_str(),
            "http://[::1]:9/mcp"
        );
        assert!(derived_resource("bad host", 1, "/mcp").is_err());
    }
}
