//! A run's progress on its way to the caller's stream. The harness has
//! already checked and rate-limited the reports; here they wait in a short
//! queue for the stream. Should the caller read slower than the harness
//! allows, the newest report takes the place of the one before it, so the
//! run is never held up and its last report is never lost (the stream
//! sends it before `finished`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use dynamic_mcp_proto::v1::RunProgress;
use tokio::sync::Notify;

use crate::harness::records::ProgressReport;

/// A little more than the harness's burst.
const QUEUE: usize = 16;

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    changed: Notify,
}

#[derive(Default)]
struct Queue {
    reports: VecDeque<RunProgress>,
    /// The run is over: nothing more comes.
    closed: bool,
}

/// The run's end: reports go in. Dropping it ends the stream of reports.
pub struct ProgressSender {
    shared: Arc<Shared>,
    last: Option<f64>,
}

/// The stream's end: reports come out, oldest first.
pub struct ProgressReceiver(Arc<Shared>);

pub fn channel() -> (ProgressSender, ProgressReceiver) {
    let shared = Arc::new(Shared::default());
    (
        ProgressSender {
            shared: Arc::clone(&shared),
            last: None,
        },
        ProgressReceiver(shared),
    )
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Queue> {
    shared.queue.lock().unwrap_or_else(|e| e.into_inner())
}

impl ProgressSender {
    /// Queues the report unless its value does not increase (the harness
    /// ensures that already; the caller's client relies on it).
    pub fn report(&mut self, report: ProgressReport) {
        if !report.progress.is_finite() || self.last.is_some_and(|last| report.progress <= last) {
            return;
        }
        self.last = Some(report.progress);
        let report = RunProgress {
            progress: report.progress,
            total: report.total.filter(|t| t.is_finite()),
            message: report.message,
        };
        {
            let mut queue = lock(&self.shared);
            if queue.reports.len() >= QUEUE {
                queue.reports.pop_back();
            }
            queue.reports.push_back(report);
        }
        self.shared.changed.notify_one();
    }
}

impl Drop for ProgressSender {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.changed.notify_one();
    }
}

impl ProgressReceiver {
    /// The next report to send; `None` once the run is over and its last
    /// report was taken.
    pub async fn next(&mut self) -> Option<RunProgress> {
        loop {
            {
                let mut queue = lock(&self.0);
                if let Some(report) = queue.reports.pop_front() {
                    return Some(report);
                }
                if queue.closed {
                    return None;
                }
            }
            self.0.changed.notified().await;
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
    async fn increasing_reports_wait_in_order_and_the_last_is_never_lost() {
        let (mut sender, mut receiver) = channel();
        sender.report(report(1.0));
        assert_eq!(receiver.next().await.map(|p| p.progress), Some(1.0));
        for value in [2.0, 3.0, 2.5, f64::NAN] {
            sender.report(report(value));
        }
        drop(sender);
        assert_eq!(receiver.next().await.map(|p| p.progress), Some(2.0));
        assert_eq!(receiver.next().await.map(|p| p.progress), Some(3.0));
        assert_eq!(receiver.next().await, None);
    }

    #[tokio::test]
    async fn a_slow_reader_gets_the_newest_report_in_place_of_older_ones() {
        let (mut sender, mut receiver) = channel();
        for value in 1..=100 {
            sender.report(report(f64::from(value)));
        }
        drop(sender);
        let mut got = Vec::new();
        while let Some(report) = receiver.next().await {
            got.push(report.progress);
        }
        let oldest: Vec<f64> = (1..QUEUE).map(|v| v as f64).collect();
        assert_eq!(got[..QUEUE - 1], oldest[..]);
        assert_eq!(got.len(), QUEUE);
        assert_eq!(got.last(), Some(&100.0));
    }
}
