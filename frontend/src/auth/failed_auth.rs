//! Back-off after failed credential checks — a wrong admin token, an
//! invalid bearer token — apart from the guard's rate limit, so that a
//! guesser spends no one else's budget.
//!
//! Failures count per key: the client's address (an IPv6 address by its
//! /64, which one host usually holds whole) and, for a caller with an
//! identity of its own (a JWT subject, the stdio user), that identity; the
//! shared `anonymous` HTTP caller is keyed by address only, so one guesser
//! cannot pause every admin. After MCP_AUTH_FAILURES_BEFORE_BACKOFF failures
//! a key backs off for MCP_AUTH_BACKOFF_BASE_MS, doubled with every further
//! failure up to MCP_AUTH_BACKOFF_MAX_MS; a key quiet for long enough is
//! forgotten, and a success forgets it at once.
//!
//! Realms are counted apart. In particular a wrong `adminToken` argument —
//! which a prompt-injected model can send — never pauses the
//! X-MCP-Admin-Token header, so it cannot lock out the admin whose client
//! sends the right token there.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const DEFAULT_FAILURES_BEFORE_BACKOFF: u32 = 5;
pub const DEFAULT_BACKOFF_BASE_MS: u64 = 1000;
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 300_000;

/// A key with no failure for this long (or twice the longest back-off, if
/// more) starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Past this many tracked keys, forgotten ones are dropped, then others.
const MAX_TRACKED: usize = 65_536;

/// Which credential failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Realm {
    /// The admin token in the X-MCP-Admin-Token header.
    AdminHeader,
    /// The admin token in the `adminToken` argument.
    AdminArgument,
    /// A bearer token (JWT mode).
    Bearer,
}

impl Realm {
    /// The label of metrics and audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminHeader | Self::AdminArgument => "admin_token",
            Self::Bearer => "bearer",
        }
    }
}

/// Who failed: where from, or who.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Address(IpAddr),
    Caller(String),
}

impl Key {
    /// The key of a client address: IPv4 as is (also when IPv4-mapped),
    /// IPv6 by its /64.
    pub fn address(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        };
        Self::Address(ip)
    }
}

/// How failures turn into back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub failures_before: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            failures_before: DEFAULT_FAILURES_BEFORE_BACKOFF,
            base: Duration::from_millis(DEFAULT_BACKOFF_BASE_MS),
            max: Duration::from_millis(DEFAULT_BACKOFF_MAX_MS),
        }
    }
}

impl Backoff {
    /// The pause after the `failures`th failure in a row.
    fn after(&self, failures: u32) -> Option<Duration> {
        let doublings = failures.checked_sub(self.failures_before)?.checked_sub(1)?;
        let factor = 1u32.checked_shl(doublings.min(31)).unwrap_or(u32::MAX);
        Some(self.base.saturating_mul(factor).min(self.max))
    }

    fn forget_after(&self) -> Duration {
        FORGET_AFTER.max(self.max.saturating_mul(2))
    }
}

/// A check refused because one of its keys is backing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    until: Option<Instant>,
}

/// The failures of every key, in every realm. One per process.
#[derive(Debug, Default)]
pub struct FailedAuth {
    backoff: Backoff,
    records: Mutex<HashMap<(Realm, Key), Record>>,
}

