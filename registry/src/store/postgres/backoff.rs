//! Waits between attempts to reach the database: the configured first wait,
//! doubled after each failure, never more than `MAX_WAIT`.

use std::time::Duration;

pub const MAX_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration) -> Self {
        let first = first.min(MAX_WAIT);
        Self { first, next: first }
    }

    /// How long to wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_WAIT);
        wait
    }

    /// After a success, the next failure starts again from the first wait.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(500));
        let waits: Vec<u128> = (0..7).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), Duration::from_millis(500));
    }
}
