//! The JSON shapes of API v1: request bodies in, response bodies out, and
//! the mapping of JSON parse errors to statuses (syntax 400, data 422). The
//! shapes the agent and testgen share with the daemon are defined once, in
//! `sperform_model::wire`; this module parses them with the daemon's rules
//! and writes the hot answers by hand.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::Cursor;

use rocket::http::{ContentType, Status};
use rocket::request::Request;
use rocket::response::{self, Body, Responder, Response};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
pub use sperform_model::wire::{
    BatchEntry, BucketBody, LoadBody, RangeBody, SampleBody, ServerBody,
};

use crate::error::ApiError;
use crate::model::{MAX_BATCH_LEN, Sample, ServerName, TimePolicy, Timestamp};

/// Accepts `T` only when written as a JSON object. Serde's derived structs
/// also take an array of field values (`[12.5, 40]`), which no client
/// should rely on.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

/// Parses and validates the body of a single-sample POST.
pub fn parse_sample(
    body: &[u8],
    server: ServerName,
    policy: &TimePolicy,
) -> Result<Sample, ApiError> {
    let Object(body): Object<SampleBody> =
        serde_json::from_slice(body).map_err(|err| json_error(&err, ""))?;
    Ok(body.into_sample(server, policy)?)
}

/// Parses and validates a batch body: a JSON array of 1 to 10,000 entries.
/// The error names the index of the first bad entry.
pub fn parse_batch(body: &[u8], policy: &TimePolicy) -> Result<Vec<Sample>, ApiError> {
    let progress = BatchProgress::default();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = BatchSeed {
        policy,
        progress: &progress,
    }
    .deserialize(&mut deserializer)
    .and_then(|samples| deserializer.end().map(|()| samples));
    let entry_prefix = || match progress.entered.get() {
        true => format!("entry {}: ", progress.index.get()),
        false => String::new(),
    };
    match parsed {
        Ok(samples) if samples.is_empty() => Err(ApiError::unprocessable(format!(
            "a batch must hold 1 to {MAX_BATCH_LEN} samples, got none"
        ))),
        Ok(samples) => Ok(samples),
        Err(err) => match progress.refusal.take() {
            Some(refusal) => Err(ApiError::unprocessable(format!(
                "{}{refusal}",
                entry_prefix()
            ))),
            None => Err(json_error(&err, &entry_prefix())),
        },
    }
}

/// Parses a time given in query parameter `name`, in either request form.
pub fn parse_time_param(name: &str, text: &str) -> Result<Timestamp, ApiError> {
    let parsed = match text.parse::<f64>() {
        Ok(seconds) => Timestamp::from_unix_seconds(seconds),
        // A `+` of an offset arrives as a space unless sent as %2B.
        Err(_) => Timestamp::parse_rfc3339(&text.replace(' ', "+")),
    };
    parsed.map_err(|err| ApiError::unprocessable(format!("query parameter `{name}`: {err}")))
}

/// Maps a serde_json failure: broken JSON is a 400, well-formed JSON of the
/// wrong shape a 422.
fn json_error(err: &serde_json::Error, prefix: &str) -> ApiError {
    match err.classify() {
        Category::Data => ApiError::unprocessable(format!("{prefix}{err}")),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(Status::BadRequest, format!("malformed JSON: {prefix}{err}"))
        }
    }
}

/// Where batch parsing got to, so that an error can name its entry.
#[derive(Default)]
struct BatchProgress {
    /// Whether parsing reached the inside of the array.
    entered: Cell<bool>,
    index: Cell<usize>,
    /// A refusal from validation (not from JSON), kept unformatted.
    refusal: RefCell<Option<String>>,
}

/// Deserializes and validates the batch array entry by entry, so errors come
/// in order and a bad entry stops the parse at once.
struct BatchSeed<'a> {
    policy: &'a TimePolicy,
    progress: &'a BatchProgress,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<Sample>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<Sample>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of samples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Sample>, A::Error> {
        self.progress.entered.set(true);
        let mut samples = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH_LEN));
        loop {
            self.progress.index.set(samples.len());
            let Some(Object(entry)) = seq.next_element::<Object<BatchEntry>>()? else {
                return Ok(samples);
            };
            if samples.len() == MAX_BATCH_LEN {
                return Err(self.refuse(format!(
                    "a batch must hold 1 to {MAX_BATCH_LEN} samples; this one holds more"
                )));
            }
            match entry.into_sample(self.policy) {
                Ok(sample) => samples.push(sample),
                Err(err) => return Err(self.refuse(err.to_string())),
            }
        }
    }
}

