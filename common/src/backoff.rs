//! Waits between attempts to reach something that went away: doubling from a
//! first wait up to a cap, each one jittered so that the many clients of a
//! restarted service (frontends of a registry, registries of a database) do
//! not all come back at the same instant.

use std::time::Duration;

/// Exponential backoff with "equal jitter": each wait is half its step plus
/// a random share of the other half, so it stays within [step/2, step].
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Steps of `first`, doubled after each failure, never over `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        let first = first.min(max);
        Self {
            first,
            max,
            step: first,
        }
    }

    /// How long to wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rand::random_range(0..=spread))
    }

    /// After a success the next failure starts again from the first wait.
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(backoff: &mut Backoff, n: usize) -> Vec<Duration> {
        (0..n).map(|_| backoff.next_wait()).collect()
    }

    #[test]
    fn waits_double_up_to_the_cap_within_their_jitter_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let expected = [500, 1000, 2000, 4000, 8000, 10_000, 10_000].map(Duration::from_millis);
        for (wait, step) in steps(&mut backoff, expected.len()).into_iter().zip(expected) {
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} is outside [{:?}, {step:?}]",
                step / 2
            );
        }
        backoff.reset();
        let first = backoff.next_wait();
        assert!(first <= Duration::from_millis(500), "{first:?}");
    }

    #[test]
    fn clients_that_failed_together_do_not_retry_together() {
        let sequences: Vec<Vec<Duration>> = (0..8)
            .map(|_| steps(&mut Backoff::new(Duration::from_secs(1), Duration::from_secs(30)), 4))
            .collect();
        let distinct = sequences.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct > 1, "eight clients waited exactly alike: {sequences:?}");
    }

    #[test]
    fn a_first_wait_over_the_cap_is_the_cap() {
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(10));
        assert!(backoff.next_wait() <= Duration::from_secs(10));
    }
}
