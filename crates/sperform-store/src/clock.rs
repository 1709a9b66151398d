//! What time it is, as an input. The store (the writer's minute seal,
//! retention) and the routes ask a `Clock` rather than the system, so tests
//! can pin the time and move it exactly across minute and hour boundaries.

use std::sync::{Arc, Mutex, PoisonError};

use crate::model::{Timestamp, ValidationError};

/// Where the daemon reads the time. Cheap to clone; clones of a manual
/// clock share its time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's clock: what the daemon always runs on.
    #[default]
    System,
    /// A clock that stands still until it is set or advanced.
    Manual(ManualClock),
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Manual(clock) => clock.now(),
        }
    }
}

impl From<ManualClock> for Clock {
    fn from(clock: ManualClock) -> Clock {
        Clock::Manual(clock)
    }
}

/// A clock that only moves when told to: set to an instant, or advanced by
/// some milliseconds. Clones share one time, so a test keeps a clone and
/// moves the time the daemon sees.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: Timestamp) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    pub fn now(&self) -> Timestamp {
        *self.time()
    }

    /// Moves the clock to `at`, forwards or backwards.
    pub fn set(&self, at: Timestamp) {
        *self.time() = at;
    }

    /// Moves the clock by `millis` (backwards when negative); refuses, and
    /// leaves the clock where it was, a move past the range a `Timestamp`
    /// holds.
    pub fn advance(&self, millis: i64) -> Result<Timestamp, ValidationError> {
        let mut time = self.time();
        *time = Timestamp::from_millis(time.millis().saturating_add(millis))?;
        Ok(*time)
    }

    fn time(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        // A `Timestamp` is whole after any panic: a poisoned lock still
        // holds a valid time.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_moved() {
        let start = Timestamp::from_millis(1_800_000_000_000).unwrap();
        let manual = ManualClock::new(start);
        let clock = Clock::from(manual.clone());
        assert_eq!(clock.now(), start);
        assert_eq!(manual.advance(1).unwrap().millis(), 1_800_000_000_001);
        assert_eq!(clock.now().millis(), 1_800_000_000_001);
        manual.set(start);
        assert_eq!(clock.now(), start);
        assert_eq!(manual.advance(-1).unwrap().millis(), 1_799_999_999_999);
    }

    #[test]
    fn a_manual_clock_refuses_to_leave_the_range_of_times() {
        let manual = ManualClock::new(Timestamp::from_millis(5).unwrap());
        assert!(manual.advance(-6).is_err());
        assert_eq!(manual.now().millis(), 5);
    }

    #[test]
    fn the_system_clock_follows_the_system() {
        let before = Timestamp::now();
        let read = Clock::System.now();
        assert!(before <= read && read <= Timestamp::now());
    }
}
