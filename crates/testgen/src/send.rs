//! The sending phase: each worker owns a slice of the fleet and reports its
//! servers' samples, either a day's backfill or live every interval.

use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use reqwest::Method;
use sperform_model::model::Timestamp;
use sperform_model::wire::{BatchEntry, SampleBody, WireTime};
use tokio::time::{Instant, MissedTickBehavior};

use crate::http::{Api, Stats};
use crate::plan::{self, Fleet, Point, Profile};

/// What a run sends.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `samples` per server over the 24 hours before `at`.
    Backfill { at: Timestamp, samples: usize },
    /// One sample per server every `interval`, stamped with the current
    /// time, until `duration` has passed.
    Live {
        interval: Duration,
        duration: Duration,
    },
}

/// Everything the workers share.
pub struct Run {
    pub api: Arc<Api>,
    pub fleet: Fleet,
    pub mode: Mode,
    /// Samples per request; 1 uses the single-sample endpoint.
    pub batch: usize,
    pub progress: ProgressBar,
}

/// What the daemon acknowledged for one server.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Samples acknowledged with a 2xx.
    pub stored: u64,
    /// Backfill: indices of planned samples whose request failed.
    pub lost: Vec<u32>,
    /// Live: the acknowledged samples themselves.
    pub points: Vec<Point>,
}

impl Ledger {
    /// The samples the daemon should hold for this server.
    pub fn expected(&self, run: &Run, index: u64) -> Vec<Point> {
        match run.mode {
            Mode::Backfill { at, samples } => {
                let planned = plan::backfill(run.fleet.server_seed(index), at, samples);
                if self.lost.is_empty() {
                    return planned;
                }
                let mut lost = self.lost.clone();
                lost.sort_unstable();
                (0u32..)
                    .zip(planned)
                    .filter(|(n, _)| lost.binary_search(n).is_err())
                    .map(|(_, point)| point)
                    .collect()
            }
            Mode::Live { .. } => self.points.clone(),
        }
    }
}

/// One worker's result.
pub struct Outcome {
    pub stats: Stats,
    pub ledgers: Vec<Ledger>,
}

/// A sample on its way: which server of the worker, which of its samples.
#[derive(Debug, Clone, Copy)]
struct Item {
    server: u32,
    index: u32,
    point: Point,
}

/// The time of a sample in one of the forms the API accepts; testgen
/// rotates through them so that each is exercised.
fn wire_time(time: Timestamp, variant: u32) -> WireTime {
    match variant % 3 {
        0 => WireTime::Utc(time),
        1 => WireTime::Offset(time, FIXED_OFFSET_S),
        _ => WireTime::UnixSeconds(time),
    }
}

/// UTC+05:30: an offset that is not a whole number of hours.
const FIXED_OFFSET_S: i32 = 5 * 3600 + 30 * 60;

struct Worker<'a> {
    run: &'a Run,
    worker: u32,
    stats: Stats,
    ledgers: Vec<Ledger>,
}

impl<'a> Worker<'a> {
    fn new(run: &'a Run, worker: u32) -> Self {
        Worker {
            run,
            worker,
            stats: Stats::new(),
            ledgers: vec![Ledger::default(); run.fleet.per_worker as usize],
        }
    }

    fn name(&self, server: u32) -> String {
        self.run.fleet.name(self.worker, server)
    }

    fn seed(&self, server: u32) -> u64 {
        self.run
            .fleet
            .server_seed(self.run.fleet.index(self.worker, server))
    }

    /// Sends `items` in one request: the single-sample endpoint for one
    /// item when the batch size is 1, the batch endpoint otherwise.
    async fn send(&mut self, items: &[Item]) {
        let Some(first) = items.first() else {
            return;
        };
        let (path, body) = if self.run.batch == 1 {
            let body = SampleBody {
                cpu: first.point.cpu,
                ram: first.point.ram,
                time: Some(wire_time(first.point.time, first.index)),
            };
            let path = format!("/api/v1/servers/{}/samples", self.name(first.server));
            (path, serde_json::to_vec(&body))
        } else {
            let entries: Vec<BatchEntry> = items
                .iter()
                .map(|item| BatchEntry {
                    server: self.name(item.server),
                    cpu: item.point.cpu,
                    ram: item.point.ram,
                    time: Some(wire_time(item.point.time, item.index)),
                })
                .collect();
            ("/api/v1/samples".to_owned(), serde_json::to_vec(&entries))
        };
        let outcome = match body {
            Ok(body) => match self.run.api.request(Method::POST, &path, Some(body)).await {
                Ok(answer) => {
                    self.stats.answered(answer.latency);
                    if answer.status.is_success() {
                        Ok(())
                    } else {
                        Err((
                            answer.status.as_u16().to_string(),
                            format!("POST {path}: {}: {}", answer.status, answer.message()),
                        ))
                    }
                }
                Err(err) => Err((
                    err.kind().to_owned(),
                    format!("POST {path}: {}", err.message),
                )),
            },
            Err(err) => Err((
                "encode".to_owned(),
                format!("could not encode a body: {err}"),
            )),
        };
        match outcome {
            Ok(()) => {
                self.stats.samples += items.len() as u64;
                let live = matches!(self.run.mode, Mode::Live { .. });
                for item in items {
                    if let Some(ledger) = self.ledgers.get_mut(item.server as usize) {
                        ledger.stored += 1;
                        if live {
                            ledger.points.push(item.point);
                        }
                    }
                }
            }
            Err((kind, message)) => {
                self.stats.error(kind, message);
                for item in items {
                    if let Some(ledger) = self.ledgers.get_mut(item.server as usize) {
                        ledger.lost.push(item.index);
                    }
                }
            }
        }
        self.run.progress.inc(items.len() as u64);
    }

