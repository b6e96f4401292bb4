//! The execution guard: ONE per frontend process, shared by every stdio or
//! HTTP connection and session, so opening a new session never resets a
//! budget (the old server's bug).
//!
//! Two limits:
//! - a concurrency cap on tool calls that do work (scopes `dynamic`, `admin`,
//!   `sandbox`); `system` calls are cheap and never wait for a slot, so the
//!   guard's own metrics stay readable under load;
//! - a sliding-window rate limit per (class, caller), for every scope.
//!
//! Concurrency is checked first, and a call refused for it uses no rate
//! budget. Refusals are immediate (nothing queues), with a retry hint.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dynamic_mcp_common::tool_names::BuiltinKind;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Caller;

/// What kind of work a tool call is; budgets and counters are per class.
/// Guard metrics and audit lines call it `scope` (the compatible name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolClass {
    /// Runs of dynamic tools.
    Dynamic,
    /// `dynamic.tool.*`: managing dynamic tools.
    Admin,
    /// `sandbox.*` and `run_js_ephemeral`: code in sandbox containers.
    Sandbox,
    /// `system.*`: facts about this server.
    System,
}

impl ToolClass {
    pub const ALL: [ToolClass; 4] = [
        ToolClass::Admin,
        ToolClass::Dynamic,
        ToolClass::Sandbox,
        ToolClass::System,
    ];

    /// The class of the built-in or dynamic tool `name`.
    pub fn of_tool(name: &str, is_dynamic: bool) -> Self {
        if is_dynamic {
            return Self::Dynamic;
        }
        match BuiltinKind::of(name) {
            BuiltinKind::Admin => Self::Admin,
            BuiltinKind::Sandbox => Self::Sandbox,
            BuiltinKind::System => Self::System,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dynamic => "dynamic",
            Self::Admin => "admin",
            Self::Sandbox => "sandbox",
            Self::System => "system",
        }
    }

    fn takes_a_slot(self) -> bool {
        self != Self::System
    }

    fn index(self) -> usize {
        match self {
            Self::Admin => 0,
            Self::Dynamic => 1,
            Self::Sandbox => 2,
            Self::System => 3,
        }
    }
}

/// The guard's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardLimits {
    pub max_concurrency: u32,
    pub max_calls_per_window: u32,
    pub window_ms: u64,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Concurrency {
        max: u32,
    },
    Rate {
        max: u32,
        window: Duration,
        retry_after: Duration,
    },
}

impl Rejection {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Concurrency { .. } => "concurrency",
            Self::Rate { .. } => "rate",
        }
    }

    /// A hint for when to try again, in milliseconds.
    pub fn retry_after_ms(&self) -> u64 {
        match self {
            // Slots free up as calls finish; a second is a fair first retry.
            Self::Concurrency { .. } => 1000,
            Self::Rate { retry_after, .. } => retry_after.as_millis().max(1) as u64,
        }
    }

    /// The text the model reads.
    pub fn message(&self, scope: ToolClass) -> String {
        match self {
            Self::Concurrency { max } => format!(
                "the server is busy: {max} tool calls are already running (MCP_TOOL_MAX_CONCURRENCY); \
                 retry in about {} ms",
                self.retry_after_ms()
            ),
            Self::Rate { max, window, .. } => format!(
                "rate limit reached: at most {max} {} tool calls per {} ms per caller \
                 (MCP_TOOL_MAX_CALLS_PER_WINDOW / MCP_TOOL_RATE_WINDOW_MS); retry in {} ms",
                scope.as_str(),
                window.as_millis(),
                self.retry_after_ms()
            ),
        }
    }
}

#[derive(Default)]
struct ScopeCounters {
    total: AtomicU64,
    allowed: AtomicU64,
    rejected_rate: AtomicU64,
    rejected_concurrency: AtomicU64,
    failed: AtomicU64,
}

/// Counters of one class, as `system.guard_metrics` reports them (as a `scope`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassSnapshot {
    pub scope: ToolClass,
    pub total: u64,
    pub allowed: u64,
    pub rejected_rate: u64,
    pub rejected_concurrency: u64,
    pub failed: u64,
}

/// The payload of `system.guard_metrics` and `dynamic://metrics/guard`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardSnapshot {
    pub active_executions: u64,
    pub limits: GuardLimits,
    pub scopes: Vec<ClassSnapshot>,
}

