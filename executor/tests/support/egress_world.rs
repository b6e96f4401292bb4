//! The outside world of the egress tests, without the internet: a Docker
//! network of the test's own with two web servers in containers (Node from
//! the sandbox image, `egress_server.mjs`), HTTPS certificates from a CA of
//! the test's own, and the executor settings that point the proxy at them.
//!
//! - `api.allowed.test` and `other.allowed.test` are the first server;
//!   `evil.forbidden.test` is the second.
//! - `rebind.allowed.test` resolves to 127.0.0.1 and `metadata.allowed.test`
//!   to 169.254.169.254: names that turn into internal addresses.
//!
//! Names reach the proxy through MCP_SANDBOX_EGRESS_RESOLVE (there is no
//! DNS for them); the network's subnet is allowed with
//! MCP_SANDBOX_EGRESS_ALLOWED_NETWORKS, as it is private and the host's own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::support::{IMAGE, wait_for};

pub const ALLOWED: &str = "api.allowed.test";
pub const OTHER: &str = "other.allowed.test";
pub const FORBIDDEN: &str = "evil.forbidden.test";
pub const REBIND: &str = "rebind.allowed.test";
pub const METADATA: &str = "metadata.allowed.test";

/// The operator's ceiling in these tests.
pub const CEILING: &str = "*.allowed.test,*.allowed.test:8443,evil.forbidden.test";

pub struct World {
    docker: Docker,
    network: String,
    pub subnet: String,
    /// The first server (ALLOWED, OTHER) and the second (FORBIDDEN).
    pub allowed: Server,
    pub forbidden: Server,
    /// The test CA, in PEM and as a file.
    pub ca_pem: String,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

pub struct Server {
    pub id: String,
    pub ip: String,
}

impl World {
    pub async fn start(docker: &Docker) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (ca_pem, cert_pem, key_pem) = certificates();
        let ca_file = dir.path().join("test-ca.pem");
        std::fs::write(&ca_file, &ca_pem).expect("the CA file is written");

        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let network = format!("dynamic-mcp-egress-test-{suffix}");
        docker
            .create_network(NetworkCreateRequest {
                name: network.clone(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([("dynamic-mcp.test".into(), "egress".into())])),
                ..Default::default()
            })
            .await
            .expect("the test network is created");
        let inspected = docker
            .inspect_network(&network, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
            .expect("the test network can be inspected");
        let subnet = inspected
            .ipam
            .and_then(|ipam| ipam.config)
            .and_then(|config| config.into_iter().find_map(|c| c.subnet))
            .expect("the test network has a subnet");

        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/egress_server.mjs");
        let mut world = Self {
            docker: docker.clone(),
            allowed: Server {
                id: String::new(),
                ip: String::new(),
            },
            forbidden: Server {
                id: String::new(),
                ip: String::new(),
            },
            network,
            subnet,
            ca_pem,
            ca_file,
            _dir: dir,
        };
        world.allowed = world.server("allowed", &script, &cert_pem, &key_pem, suffix).await;
        world.forbidden = world.server("forbidden", &script, &cert_pem, &key_pem, suffix).await;
        world
    }

    async fn server(&self, role: &str, script: &Path, cert: &str, key: &str, suffix: &str) -> Server {
        let name = format!("dynamic-mcp-egress-{role}-{suffix}");
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            entrypoint: Some(vec!["node".into()]),
            cmd: Some(vec!["/server.mjs".into()]),
            user: Some("0:0".into()),
            env: Some(vec![format!("TLS_CERT={cert}"), format!("TLS_KEY={key}")]),
            labels: Some(HashMap::from([("dynamic-mcp.test".into(), "egress".into())])),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{}:/server.mjs:ro", script.display())]),
                network_mode: Some(self.network.clone()),
                init: Some(true),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(self.network.clone(), EndpointSettings::default())])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let id = self
            .docker
            .create_container(Some(options), body)
            .await
            .expect("a test server is created")
            .id;
        self.docker
            .start_container(&id, None)
            .await
            .expect("a test server starts");
        let ready = wait_for(Duration::from_secs(20), || async {
            self.log_lines(&id).await.iter().any(|line| line["ready"] == true)
        })
        .await;
        assert!(
            ready,
            "the test server {name} did not start: {:?}",
            self.log_lines(&id).await
        );
        let ip = self
            .docker
            .inspect_container(&id, None)
            .await
            .expect("a test server can be inspected")
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.get(&self.network).and_then(|e| e.ip_address.clone()))
            .expect("a test server has an address");
        Server { id, ip }
    }

    /// The settings that let an executor's proxy reach this world.
    pub fn executor_env(&self) -> Vec<(&'static str, String)> {
        let pins = format!(
            "{ALLOWED}={a},{OTHER}={a},{FORBIDDEN}={f},{REBIND}=127.0.0.1,{METADATA}=169.254.169.254",
            a = self.allowed.ip,
            f = self.forbidden.ip
        );
        vec![
            ("MCP_SANDBOX_EGRESS_ALLOWED_HOSTS", CEILING.into()),
            ("MCP_SANDBOX_EGRESS_ALLOWED_NETWORKS", self.subnet.clone()),
            ("MCP_SANDBOX_EGRESS_RESOLVE", pins),
            (
                "MCP_SANDBOX_EGRESS_UPSTREAM_CA_FILE",
                self.ca_file.display().to_string(),
            ),
        ]
    }

    /// Every request `server` received so far.
    pub async fn received(&self, server: &Server) -> Vec<serde_json::Value> {
        self.log_lines(&server.id)
            .await
            .into_iter()
            .filter(|line| line.get("ready").is_none())
            .collect()
    }

    async fn log_lines(&self, id: &str) -> Vec<serde_json::Value> {
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
        let mut logs = self.docker.logs(id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Synchronous on purpose: the test's runtime may be gone already.
        let ids = [self.allowed.id.as_str(), self.forbidden.id.as_str()];
        let ids: Vec<&str> = ids.into_iter().filter(|id| !id.is_empty()).collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

/// A CA, and a server certificate for every test name, signed by it.
fn certificates() -> (String, String, String) {
    let named = |name: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = named("dynamic-mcp egress test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, ca_key);
    let names: Vec<String> = [ALLOWED, OTHER, FORBIDDEN, REBIND, METADATA]
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    let mut leaf = CertificateParams::new(names).unwrap();
    leaf.distinguished_name = named(ALLOWED);
    leaf.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}
