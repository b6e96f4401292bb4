//! "One command runs it locally": the registry and the executor, when no URL
//! is configured for them, run as children of this process on Unix sockets in
//! a private directory.
//!
//! Each child gets a piped stdin that we hold open and `MCP_EXIT_WITH_PARENT`,
//! so it exits when that pipe closes — also when we are killed with SIGKILL.
//! Even these private children demand credentials: we generate a random
//! internal token, write it owner-only into the private directory and pass
//! its path (never the value) as MCP_INTERNAL_TOKEN_FILE. Secrets of ours
//! that the children do not need (the admin token) are kept from them.
//! Its stdout goes to our stderr, because in stdio mode our stdout carries MCP
//! frames. Children run in their own process group, so a terminal's Ctrl-C
//! reaches only us and we stop them in order.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dynamic_mcp_common::addr::ServiceUrl;
use dynamic_mcp_common::backoff::Backoff;
use dynamic_mcp_common::internal_auth::{InternalAuth, InternalAuthError, InternalToken};
use rand::RngCore;
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::admin_token;
use crate::links::{HealthOf, Service, ServiceLink, check_health, health_client};

/// How long a starting service may take to answer its health check.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a stopping service may take to exit after its stdin closes.
const STOP_WITHIN: Duration = Duration::from_secs(5);
const MIN_RESTART_DELAY: Duration = Duration::from_millis(500);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A child that ran this long before dying is restarted without delay growth.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Settings of ours a child must not inherit: its own come from us.
const NOT_INHERITED: &[&str] = &[
    admin_token::ENV,
    "MCP_ADMIN_TOKEN_FILE",
    "MCP_INTERNAL_TLS_CERT",
    "MCP_INTERNAL_TLS_KEY",
    "MCP_INTERNAL_TLS_CA",
];
const TOKEN_FILE_ENV: &str = "MCP_INTERNAL_TOKEN_FILE";

#[derive(Debug, thiserror::Error)]
pub enum LocalServiceError {
    #[error("cannot create a private directory for the local services' sockets: {0}")]
    PrivateDir(io::Error),
    #[error("cannot write the local services' internal token: {0}")]
    TokenFile(io::Error),
    #[error(transparent)]
    Credentials(#[from] InternalAuthError),
    #[error(
        "cannot start {binary} (looked next to this executable, then on PATH): {source}; \
         build it with `cargo build --bins`, or set {url_env} to a running {service}"
    )]
    Spawn {
        binary: &'static str,
        url_env: &'static str,
        service: Service,
        source: io::Error,
    },
    #[error("{binary} exited while starting ({status}); its log lines above say why")]
    ExitedEarly { binary: &'static str, status: String },
    #[error(
        "{binary} did not pass its health check within {} s (last: {last}); its log lines above say why",
        READY_WITHIN.as_secs()
    )]
    NotReady { binary: &'static str, last: String },
}

/// The children this process started; stop them with [`LocalServices::shutdown`].
pub struct LocalServices {
    supervisors: Vec<JoinHandle<()>>,
    stop: CancellationToken,
    /// Holds the sockets; removed when this is dropped.
    _private_dir: Option<tempfile::TempDir>,
}

/// Where the frontend finds the registry and its executors (at least one),
/// and how it proves itself to them.
pub struct ServiceLinks {
    pub registry: ServiceLink,
    pub executors: Vec<ServiceLink>,
}

impl LocalServices {
    /// Starts the registry when its URL is `None`, and an executor when no
    /// executor URL is given, and waits until they are healthy. Services at
    /// a configured URL get `remote_auth`; local ones a fresh token.
    pub async fn start(
        registry_url: Option<ServiceUrl>,
        executor_urls: &[ServiceUrl],
        remote_auth: &InternalAuth,
    ) -> Result<(Self, ServiceLinks), LocalServiceError> {
        let private_dir = (registry_url.is_none() || executor_urls.is_empty())
            .then(private_dir)
            .transpose()
            .map_err(LocalServiceError::PrivateDir)?;
        let local = match &private_dir {
            Some(dir) => LocalCredentials::create(dir.path())?,
            None => LocalCredentials::none(),
        };
        let dir = private_dir.as_ref().map(|d| d.path().to_owned()).unwrap_or_default();
        let (registry_link, registry) = plan(registry_url, Service::Registry, &dir, &local, remote_auth);
        let (executor_links, executor) = match executor_urls {
            [] => {
                let (link, spec) = plan(None, Service::Executor, &dir, &local, remote_auth);
                (vec![link], spec)
            }
            urls => {
                let links = urls
                    .iter()
                    .map(|url| plan(Some(url.clone()), Service::Executor, &dir, &local, remote_auth).0);
                (links.collect(), None)
            }
        };
        let (registry_child, executor_child) = tokio::try_join!(start_ready(&registry), start_ready(&executor))?;

        let urls = ServiceLinks {
            registry: registry_link,
            executors: executor_links,
        };
        let stop = CancellationToken::new();
        let supervisors = [registry.zip(registry_child), executor.zip(executor_child)]
            .into_iter()
            .flatten()
            .map(|(spec, child)| tokio::spawn(supervise(spec, child, stop.clone())))
            .collect();
        let services = Self {
            supervisors,
            stop,
            _private_dir: private_dir,
        };
        Ok((services, urls))
    }

