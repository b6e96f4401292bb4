//! The warm pool (opt-in, MCP_EXECUTOR_WARM_POOL_SIZE): run containers
//! started ahead of time, so a run skips create → attach → start and Node's
//! own start-up. Each is made exactly as a cold one (`ColdStart`, hence
//! `hardening.rs`): attached before start, then left with the harness
//! blocked on stdin, waiting for its envelope.
//!
//! - Single use: a container is handed out once and never comes back.
//! - Keyed by the whole spec but the tool label (image, deps volume or none,
//!   command); limits are the executor's, the same for all. Only keys that
//!   were asked for are kept warm (plus the default one, warmed at start).
//! - A hand-out refills in the background; with none ready, the run starts
//!   cold at once instead of waiting for the refill.
//! - Every pooled container holds a container-cap slot, so the cap bounds
//!   them too; a refill that finds the cap full is retried on the next tick.
//! - Idle containers older than the max age are recycled; `close` removes
//!   the rest at shutdown, and the reaper catches anything left.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};

use super::lease::Lease;
use super::source::{ColdStart, ContainerSource};
use super::{ContainerSpec, Role, labels};
use crate::error::ExecError;

/// How many containers to keep ready per key, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub size: usize,
    pub max_age: Duration,
}

/// Hands out pre-started run containers; everything else starts cold.
pub struct WarmPool {
    shared: Arc<Shared>,
}

struct Shared {
    cold: Arc<ColdStart>,
    settings: PoolSettings,
    keys: Mutex<HashMap<PoolKey, KeyState>>,
    closed: AtomicBool,
    /// Refill tasks not yet settled, across keys; `close` waits for them.
    in_flight: AtomicUsize,
}

/// How long `close` waits for refills under way before leaving what they
/// start to the reaper.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// A run container's spec without its tool label: what shapes the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey(ContainerSpec);

impl PoolKey {
    fn of(spec: &ContainerSpec) -> Self {
        let mut spec = spec.clone();
        spec.labels.retain(|(key, _)| *key != labels::TOOL);
        Self(spec)
    }
}

#[derive(Default)]
struct KeyState {
    ready: VecDeque<Warm>,
    /// Refills under way, so a burst of hand-outs does not overfill.
    starting: usize,
}

struct Warm {
    lease: Lease,
    started: Instant,
}

impl Warm {
    /// Still running and untouched: its output stream is open and silent
    /// (the harness writes nothing before its envelope arrives).
    fn is_pristine(&mut self) -> bool {
        self.lease.output.next().now_or_never().is_none()
    }
}

