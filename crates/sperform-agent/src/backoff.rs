//! Exponential backoff with jitter between attempts while the daemon is away.

use std::time::Duration;

use rand::RngExt;

/// The first wait after a failure (shorter if `--backoff-max` is).
const INITIAL: Duration = Duration::from_millis(500);

pub struct Backoff {
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff { max, failures: 0 }
    }

    /// After a success: the next failure waits the initial time again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The wait after one more failure: the initial wait doubled for every
    /// failure before it, at most `max`, of which a random half (so that
    /// agents that lost the daemon together do not come back together),
    /// and never less than the daemon's `Retry-After`.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let wait = wait(
            self.failures,
            self.max,
            retry_after,
            rand::rng().random_range(0.0..=1.0),
        );
        self.failures = self.failures.saturating_add(1);
        wait
    }
}

/// The wait after `failures` earlier failures, with `jitter` in 0..=1.
fn wait(failures: u32, max: Duration, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let ceiling = INITIAL
        .min(max)
        .saturating_mul(1 << failures.min(20))
        .min(max);
    let wait = ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    match retry_after {
        Some(asked) => wait.max(asked),
        None => wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn waits_double_up_to_the_maximum() {
        let ceilings: Vec<Duration> = (0..10)
            .map(|failures| wait(failures, MINUTE, None, 1.0))
            .collect();
        assert_eq!(
            ceilings,
            [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0].map(Duration::from_secs_f64)
        );
        assert_eq!(wait(u32::MAX, MINUTE, None, 1.0), MINUTE);
    }

    #[test]
    fn jitter_takes_up_to_half_off() {
        assert_eq!(wait(3, MINUTE, None, 0.0), Duration::from_secs(2));
        assert_eq!(wait(3, MINUTE, None, 0.5), Duration::from_secs(3));
        let mut backoff = Backoff::new(MINUTE);
        for failures in 0..12 {
            let ceiling = wait(failures, MINUTE, None, 1.0);
            let waited = backoff.next(None);
            assert!(
                waited >= ceiling / 2 && waited <= ceiling,
                "{waited:?} for {failures}"
            );
        }
        backoff.reset();
        assert!(backoff.next(None) <= INITIAL);
    }

    #[test]
    fn retry_after_is_a_lower_bound() {
        assert_eq!(
            wait(0, MINUTE, Some(Duration::from_secs(5)), 1.0),
            Duration::from_secs(5)
        );
        assert_eq!(wait(9, MINUTE, Some(Duration::from_secs(1)), 1.0), MINUTE);
    }

    #[test]
    fn a_short_maximum_shortens_the_first_wait_too() {
        let max = Duration::from_millis(200);
        assert_eq!(wait(0, max, None, 1.0), max);
        assert_eq!(wait(5, max, None, 1.0), max);
    }
}