    /// Closes each child's stdin, waits up to a few seconds, then kills it.
    pub async fn shutdown(self) {
        self.stop.cancel();
        futures::future::join_all(self.supervisors).await;
    }
}

/// The link to use for `service`, and how to start it when it is ours to run.
fn plan(
    url: Option<ServiceUrl>,
    service: Service,
    private_dir: &Path,
    local: &LocalCredentials,
    remote_auth: &InternalAuth,
) -> (ServiceLink, Option<ChildSpec>) {
    match url {
        Some(url) => (
            ServiceLink {
                url,
                auth: remote_auth.clone(),
            },
            None,
        ),
        None => {
            let spec = ChildSpec::new(service, private_dir, local.clone());
            (spec.link(), Some(spec))
        }
    }
}

/// The token local children demand, and the file they read it from (none
/// when every service runs elsewhere).
#[derive(Debug, Clone)]
struct LocalCredentials {
    token_file: Option<PathBuf>,
    auth: InternalAuth,
}

impl LocalCredentials {
    /// A random token in an owner-only file in `dir`.
    fn create(dir: &Path) -> Result<Self, LocalServiceError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join("internal.token");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(token.as_bytes()))
            .map_err(LocalServiceError::TokenFile)?;
        Ok(Self {
            token_file: Some(path),
            auth: InternalAuth::with_token(InternalToken::new(&token)?),
        })
    }

    fn none() -> Self {
        Self {
            token_file: None,
            auth: InternalAuth::default(),
        }
    }
}

fn private_dir() -> io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("dynamic-mcp-").tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// How to start one service.
struct ChildSpec {
    service: Service,
    program: PathBuf,
    socket: PathBuf,
    credentials: LocalCredentials,
}

impl ChildSpec {
    fn new(service: Service, dir: &Path, credentials: LocalCredentials) -> Self {
        Self {
            service,
            program: locate(service.binary()),
            socket: dir.join(format!("{service}.sock")),
            credentials,
        }
    }

    fn link(&self) -> ServiceLink {
        ServiceLink {
            url: ServiceUrl::Unix(self.socket.clone()),
            auth: self.credentials.auth.clone(),
        }
    }

    fn listen_env(&self) -> &'static str {
        match self.service {
            Service::Registry => "MCP_REGISTRY_LISTEN",
            Service::Executor => "MCP_EXECUTOR_LISTEN",
        }
    }

    fn url_env(&self) -> &'static str {
        match self.service {
            Service::Registry => "MCP_REGISTRY_URL",
            Service::Executor => "MCP_EXECUTOR_URL",
        }
    }

    fn spawn(&self) -> Result<RunningChild, LocalServiceError> {
        let spawn_err = |source| LocalServiceError::Spawn {
            binary: self.service.binary(),
            url_env: self.url_env(),
            service: self.service,
            source,
        };
        let stdout_to_our_stderr = io::stderr().as_fd().try_clone_to_owned().map_err(spawn_err)?;
        let mut command = Command::new(&self.program);
        for key in NOT_INHERITED {
            command.env_remove(key);
        }
        match &self.credentials.token_file {
            Some(path) => command.env(TOKEN_FILE_ENV, path),
            None => command.env_remove(TOKEN_FILE_ENV),
        };
        let mut process = command
            .env(self.listen_env(), format!("unix:{}", self.socket.display()))
            .env("MCP_EXIT_WITH_PARENT", "true")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(stdout_to_our_stderr))
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        tracing::info!(service = %self.service, pid = process.id(), socket = %self.socket.display(), "started local service");
        // `Child::wait` would close a stdin it still holds, so we keep it apart.
        let stdin = process.stdin.take();
        Ok(RunningChild { process, stdin })
    }
}

/// A started child and the write end of its stdin, held open while it runs.
#[derive(Debug)]
struct RunningChild {
    process: Child,
    stdin: Option<ChildStdin>,
}

/// The sibling binary next to our own executable, else the bare name for PATH.
fn locate(binary: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(binary)))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(binary))
}

async fn start_ready(spec: &Option<ChildSpec>) -> Result<Option<RunningChild>, LocalServiceError> {
    let Some(spec) = spec else { return Ok(None) };
    let mut child = spec.spawn()?;
    wait_ready(spec, &mut child).await?;
    tracing::info!(service = %spec.service, "local service is ready");
    Ok(Some(child))
}

