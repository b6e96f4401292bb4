//! npm dependencies, installed once per (image, dependency set) into a
//! content-addressed cache that runs mount read-only.
//!
//! The cache is ONE Docker volume with a directory per set
//! (`/deps/<key>/node_modules`), not a volume per set: a session's container
//! is started before it learns which sets its run_js calls need, and Docker
//! (20.10) can neither add a mount to a running container nor mount a part
//! of a volume. Installs of the same key are single-flighted; a set's
//! directory appears only when complete (see install.sh).

mod install;
mod key;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use dynamic_mcp_proto::v1::Dependency;

pub use self::install::InstallSettings;
pub use self::key::DepsKey;
use crate::container::hardening::DEPS_DIR;
use crate::container::lease::Lease;
use crate::container::source::ContainerSource;
use crate::container::{ContainerSpec, Role, labels};
use crate::docker::{Engine, call_failed, is_not_found};
use crate::error::ExecError;

/// A dependency set that is ready to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub key: DepsKey,
    /// True when this call downloaded nothing.
    pub cached: bool,
    pub took: Duration,
}

pub struct DepsCache {
    engine: Arc<Engine>,
    source: Arc<dyn ContainerSource>,
    settings: InstallSettings,
    state: tokio::sync::Mutex<CacheState>,
    /// One lock per key being installed: the single flight.
    installing: Mutex<HashMap<DepsKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// What we know about the volume. It is only valid for the volume we saw:
/// if someone removes and re-creates it, everything is learnt again.
#[derive(Debug, Default)]
struct CacheState {
    /// The volume's `dynamic-mcp.cache-id` label, set when it is created.
    /// (Docker's CreatedAt of a local volume is its directory's mtime: it
    /// changes with every install, so it cannot tell volumes apart.)
    volume_id: Option<String>,
    writable: bool,
    ready: HashSet<DepsKey>,
}

/// A random label on the cache volume, to notice a re-created one.
const CACHE_ID_LABEL: &str = "dynamic-mcp.cache-id";

impl DepsCache {
    pub fn new(engine: Arc<Engine>, source: Arc<dyn ContainerSource>, settings: InstallSettings) -> Self {
        Self {
            engine,
            source,
            settings,
            state: tokio::sync::Mutex::default(),
            installing: Mutex::default(),
        }
    }

    /// The cache volume's name, for the containers that mount it.
    pub fn volume(&self) -> &str {
        &self.settings.volume
    }

    /// Makes sure the cache volume exists, so a container can mount it.
    pub async fn ensure_volume(&self) -> Result<(), ExecError> {
        let docker = self.engine.docker().await?;
        let mut state = self.state.lock().await;
        self.sync_volume(docker, &mut state).await
    }

    /// Installs `dependencies` for `image` unless the set is cached already.
    /// `None` when there are none. Dropping the future stops the install and
    /// removes its container; nothing half-installed is ever used.
    pub async fn ensure(&self, image: &str, dependencies: &[Dependency]) -> Result<Option<Prepared>, ExecError> {
        if dependencies.is_empty() {
            return Ok(None);
        }
        let began = Instant::now();
        let docker = self.engine.docker().await?;
        let key = DepsKey::new(
            &image_id(docker, image).await?,
            self.settings.registry.as_deref(),
            dependencies,
        );
        let prepared = |cached| {
            Ok(Some(Prepared {
                key: key.clone(),
                cached,
                took: began.elapsed(),
            }))
        };
        if self.is_ready(docker, &key).await? {
            return prepared(true);
        }

        let flight = self.flight(&key);
        let present = async {
            let _one_at_a_time = flight.lock.lock().await;
            // Whoever held the lock before us may have installed it.
            if self.state.lock().await.ready.contains(&key) {
                return Ok(true);
            }
            self.make_writable(docker, image).await?;
            tracing::info!(key = %key, image, count = dependencies.len(), "installing npm dependencies");
            let present = install::install(
                self.source.as_ref(),
                &self.settings,
                image,
                &key,
                key::manifest(dependencies),
            )
            .await?;
            self.state.lock().await.ready.insert(key.clone());
            tracing::info!(key = %key, present, took_ms = began.elapsed().as_millis(), "npm dependencies ready");
            Ok::<_, ExecError>(present)
        }
        .await?;
        prepared(present)
    }

