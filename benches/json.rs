//! Micro-benchmark of the JSON writers of `/load` and `/load/range`: the
//! hand-written `text` writer against `serde_json` on the documented
//! `LoadBody` and `RangeBody` types (see benches/json-writers.md):
//!
//!     cargo build --release --features bench --bin bench-json
//!     target/release/bench-json            # every case, 9 rounds
//!     target/release/bench-json 15         # every case, 15 rounds
//!
//! Each round times every writer on every case in turn, so that load from
//! elsewhere on the machine falls on all of them alike; the figure printed
//! is the median over the rounds of the time to write one answer. Before
//! timing, it checks that every writer makes the same bytes.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sperform::api::wire::{LoadBody, RangeBody, text};
use sperform::model::{Bucket, LoadReport, ServerName, Step, Timestamp};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// How long one writer runs on one case in a round, about.
const ROUND_TIME: Duration = Duration::from_millis(150);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-json: {err}");
            ExitCode::FAILURE
        }
    }
}

/// One answer to write, in the five ways.
struct Case {
    name: &'static str,
    answer: Answer,
}

/// The documented type of an answer, built once: serialising it alone is
/// the least any writer through these types can cost.
enum Body {
    Load(LoadBody),
    Range(RangeBody),
}

impl Body {
    fn of(answer: &Answer) -> Body {
        match answer {
            Answer::Load(report) => Body::Load(LoadBody::from(report)),
            Answer::Range {
                server,
                from,
                to,
                step,
                buckets,
            } => Body::Range(RangeBody::new(server, *from, *to, *step, buckets)),
        }
    }

    fn serde(&self) -> BenchResult<Vec<u8>> {
        Ok(match self {
            Body::Load(body) => serde_json::to_vec(body)?,
            Body::Range(body) => serde_json::to_vec(body)?,
        })
    }
}

enum Answer {
    Load(LoadReport),
    Range {
        server: ServerName,
        from: Timestamp,
        to: Timestamp,
        step: Step,
        buckets: Vec<Bucket>,
    },
}

impl Answer {
    /// The hand-written writer, as the daemon serves it today.
    fn by_hand(&self) -> Vec<u8> {
        match self {
            Answer::Load(report) => text::load(report),
            Answer::Range {
                server,
                from,
                to,
                step,
                buckets,
            } => text::range(server, *from, *to, *step, buckets),
        }
    }

    /// `serde_json::to_vec` of the documented type, as `Json<LoadBody>`
    /// would write it.
    fn serde(&self) -> BenchResult<Vec<u8>> {
        Ok(match self {
            Answer::Load(report) => serde_json::to_vec(&LoadBody::from(report))?,
            Answer::Range {
                server,
                from,
                to,
                step,
                buckets,
            } => serde_json::to_vec(&RangeBody::new(server, *from, *to, *step, buckets))?,
        })
    }

    /// The same, into a buffer sized for the answer up front, as the hand
    /// writer does, instead of one that starts at 128 bytes and grows.
    fn serde_sized(&self) -> BenchResult<Vec<u8>> {
        Ok(match self {
            Answer::Load(report) => {
                let buckets = report.by_minute.len() + report.by_hour.len();
                let mut out = Vec::with_capacity(128 + 200 * buckets);
                serde_json::to_writer(&mut out, &LoadBody::from(report))?;
                out
            }
            Answer::Range {
                server,
                from,
                to,
                step,
                buckets,
            } => {
                let mut out = Vec::with_capacity(160 + 200 * buckets.len());
                let body = RangeBody::new(server, *from, *to, *step, buckets);
                serde_json::to_writer(&mut out, &body)?;
                out
            }
        })
    }
}

/// `serde_json`'s compact formatter, but reusing the digits of the last
/// two floats, as the hand writer reuses a mean's digits for extremes equal
/// to it: the fairest serde can get to the hand writer's trick.
#[derive(Default)]
struct ReuseDigits {
    /// (bits, digits, length of digits) of recent floats.
    recent: [(u64, [u8; 32], usize); 2],
    next: usize,
}

