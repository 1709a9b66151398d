//! The data testgen sends: server names, each server's load profile, and
//! the samples themselves. Everything derives from the seed, so the
//! verifier can regenerate what a worker sent instead of keeping it.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use sperform_model::model::{BucketWindow, HOUR_MS, MINUTE_MS, ServerName, Timestamp};

const DAY_MS: i64 = 24 * HOUR_MS;

/// The servers of one run: `workers` x `per_worker`, named
/// `<prefix>-w<worker>-s<server>`.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub prefix: String,
    pub seed: u64,
    pub workers: u32,
    pub per_worker: u32,
}

impl Fleet {
    pub fn total(&self) -> u64 {
        u64::from(self.workers) * u64::from(self.per_worker)
    }

    pub fn name(&self, worker: u32, server: u32) -> String {
        format!("{}-w{worker}-s{server}", self.prefix)
    }

    /// The name of the server with this index in `0..total()`.
    pub fn name_of(&self, index: u64) -> String {
        let (worker, server) = self.split(index);
        self.name(worker, server)
    }

    /// Worker and server number of the server with this index.
    pub fn split(&self, index: u64) -> (u32, u32) {
        let per_worker = u64::from(self.per_worker);
        let worker = u32::try_from(index / per_worker).unwrap_or(u32::MAX);
        let server = u32::try_from(index % per_worker).unwrap_or(u32::MAX);
        (worker, server)
    }

    pub fn index(&self, worker: u32, server: u32) -> u64 {
        u64::from(worker) * u64::from(self.per_worker) + u64::from(server)
    }

    /// The index of a name this fleet gives out, if it is one.
    pub fn index_of(&self, name: &str) -> Option<u64> {
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix("-w")?;
        let (worker, server) = rest.split_once("-s")?;
        let canonical = |text: &str| !text.is_empty() && (text == "0" || !text.starts_with('0'));
        if !canonical(worker) || !canonical(server) {
            return None;
        }
        let worker: u32 = worker.parse().ok()?;
        let server: u32 = server.parse().ok()?;
        (worker < self.workers && server < self.per_worker).then(|| self.index(worker, server))
    }

    /// The seed of one server's data.
    pub fn server_seed(&self, index: u64) -> u64 {
        mix(self.seed ^ mix(index))
    }

    /// Checks that every name of the fleet is a valid server name (the
    /// last one is the longest).
    pub fn check_names(&self) -> Result<(), String> {
        let longest = self.name(self.workers - 1, self.per_worker - 1);
        ServerName::parse(&longest).map(|_| ()).map_err(|err| {
            format!(
                "--prefix {:?} makes invalid server names: {err}",
                self.prefix
            )
        })
    }
}

/// SplitMix64's finaliser: spreads neighbouring inputs over all 64 bits.
pub fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One sample as sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time: Timestamp,
    pub cpu: f64,
    pub ram: f64,
}

/// How one server's load behaves: a base level, a daily swing peaking at a
/// server-specific hour, noise and rare CPU spikes.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    cpu_base: f64,
    cpu_swing: f64,
    ram_base: f64,
    ram_swing: f64,
    peak_offset_ms: i64,
}

impl Profile {
    pub fn new(server_seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(server_seed);
        Self::from_rng(&mut rng)
    }

    fn from_rng(rng: &mut StdRng) -> Self {
        Profile {
            cpu_base: rng.random_range(3.0..45.0),
            cpu_swing: rng.random_range(0.0..0.7),
            ram_base: rng.random_range(20.0..85.0),
            ram_swing: rng.random_range(0.0..8.0),
            peak_offset_ms: rng.random_range(0..DAY_MS),
        }
    }

    /// CPU and RAM percentages at `time`, clamped to 0..=100 and rounded
    /// to two decimals.
    pub fn load(&self, time: Timestamp, rng: &mut StdRng) -> (f64, f64) {
        let phase = (time.millis() + self.peak_offset_ms).rem_euclid(DAY_MS) as f64 / DAY_MS as f64;
        let daily = (std::f64::consts::TAU * phase).cos();
        let mut cpu = self.cpu_base * (1.0 + self.cpu_swing * daily) * rng.random_range(0.8..1.2);
        if rng.random_bool(0.02) {
            cpu += rng.random_range(20.0..60.0);
        }
        let ram = self.ram_base + self.ram_swing * daily + rng.random_range(-1.5..1.5);
        (percent(cpu), percent(ram))
    }
}

fn percent(value: f64) -> f64 {
    (value.clamp(0.0, 100.0) * 100.0).round() / 100.0
}

/// A uniformly random millisecond in `[from, to]`.
fn time_in(rng: &mut StdRng, from: i64, to: i64) -> i64 {
    if to <= from {
        from
    } else {
        rng.random_range(from..=to)
    }
}

