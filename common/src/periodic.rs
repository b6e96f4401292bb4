//! Work done now and then in the background (refreshing keys, draining
//! histograms, checking a dependency): one tick after each period, and an
//! end as soon as the process stops, written once.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Ticks every `every` until `stop` fires.
#[derive(Debug, Clone)]
pub struct Ticks {
    every: Duration,
    stop: CancellationToken,
}

impl Ticks {
    pub fn new(every: Duration, stop: CancellationToken) -> Self {
        Self { every, stop }
    }

    /// Waits one period: `true` when it passed, `false` as soon as `stop`
    /// fires. A period starts when the previous tick's work is done, so slow
    /// work never makes ticks pile up.
    pub async fn next(&self) -> bool {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => false,
            () = tokio::time::sleep(self.every) => true,
        }
    }
}

/// Runs `work` after every period of `ticks`, until its stop fires. The
/// work under way when it fires is finished, not cut short.
pub async fn every<F, Fut>(ticks: Ticks, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    while ticks.next().await {
        work().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::time::Instant;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_runs_once_per_period_from_the_end_of_the_last() {
        let stop = CancellationToken::new();
        let started = Instant::now();
        let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&runs);
        let task = tokio::spawn(every(Ticks::new(Duration::from_secs(10), stop.clone()), move || {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(started.elapsed());
                // Slow work: the next period starts when it is done.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
        tokio::time::sleep(Duration::from_secs(35)).await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(
            *runs.lock().unwrap(),
            [10, 21, 32].map(Duration::from_secs),
            "no run before the first period, then one per period plus the work's second"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait_at_once() {
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let task = tokio::spawn(every(Ticks::new(Duration::from_secs(3600), stop.clone()), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        }));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stopped_at = Instant::now();
        stop.cancel();
        task.await.unwrap();
        assert_eq!(stopped_at.elapsed(), Duration::ZERO, "the loop waited out its period");
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_after_a_stop_say_so() {
        let stop = CancellationToken::new();
        let ticks = Ticks::new(Duration::from_millis(5), stop.clone());
        assert!(ticks.next().await);
        stop.cancel();
        assert!(!ticks.next().await);
    }
}