impl FailedAuth {
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            records: Mutex::default(),
        }
    }

    /// Whether a credential may be checked now for `keys`.
    pub fn check(&self, realm: Realm, keys: &[Key]) -> Result<(), Paused> {
        self.check_at(realm, keys, Instant::now())
    }

    /// Counts a failed check; returns the back-off it starts, if any.
    pub fn failed(&self, realm: Realm, keys: &[Key]) -> Option<Duration> {
        self.failed_at(realm, keys, Instant::now())
    }

    /// A check passed: its keys start afresh.
    pub fn succeeded(&self, realm: Realm, keys: &[Key]) {
        let mut records = self.records();
        for key in keys {
            records.remove(&(realm, key.clone()));
        }
    }

    fn check_at(&self, realm: Realm, keys: &[Key], now: Instant) -> Result<(), Paused> {
        let records = self.records();
        let longest = keys
            .iter()
            .filter_map(|key| records.get(&(realm, key.clone()))?.until)
            .filter(|until| *until > now)
            .max();
        match longest {
            Some(until) => Err(Paused {
                retry_after: until - now,
            }),
            None => Ok(()),
        }
    }

    fn failed_at(&self, realm: Realm, keys: &[Key], now: Instant) -> Option<Duration> {
        let forget_after = self.backoff.forget_after();
        let mut records = self.records();
        if records.len() >= MAX_TRACKED {
            records.retain(|_, record| now.duration_since(record.last) < forget_after);
            let excess = records.len().saturating_sub(MAX_TRACKED * 9 / 10);
            let victims: Vec<_> = records.keys().take(excess).cloned().collect();
            for victim in victims {
                records.remove(&victim);
            }
        }
        let mut pause = None;
        for key in keys {
            let record = records.entry((realm, key.clone())).or_insert(Record {
                failures: 0,
                last: now,
                until: None,
            });
            if now.duration_since(record.last) >= forget_after {
                record.failures = 0;
            }
            record.failures = record.failures.saturating_add(1);
            record.last = now;
            record.until = self.backoff.after(record.failures).map(|d| now + d);
            pause = pause.max(self.backoff.after(record.failures));
        }
        pause
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<(Realm, Key), Record>> {
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> FailedAuth {
        FailedAuth::new(Backoff {
            failures_before: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
        })
    }

    fn addr(text: &str) -> Key {
        Key::address(text.parse().unwrap())
    }

    #[test]
    fn back_off_starts_after_the_free_failures_and_doubles_up_to_the_cap() {
        let backoff = limiter().backoff;
        let pauses: Vec<_> = (1..=8).map(|n| backoff.after(n).map(|d| d.as_secs())).collect();
        assert_eq!(pauses, [None, None, None, Some(1), Some(2), Some(4), Some(8), Some(8)]);
        assert_eq!(backoff.after(u32::MAX), Some(Duration::from_secs(8)));
    }

    #[test]
    fn a_paused_key_is_refused_until_its_pause_ends() {
        let limiter = limiter();
        let keys = [addr("192.0.2.7")];
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.failed_at(Realm::AdminHeader, &keys, start), None);
            assert!(limiter.check_at(Realm::AdminHeader, &keys, start).is_ok());
        }
        assert_eq!(
            limiter.failed_at(Realm::AdminHeader, &keys, start),
            Some(Duration::from_secs(1))
        );
        let paused = limiter
            .check_at(Realm::AdminHeader, &keys, start + Duration::from_millis(400))
            .unwrap_err();
        assert_eq!(paused.retry_after, Duration::from_millis(600));
        assert!(
            limiter
                .check_at(Realm::AdminHeader, &keys, start + Duration::from_secs(1))
                .is_ok()
        );
    }

    #[test]
    fn keys_and_realms_are_apart_and_the_worst_key_wins() {
        let limiter = limiter();
        let now = Instant::now();
        let guesser = [addr("192.0.2.7"), Key::Caller("sub:mallory".into())];
        for _ in 0..5 {
            limiter.failed_at(Realm::AdminArgument, &guesser, now);
        }
        // Another address, another realm: not paused.
        assert!(
            limiter
                .check_at(Realm::AdminArgument, &[addr("192.0.2.8")], now)
                .is_ok()
        );
        assert!(limiter.check_at(Realm::AdminHeader, &guesser, now).is_ok());
        // The same subject from elsewhere, or the same address as someone else: paused.
        let elsewhere = [addr("198.51.100.1"), Key::Caller("sub:mallory".into())];
        assert!(limiter.check_at(Realm::AdminArgument, &elsewhere, now).is_err());
        let neighbour = [addr("192.0.2.7"), Key::Caller("sub:alice".into())];
        assert!(limiter.check_at(Realm::AdminArgument, &neighbour, now).is_err());
    }

    #[test]
    fn a_success_or_a_quiet_spell_starts_afresh() {
        let limiter = limiter();
        let keys = [addr("192.0.2.7")];
        let now = Instant::now();
        for _ in 0..4 {
            limiter.failed_at(Realm::Bearer, &keys, now);
        }
        limiter.succeeded(Realm::Bearer, &keys);
        assert_eq!(limiter.failed_at(Realm::Bearer, &keys, now), None);
        for _ in 0..3 {
            limiter.failed_at(Realm::Bearer, &keys, now);
        }
        let later = now + FORGET_AFTER;
        assert_eq!(limiter.failed_at(Realm::Bearer, &keys, later), None);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(addr("2001:db8:1:2:aaaa::1"), addr("2001:db8:1:2:bbbb::9"));
        assert_ne!(addr("2001:db8:1:2::1"), addr("2001:db8:1:3::1"));
        assert_eq!(addr("::ffff:192.0.2.7"), addr("192.0.2.7"));
    }
}
