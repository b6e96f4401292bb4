//! The warm pool: run containers started ahead of time, so a run skips
//! create → attach → start and Node's own start-up. Each is made exactly as
//! a cold one (`ColdStart`, hence `hardening.rs`): attached before start,
//! then left with the harness blocked on stdin, waiting for its envelope.
//!
//! - Single use: a container is handed out once and never comes back.
//! - Keyed by the whole spec but the tool label: image, dependency set (or
//!   none), command. The default key (the default image, no dependencies) is
//!   warmed at start; any other key from its first use.
//! - Sized by demand (see [`Demand`]): between `min` and `max` per key in
//!   use, from the recent hand-out rate and the measured start time. A key
//!   left unused for `idle_after` shrinks, the default one to `min`, any
//!   other to nothing.
//! - An empty key never races its own refill: a run waits for the next
//!   container of its key, and starts one only when none is on its way.
//!   A container already on its way is always ready sooner than a new one,
//!   which would also take CPU from it.
//! - Nor does a run race its replacement: a hand-out's refill starts when
//!   the run is over (`on_end`: its container is dropped, or retired once
//!   the outcome is on its way, see run.rs), or after `REFILL_WAIT`. The
//!   price: a second call that comes during the run, with the key empty,
//!   starts its own container rather than getting one already on its way.
//! - Each key has its own lock; the map of keys is read-locked by hand-outs
//!   and write-locked only to add or forget a key, so runs of different
//!   keys never wait for each other.
//! - Every pooled container holds a container-cap slot, so the cap bounds
//!   them too; when the cap is full, idle containers of other keys make room.
//! - Idle containers older than the max age are recycled; `close` removes
//!   the rest at shutdown, and the reaper catches anything left.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::task::TaskTracker;

use super::cap::ContainerSlot;
use super::lease::Lease;
use super::source::{ColdStart, ContainerSource};
use super::{ContainerSpec, Role, labels};
use crate::durations::micros;
use crate::error::ExecError;

/// How many containers to keep ready per key, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Ready containers per key in use, however low the demand.
    pub min: usize,
    /// Ready containers per key, however high the demand.
    pub max: usize,
    /// An idle container older than this is replaced by a fresh one.
    pub max_age: Duration,
    /// A key with no hand-out for this long is no longer "in use".
    pub idle_after: Duration,
}

/// Hand-outs counted for the demand rate.
const DEMAND_WINDOW: Duration = Duration::from_secs(10);

/// Keep this many times the containers that the demand uses up while one
/// is being started: room for bursts above the average rate.
const HEADROOM: f64 = 2.0;

/// Containers the pool starts at once. On 2 cores, more in parallel only
/// makes each one slower (Docker's own work per container is CPU-bound).
const PARALLEL_STARTS: usize = 2;

/// The start time assumed before any was measured.
const FIRST_START_ESTIMATE: Duration = Duration::from_millis(250);

/// How long a hand-out's replacement may wait for the run to end. A warm
/// run takes 10–30 ms on 2 cores, and a start beside it, 150–250 ms of CPU,
/// slows it down.
const REFILL_WAIT: Duration = Duration::from_millis(50);

/// How often idle containers are checked, recycled and topped up.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// How long `close` waits for starts under way before leaving what they
/// start to the reaper.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Hands out pre-started run containers; everything else starts cold.
pub struct WarmPool {
    shared: Arc<Shared>,
}

struct Shared {
    cold: Arc<ColdStart>,
    settings: PoolSettings,
    keys: RwLock<HashMap<PoolKey, Arc<Mutex<KeyState>>>>,
    /// The measured time of one container start in µs, smoothed.
    start_time_us: AtomicU64,
    starts: Semaphore,
    tasks: TaskTracker,
    closed: AtomicBool,
}

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

/// A lease for whoever waits for a key's next container: the container,
/// or the error its start ended with.
type Waiter = oneshot::Sender<Result<Lease, ExecError>>;