/// Past this many tracked (class, caller) windows in one shard, idle ones are dropped.
const PRUNE_ABOVE: usize = 256;

/// The rate windows are split over this many locks, by caller, so callers
/// do not queue behind each other on every call.
const WINDOW_SHARDS: usize = 16;

/// Call times of each (class, caller) in its current window.
type Windows = HashMap<(ToolClass, String), VecDeque<Instant>>;

pub struct Guard {
    limits: GuardLimits,
    slots: Arc<Semaphore>,
    shard_of: RandomState,
    windows: [Mutex<Windows>; WINDOW_SHARDS],
    counters: [ScopeCounters; 4],
}

/// An admitted call. Holds its concurrency slot until dropped; report how
/// the call ended with [`Pass::finish`].
pub struct Pass {
    guard: Arc<Guard>,
    scope: ToolClass,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Pass {
    /// Counts the call as failed when its result is an error.
    pub fn finish(self, failed: bool) {
        if failed {
            self.guard.counters[self.scope.index()]
                .failed
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Guard {
    pub fn new(limits: GuardLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            shard_of: RandomState::new(),
            windows: Default::default(),
            counters: Default::default(),
        })
    }

    /// Admits a call of `caller` in `scope`, or says why not.
    pub fn admit(self: &Arc<Self>, scope: ToolClass, caller: &Caller) -> Result<Pass, Rejection> {
        self.admit_at(scope, &caller.key(), Instant::now())
    }

    fn admit_at(self: &Arc<Self>, scope: ToolClass, caller_key: &str, now: Instant) -> Result<Pass, Rejection> {
        let counters = &self.counters[scope.index()];
        counters.total.fetch_add(1, Ordering::Relaxed);
        let slot = if scope.takes_a_slot() {
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    counters.rejected_concurrency.fetch_add(1, Ordering::Relaxed);
                    return Err(Rejection::Concurrency {
                        max: self.limits.max_concurrency,
                    });
                }
            }
        } else {
            None
        };
        if let Err(rejection) = self.take_rate_budget(scope, caller_key, now) {
            counters.rejected_rate.fetch_add(1, Ordering::Relaxed);
            return Err(rejection);
        }
        counters.allowed.fetch_add(1, Ordering::Relaxed);
        Ok(Pass {
            guard: Arc::clone(self),
            scope,
            _slot: slot,
        })
    }

