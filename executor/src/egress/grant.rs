//! One run's (or session's) egress, for as long as it lives: the proxy's
//! Unix socket, the harness's shim and its settings (and, for runs with
//! secrets, the interception CA) in the container's own egress directory
//! (`socket_dir.rs`), mounted read-only into that container only. The
//! container has no network interface but `lo`, so this socket is the only
//! way out, and another run's socket is not in it. Dropping the grant stops
//! the proxy, closes every connection of the run and removes the directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::proxy::serve_connection;
use super::rewrite::redact_text;
use super::run_proxy::RunProxy;
use crate::harness::Preload;
use crate::socket_dir::{Socket, SocketDir};

/// Where a run's egress directory is mounted in its container.
pub const CONTAINER_DIR: &str = "/run/dynamic-mcp-egress";
/// The shim the harness's child imports before the tool's code.
pub const SHIM: &str = include_str!("../harness/egress.mjs");
const SHIM_FILE: &str = "egress.mjs";
const SETTINGS_FILE: &str = "egress.json";
const CA_FILE: &str = "ca.pem";

/// A run's egress. Dropping it ends it (and its directory).
pub struct Grant {
    proxy: Arc<RunProxy>,
    accepting: JoinHandle<()>,
    _dir: SocketDir,
}

/// What the shim reads (`egress.json`); nothing in it is a secret's value.
#[derive(Serialize)]
struct ShimSettings<'a> {
    socket: String,
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    secrets: BTreeMap<&'a str, &'a str>,
}

impl Grant {
    /// Starts the proxy in `dir` (a container's, still empty) and writes
    /// what the shim reads next to its socket.
    pub(super) fn open(
        dir: SocketDir,
        ca_pem: Option<&str>,
        proxy: RunProxy,
        max_connections: usize,
    ) -> std::io::Result<Self> {
        let path = dir.path();
        let written = (|| {
            let listener = dir.listen(Socket::EgressProxy)?;
            let settings = ShimSettings {
                socket: format!("{CONTAINER_DIR}/{}", Socket::EgressProxy.file_name()),
                token: &proxy.token,
                ca: ca_pem.map(|_| format!("{CONTAINER_DIR}/{CA_FILE}")),
                secrets: proxy
                    .secrets
                    .iter()
                    .map(|s| (s.secret.name.as_str(), s.placeholder.as_str()))
                    .collect(),
            };
            write_readable(
                &path.join(SETTINGS_FILE),
                &serde_json::to_vec(&settings).unwrap_or_default(),
            )?;
            write_readable(&path.join(SHIM_FILE), SHIM.as_bytes())?;
            if let Some(pem) = ca_pem {
                write_readable(&path.join(CA_FILE), pem.as_bytes())?;
            }
            Ok::<_, std::io::Error>(listener)
        })();
        let proxy = Arc::new(proxy);
        let accepting = tokio::spawn(accept(written?, Arc::clone(&proxy), max_connections));
        Ok(Self {
            proxy,
            accepting,
            _dir: dir,
        })
    }

    /// What the harness's child imports before the tool's code: the shim,
    /// from the run's egress directory (it reads its settings beside it).
    pub fn preload() -> Preload {
        Preload {
            name: SHIM_FILE.into(),
            source: format!("import \"file://{CONTAINER_DIR}/{SHIM_FILE}\";\n"),
            options: None,
        }
    }

    /// For processes started in a session: Node loads the shim first.
    pub fn node_options() -> String {
        format!("NODE_OPTIONS=--import=file://{CONTAINER_DIR}/{SHIM_FILE}")
    }

    /// `text` with any secret value of this run replaced by its placeholder:
    /// values never enter the container, but nothing of one leaves either.
    pub fn scrub(&self, text: &mut String) {
        if let Some(redacted) = redact_text(text, &self.proxy.secrets) {
            *text = redacted;
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.proxy.stop.cancel();
        self.accepting.abort();
    }
}

fn write_readable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// Accepts the run's connections until it ends; past `max` at once, a
/// connection gets an answer saying so.
async fn accept(listener: UnixListener, proxy: Arc<RunProxy>, max: usize) {
    let open = Arc::new(Semaphore::new(max));
    loop {
        tokio::select! {
            () = proxy.stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let proxy = Arc::clone(&proxy);
                    match Arc::clone(&open).try_acquire_owned() {
                        Ok(permit) => tokio::spawn(async move {
                            serve_connection(stream, proxy, false).await;
                            drop(permit);
                        }),
                        Err(_) => tokio::spawn(serve_connection(stream, proxy, true)),
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the egress proxy cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}