impl serde_json::ser::Formatter for ReuseDigits {
    fn write_f64<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        value: f64,
    ) -> std::io::Result<()> {
        let bits = value.to_bits();
        for (recent_bits, digits, len) in &self.recent {
            if *len > 0 && *recent_bits == bits {
                return writer.write_all(&digits[..*len]);
            }
        }
        let mut buffer = zmij::Buffer::new();
        let text = buffer.format_finite(value).as_bytes();
        if let Some(slot) = self.recent.get_mut(self.next)
            && let Some(digits) = slot.1.get_mut(..text.len())
        {
            digits.copy_from_slice(text);
            (slot.0, slot.2) = (bits, text.len());
            self.next = (self.next + 1) % 2;
        }
        writer.write_all(text)
    }
}

impl Answer {
    /// `serde_sized`, with digits reused by the formatter.
    fn serde_reuse(&self) -> BenchResult<Vec<u8>> {
        use serde::Serialize as _;
        let (capacity, body) = match self {
            Answer::Load(report) => (
                128 + 200 * (report.by_minute.len() + report.by_hour.len()),
                Body::Load(LoadBody::from(report)),
            ),
            Answer::Range {
                server,
                from,
                to,
                step,
                buckets,
            } => (
                160 + 200 * buckets.len(),
                Body::Range(RangeBody::new(server, *from, *to, *step, buckets)),
            ),
        };
        let mut out = Vec::with_capacity(capacity);
        let mut serializer =
            serde_json::Serializer::with_formatter(&mut out, ReuseDigits::default());
        match &body {
            Body::Load(body) => body.serialize(&mut serializer)?,
            Body::Range(body) => body.serialize(&mut serializer)?,
        }
        Ok(out)
    }
}

fn run() -> BenchResult<()> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(text) => text.parse()?,
        None => 9,
    };
    if rounds == 0 {
        return Err("rounds must be at least 1".into());
    }
    let cases = cases()?;
    let bodies: Vec<Body> = cases.iter().map(|case| Body::of(&case.answer)).collect();
    for (case, body) in cases.iter().zip(&bodies) {
        let hand = case.answer.by_hand();
        let answer = &case.answer;
        let serde = [
            answer.serde()?,
            answer.serde_sized()?,
            answer.serde_reuse()?,
            body.serde()?,
        ];
        if serde.iter().any(|bytes| *bytes != hand) {
            return Err(format!("{}: the writers disagree", case.name).into());
        }
    }

    // Per case: the times of [hand, serde, serde sized, serde reusing
    // digits, serde of a built body] in each round.
    let mut times: Vec<[Vec<Duration>; 5]> = cases.iter().map(|_| Default::default()).collect();
    for _ in 0..rounds {
        for ((case, body), case_times) in cases.iter().zip(&bodies).zip(&mut times) {
            let answer = &case.answer;
            case_times[0].push(time_one(|| Ok(answer.by_hand().len()))?);
            case_times[1].push(time_one(|| Ok(answer.serde()?.len()))?);
            case_times[2].push(time_one(|| Ok(answer.serde_sized()?.len()))?);
            case_times[3].push(time_one(|| Ok(answer.serde_reuse()?.len()))?);
            case_times[4].push(time_one(|| Ok(body.serde()?.len()))?);
        }
    }

    println!("median of {rounds} rounds, microseconds per answer (ratio to by hand)");
    println!(
        "{:<22} {:>7} {:>8} {:>15} {:>15} {:>15} {:>15}",
        "case", "bytes", "by hand", "serde", "serde sized", "serde reuse", "serde of body"
    );
    for (case, case_times) in cases.iter().zip(&mut times) {
        let [hand, serde, sized, reuse, body] = case_times.each_mut().map(|times| median(times));
        let cell = |time: Duration| {
            let ratio = time.as_secs_f64() / hand.as_secs_f64();
            format!("{:.2} ({ratio:.2})", micros(time))
        };
        println!(
            "{:<22} {:>7} {:>8.2} {:>15} {:>15} {:>15} {:>15}",
            case.name,
            case.answer.by_hand().len(),
            micros(hand),
            cell(serde),
            cell(sized),
            cell(reuse),
            cell(body),
        );
    }
    Ok(())
}