async fn wait_ready(spec: &ChildSpec, child: &mut RunningChild) -> Result<(), LocalServiceError> {
    let binary = spec.service.binary();
    let health = health_client(&spec.link())?;
    let started = Instant::now();
    loop {
        tokio::select! {
            status = child.process.wait() => {
                return Err(LocalServiceError::ExitedEarly { binary, status: describe(status) });
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        // The process, not its readiness: an executor without Docker still
        // starts (and says NOT_SERVING for its service until Docker is back).
        match check_health(health.clone(), HealthOf::Process, Duration::from_secs(1)).await {
            Ok(()) => return Ok(()),
            Err(last) if started.elapsed() >= READY_WITHIN => {
                return Err(LocalServiceError::NotReady { binary, last });
            }
            Err(_) => {}
        }
    }
}

fn describe(status: io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("exit status unknown: {e}"),
    }
}

/// Keeps one child running until `stop`: restarts it with backoff when it dies.
async fn supervise(spec: ChildSpec, first: RunningChild, stop: CancellationToken) {
    let binary = spec.service.binary();
    let mut next = Some(first);
    let mut backoff = Backoff::new(MIN_RESTART_DELAY, MAX_RESTART_DELAY);
    loop {
        let failure = match next.take().map_or_else(|| spec.spawn(), Ok) {
            Ok(mut child) => {
                let started = Instant::now();
                let status = tokio::select! {
                    status = child.process.wait() => status,
                    () = stop.cancelled() => return stop_child(binary, child).await,
                };
                if started.elapsed() >= HEALTHY_RUN {
                    backoff.reset();
                }
                format!("{binary} exited unexpectedly ({})", describe(status))
            }
            Err(e) => format!("cannot restart {binary}: {e}"),
        };
        let delay = backoff.next_wait();
        tracing::error!("{failure}; restarting it in {} ms", delay.as_millis());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn stop_child(binary: &str, mut child: RunningChild) {
    // Closing stdin is the child's signal to shut down gracefully.
    drop(child.stdin.take());
    match tokio::time::timeout(STOP_WITHIN, child.process.wait()).await {
        Ok(status) => tracing::info!(status = %describe(status), "{binary} stopped"),
        Err(_) => {
            tracing::warn!("{binary} did not stop within {} s; killing it", STOP_WITHIN.as_secs());
            if let Err(e) = child.process.kill().await {
                tracing::error!("cannot kill {binary}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_siblings_or_falls_back_to_path() {
        assert_eq!(
            locate("no-such-dynamic-mcp-binary"),
            PathBuf::from("no-such-dynamic-mcp-binary")
        );
        let own_name = std::env::current_exe().unwrap();
        let own_name = own_name.file_name().unwrap().to_str().unwrap();
        assert!(locate(own_name).is_absolute());
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_clear_error() {
        let dir = private_dir().unwrap();
        let spec = ChildSpec {
            service: Service::Registry,
            program: dir.path().join("absent"),
            socket: dir.path().join("registry.sock"),
            credentials: LocalCredentials::none(),
        };
        let err = spec.spawn().unwrap_err().to_string();
        assert!(
            err.contains("dynamic-mcp-registry") && err.contains("MCP_REGISTRY_URL"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_child_that_exits_while_starting_is_reported_with_its_status() {
        let dir = private_dir().unwrap();
        let spec = ChildSpec {
            service: Service::Executor,
            program: "false".into(),
            socket: dir.path().join("executor.sock"),
            credentials: LocalCredentials::none(),
        };
        let mut child = spec.spawn().unwrap();
        let err = wait_ready(&spec, &mut child).await.unwrap_err().to_string();
        assert!(
            err.contains("dynamic-mcp-executor exited while starting (exit status: 1)"),
            "{err}"
        );
    }

    #[test]
    fn local_credentials_are_a_random_owner_only_token_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir().unwrap();
        let credentials = LocalCredentials::create(dir.path()).unwrap();
        let path = credentials.token_file.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let token = std::fs::read_to_string(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert!(credentials.auth.token.is_some());
        let other = private_dir().unwrap();
        let again = std::fs::read_to_string(LocalCredentials::create(other.path()).unwrap().token_file.unwrap());
        assert_ne!(again.unwrap(), token);
    }

    #[tokio::test]
    async fn children_get_the_token_file_but_not_our_secrets() {
        let dir = private_dir().unwrap();
        let credentials = LocalCredentials::create(dir.path()).unwrap();
        let env_dump = dir.path().join("env");
        let script = dir.path().join("print-env");
        std::fs::write(&script, format!("#!/bin/sh\nenv > {}\n", env_dump.display())).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let spec = ChildSpec {
            service: Service::Registry,
            program: script,
            socket: dir.path().join("registry.sock"),
            credentials: credentials.clone(),
        };
        let mut child = spec.spawn().unwrap();
        child.process.wait().await.unwrap();
        let env = std::fs::read_to_string(&env_dump).unwrap();
        let expected = format!("MCP_INTERNAL_TOKEN_FILE={}", credentials.token_file.unwrap().display());
        assert!(env.lines().any(|l| l == expected), "{env}");
        assert!(!env.contains("MCP_ADMIN_TOKEN"), "{env}");
    }

    #[test]
    fn the_private_dir_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir().unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