#[derive(Default)]
struct KeyState {
    ready: VecDeque<Warm>,
    /// Starts under way; each one is owed to a waiter first.
    starting: usize,
    waiters: VecDeque<Waiter>,
    demand: Demand,
    /// The default key: never shrinks below `min`.
    pinned: bool,
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

/// Recent hand-outs of one key.
#[derive(Debug, Default)]
struct Demand {
    recent: VecDeque<Instant>,
    last: Option<Instant>,
}

impl Demand {
    fn record(&mut self, now: Instant) {
        self.recent.push_back(now);
        self.last = Some(now);
        self.forget_before(now);
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > DEMAND_WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// Hand-outs per second over the window.
    fn rate(&self) -> f64 {
        self.recent.len() as f64 / DEMAND_WINDOW.as_secs_f64()
    }

    fn in_use(&self, now: Instant, idle_after: Duration) -> bool {
        self.last.is_some_and(|t| now.duration_since(t) < idle_after)
    }
}

/// How many ready containers a key should have: what the recent rate uses
/// up while one is being started (Little's law), with headroom, between
/// `min` (`0` for an unpinned key that is no longer in use) and `max`.
fn target(settings: &PoolSettings, demand: &Demand, pinned: bool, start_time: Duration, now: Instant) -> usize {
    let floor = if pinned || demand.in_use(now, settings.idle_after) {
        settings.min
    } else {
        0
    };
    let needed = (demand.rate() * start_time.as_secs_f64() * HEADROOM).ceil() as usize;
    needed.clamp(floor, settings.max.max(floor))
}

impl WarmPool {
    pub fn new(cold: Arc<ColdStart>, settings: PoolSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                cold,
                settings,
                keys: RwLock::default(),
                start_time_us: AtomicU64::new(micros(FIRST_START_ESTIMATE)),
                starts: Semaphore::new(PARALLEL_STARTS),
                tasks: TaskTracker::new(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Keeps `spec`'s key warm from now on, whether or not it is used.
    pub fn pin(&self, spec: &ContainerSpec) {
        let key = PoolKey::of(spec);
        lock(&self.shared.key_state(&key)).pinned = true;
        top_up(&self.shared, &key);
    }

    /// Recycles old containers, sizes every key to its demand and forgets
    /// unused keys, until the pool is closed.
    pub async fn keep_warm(&self) {
        let mut ticks = tokio::time::interval(UPKEEP_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.shared.closed.load(Ordering::Acquire) {
            ticks.tick().await;
            let (surplus, keys) = self.shared.resize();
            if !surplus.is_empty() {
                tracing::debug!(count = surplus.len(), "removing idle warm containers");
            }
            drop(surplus);
            for key in keys {
                top_up(&self.shared, &key);
            }
        }
    }

    /// Stops refilling, removes every idle container, and waits for the
    /// starts under way (their containers are removed as they settle), so
    /// the reaper that follows sees everything.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let idle: Vec<Warm> = {
            let mut keys = self.shared.keys.write().unwrap_or_else(PoisonError::into_inner);
            // Waiters hear "closed" when their sender goes.
            keys.drain()
                .flat_map(|(_, state)| {
                    let mut state = lock(&state);
                    state.waiters.clear();
                    std::mem::take(&mut state.ready)
                })
                .collect()
        };
        // Removed before returning, not in the background: the process may exit next.
        futures::future::join_all(idle.into_iter().map(|warm| warm.lease.container.remove_and_release())).await;
        self.shared.tasks.close();
        if tokio::time::timeout(CLOSE_WAIT, self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("warm pool starts still under way at shutdown; the reaper removes what they start");
        }
    }
}

#[async_trait]
impl ContainerSource for WarmPool {
    async fn acquire(&self, spec: &ContainerSpec) -> Result<Lease, ExecError> {
        if spec.role != Role::Run || self.shared.closed.load(Ordering::Acquire) {
            return self.shared.start_making_room(spec).await;
        }
        let key = PoolKey::of(spec);
        let next = {
            let state = self.shared.key_state(&key);
            let mut state = lock(&state);
            state.demand.record(Instant::now());
            match state.take_pristine(self.shared.settings.max_age) {
                Some(lease) => Ok(lease),
                None => {
                    let (tx, rx) = oneshot::channel();
                    state.waiters.push_back(tx);
                    Err(rx)
                }
            }
        };
        match next {
            Ok(mut lease) => {
                refill_after(&self.shared, key, lease.container.on_end());
                Ok(lease)
            }
            // Closed since the check above: `close` may have drained the
            // keys before this one was added, so nobody would answer.
            Err(_) if self.shared.closed.load(Ordering::Acquire) => {
                Err(ExecError::Internal("the executor is shutting down".into()))
            }
            Err(next) => {
                top_up(&self.shared, &key);
                next.await
                    .unwrap_or_else(|_closed| Err(ExecError::Internal("the executor is shutting down".into())))
            }
        }
    }
}

impl KeyState {
    /// A ready, still pristine container, if there is one.
    fn take_pristine(&mut self, max_age: Duration) -> Option<Lease> {
        while let Some(mut warm) = self.ready.pop_front() {
            if warm.is_pristine() && warm.started.elapsed() < max_age {
                return Some(warm.lease);
            }
            tracing::debug!(container = %warm.lease.container.id(), "dropping a warm container that is stale or gone");
        }
        None
    }