    /// Sends every full batch at the front of `pending` (and, when
    /// `flush`, the rest too), keeping what is left.
    async fn drain(&mut self, pending: &mut Vec<Item>, flush: bool) {
        let batch = self.run.batch;
        let mut sent = 0;
        while sent < pending.len() && (flush || pending.len() - sent >= batch) {
            if self.run.api.is_lost() {
                pending.clear();
                return;
            }
            let end = (sent + batch).min(pending.len());
            self.send(&pending[sent..end]).await;
            sent = end;
        }
        pending.drain(..sent);
    }

    async fn backfill(mut self, at: Timestamp, samples: usize) -> Outcome {
        let per_worker = self.run.fleet.per_worker;
        // Servers generated together and interleaved sample by sample, as
        // agents reporting side by side would be; enough to fill a batch.
        let group = u32::try_from(self.run.batch.div_ceil(samples).max(16))
            .unwrap_or(u32::MAX)
            .min(per_worker);
        let mut pending: Vec<Item> = Vec::new();
        let mut start = 0;
        while start < per_worker && !self.run.api.is_lost() {
            let end = start.saturating_add(group).min(per_worker);
            let plans: Vec<Vec<Point>> = (start..end)
                .map(|server| plan::backfill(self.seed(server), at, samples))
                .collect();
            for index in 0..samples {
                for (server, points) in (start..end).zip(&plans) {
                    if let Some(&point) = points.get(index) {
                        let index = u32::try_from(index).unwrap_or(u32::MAX);
                        pending.push(Item {
                            server,
                            index,
                            point,
                        });
                    }
                }
            }
            self.drain(&mut pending, false).await;
            start = end;
        }
        self.drain(&mut pending, true).await;
        Outcome {
            stats: self.stats,
            ledgers: self.ledgers,
        }
    }

    async fn live(mut self, started: Instant, interval: Duration, duration: Duration) -> Outcome {
        let per_worker = self.run.fleet.per_worker;
        let profiles: Vec<Profile> = (0..per_worker)
            .map(|server| Profile::new(self.seed(server)))
            .collect();
        // Spread the workers over the interval rather than all at once.
        let workers = f64::from(self.run.fleet.workers);
        let stagger = interval.mul_f64(f64::from(self.worker) / workers);
        let deadline = started + duration;
        let mut ticker = tokio::time::interval_at(started + stagger, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut pending: Vec<Item> = Vec::new();
        let mut tick: u32 = 0;
        loop {
            // Every server reports at least once, however short the run;
            // after that no tick starts at or past the deadline.
            if tick == 0 {
                ticker.tick().await;
            } else if tokio::time::timeout_at(deadline, ticker.tick())
                .await
                .is_err()
            {
                break;
            }
            if self.run.api.is_lost() {
                break;
            }
            let now = Timestamp::now();
            for (server, profile) in (0..per_worker).zip(&profiles) {
                pending.push(Item {
                    server,
                    index: tick,
                    point: plan::live(profile, self.seed(server), u64::from(tick), now),
                });
                if pending.len() >= self.run.batch {
                    self.drain(&mut pending, false).await;
                }
            }
            self.drain(&mut pending, true).await;
            tick = tick.saturating_add(1);
        }
        Outcome {
            stats: self.stats,
            ledgers: self.ledgers,
        }
    }
}

/// Runs all workers to completion and returns their outcomes in worker
/// order.
pub async fn run_workers(run: Arc<Run>) -> Result<Vec<Outcome>, String> {
    let started = Instant::now();
    let mut handles = Vec::with_capacity(run.fleet.workers as usize);
    for worker in 0..run.fleet.workers {
        let run = Arc::clone(&run);
        handles.push(tokio::spawn(async move {
            let state = Worker::new(&run, worker);
            match run.mode {
                Mode::Backfill { at, samples } => state.backfill(at, samples).await,
                Mode::Live { interval, duration } => state.live(started, interval, duration).await,
            }
        }));
    }
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(
            handle
                .await
                .map_err(|err| format!("a worker failed: {err}"))?,
        );
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_take_every_accepted_form() {
        let time = Timestamp::parse_rfc3339("2026-11-27T19:58:03.250Z").unwrap();
        let text = |variant| serde_json::to_string(&wire_time(time, variant)).unwrap();
        assert_eq!(text(0), "\"2026-11-27T19:58:03.250Z\"");
        assert_eq!(text(1), "\"2026-11-28T01:28:03.250+05:30\"");
        assert_eq!(text(2), "1795809483.25");
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-28T01:28:03.250+05:30").unwrap(),
            time
        );
        assert_eq!(Timestamp::from_unix_seconds(1795809483.25).unwrap(), time);
    }
}
