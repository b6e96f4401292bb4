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

#[derive(Default)]
struct Sent {
    /// The last value sent on this token.
    last: Option<f64>,
    /// What the code's values are shifted by, fixed at its first report.
    code_base: Option<f64>,
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
        let base = {
            let mut sent = self.lock();
            let last = sent.last;
            *sent
                .code_base
                .get_or_insert_with(|| last.map_or(0.0, |last| last.floor() + 1.0))
        };
        let total = report.total.map(|total| base + total);
        self.send(base + report.progress, total, report.message.clone()).await;
    }

    async fn send(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        {
            let mut sent = self.lock();
            if sent.last.is_some_and(|last| progress <= last) {
                return;
            }
            sent.last = Some(progress);
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
