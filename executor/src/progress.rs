//! A run's progress on its way to the caller's stream: the harness has
//! already checked and rate-limited the reports; here the latest one waits
//! for the stream, so a slow caller never holds the run up and the last
//! report is never lost (the stream sends it before `finished`).

use dynamic_mcp_proto::v1::RunProgress;
use tokio::sync::watch;

use crate::harness::records::ProgressReport;

/// The run's end: reports go in.
pub struct ProgressSender {
    latest: watch::Sender<Option<RunProgress>>,
    last: Option<f64>,
}

/// The stream's end: the latest report not yet sent comes out.
pub struct ProgressReceiver(watch::Receiver<Option<RunProgress>>);

pub fn channel() -> (ProgressSender, ProgressReceiver) {
    let (latest, receiver) = watch::channel(None);
    (ProgressSender { latest, last: None }, ProgressReceiver(receiver))
}

impl ProgressSender {
    /// Keeps the report unless its value does not increase (the harness
    /// ensures that already; the caller's client relies on it).
    pub fn report(&mut self, report: ProgressReport) {
        if !report.progress.is_finite() || self.last.is_some_and(|last| report.progress <= last) {
            return;
        }
        self.last = Some(report.progress);
        self.latest.send_replace(Some(RunProgress {
            progress: report.progress,
            total: report.total.filter(|t| t.is_finite()),
            message: report.message,
        }));
    }
}

impl ProgressReceiver {
    /// The next report to send; `None` once the run is over and its last
    /// report was taken.
    pub async fn next(&mut self) -> Option<RunProgress> {
        loop {
            self.0.changed().await.ok()?;
            if let Some(report) = self.0.borrow_and_update().clone() {
                return Some(report);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(progress: f64) -> ProgressReport {
        ProgressReport {
            progress,
            total: Some(10.0),
            message: None,
        }
    }

    #[tokio::test]
    async fn the_latest_increasing_report_waits_and_the_last_is_never_lost() {
        let (mut sender, mut receiver) = channel();
        sender.report(report(1.0));
        assert_eq!(receiver.next().await.map(|p| p.progress), Some(1.0));
        sender.report(report(2.0));
        sender.report(report(3.0));
        sender.report(report(2.5));
        sender.report(report(f64::NAN));
        drop(sender);
        assert_eq!(
            receiver.next().await.map(|p| p.progress),
            Some(3.0),
            "coalesced to the latest"
        );
        assert_eq!(receiver.next().await, None);
    }
}
