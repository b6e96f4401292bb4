//! RFC 9728 OAuth Protected Resource Metadata: where clients learn which
//! authorization server issues tokens for this MCP server. Served without
//! authentication at `/.well-known/oauth-protected-resource` and at the
//! path-inserted form (`/.well-known/oauth-protected-resource/mcp`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use url::Url;

pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedResource {
    pub resource: String,
    pub authorization_servers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    pub bearer_methods_supported: Vec<&'static str>,
    pub resource_name: &'static str,
}

impl ProtectedResource {
    pub fn new(resource: &Url, issuer: &str, scopes: Vec<String>) -> Self {
        Self {
            resource: canonical(resource),
            authorization_servers: vec![issuer.to_owned()],
            scopes_supported: scopes,
            bearer_methods_supported: vec!["header"],
            resource_name: "dynamic-mcp",
        }
    }
}

/// The resource URI without a trailing slash, as the spec wants it.
pub fn canonical(resource: &Url) -> String {
    resource.as_str().trim_end_matches('/').to_owned()
}

/// Where the metadata of `resource` lives: the well-known path inserted
/// between the origin and the resource's path.
pub fn metadata_url(resource: &Url) -> String {
    let path = resource.path().trim_end_matches('/');
    format!("{}{WELL_KNOWN}{path}", resource.origin().ascii_serialization())
}

/// The local paths to serve the metadata at: the root form, the form for
/// this server's MCP path, and the one the resource URL implies (which
/// differs behind a proxy that adds a prefix).
pub fn routes(mcp_path: &str, resource: &Url) -> Vec<String> {
    let mut routes = vec![WELL_KNOWN.to_owned(), format!("{WELL_KNOWN}{mcp_path}")];
    let implied = format!("{WELL_KNOWN}{}", resource.path().trim_end_matches('/'));
    if !routes.contains(&implied) {
        routes.push(implied);
    }
    routes
}

pub async fn serve(State(metadata): State<Arc<ProtectedResource>>) -> Json<ProtectedResource> {
    Json((*metadata).clone())
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn the_document_is_served_at_every_route() {
        let resource: Url = "https://example.com/tools/mcp".parse().unwrap();
        let doc = Arc::new(ProtectedResource::new(
            &resource,
            "https://auth.example.com",
            Vec::new(),
        ));
        let paths = routes("/mcp", &resource);
        let app = paths
            .iter()
            .fold(Router::new(), |app, path| app.route(path, get(serve)))
            .with_state(Arc::clone(&doc));
        for path in &paths {
            let request = Request::get(path.as_str()).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(served, serde_json::to_value(&*doc).unwrap(), "{path}");
            assert!(
                served.get("scopes_supported").is_none(),
                "no scopes, no field: {served}"
            );
        }
    }

    #[test]
    fn the_metadata_url_inserts_the_well_known_path() {
        let resource: Url = "https://mcp.example.com/mcp".parse().unwrap();
        assert_eq!(
            metadata_url(&resource),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        let root: Url = "http://127.0.0.1:8788/".parse().unwrap();
        assert_eq!(
            metadata_url(&root),
            "http://127.0.0.1:8788/.well-known/oauth-protected-resource"
        );
        assert_eq!(canonical(&root), "http://127.0.0.1:8788");
    }

    #[test]
    fn routes_cover_the_root_the_mcp_path_and_a_proxy_prefix() {
        let behind_proxy: Url = "https://example.com/tools/mcp".parse().unwrap();
        assert_eq!(
            routes("/mcp", &behind_proxy),
            [
                "/.well-known/oauth-protected-resource",
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource/tools/mcp"
            ]
        );
        let direct: Url = "http://127.0.0.1:8788/mcp".parse().unwrap();
        assert_eq!(routes("/mcp", &direct).len(), 2);
    }

    #[test]
    fn the_document_has_the_rfc_9728_fields() {
        let resource: Url = "https://mcp.example.com/mcp".parse().unwrap();
        let doc = ProtectedResource::new(&resource, "https://auth.example.com", vec!["tools:call".into()]);
        assert_eq!(
            serde_json::to_value(doc).unwrap(),
            serde_json::json!({"resource": "https://mcp.example.com/mcp",
                "authorization_servers": ["https://auth.example.com"], "scopes_supported": ["tools:call"],
                "bearer_methods_supported": ["header"], "resource_name": "dynamic-mcp"})
        );
    }
}
