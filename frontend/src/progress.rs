//! MCP progress notifications for calls that may take seconds (an npm
//! install at create time, a run that installs first): one message when the
//! work starts, then a heartbeat every second until it ends — only when the
//! request carried a progress token, as the spec asks.

use std::future::Future;
use std::time::{Duration, Instant};

use rmcp::RoleServer;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RequestContext};

/// How often a running call says it is still running.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Where a call's progress goes: the requesting client, under its token.
pub struct Progress {
    peer: Peer<RoleServer>,
    token: ProgressToken,
}

impl Progress {
    /// `None` unless the request asked for progress.
    pub fn of(request: &RequestContext<RoleServer>) -> Option<Self> {
        request.meta.get_progress_token().map(|token| Self {
            peer: request.peer.clone(),
            token,
        })
    }

    /// Runs `work`, reporting `message` at once and then every second with
    /// the time spent so far. Progress that cannot be delivered (the client
    /// went away) is dropped: it must never fail the call.
    pub async fn while_running<T>(progress: Option<&Self>, message: &str, work: impl Future<Output = T>) -> T {
        let Some(progress) = progress else {
            return work.await;
        };
        let began = Instant::now();
        let mut ticks = tokio::time::interval(HEARTBEAT);
        let mut beat = 0u32;
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = ticks.tick() => {
                    let text = if beat == 0 {
                        message.to_owned()
                    } else {
                        format!("{message} ({} s)", began.elapsed().as_secs())
                    };
                    progress.send(f64::from(beat), text).await;
                    beat += 1;
                }
            }
        }
    }

    async fn send(&self, progress: f64, message: String) {
        let notification = ProgressNotificationParam::new(self.token.clone(), progress).with_message(message);
        if let Err(e) = self.peer.notify_progress(notification).await {
            tracing::debug!(error = %e, "a progress notification was not delivered");
        }
    }
}