    /// How many starts this key lacks: its target, plus one per waiter.
    fn missing(&mut self, target: usize) -> usize {
        self.waiters.retain(|waiter| !waiter.is_closed());
        (target + self.waiters.len()).saturating_sub(self.ready.len() + self.starting)
    }

    /// Hands a started container to the first waiter still waiting, or
    /// keeps it ready.
    fn deliver(&mut self, mut lease: Lease) {
        while let Some(waiter) = self.waiters.pop_front() {
            match waiter.send(Ok(lease)) {
                Ok(()) => return,
                Err(Ok(unclaimed)) => lease = unclaimed,
                Err(Err(_)) => return,
            }
        }
        self.ready.push_back(Warm {
            lease,
            started: Instant::now(),
        });
    }

    /// A failed start leaves a waiter without a container when the starts
    /// still under way are fewer than the waiters: the first one gets the
    /// error, as its own cold start would have. `false` when nobody was told.
    fn fail_waiter(&mut self, mut error: ExecError) -> bool {
        self.waiters.retain(|waiter| !waiter.is_closed());
        if self.waiters.len() <= self.starting {
            return false;
        }
        while let Some(waiter) = self.waiters.pop_front() {
            match waiter.send(Err(error)) {
                Ok(()) => return true,
                Err(Err(unheard)) => error = unheard,
                Err(Ok(_)) => return true,
            }
        }
        false
    }
}

impl Shared {
    /// `key`'s state, if the pool has the key.
    fn known(&self, key: &PoolKey) -> Option<Arc<Mutex<KeyState>>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// `key`'s state, added if the pool does not have the key yet.
    fn key_state(&self, key: &PoolKey) -> Arc<Mutex<KeyState>> {
        if let Some(state) = self.known(key) {
            return state;
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(keys.entry(key.clone()).or_default())
    }

    fn start_time(&self) -> Duration {
        Duration::from_micros(self.start_time_us.load(Ordering::Relaxed))
    }

    /// Blends in one measured start. Two at once may lose one of them,
    /// which an estimate can afford.
    fn measured_start(&self, took: Duration) {
        let blended = self.start_time().mul_f64(0.7) + took.mul_f64(0.3);
        self.start_time_us.store(micros(blended), Ordering::Relaxed);
    }

    fn target_of(&self, state: &KeyState, now: Instant) -> usize {
        target(&self.settings, &state.demand, state.pinned, self.start_time(), now)
    }

    /// Drops stale and surplus containers and unused keys; returns what to
    /// remove (outside the lock) and the keys left.
    fn resize(&self) -> (Vec<Warm>, Vec<PoolKey>) {
        let now = Instant::now();
        let max_age = self.settings.max_age;
        let start_time = self.start_time();
        let mut surplus = Vec::new();
        for state in self.keys.read().unwrap_or_else(PoisonError::into_inner).values() {
            let mut state = lock(state);
            state.demand.forget_before(now);
            let (stale, mut fresh): (VecDeque<Warm>, VecDeque<Warm>) = state
                .ready
                .drain(..)
                .partition(|w| now.duration_since(w.started) >= max_age);
            surplus.extend(stale);
            let target = target(&self.settings, &state.demand, state.pinned, start_time, now);
            // The oldest go first: they are the next to age out anyway.
            while fresh.len() > target {
                surplus.extend(fresh.pop_front());
            }
            state.ready = fresh;
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        keys.retain(|_, shared_state| {
            // Held elsewhere: a hand-out is about to use the key.
            let held = Arc::strong_count(shared_state) > 1;
            let state = lock(shared_state);
            held || state.pinned || state.demand.in_use(now, self.settings.idle_after) || state.starting > 0
        });
        (surplus, keys.keys().cloned().collect())
    }

    /// Removes the oldest idle container of a key other than `except`, so
    /// that its cap slot is free when this returns. `false` if none is idle.
    async fn evict_idle(&self, except: Option<&PoolKey>) -> bool {
        let warm = loop {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            let candidate = keys
                .iter()
                .filter(|(key, _)| Some(*key) != except)
                .filter_map(|(_, state)| lock(state).ready.front().map(|w| (w.started, Arc::clone(state))))
                .min_by_key(|(started, _)| *started)
                .map(|(_, state)| state);
            let Some(state) = candidate else { return false };
            // Another caller may have taken it meanwhile: look again.
            if let Some(warm) = lock(&state).ready.pop_front() {
                break warm;
            }
        };
        tracing::debug!(container = %warm.lease.container.id(), "removing an idle warm container to make room under the container cap");
        warm.lease.container.remove_and_release().await;
        true
    }

    /// A slot under the container cap; when the cap is full, an idle warm
    /// container of another key makes room first. With `spare`, only a slot
    /// that leaves another one free: a start ahead of demand never takes the
    /// last slot from a caller.
    async fn reserve_making_room(&self, spec: &ContainerSpec, spare: bool) -> Result<ContainerSlot, ExecError> {
        let reserve = || {
            if spare {
                self.cold.reserve_spare()
            } else {
                self.cold.reserve()
            }
        };
        match reserve() {
            Err(ExecError::Busy { .. }) if self.evict_idle(Some(&PoolKey::of(spec))).await => reserve(),
            reserved => reserved,
        }
    }

    /// Whether a caller waits for `key`'s next container.
    fn awaited(&self, key: &PoolKey) -> bool {
        self.known(key)
            .is_some_and(|state| lock(&state).waiters.iter().any(|waiter| !waiter.is_closed()))
    }

    /// A cold start, making room under the cap if it must.
    async fn start_making_room(&self, spec: &ContainerSpec) -> Result<Lease, ExecError> {
        let slot = self.reserve_making_room(spec, false).await?;
        self.cold.start(spec, slot).await
    }

    /// Books a finished start: a waiter or the pool gets the container,
    /// unless the pool was closed meanwhile; then it is returned, to be
    /// removed.
    fn settle(&self, key: &PoolKey, started: Result<Lease, ExecError>) -> Option<Lease> {
        let state = self.known(key).filter(|_| !self.closed.load(Ordering::Acquire));
        let Some(state) = state else { return started.ok() };
        let mut state = lock(&state);
        state.starting = state.starting.saturating_sub(1);
        match started {
            Ok(lease) => state.deliver(lease),
            Err(e) => {
                // Routine while the cap is full, or already reported (Docker down, an
                // image missing, both warned about at start); retried on the next tick.
                let routine = matches!(
                    e,
                    ExecError::Busy { .. } | ExecError::DockerUnreachable(_) | ExecError::ImageMissing { .. }
                );
                let error = e.to_string();
                let told_a_waiter = state.fail_waiter(e);
                if routine {
                    tracing::debug!(%error, told_a_waiter, "cannot refill the warm pool now");
                } else {
                    tracing::warn!(%error, told_a_waiter, "cannot refill the warm pool");
                }
            }
        }
        None
    }
}

/// Tops `key` up once `run_ended` fires, or `REFILL_WAIT` after a hand-out
/// at the latest: a start beside the run would take CPU from it.
fn refill_after(shared: &Arc<Shared>, key: PoolKey, run_ended: oneshot::Receiver<()>) {
    let shared = Arc::clone(shared);
    shared.tasks.clone().spawn(async move {
        // Ended or not, the wait is over.
        let _ = tokio::time::timeout(REFILL_WAIT, run_ended).await;
        top_up(&shared, &key);
    });
}

/// Starts as many containers as `key` lacks, each in the background.
fn top_up(shared: &Arc<Shared>, key: &PoolKey) {
    if shared.closed.load(Ordering::Acquire) {
        return;
    }
    let missing = {
        let now = Instant::now();
        let Some(state) = shared.known(key) else { return };
        let mut state = lock(&state);
        let target = shared.target_of(&state, now);
        let missing = state.missing(target);
        state.starting += missing;
        missing
    };
    for _ in 0..missing {
        let shared = Arc::clone(shared);
        let key = key.clone();
        shared.tasks.clone().spawn(async move {
            let started = start_warm(&shared, &key).await;
            if let Some(unwanted) = shared.settle(&key, started) {
                unwanted.container.remove_and_release().await;
            }
        });
    }
}

/// One container for `key`: its cap slot first, so a full cap is reported
/// at once, then a turn among the pool's parallel starts.
async fn start_warm(shared: &Shared, key: &PoolKey) -> Result<Lease, ExecError> {
    let spare = !shared.awaited(key);
    let slot = shared.reserve_making_room(&key.0, spare).await?;
    let _turn = shared
        .starts
        .acquire()
        .await
        .map_err(|_closed| ExecError::Internal("the warm pool is closed".into()))?;
    let began = Instant::now();
    let started = shared.cold.start(&key.0, slot).await?;
    shared.measured_start(began.elapsed());
    Ok(started)
}

/// A key's state stays consistent even if a holder panicked: take it anyway.
fn lock(state: &Mutex<KeyState>) -> MutexGuard<'_, KeyState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: PoolSettings = PoolSettings {
        min: 1,
        max: 4,
        max_age: Duration::from_secs(300),
        idle_after: Duration::from_secs(60),
    };