    async fn is_ready(&self, docker: &Docker, key: &DepsKey) -> Result<bool, ExecError> {
        let mut state = self.state.lock().await;
        self.sync_volume(docker, &mut state).await?;
        Ok(state.ready.contains(key))
    }

    /// Creates the volume if it is missing, and forgets what we knew if it
    /// is not the volume we saw before.
    async fn sync_volume(&self, docker: &Docker, state: &mut CacheState) -> Result<(), ExecError> {
        let name = &self.settings.volume;
        let volume = match docker.inspect_volume(name).await {
            Ok(volume) => volume,
            Err(e) if is_not_found(&e) => {
                let request = VolumeCreateRequest {
                    name: Some(name.clone()),
                    labels: Some(HashMap::from([
                        (labels::MANAGED.to_owned(), "true".to_owned()),
                        (labels::ROLE.to_owned(), "deps".to_owned()),
                        (CACHE_ID_LABEL.to_owned(), uuid::Uuid::new_v4().to_string()),
                    ])),
                    ..Default::default()
                };
                let volume = docker
                    .create_volume(request)
                    .await
                    .map_err(|e| call_failed("create the dependency cache volume", e))?;
                tracing::info!(volume = %name, "created the dependency cache volume");
                volume
            }
            Err(e) => return Err(call_failed("inspect the dependency cache volume", e)),
        };
        let volume_id = Some(volume.labels.get(CACHE_ID_LABEL).cloned().unwrap_or_default());
        if state.volume_id != volume_id {
            *state = CacheState {
                volume_id,
                ..CacheState::default()
            };
        }
        Ok(())
    }

    /// Docker creates a volume owned by root; one setup container (root
    /// without capabilities, no network) opens it to the sandbox user.
    async fn make_writable(&self, docker: &Docker, image: &str) -> Result<(), ExecError> {
        let mut state = self.state.lock().await;
        self.sync_volume(docker, &mut state).await?;
        if state.writable {
            return Ok(());
        }
        let mut spec = ContainerSpec::new(
            Role::DepsSetup,
            image,
            ["chmod", "1777", DEPS_DIR].map(String::from).to_vec(),
        );
        spec.deps_volume = Some(self.settings.volume.clone());
        let Lease { container, .. } = self.source.acquire(&spec).await?;
        match container.wait_exit().await? {
            0 => {
                state.writable = true;
                Ok(())
            }
            code => Err(ExecError::Internal(format!(
                "cannot prepare the dependency cache volume '{}': `chmod` in image '{image}' exited with code {code}",
                self.settings.volume
            ))),
        }
    }

    fn flight(&self, key: &DepsKey) -> Flight<'_> {
        let mut installing = self.installing.lock().unwrap_or_else(|e| e.into_inner());
        Flight {
            cache: self,
            key: key.clone(),
            lock: Arc::clone(installing.entry(key.clone()).or_default()),
        }
    }
}

/// A caller's place in a key's single flight. The key's lock is forgotten
/// when the last caller leaves, however it leaves (done, failed, dropped).
struct Flight<'a> {
    cache: &'a DepsCache,
    key: DepsKey,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut installing = self.cache.installing.lock().unwrap_or_else(|e| e.into_inner());
        // Clones are only made under the map's lock, so the count cannot grow
        // meanwhile: 2 means the map's and ours.
        if Arc::strong_count(&self.lock) == 2 {
            installing.remove(&self.key);
        }
    }
}

/// Keys use the image's id, so a tag that now names another image gets its
/// own sets.
async fn image_id(docker: &Docker, image: &str) -> Result<String, ExecError> {
    match docker.inspect_image(image).await {
        Ok(inspected) => Ok(inspected.id.unwrap_or_else(|| image.to_owned())),
        Err(e) if is_not_found(&e) => Err(ExecError::ImageMissing {
            image: image.to_owned(),
        }),
        Err(e) => Err(call_failed("inspect an image", e)),
    }
}
