//! Idle expiry: a session nobody used for MCP_SANDBOX_SESSION_TIMEOUT_SECONDS
//! is removed. A session with a call running is never idle.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Session, Sessions};

/// How often to look: often enough that a session outlives its timeout by
/// at most a quarter of it (and at most 30 s).
fn sweep_interval(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
}

/// Removes idle sessions until the task is dropped.
pub async fn expire_idle(sessions: Arc<Sessions>) {
    let idle_timeout = sessions.settings.idle_timeout;
    let mut ticks = tokio::time::interval(sweep_interval(idle_timeout));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let expired = sessions.take_idle(SystemTime::now(), idle_timeout);
        for session in expired {
            if let Err(e) = sessions.remove(&session, "idle for too long").await {
                tracing::warn!(session = %session.id, error = %e, "cannot remove an expired session");
            }
        }
    }
}

impl Sessions {
    /// Takes the sessions idle since before `now - idle_timeout` out of the
    /// table. The write lock keeps a call from starting on one meanwhile.
    fn take_idle(&self, now: SystemTime, idle_timeout: Duration) -> Vec<Arc<Session>> {
        let mut open = self.table_mut();
        let idle: Vec<String> = open
            .values()
            .filter(|s| {
                let activity = s.activity();
                activity.calls_running == 0 && activity.last_used + idle_timeout <= now
            })
            .map(|s| s.id.clone())
            .collect();
        idle.iter().filter_map(|id| open.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_follows_the_timeout_within_bounds() {
        assert_eq!(sweep_interval(Duration::from_secs(1800)), Duration::from_secs(30));
        assert_eq!(sweep_interval(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(sweep_interval(Duration::from_millis(100)), Duration::from_millis(250));
    }
}