impl WarmPool {
    pub fn new(cold: Arc<ColdStart>, settings: PoolSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                cold,
                settings,
                keys: Mutex::default(),
                closed: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// Starts keeping `spec`'s key warm before anyone asks for it.
    pub fn warm(&self, spec: &ContainerSpec) {
        refill(&self.shared, PoolKey::of(spec));
    }

    /// Recycles containers past the max age and tops every key up again
    /// (refills the cap refused before), until the pool is closed.
    pub async fn keep_warm(&self) {
        let every = (self.shared.settings.max_age / 2).clamp(Duration::from_secs(1), Duration::from_secs(10));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.shared.closed.load(Ordering::Acquire) {
            ticks.tick().await;
            let (expired, keys) = {
                let mut keys = self.shared.lock();
                let max_age = self.shared.settings.max_age;
                let mut expired = Vec::new();
                for state in keys.values_mut() {
                    let (old, fresh): (VecDeque<Warm>, VecDeque<Warm>) =
                        state.ready.drain(..).partition(|w| w.started.elapsed() >= max_age);
                    state.ready = fresh;
                    expired.extend(old);
                }
                (expired, keys.keys().cloned().collect::<Vec<_>>())
            };
            if !expired.is_empty() {
                tracing::debug!(count = expired.len(), "recycling idle warm containers");
            }
            drop(expired);
            for key in keys {
                refill(&self.shared, key);
            }
        }
    }

    /// Stops refilling, removes every idle container, and waits for the
    /// refills under way (their containers are removed as they settle), so
    /// the reaper that follows sees everything.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let idle: Vec<Warm> = self.shared.lock().drain().flat_map(|(_, state)| state.ready).collect();
        // Removed before returning, not in the background: the process may exit next.
        futures::future::join_all(idle.iter().map(|warm| warm.lease.container.remove_now())).await;
        let settled = async {
            while self.shared.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(CLOSE_WAIT, settled).await.is_err() {
            tracing::warn!("warm pool refills still under way at shutdown; the reaper removes what they start");
        }
    }

    /// A ready, still pristine container for `key`, if there is one.
    fn take(&self, key: &PoolKey) -> Option<Lease> {
        let mut keys = self.shared.lock();
        let state = keys.entry(key.clone()).or_default();
        while let Some(mut warm) = state.ready.pop_front() {
            if warm.is_pristine() && warm.started.elapsed() < self.shared.settings.max_age {
                return Some(warm.lease);
            }
            tracing::debug!(container = %warm.lease.container.id(), "dropping a warm container that is stale or gone");
        }
        None
    }
}

#[async_trait]
impl ContainerSource for WarmPool {
    async fn acquire(&self, spec: &ContainerSpec) -> Result<Lease, ExecError> {
        if spec.role != Role::Run || self.shared.closed.load(Ordering::Acquire) {
            return self.shared.cold.acquire(spec).await;
        }
        let key = PoolKey::of(spec);
        let warm = self.take(&key);
        // On a miss the caller's cold start reserves its cap slot first, so
        // a refill can never take the last slot from under it.
        let lease = match warm {
            Some(lease) => Ok(lease),
            None => self.shared.cold.acquire(spec).await,
        };
        refill(&self.shared, key);
        lease
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, KeyState>> {
        // The map stays consistent even if a holder panicked: take it anyway.
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Books a finished refill: a started container joins the pool, unless
    /// the pool was closed meanwhile; then it is returned, to be removed.
    fn settle(&self, key: &PoolKey, started: Result<Lease, ExecError>) -> Option<Lease> {
        let mut keys = self.lock();
        let state = keys.get_mut(key).filter(|_| !self.closed.load(Ordering::Acquire));
        let Some(state) = state else { return started.ok() };
        state.starting = state.starting.saturating_sub(1);
        match started {
            Ok(lease) => state.ready.push_back(Warm {
                lease,
                started: Instant::now(),
            }),
            // Routine while the cap is full, or already reported (Docker down, an
            // image missing, both warned about at start); retried on the next tick.
            Err(e @ (ExecError::Busy { .. } | ExecError::DockerUnreachable(_) | ExecError::ImageMissing { .. })) => {
                tracing::debug!(error = %e, "cannot refill the warm pool now")
            }
            Err(e) => tracing::warn!(error = %e, "cannot refill the warm pool"),
        }
        None
    }
}

/// Starts as many containers as `key` lacks, each in the background.
fn refill(shared: &Arc<Shared>, key: PoolKey) {
    if shared.closed.load(Ordering::Acquire) {
        return;
    }
    let missing = {
        let mut keys = shared.lock();
        let state = keys.entry(key.clone()).or_default();
        let missing = shared.settings.size.saturating_sub(state.ready.len() + state.starting);
        state.starting += missing;
        missing
    };
    for _ in 0..missing {
        let shared = Arc::clone(shared);
        let key = key.clone();
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            let started = shared.cold.acquire(&key.0).await;
            if let Some(unwanted) = shared.settle(&key, started) {
                unwanted.container.remove_now().await;
            }
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_ignores_the_tool_but_not_what_shapes_the_container() {
        let spec = |tool: &str| ContainerSpec::new(Role::Run, "img:1", vec!["node".into()]).label(labels::TOOL, tool);
        assert_eq!(PoolKey::of(&spec("a.tool")), PoolKey::of(&spec("b.tool")));
        assert_eq!(PoolKey::of(&spec("a.tool")).0.labels, Vec::new());

        let mut with_deps = spec("a.tool");
        with_deps.deps_volume = Some("dynamic-mcp-deps".into());
        assert_ne!(PoolKey::of(&with_deps), PoolKey::of(&spec("a.tool")));
        let other_image = ContainerSpec::new(Role::Run, "img:2", vec!["node".into()]);
        assert_ne!(PoolKey::of(&other_image), PoolKey::of(&spec("a.tool")));
    }
}