impl BatchSeed<'_> {
    fn refuse<E: de::Error>(&self, reason: String) -> E {
        self.progress.refusal.replace(Some(reason));
        E::custom("entry refused")
    }
}

/// `/load`'s and `/load/range`'s answers as JSON text, written without
/// serde: the same bytes `serde_json` makes of `LoadBody` and `RangeBody`
/// (the tests compare them), in well under serde's time. An answer holds
/// 84 buckets (`/load`) or up to `MAX_RANGE_BUCKETS` (`/load/range`) of six
/// floats each, so writing it is a large part of serving it. `bench-json` times both
/// writers; serde stays out of this path until it comes within 10 % (see
/// benches/README.md). A bucket's extremes that equal its mean (every
/// bucket of one sample) reuse the mean's digits.
pub mod text {
    use crate::model::{Bucket, LoadReport, ServerName, Step, Timestamp};

    /// Bytes a bucket takes at most, about: for the first allocation.
    const BUCKET_BYTES: usize = 200;

    pub fn load(report: &LoadReport) -> Vec<u8> {
        let buckets = report.by_minute.len() + report.by_hour.len();
        let mut out = Vec::with_capacity(128 + BUCKET_BYTES * buckets);
        out.extend_from_slice(b"{\"server\":");
        string(&mut out, report.server.as_str());
        out.extend_from_slice(b",\"at\":");
        string(&mut out, &report.at.to_rfc3339());
        out.extend_from_slice(b",\"by_minute\":");
        buckets_array(&mut out, &report.by_minute);
        out.extend_from_slice(b",\"by_hour\":");
        buckets_array(&mut out, &report.by_hour);
        out.push(b'}');
        out
    }

    pub fn range(
        server: &ServerName,
        from: Timestamp,
        to: Timestamp,
        step: Step,
        buckets: &[Bucket],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + BUCKET_BYTES * buckets.len());
        out.extend_from_slice(b"{\"server\":");
        string(&mut out, server.as_str());
        out.extend_from_slice(b",\"from\":");
        string(&mut out, &from.to_rfc3339());
        out.extend_from_slice(b",\"to\":");
        string(&mut out, &to.to_rfc3339());
        out.extend_from_slice(b",\"step\":");
        string(&mut out, &step.label());
        out.extend_from_slice(b",\"buckets\":");
        buckets_array(&mut out, buckets);
        out.push(b'}');
        out
    }

    fn buckets_array(out: &mut Vec<u8>, buckets: &[Bucket]) {
        out.push(b'[');
        for (index, bucket) in buckets.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            self::bucket(out, bucket);
        }
        out.push(b']');
    }

    /// The fields in `BucketBody`'s order.
    fn bucket(out: &mut Vec<u8>, bucket: &Bucket) {
        out.extend_from_slice(b"{\"start\":\"");
        match bucket.start.rfc3339_seconds_bytes() {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => out.extend_from_slice(bucket.start.to_rfc3339_seconds().as_bytes()),
        }
        let (mut cpu_digits, mut ram_digits) = (zmij::Buffer::new(), zmij::Buffer::new());
        let cpu = number(&mut cpu_digits, bucket.cpu);
        let ram = number(&mut ram_digits, bucket.ram);
        out.extend_from_slice(b"\",\"cpu\":");
        out.extend_from_slice(cpu.as_bytes());
        out.extend_from_slice(b",\"ram\":");
        out.extend_from_slice(ram.as_bytes());
        out.extend_from_slice(b",\"cpu_min\":");
        number_like(out, bucket.cpu_min, bucket.cpu, cpu);
        out.extend_from_slice(b",\"cpu_max\":");
        number_like(out, bucket.cpu_max, bucket.cpu, cpu);
        out.extend_from_slice(b",\"ram_min\":");
        number_like(out, bucket.ram_min, bucket.ram, ram);
        out.extend_from_slice(b",\"ram_max\":");
        number_like(out, bucket.ram_max, bucket.ram, ram);
        out.extend_from_slice(b",\"samples\":");
        out.extend_from_slice(itoa::Buffer::new().format(bucket.samples).as_bytes());
        out.push(b'}');
    }

    /// A number as `serde_json` writes an `Option<f64>`: `null` for none
    /// (and for a non-finite value), else the shortest digits that read
    /// back as the same float.
    fn number(digits: &mut zmij::Buffer, value: Option<f64>) -> &str {
        match value {
            Some(value) if value.is_finite() => digits.format_finite(value),
            _ => "null",
        }
    }

    /// `value`, reusing `like_text` when it is the same float as `like`.
    fn number_like(out: &mut Vec<u8>, value: Option<f64>, like: Option<f64>, like_text: &str) {
        let same = matches!((value, like), (Some(a), Some(b)) if a.to_bits() == b.to_bits());
        if same {
            out.extend_from_slice(like_text.as_bytes());
        } else {
            out.extend_from_slice(number(&mut zmij::Buffer::new(), value).as_bytes());
        }
    }

    /// A JSON string, escaped as `serde_json` escapes it.
    fn string(out: &mut Vec<u8>, text: &str) {
        // Writing to a Vec cannot fail, and a str always serialises.
        if serde_json::to_writer(&mut *out, text).is_err() {
            out.extend_from_slice(b"null");
        }
    }
}

