//! Counters the writer keeps about its own work, for self-metrics. Lock-free
//! so that recording costs the writer next to nothing.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the commit-latency buckets, in seconds.
pub const COMMIT_SECONDS_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds of the group-size buckets, in samples per transaction.
pub const GROUP_SAMPLES_BOUNDS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0,
];

/// A histogram with fixed bucket bounds.
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus one for values above the last.
    counts: Vec<AtomicU64>,
    /// Sum of the observed values, as f64 bits.
    sum: AtomicU64,
}

/// A copy of a histogram at one moment: per-bucket (not cumulative) counts.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        // Only the writer thread observes, but stay correct if that changes.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self
                .counts
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .collect(),
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// What the writer has done since start-up.
pub struct WriterStats {
    pub samples_committed: AtomicU64,
    pub retention_deleted_samples: AtomicU64,
    pub retention_deleted_servers: AtomicU64,
    pub transactions: AtomicU64,
    pub failed_transactions: AtomicU64,
    pub commit_seconds: Histogram,
    pub group_samples: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            samples_committed: AtomicU64::new(0),
            retention_deleted_samples: AtomicU64::new(0),
            retention_deleted_servers: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            failed_transactions: AtomicU64::new(0),
            commit_seconds: Histogram::new(COMMIT_SECONDS_BOUNDS),
            group_samples: Histogram::new(GROUP_SAMPLES_BOUNDS),
        }
    }
}

/// A copy of the store's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStats {
    /// Samples accepted but not yet committed.
    pub queued_samples: u64,
    pub samples_committed: u64,
    /// Samples and servers deleted by retention.
    pub retention_deleted_samples: u64,
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
        let histogram = Histogram::new(&[1.0, 10.0]);
        for value in [0.5, 1.0, 3.0, 10.0, 11.0, 1000.0] {
            histogram.observe(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts, vec![2, 2, 2]);
        assert_eq!(snapshot.count(), 6);
        assert_eq!(snapshot.sum, 1025.5);
    }
}