    fn demand(handouts: usize, over: Duration, now: Instant) -> Demand {
        let mut demand = Demand::default();
        for i in 0..handouts {
            demand.record(now - over + over.mul_f64(i as f64 / handouts as f64));
        }
        demand
    }

    #[test]
    fn the_key_ignores_the_tool_but_not_what_shapes_the_container() {
        let spec = |tool: &str| ContainerSpec::new(Role::Run, "img:1", vec!["node".into()]).label(labels::TOOL, tool);
        assert_eq!(PoolKey::of(&spec("a.tool")), PoolKey::of(&spec("b.tool")));
        assert_eq!(PoolKey::of(&spec("a.tool")).0.labels, Vec::new());

        let mut with_deps = spec("a.tool");
        with_deps.deps_volume = Some("dynamic-mcp-deps".into());
        assert_ne!(PoolKey::of(&with_deps), PoolKey::of(&spec("a.tool")));
        let other_set = with_deps.clone().label(labels::DEPS_KEY, "set-2");
        let set = with_deps.label(labels::DEPS_KEY, "set-1");
        assert_ne!(
            PoolKey::of(&set),
            PoolKey::of(&other_set),
            "one pool per dependency set"
        );
        let other_image = ContainerSpec::new(Role::Run, "img:2", vec!["node".into()]);
        assert_ne!(PoolKey::of(&other_image), PoolKey::of(&spec("a.tool")));
    }

