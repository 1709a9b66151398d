//! The agent's loop: a sample every interval, appended to the spool; the
//! spool's oldest batch sent whenever the last attempt succeeded or its
//! backoff has passed; and the stop, which gives what is spooled one more
//! second to reach the daemon.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sperform_model::model::{ServerName, Timestamp};
use tokio::time::{Instant, MissedTickBehavior};

use crate::api::{Api, Delivery, Outcome, Probe};
use crate::backoff::Backoff;
use crate::measure::Meter;
use crate::spool::{self, Sample, Settled, Spool};

/// How long a stop waits for the daemon to take what is spooled.
pub const STOP_BUDGET: Duration = Duration::from_secs(1);

/// What happened since start-up, for the logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub taken: u64,
    pub delivered: u64,
    /// Refused by the daemon with a `4xx` no retry can fix, and dropped.
    pub refused: u64,
    /// Dropped, oldest first, to keep the spool within `--spool-max`.
    pub dropped: u64,
    /// Sent again after a lost answer without the daemon saying whether it
    /// held them already.
    pub maybe_twice: u64,
    /// Samples that could not be written to the spool, and are lost.
    pub unspooled: u64,
}

pub struct Agent {
    api: Api,
    spool: Spool,
    meter: Meter,
    server: ServerName,
    interval: Duration,
    backoff: Backoff,
    counts: Counts,
    /// Since when, and why, nothing could be delivered.
    outage: Option<(Instant, String)>,
    /// Samples delivered since the daemon came back, while the backlog drains.
    draining: Option<u64>,
    reported_unreadable: u64,
}

/// A batch taken from the spool, on its way.
struct InFlight {
    seq: u64,
    samples: Vec<Sample>,
    delivery: Pin<Box<dyn Future<Output = Delivery> + Send>>,
}

/// What one attempt means for the next.
enum Next {
    /// Something moved: send the next batch at once.
    Now,
    /// Nothing moved: wait this long.
    After(Duration),
}

