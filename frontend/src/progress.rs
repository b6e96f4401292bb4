//! MCP progress notifications, only when the request carried a progress
//! token, as the spec asks: a heartbeat while something may take seconds
//! (an npm install at create time, or before a run), and the reports of a
//! tool's own code (`progress()`), relayed from the executor. The token
//! stays here: the code never sees it. On one token the values always
//! increase: code reports that follow heartbeats are shifted past them.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dynamic_mcp_proto::v1::RunProgress;
use rmcp::RoleServer;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RequestContext};

/// How often a running call says it is still running.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Where a call's progress goes: the requesting client, under its token.
pub struct Progress {
    peer: Peer<RoleServer>,
    token: ProgressToken,
    sent: Mutex<Sent>,
}

#[derive(Debug, Default)]
struct Sent {
    /// The last value sent on this token.
    last: Option<f64>,
    /// What the code's values are shifted by, fixed at its first report.
    code_base: Option<f64>,
}

impl Sent {
    /// A code report's value and total on this token: past the heartbeats
    /// sent before the code's first report, unchanged without any.
    fn shifted(&mut self, progress: f64, total: Option<f64>) -> (f64, Option<f64>) {
        let last = self.last;
        let base = *self
            .code_base
            .get_or_insert_with(|| last.map_or(0.0, |last| last.floor() + 1.0));
        (base + progress, total.map(|total| base + total))
    }

    /// Whether `progress` may go out (it increases), noting it if so.
    fn admit(&mut self, progress: f64) -> bool {
        if self.last.is_some_and(|last| progress <= last) {
            return false;
        }
        self.last = Some(progress);
        true
    }
}

impl Progress {
    /// `None` unless the request asked for progress.
    pub fn of(request: &RequestContext<RoleServer>) -> Option<Self> {
        request.meta.get_progress_token().map(|token| Self {
            peer: request.peer.clone(),
            token,
            sent: Mutex::default(),
        })
    }

    /// Runs `work`, reporting `message` at once and then every second with
    /// the time spent so far. Progress that cannot be delivered (the client
    /// went away) is dropped: it must never fail the call.
    pub async fn while_running<T>(progress: Option<&Self>, message: &str, work: impl Future<Output = T>) -> T {
        let Some(progress) = progress else {
            return work.await;
        };
        let mut heartbeat = Heartbeat::new(message);
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return result,
                () = heartbeat.beat(progress) => {}
            }
        }
    }

    /// One report of the code. After heartbeats on this token, the code's
    /// values (and total) are shifted past the last one sent.
    pub async fn report(&self, report: &RunProgress) {
        let (progress, total) = self.lock().shifted(report.progress, report.total);
        self.send(progress, total, report.message.clone()).await;
    }

    async fn send(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        if !self.lock().admit(progress) {
            return;
        }
        let mut notification = ProgressNotificationParam::new(self.token.clone(), progress);
        if let Some(total) = total {
            notification = notification.with_total(total);
        }
        if let Some(message) = message {
            notification = notification.with_message(message);
        }
        if let Err(e) = self.peer.notify_progress(notification).await {
            tracing::debug!(error = %e, "a progress notification was not delivered");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sent> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// "Still working on `message`", once a second: 0, 1, 2, ... with the
/// seconds spent after the first.
pub struct Heartbeat {
    message: String,
    began: Instant,
    ticks: tokio::time::Interval,
    beat: u32,
}

impl Heartbeat {
    pub fn new(message: &str) -> Self {
        Self {
            message: message.to_owned(),
            began: Instant::now(),
            ticks: tokio::time::interval(HEARTBEAT),
            beat: 0,
        }
    }

    /// Waits for the next beat and sends it (the first one at once).
    pub async fn beat(&mut self, progress: &Progress) {
        self.ticks.tick().await;
        let text = if self.beat == 0 {
            self.message.clone()
        } else {
            format!("{} ({} s)", self.message, self.began.elapsed().as_secs())
        };
        progress.send(f64::from(self.beat), None, Some(text)).await;
        self.beat += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_reports_keep_their_values_unless_heartbeats_came_first() {
        let mut plain = Sent::default();
        assert_eq!(plain.shifted(0.0, Some(100.0)), (0.0, Some(100.0)));
        assert!(plain.admit(0.0));
        assert_eq!(plain.shifted(50.0, Some(100.0)), (50.0, Some(100.0)));

        let mut after_install = Sent::default();
        for beat in 0..3 {
            assert!(after_install.admit(f64::from(beat)));
        }
        assert_eq!(after_install.shifted(0.0, Some(10.0)), (3.0, Some(13.0)));
        assert!(after_install.admit(3.0));
        assert_eq!(
            after_install.shifted(10.0, Some(10.0)),
            (13.0, Some(13.0)),
            "the shift stays"
        );
    }

    #[test]
    fn values_that_do_not_increase_are_held_back() {
        let mut sent = Sent::default();
        assert!(sent.admit(1.0));
        assert!(!sent.admit(1.0));
        assert!(!sent.admit(0.5));
        assert!(sent.admit(2.0));
    }
}