    fn take_rate_budget(&self, scope: ToolClass, caller_key: &str, now: Instant) -> Result<(), Rejection> {
        let window = Duration::from_millis(self.limits.window_ms);
        let max = self.limits.max_calls_per_window;
        let shard = self.shard_of.hash_one((scope, caller_key)) as usize % WINDOW_SHARDS;
        let mut windows = self.windows[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, calls| calls.back().is_some_and(|last| now.duration_since(*last) < window));
        }
        let calls = windows.entry((scope, caller_key.to_owned())).or_default();
        while calls.front().is_some_and(|first| now.duration_since(*first) >= window) {
            calls.pop_front();
        }
        if calls.len() >= max as usize {
            let oldest = calls.front().copied().unwrap_or(now);
            return Err(Rejection::Rate {
                max,
                window,
                retry_after: window.saturating_sub(now.duration_since(oldest)),
            });
        }
        calls.push_back(now);
        Ok(())
    }

    /// Calls holding a concurrency slot right now.
    pub fn active_executions(&self) -> u64 {
        let available = self.slots.available_permits() as u64;
        u64::from(self.limits.max_concurrency).saturating_sub(available)
    }

    pub fn snapshot(&self) -> GuardSnapshot {
        GuardSnapshot {
            active_executions: self.active_executions(),
            limits: self.limits,
            scopes: ToolClass::ALL
                .iter()
                .map(|scope| {
                    let c = &self.counters[scope.index()];
                    ClassSnapshot {
                        scope: *scope,
                        total: c.total.load(Ordering::Relaxed),
                        allowed: c.allowed.load(Ordering::Relaxed),
                        rejected_rate: c.rejected_rate.load(Ordering::Relaxed),
                        rejected_concurrency: c.rejected_concurrency.load(Ordering::Relaxed),
                        failed: c.failed.load(Ordering::Relaxed),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_concurrency: u32, max_calls: u32, window_ms: u64) -> Arc<Guard> {
        Guard::new(GuardLimits {
            max_concurrency,
            max_calls_per_window: max_calls,
            window_ms,
        })
    }

    fn counters(guard: &Guard, scope: ToolClass) -> ClassSnapshot {
        guard.snapshot().scopes.into_iter().find(|s| s.scope == scope).unwrap()
    }

    #[test]
    fn the_concurrency_cap_refuses_without_using_rate_budget() {
        let guard = guard(2, 3, 60_000);
        let now = Instant::now();
        let first = guard.admit_at(ToolClass::Dynamic, "a", now).unwrap();
        let _second = guard.admit_at(ToolClass::Admin, "b", now).unwrap();
        assert_eq!(guard.snapshot().active_executions, 2);
        assert_eq!(
            guard.admit_at(ToolClass::Dynamic, "a", now).err(),
            Some(Rejection::Concurrency { max: 2 })
        );
        first.finish(true);
        assert_eq!(guard.snapshot().active_executions, 1);
        // "a" spent one call of three; the refused one cost nothing.
        drop(guard.admit_at(ToolClass::Dynamic, "a", now).unwrap());
        drop(guard.admit_at(ToolClass::Dynamic, "a", now).unwrap());
        assert!(matches!(
            guard.admit_at(ToolClass::Dynamic, "a", now),
            Err(Rejection::Rate { .. })
        ));
        let dynamic = counters(&guard, ToolClass::Dynamic);
        assert_eq!(
            (
                dynamic.total,
                dynamic.allowed,
                dynamic.rejected_concurrency,
                dynamic.rejected_rate,
                dynamic.failed
            ),
            (5, 3, 1, 1, 1)
        );
    }

    #[test]
    fn rate_budgets_are_per_scope_and_caller_and_slide() {
        let guard = guard(8, 2, 1000);
        let start = Instant::now();
        for _ in 0..2 {
            guard.admit_at(ToolClass::System, "a", start).unwrap().finish(false);
        }
        let Err(Rejection::Rate { retry_after, .. }) =
            guard.admit_at(ToolClass::System, "a", start + Duration::from_millis(400))
        else {
            panic!("expected a rate rejection");
        };
        assert_eq!(retry_after, Duration::from_millis(600));
        // Another caller, or another scope, has its own budget.
        assert!(guard.admit_at(ToolClass::System, "b", start).is_ok());
        assert!(guard.admit_at(ToolClass::Dynamic, "a", start).is_ok());
        // Once the window has slid past the first calls, "a" may call again.
        assert!(
            guard
                .admit_at(ToolClass::System, "a", start + Duration::from_millis(1000))
                .is_ok()
        );
    }

    #[test]
    fn system_calls_never_wait_for_a_slot() {
        let guard = guard(1, 100, 60_000);
        let _busy = guard.admit_at(ToolClass::Sandbox, "a", Instant::now()).unwrap();
        assert!(guard.admit_at(ToolClass::System, "a", Instant::now()).is_ok());
        assert!(guard.admit_at(ToolClass::Dynamic, "a", Instant::now()).is_err());
    }

    #[test]
    fn rejections_tell_when_to_retry() {
        let rate = Rejection::Rate {
            max: 300,
            window: Duration::from_secs(60),
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(
            rate.message(ToolClass::Dynamic),
            "rate limit reached: at most 300 dynamic tool calls per 60000 ms per caller \
             (MCP_TOOL_MAX_CALLS_PER_WINDOW / MCP_TOOL_RATE_WINDOW_MS); retry in 1500 ms"
        );
        assert!(
            Rejection::Concurrency { max: 8 }
                .message(ToolClass::Admin)
                .contains("retry in about 1000 ms")
        );
    }

    #[test]
    fn scopes_follow_tool_names() {
        assert_eq!(ToolClass::of_tool("anything", true), ToolClass::Dynamic);
        assert_eq!(ToolClass::of_tool("dynamic.tool.create", false), ToolClass::Admin);
        assert_eq!(ToolClass::of_tool("sandbox.exec", false), ToolClass::Sandbox);
        assert_eq!(ToolClass::of_tool("system.health", false), ToolClass::System);
        assert_eq!(
            serde_json::to_value(guard(1, 1, 1).snapshot()).unwrap()["scopes"][0],
            serde_json::json!({"scope": "admin", "total": 0, "allowed": 0, "rejectedRate": 0,
                "rejectedConcurrency": 0, "failed": 0})
        );
    }
}