    #[test]
    fn the_target_follows_demand_between_min_and_max() {
        let now = Instant::now();
        let start = Duration::from_millis(200);
        // An agent's pace (a call every few seconds): the minimum.
        assert_eq!(
            target(&SETTINGS, &demand(3, Duration::from_secs(9), now), false, start, now),
            1
        );
        // 3 calls a second use 0.6 containers per start: 2 with headroom.
        assert_eq!(
            target(&SETTINGS, &demand(30, Duration::from_secs(10), now), false, start, now),
            2
        );
        // Far more than starts can keep up with: the maximum.
        assert_eq!(
            target(&SETTINGS, &demand(200, Duration::from_secs(10), now), false, start, now),
            4
        );
        // Slower starts need more in stock for the same rate.
        assert_eq!(
            target(
                &SETTINGS,
                &demand(30, Duration::from_secs(10), now),
                false,
                start * 3,
                now
            ),
            4
        );
    }

    #[test]
    fn unused_keys_shrink_to_nothing_and_the_pinned_one_to_min() {
        let now = Instant::now();
        let start = Duration::from_millis(200);
        let mut old = Demand::default();
        old.record(now - Duration::from_secs(120));
        old.forget_before(now);
        assert_eq!(target(&SETTINGS, &old, false, start, now), 0);
        assert_eq!(target(&SETTINGS, &old, true, start, now), 1);
        assert_eq!(target(&SETTINGS, &Demand::default(), true, start, now), 1);
        assert_eq!(target(&SETTINGS, &Demand::default(), false, start, now), 0);
    }

    #[test]
    fn a_fixed_size_is_min_equal_to_max() {
        let fixed = PoolSettings {
            min: 2,
            max: 2,
            ..SETTINGS
        };
        let now = Instant::now();
        let start = Duration::from_millis(200);
        for handouts in [1, 30, 500] {
            assert_eq!(
                target(
                    &fixed,
                    &demand(handouts, Duration::from_secs(10), now),
                    false,
                    start,
                    now
                ),
                2
            );
        }
    }

    #[test]
    fn demand_forgets_what_left_the_window() {
        let now = Instant::now();
        let mut demand = demand(20, Duration::from_secs(20), now);
        demand.forget_before(now);
        assert_eq!(demand.recent.len(), 10, "{:?}", demand.recent.len());
        assert!((demand.rate() - 1.0).abs() < 1e-9);
    }
}