/// A JSON answer already written out (see `text`). Rocket sends a body in
/// chunks of `Body::DEFAULT_MAX_CHUNK` (4 KiB), each a write of its own to
/// the socket, so a `/load` answer would take several. This one goes in
/// one chunk of its own size, up to `MAX_CHUNK`.
#[derive(Debug)]
pub struct JsonText(pub Vec<u8>);

impl JsonText {
    /// The largest chunk: bigger answers are sent in pieces this size.
    const MAX_CHUNK: usize = 64 * 1024;
}

impl<'r> Responder<'r, 'static> for JsonText {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let chunk = self.0.len().clamp(Body::DEFAULT_MAX_CHUNK, Self::MAX_CHUNK);
        Response::build()
            .header(ContentType::JSON)
            .sized_body(self.0.len(), Cursor::new(self.0))
            .max_chunk_size(chunk)
            .ok()
    }
}

/// Response of `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bucket, LoadReport, Step};

    fn bucket(start_ms: i64, values: Option<[f64; 6]>, samples: u64) -> Bucket {
        let mut bucket = Bucket::empty(Timestamp::from_millis(start_ms).unwrap());
        if let Some([cpu, ram, cpu_min, cpu_max, ram_min, ram_max]) = values {
            bucket.cpu = Some(cpu);
            bucket.ram = Some(ram);
            bucket.cpu_min = Some(cpu_min);
            bucket.cpu_max = Some(cpu_max);
            bucket.ram_min = Some(ram_min);
            bucket.ram_max = Some(ram_max);
            bucket.samples = samples;
        }
        bucket
    }

    /// Buckets that cover what the text writer treats apart: empty ones,
    /// extremes equal to the mean or not, long and short digits, zero, 100,
    /// tiny values written with an exponent, large counts.
    fn sample_buckets() -> Vec<Bucket> {
        let start = 1_795_822_500_000;
        vec![
            bucket(start, None, 0),
            bucket(start + 60_000, Some([95.0, 9.0, 95.0, 95.0, 9.0, 9.0]), 1),
            bucket(
                start + 120_000,
                Some([
                    51.708333333333336,
                    49.93333333333333,
                    0.75,
                    99.75,
                    1.0,
                    99.5,
                ]),
                60,
            ),
            bucket(
                start + 180_000,
                Some([0.0, 100.0, 0.0, 0.0, 100.0, 100.0]),
                2,
            ),
            bucket(
                start + 240_000,
                Some([1e-7, 3.5e-5, 1e-7, 2e-7, 0.1, 0.30000000000000004]),
                7,
            ),
            bucket(
                start + 300_000,
                Some([
                    33.333333333333336,
                    66.66666666666667,
                    33.33333333333333,
                    33.333333333333336,
                    66.66666666666667,
                    66.66666666666667,
                ]),
                u64::from(u32::MAX) + 5,
            ),
        ]
    }

    #[test]
    fn the_load_text_is_what_serde_makes_of_load_body() {
        let mut by_hour = sample_buckets();
        by_hour.reverse();
        let report = LoadReport {
            server: ServerName::parse("web-1.example.com:8080_a").unwrap(),
            at: Timestamp::from_millis(1_795_822_512_345).unwrap(),
            by_minute: sample_buckets(),
            by_hour,
        };
        let text = String::from_utf8(text::load(&report)).unwrap();
        assert_eq!(
            text,
            serde_json::to_string(&LoadBody::from(&report)).unwrap()
        );
        // And it is the JSON the API documents.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["by_minute"][1]["cpu_min"], 95.0);
        assert_eq!(value["by_minute"][0]["cpu"], serde_json::Value::Null);
    }

    /// Many buckets of values as they come: two-decimal samples, their
    /// means, extremes equal to the mean or not, the edges of the float
    /// range, non-finite values (written as `null`), starts of any day.
    #[test]
    fn the_text_is_what_serde_makes_of_any_values() {
        struct Lcg(u64);
        impl Lcg {
            fn next(&mut self) -> u64 {
                self.0 = self
                    .0
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                self.0 >> 11
            }

            fn value(&mut self) -> Option<f64> {
                const EDGES: [f64; 10] = [
                    0.0,
                    -0.0,
                    100.0,
                    f64::MIN_POSITIVE,
                    5e-324,
                    f64::MAX,
                    1e21,
                    1e-7,
                    f64::NAN,
                    f64::INFINITY,
                ];
                match self.next() % 5 {
                    0 => None,
                    1 => Some((self.next() % 10_001) as f64 / 100.0),
                    2 => Some((self.next() % 1_000_000) as f64 / 7.0),
                    3 => Some(f64::from_bits(self.next() << 11)),
                    _ => Some(EDGES[(self.next() % EDGES.len() as u64) as usize]),
                }
            }
        }

        let mut random = Lcg(0x5eed);
        let mut buckets = Vec::new();
        for index in 0..4000_i64 {
            let (cpu, ram) = (random.value(), random.value());
            // Half the buckets hold one sample: extremes equal to the mean.
            let one_sample = random.next().is_multiple_of(2);
            let mut extreme = |mean: Option<f64>| match one_sample {
                true => mean,
                false => random.value(),
            };
            let (cpu_min, cpu_max, ram_min, ram_max) =
                (extreme(cpu), extreme(cpu), extreme(ram), extreme(ram));
            buckets.push(Bucket {
                start: Timestamp::from_millis(index * 86_399_999).unwrap(),
                cpu,
                ram,
                cpu_min,
                cpu_max,
                ram_min,
                ram_max,
                samples: random.next(),
            });
        }
        let server = ServerName::parse("db-1").unwrap();
        let from = Timestamp::from_millis(0).unwrap();
        let to = Timestamp::from_millis(1_795_822_800_500).unwrap();
        let step = Step::parse("1m").unwrap();
        assert_eq!(
            String::from_utf8(text::range(&server, from, to, step, &buckets)).unwrap(),
            serde_json::to_string(&RangeBody::new(&server, from, to, step, &buckets)).unwrap()
        );
    }

    #[test]
    fn the_range_text_is_what_serde_makes_of_range_body() {
        let server = ServerName::parse("db-1").unwrap();
        let from = Timestamp::from_millis(1_795_822_500_000).unwrap();
        let to = Timestamp::from_millis(1_795_822_800_500).unwrap();
        let step = Step::parse("5m").unwrap();
        let buckets = sample_buckets();
        let text = String::from_utf8(text::range(&server, from, to, step, &buckets)).unwrap();
        assert_eq!(
            text,
            serde_json::to_string(&RangeBody::new(&server, from, to, step, &buckets)).unwrap()
        );
    }
}