/// The time one call of `write` takes, averaged over as many calls as fit
/// in `ROUND_TIME`.
fn time_one(mut write: impl FnMut() -> BenchResult<usize>) -> BenchResult<Duration> {
    // Calibrate on a few calls first, so that a round is long enough to
    // hide the clock's resolution and short enough to interleave.
    let started = Instant::now();
    let mut calls: u32 = 0;
    while started.elapsed() < ROUND_TIME / 10 {
        black_box(write()?);
        calls += 1;
    }
    let calls = calls.saturating_mul(10).max(1);
    let started = Instant::now();
    for _ in 0..calls {
        black_box(write()?);
    }
    Ok(started.elapsed() / calls)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// The answers the daemon writes most: `/load` for a server reporting once
/// a minute, once a second, or now and then; and day-long ranges.
fn cases() -> BenchResult<Vec<Case>> {
    let at = Timestamp::from_millis(1_795_822_512_345)?;
    let server = ServerName::parse("web-1.example.com")?;
    let minute = Step::parse("1m")?;
    let five_minutes = Step::parse("5m")?;
    let mut cases = Vec::new();
    for (name, per_minute, present) in [
        ("load, 1/minute", 1, 1.0),
        ("load, 1/second", 60, 1.0),
        ("load, half empty", 1, 0.5),
    ] {
        cases.push(Case {
            name,
            answer: Answer::Load(LoadReport {
                server: server.clone(),
                at,
                by_minute: buckets(at, minute, 60, per_minute, present)?,
                by_hour: buckets(at, Step::parse("1h")?, 24, per_minute * 60, present)?,
            }),
        });
    }
    for (name, step, count, per_bucket) in [
        ("range, day at 5m", five_minutes, 288, 5),
        ("range, 1500 at 1m 1/s", minute, 1500, 60),
    ] {
        let buckets = buckets(at, step, count, per_bucket, 1.0)?;
        let from = buckets.first().map_or(at, |bucket| bucket.start);
        cases.push(Case {
            name,
            answer: Answer::Range {
                server: server.clone(),
                from,
                to: at,
                step,
                buckets,
            },
        });
    }
    Ok(cases)
}

/// `count` buckets of width `step` ending with the one holding `at`, each
/// holding `samples` samples as the agent sends them (percent with two
/// decimals), or empty with probability `1 - present`. Means and extremes
/// are worked out from the samples as the store does.
fn buckets(
    at: Timestamp,
    step: Step,
    count: i64,
    samples: u64,
    present: f64,
) -> BenchResult<Vec<Bucket>> {
    let width = step.millis();
    let last = at.millis() - at.millis().rem_euclid(width);
    let mut random = Lcg(u64::try_from(count)? * 7919 + samples);
    let mut buckets = Vec::new();
    for index in 0..count {
        let mut bucket = Bucket::empty(Timestamp::from_millis(last - (count - 1 - index) * width)?);
        if random.unit() < present {
            let (mut cpu, mut ram) = (Stats::default(), Stats::default());
            for _ in 0..samples {
                cpu.add((random.unit() * 10_000.0).round() / 100.0);
                ram.add((40.0 + random.unit() * 2_000.0).round() / 100.0);
            }
            (bucket.cpu, bucket.cpu_min, bucket.cpu_max) = cpu.mean_min_max(samples);
            (bucket.ram, bucket.ram_min, bucket.ram_max) = ram.mean_min_max(samples);
            bucket.samples = samples;
        }
        buckets.push(bucket);
    }
    Ok(buckets)
}

struct Stats {
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Stats {
    fn add(&mut self, value: f64) {
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    fn mean_min_max(&self, samples: u64) -> (Option<f64>, Option<f64>, Option<f64>) {
        (
            Some(self.sum / samples as f64),
            Some(self.min),
            Some(self.max),
        )
    }
}

/// A small LCG: the same answers every run, with no dependency.
struct Lcg(u64);

impl Lcg {
    /// The next number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1_u64 << 53) as f64
    }
}