impl Agent {
    pub fn new(
        api: Api,
        spool: Spool,
        meter: Meter,
        server: ServerName,
        interval: Duration,
        backoff_max: Duration,
    ) -> Agent {
        // A spool left by an earlier run is a backlog too.
        let draining = (!spool.is_empty()).then_some(0);
        Agent {
            api,
            spool,
            meter,
            server,
            interval,
            backoff: Backoff::new(backoff_max),
            counts: Counts::default(),
            outage: None,
            draining,
            reported_unreadable: 0,
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn spooled(&self) -> u64 {
        self.spool.samples()
    }

    /// Samples and sends until `stop` completes, then flushes for at most
    /// `STOP_BUDGET`.
    pub async fn run(&mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut ticker = tokio::time::interval_at(Instant::now() + self.interval, self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut in_flight: Option<InFlight> = None;
        let mut next_attempt = Instant::now();
        loop {
            let may_send = in_flight.is_none() && !self.spool.is_empty();
            tokio::select! {
                biased;
                () = &mut stop => break,
                delivery = arrival(&mut in_flight) => {
                    if let Some(sent) = in_flight.take() {
                        next_attempt = match self.settle(sent.seq, sent.samples, delivery) {
                            Next::Now => Instant::now(),
                            Next::After(wait) => Instant::now() + wait,
                        };
                    }
                }
                _ = ticker.tick() => self.take_sample(),
                () = tokio::time::sleep_until(next_attempt), if may_send => {
                    in_flight = self.start_sending();
                    if in_flight.is_none() {
                        next_attempt = Instant::now() + self.backoff.next(None);
                    }
                }
            }
        }
        self.flush(in_flight, Instant::now() + STOP_BUDGET).await;
    }

    /// Waits one interval, takes one sample, and sends everything spooled
    /// until done or an attempt fails (or `stop`). True if the spool is
    /// empty at the end.
    pub async fn run_once(&mut self, stop: impl Future<Output = ()>) -> bool {
        tokio::pin!(stop);
        tokio::select! {
            () = &mut stop => return false,
            () = tokio::time::sleep(self.interval) => {}
        }
        self.take_sample();
        while let Some(sent) = self.start_sending() {
            let delivery = tokio::select! {
                delivery = sent.delivery => delivery,
                () = &mut stop => break,
            };
            if let Next::After(_) = self.settle(sent.seq, sent.samples, delivery) {
                break;
            }
        }
        self.spool.is_empty()
    }

    /// The stop: finishes the request in flight and sends on while the
    /// daemon takes batches, until `deadline`. A request still unanswered
    /// then is abandoned; its segment stays marked as sent, so the next
    /// start asks the daemon whether it arrived.
    async fn flush(&mut self, mut in_flight: Option<InFlight>, deadline: Instant) {
        loop {
            let Some(sent) = in_flight.take().or_else(|| self.start_sending()) else {
                return;
            };
            match tokio::time::timeout_at(deadline, sent.delivery).await {
                Ok(delivery) => {
                    if let Next::After(_) = self.settle(sent.seq, sent.samples, delivery) {
                        return;
                    }
                }
                Err(_) => {
                    log::info!(
                        "stopping: no answer yet to a batch of {}; the next start asks the daemon whether it stored it",
                        samples(sent.samples.len() as u64)
                    );
                    self.settle_spool(sent.seq, Settled::InDoubt);
                    return;
                }
            }
        }
    }

    /// Measures, and appends the sample to the spool (synced) before it is
    /// logged.
    fn take_sample(&mut self) {
        let (cpu, ram) = match self.meter.sample() {
            Ok(load) => load,
            Err(err) => {
                log::error!("cannot measure this host: {err}");
                return;
            }
        };
        let sample = Sample {
            server: self.server.clone(),
            time: Timestamp::now(),
            cpu,
            ram,
        };
        self.counts.taken += 1;
        match self.spool.append(&sample) {
            Ok(dropped) => {
                if dropped > 0 {
                    self.counts.dropped += dropped;
                    log::warn!(
                        "the spool reached --spool-max: dropped its {dropped} oldest samples ({} dropped so far)",
                        self.counts.dropped
                    );
                }
                log::debug!("sample taken at {} (cpu {cpu} %, ram {ram} %)", sample.time);
            }
            Err(err) => {
                self.counts.unspooled += 1;
                log::error!(
                    "cannot write the sample taken at {} to the spool in {}: {err}; it is lost ({} so far)",
                    sample.time,
                    self.spool.dir().display(),
                    self.counts.unspooled
                );
            }
        }
    }

    /// Takes the oldest batch and starts delivering it.
    fn start_sending(&mut self) -> Option<InFlight> {
        let batch = match self.spool.take_batch() {
            Ok(batch) => batch?,
            Err(err) => {
                log::error!(
                    "cannot read the spool in {}: {err}",
                    self.spool.dir().display()
                );
                return None;
            }
        };
        self.report_unreadable();
        let probe = if batch.verify_first {
            Probe::of(&batch.samples)
        } else {
            None
        };
        let body = spool::batch_body(&batch.samples);
        let api = self.api.clone();
        Some(InFlight {
            seq: batch.seq,
            samples: batch.samples,
            delivery: Box::pin(async move { api.deliver(body, probe).await }),
        })
    }

    /// Applies an attempt's outcome to the spool, the counts and the
    /// backoff, and logs what matters.
    fn settle(&mut self, seq: u64, batch: Vec<Sample>, delivery: Delivery) -> Next {
        let count = batch.len() as u64;
        if let Some(reason) = &delivery.unverified_resend {
            log::warn!(
                "sent a batch of {} again after a lost answer without knowing whether the daemon had stored it ({reason}): they may be stored twice",
                samples(count)
            );
        }
        match delivery.outcome {
            Outcome::Stored | Outcome::FoundStored => {
                if delivery.outcome == Outcome::FoundStored {
                    log::info!(
                        "a batch of {} whose answer was lost is stored; it is not sent again",
                        samples(count)
                    );
                } else if delivery.unverified_resend.is_some() {
                    self.counts.maybe_twice += count;
                }
                self.settle_spool(seq, Settled::Stored);
                self.counts.delivered += count;
                self.delivered(count);
                Next::Now
            }
            Outcome::Rejected { status, message } => {
                let (kept, refused) = split_refused(batch, status, &message);
                self.counts.refused += refused.len() as u64;
                log::warn!(
                    "the daemon refused {} of {count} samples{} ({status}: {message}); dropped them ({} dropped so far)",
                    refused.len(),
                    time_range(&refused),
                    self.counts.refused
                );
                self.settle_spool(seq, Settled::Keep(kept));
                Next::Now
            }
            Outcome::NotStored {
                reason,
                retry_after,
            } => {
                self.settle_spool(seq, Settled::NotStored);
                Next::After(self.failed(reason, retry_after))
            }
            Outcome::InDoubt { reason } => {
                self.settle_spool(seq, Settled::InDoubt);
                Next::After(self.failed(reason, None))
            }
        }
    }

    fn settle_spool(&mut self, seq: u64, settled: Settled) {
        if let Err(err) = self.spool.settle(seq, settled) {
            log::error!(
                "cannot update the spool in {}: {err}",
                self.spool.dir().display()
            );
        }
    }

    fn delivered(&mut self, count: u64) {
        self.backoff.reset();
        if let Some((since, _)) = self.outage.take() {
            log::info!(
                "delivering again after {}; {} in the spool",
                humantime::format_duration(Duration::from_secs(since.elapsed().as_secs())),
                samples(self.spool.samples())
            );
            self.draining = Some(0);
        }
        if let Some(delivered) = &mut self.draining {
            *delivered += count;
            if self.spool.is_empty() {
                log::info!("the backlog is delivered ({})", samples(*delivered));
                self.draining = None;
            }
        }
    }

    /// Logs a failed attempt (the first of an outage, or one with a new
    /// reason, as a warning) and returns the wait before the next one.
    fn failed(&mut self, reason: String, retry_after: Option<Duration>) -> Duration {
        let wait = self.backoff.next(retry_after);
        match &mut self.outage {
            None => {
                log::warn!(
                    "cannot deliver to {}: {reason}; samples wait in the spool ({} now), next attempt in {}",
                    self.api.base(),
                    self.spool.samples(),
                    humantime::format_duration(round_millis(wait))
                );
                self.outage = Some((Instant::now(), reason));
                self.draining = None;
            }
            Some((_, last)) if *last != reason => {
                log::warn!(
                    "still cannot deliver: {reason}; {} in the spool",
                    samples(self.spool.samples())
                );
                *last = reason;
            }
            Some(_) => log::debug!(
                "still cannot deliver; next attempt in {}",
                humantime::format_duration(round_millis(wait))
            ),
        }
        wait
    }

    fn report_unreadable(&mut self) {
        let unreadable = self.spool.unreadable();
        if unreadable > self.reported_unreadable {
            log::warn!(
                "skipped {} unreadable lines of the spool (a write cut short by a crash)",
                unreadable - self.reported_unreadable
            );
            self.reported_unreadable = unreadable;
        }
    }
}

/// "1 sample", "2 samples".
pub fn samples(count: u64) -> String {
    if count == 1 {
        "1 sample".to_owned()
    } else {
        format!("{count} samples")
    }
}

/// The delivery of the batch in flight; never completes when there is none.
async fn arrival(in_flight: &mut Option<InFlight>) -> Delivery {
    match in_flight {
        Some(sent) => (&mut sent.delivery).await,
        None => std::future::pending().await,
    }
}

/// Splits a refused batch into the samples to keep and those to drop. A
/// `422` names its first bad entry: a sample too old for the daemon's
/// retention means every sample at or before its time is too (the limit only
/// moves forward), one too far ahead of the daemon's clock means every
/// sample at or after it; any other bad entry goes alone. Every other
/// refusal drops the batch.
pub fn split_refused(
    samples: Vec<Sample>,
    status: u16,
    message: &str,
) -> (Vec<Sample>, Vec<Sample>) {
    let bad = (status == 422)
        .then(|| message.strip_prefix("entry ")?.split_once(": "))
        .flatten()
        .and_then(|(index, reason)| Some((index.parse::<usize>().ok()?, reason)))
        .filter(|(index, _)| *index < samples.len());
    let Some((index, reason)) = bad else {
        return (Vec::new(), samples);
    };
    let bad_time = samples[index].time;
    let too_old = reason.contains("older than the retention");
    let too_new = reason.contains("ahead of the daemon's clock");
    let mut kept = Vec::with_capacity(samples.len());
    let mut refused = Vec::new();
    for (position, sample) in samples.into_iter().enumerate() {
        if position == index
            || (too_old && sample.time <= bad_time)
            || (too_new && sample.time >= bad_time)
        {
            refused.push(sample);
        } else {
            kept.push(sample);
        }
    }
    (kept, refused)
}

/// " taken from <first> to <last>" (or " taken at <time>").
fn time_range(samples: &[Sample]) -> String {
    let first = samples.iter().map(|sample| sample.time).min();
    let last = samples.iter().map(|sample| sample.time).max();
    match (first, last) {
        (Some(first), Some(last)) if first == last => format!(" taken at {first}"),
        (Some(first), Some(last)) => format!(" taken from {first} to {last}"),
        _ => String::new(),
    }
}

fn round_millis(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis().try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seconds: i64) -> Sample {
        Sample {
            server: ServerName::parse("web-1").unwrap(),
            time: Timestamp::from_millis(1_764_273_480_000 + seconds * 1000).unwrap(),
            cpu: 1.0,
            ram: 2.0,
        }
    }

    fn seconds(samples: &[Sample]) -> Vec<i64> {
        samples
            .iter()
            .map(|sample| (sample.time.millis() - 1_764_273_480_000) / 1000)
            .collect()
    }

    fn batch() -> Vec<Sample> {
        (0..6).map(|index| sample(index * 10)).collect()
    }

    #[test]
    fn a_sample_older_than_retention_takes_the_older_ones_with_it() {
        let (kept, refused) = split_refused(
            batch(),
            422,
            "entry 2: time 2025-11-20T19:58:20Z is older than the retention period (oldest accepted: 2025-11-20T19:58:25Z)",
        );
        assert_eq!(seconds(&refused), [0, 10, 20]);
        assert_eq!(seconds(&kept), [30, 40, 50]);
    }

    #[test]
    fn a_sample_ahead_of_the_daemon_takes_the_newer_ones_with_it() {
        let (kept, refused) = split_refused(
            batch(),
            422,
            "entry 4: time 2025-11-27T20:05:00Z is more than 5 minutes ahead of the daemon's clock (2025-11-27T19:58:00Z)",
        );
        assert_eq!(seconds(&refused), [40, 50]);
        assert_eq!(seconds(&kept), [0, 10, 20, 30]);
    }

    #[test]
    fn any_other_bad_entry_goes_alone() {
        let (kept, refused) = split_refused(
            batch(),
            422,
            "entry 1: cpu must be a number from 0 to 100 (percent), got 120",
        );
        assert_eq!(seconds(&refused), [10]);
        assert_eq!(seconds(&kept), [0, 20, 30, 40, 50]);
    }

    #[test]
    fn a_refusal_that_names_no_entry_drops_the_batch() {
        for (status, message) in [
            (422, "batch must hold 1 to 10000 entries"),
            (422, "entry 99: out of range"),
            (422, "entry x: what"),
            (400, "malformed JSON: EOF"),
            (413, "body over 4 MiB"),
        ] {
            let (kept, refused) = split_refused(batch(), status, message);
            assert!(kept.is_empty(), "{message}");
            assert_eq!(refused.len(), 6, "{message}");
        }
    }

    #[test]
    fn time_ranges_for_the_log() {
        assert_eq!(time_range(&[]), "");
        assert_eq!(time_range(&[sample(0)]), " taken at 2025-11-27T19:58:00Z");
        assert_eq!(
            time_range(&[sample(0), sample(30)]),
            " taken from 2025-11-27T19:58:00Z to 2025-11-27T19:58:30Z"
        );
    }
}
