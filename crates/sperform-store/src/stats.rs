//! Counters the writer keeps about its own work, for self-metrics.

use std::sync::Mutex;

use super::retention::RetentionBatch;

/// Upper bounds of the commit-latency buckets, in seconds.
pub const COMMIT_SECONDS_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds of the group-size buckets, in samples per transaction.
pub const GROUP_SAMPLES_BOUNDS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0,
];

/// A histogram with fixed bucket bounds: per-bucket (not cumulative)
/// counts, the last one for values above the last bound.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
}

impl HistogramSnapshot {
    pub fn new(bounds: &'static [f64]) -> Self {
        HistogramSnapshot {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get_mut(index) {
            *count += 1;
        }
        self.sum += value;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What the writer has done since start-up. One lock, taken once per
/// transaction, so a snapshot is always consistent (counts and histograms
/// of the same transactions).
pub struct WriterStats(Mutex<StoreStats>);

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats(Mutex::new(StoreStats {
            queued_samples: 0,
            samples_committed: 0,
            retention_deleted_samples: 0,
            retention_hours_to_history: 0,
            retention_deleted_history_hours: 0,
            retention_deleted_servers: 0,
            transactions: 0,
            failed_transactions: 0,
            commit_seconds: HistogramSnapshot::new(COMMIT_SECONDS_BOUNDS),
            group_samples: HistogramSnapshot::new(GROUP_SAMPLES_BOUNDS),
        }))
    }
}

impl WriterStats {
    /// Records a committed transaction.
    pub fn committed(&self, samples: u64, seconds: f64, retained: &RetentionBatch) {
        if let Ok(mut stats) = self.0.lock() {
            stats.transactions += 1;
            stats.samples_committed += samples;
            stats.commit_seconds.observe(seconds);
            stats.group_samples.observe(samples as f64);
            stats.retention_deleted_samples += retained.samples_deleted;
            stats.retention_hours_to_history += retained.hours_to_history;
            stats.retention_deleted_history_hours += retained.history_hours_deleted;
            stats.retention_deleted_servers += retained.servers_deleted;
        }
    }

    /// Records a transaction that rolled back.
    pub fn failed(&self) {
        if let Ok(mut stats) = self.0.lock() {
            stats.failed_transactions += 1;
        }
    }

    /// A copy of the counters, with the queue length given.
    pub fn snapshot(&self, queued_samples: u64) -> StoreStats {
        let mut stats = match self.0.lock() {
            Ok(stats) => stats.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        stats.queued_samples = queued_samples;
        stats
    }
}

/// A copy of the store's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStats {
    /// Samples accepted but not yet committed.
    pub queued_samples: u64,
    pub samples_committed: u64,
    /// What retention did: samples deleted, hours moved to the history,
    /// history hours deleted, servers deleted.
    pub retention_deleted_samples: u64,
    pub retention_hours_to_history: u64,
    pub retention_deleted_history_hours: u64,
    pub retention_deleted_servers: u64,
    pub transactions: u64,
    pub failed_transactions: u64,
    /// Time from the start of a group's transaction to its commit.
    pub commit_seconds: HistogramSnapshot,
    /// Samples per committed transaction.
    pub group_samples: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        let mut histogram = HistogramSnapshot::new(&[1.0, 10.0]);
        for value in [0.5, 1.0, 3.0, 10.0, 11.0, 1000.0] {
            histogram.observe(value);
        }
        assert_eq!(histogram.counts, vec![2, 2, 2]);
        assert_eq!(histogram.count(), 6);
        assert_eq!(histogram.sum, 1025.5);
    }
}