/// The `count` samples of one server for a backfill ending at `at`, oldest
/// first. All lie in `(at - 24h, at]`. A share goes one to an hour so that
/// every hour of the day gets data; the rest go to distinct minutes of the
/// last hour (at most 45 of its 60), with further samples spread over the
/// whole day, so some buckets always stay empty.
pub fn backfill(server_seed: u64, at: Timestamp, count: usize) -> Vec<Point> {
    let mut rng = StdRng::seed_from_u64(server_seed);
    let profile = Profile::from_rng(&mut rng);
    let at_ms = at.millis();
    let day_start = at_ms - DAY_MS + 1;
    let hours = BucketWindow::hours_to(at);
    let minutes = BucketWindow::minutes_to(at);

    let daily = count.min(24).max(count * 2 / 5);
    let mut times = Vec::with_capacity(count);

    // One sample in each of up to 24 distinct hours.
    let mut hour_slots: Vec<usize> = (0..hours.count).collect();
    hour_slots.shuffle(&mut rng);
    for &slot in hour_slots.iter().take(daily.min(24)) {
        let start = hours.bucket_start(slot).millis();
        times.push(time_in(&mut rng, start, (start + HOUR_MS - 1).min(at_ms)));
    }
    // Any further daily samples anywhere in the 24 hours.
    for _ in daily.min(24)..daily {
        times.push(time_in(&mut rng, day_start, at_ms));
    }
    // The rest in the last hour, in at most 45 distinct minutes.
    let recent = count - daily;
    let mut minute_slots: Vec<usize> = (0..minutes.count).collect();
    minute_slots.shuffle(&mut rng);
    minute_slots.truncate(recent.clamp(1, 45));
    for n in 0..recent {
        let slot = match minute_slots.get(n) {
            Some(&slot) => slot,
            None => minute_slots[rng.random_range(0..minute_slots.len())],
        };
        let start = minutes.bucket_start(slot).millis();
        times.push(time_in(&mut rng, start, (start + MINUTE_MS - 1).min(at_ms)));
    }
    times.sort_unstable();

    times
        .into_iter()
        .filter_map(|ms| Timestamp::from_millis(ms).ok())
        .map(|time| {
            let (cpu, ram) = profile.load(time, &mut rng);
            Point { time, cpu, ram }
        })
        .collect()
}

/// The sample a server reports at tick `tick` of a live run.
pub fn live(profile: &Profile, server_seed: u64, tick: u64, time: Timestamp) -> Point {
    let mut rng = StdRng::seed_from_u64(mix(server_seed ^ mix(tick.wrapping_add(1))));
    let (cpu, ram) = profile.load(time, &mut rng);
    Point { time, cpu, ram }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Fleet {
        Fleet {
            prefix: "tg-test".to_owned(),
            seed: 7,
            workers: 3,
            per_worker: 12,
        }
    }

    #[test]
    fn names_map_back_to_their_index() {
        let fleet = fleet();
        for index in 0..fleet.total() {
            assert_eq!(fleet.index_of(&fleet.name_of(index)), Some(index));
        }
        assert_eq!(fleet.name_of(13), "tg-test-w1-s1");
        assert_eq!(fleet.index_of("tg-test-w3-s0"), None);
        assert_eq!(fleet.index_of("tg-test-w0-s12"), None);
        assert_eq!(fleet.index_of("tg-test-w01-s1"), None);
        assert_eq!(fleet.index_of("other-w0-s0"), None);
        assert!(fleet.check_names().is_ok());
        let bad = Fleet {
            prefix: "no spaces".to_owned(),
            ..fleet
        };
        assert!(bad.check_names().is_err());
    }

    #[test]
    fn backfill_is_deterministic_and_inside_the_day() {
        let at = Timestamp::parse_rfc3339("2026-11-27T19:58:03.250Z").unwrap();
        let points = backfill(42, at, 60);
        assert_eq!(points, backfill(42, at, 60));
        assert_ne!(points, backfill(43, at, 60));
        assert_eq!(points.len(), 60);
        for point in &points {
            assert!(point.time.millis() > at.millis() - DAY_MS);
            assert!(point.time <= at);
            assert!((0.0..=100.0).contains(&point.cpu));
            assert!((0.0..=100.0).contains(&point.ram));
        }
        assert!(points.windows(2).all(|w| w[0].time <= w[1].time));
    }

    #[test]
    fn backfill_fills_every_hour_and_most_minutes_but_not_all() {
        let at = Timestamp::parse_rfc3339("2026-11-27T19:58:03Z").unwrap();
        let hours = BucketWindow::hours_to(at);
        let minutes = BucketWindow::minutes_to(at);
        let index = |window: &BucketWindow, point: &Point| {
            let offset = point.time.millis() - window.start.millis();
            (offset >= 0).then(|| (offset / window.width_ms) as usize)
        };
        for seed in 0..20 {
            let points = backfill(seed, at, 60);
            let mut hour_hit = [false; 24];
            let mut minute_hit = [false; 60];
            for point in &points {
                if let Some(i) = index(&hours, point) {
                    hour_hit[i] = true;
                }
                if let Some(i) = index(&minutes, point) {
                    minute_hit[i] = true;
                }
            }
            assert!(hour_hit.iter().all(|&hit| hit), "seed {seed}");
            let filled = minute_hit.iter().filter(|&&hit| hit).count();
            assert!((30..60).contains(&filled), "seed {seed}: {filled} minutes");
        }
    }

    #[test]
    fn small_and_large_counts_work() {
        let at = Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap();
        assert_eq!(backfill(1, at, 1).len(), 1);
        assert_eq!(backfill(1, at, 25).len(), 25);
        assert_eq!(backfill(1, at, 1000).len(), 1000);
    }

    #[test]
    fn live_samples_depend_on_server_and_tick() {
        let profile = Profile::new(5);
        let time = Timestamp::from_millis(1_800_000_000_000).unwrap();
        assert_eq!(live(&profile, 5, 3, time), live(&profile, 5, 3, time));
        assert_ne!(live(&profile, 5, 3, time), live(&profile, 5, 4, time));
    }
}
