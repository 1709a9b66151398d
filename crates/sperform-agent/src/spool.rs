//! The spool: every sample is appended here, and synced to disk, before it
//! is sent, and deleted only once the daemon has stored it.
//!
//! A spool is a directory of segment files, `<seq>.unsent` or `<seq>.sent`
//! (`seq` in 20 digits, oldest first), each holding one sample per line as
//! the JSON object `POST /api/v1/samples` takes. New samples go to the
//! newest segment until it holds `MAX_SEGMENT_SAMPLES` samples or a
//! sixteenth of the spool's limit; a segment is also closed when it is
//! taken for sending, so a segment is the unit of one request. Before a
//! segment is sent for the first time it is renamed to `.sent`: a `.sent`
//! segment may already be in the daemon's database, so after an answer that
//! was lost (or a restart) the agent asks the daemon before sending it again.
//! A lock on the file `lock` keeps a second agent out of the directory.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use sperform_model::model::ServerName;
use sperform_model::wire::BatchEntry;

/// Most samples in one segment, and so in one request.
pub const MAX_SEGMENT_SAMPLES: u64 = 1000;
/// A segment holds at most this share of the spool's limit, so that dropping
/// the oldest segment at the limit drops a small part of the backlog.
const SEGMENT_SHARE: u64 = 16;

/// One sample of one server, as spooled and sent: the model's own.
pub use sperform_model::model::Sample;

/// A sample as one line of a segment: the batch endpoint's entry.
fn to_line(sample: &Sample) -> Vec<u8> {
    // Serializing plain strings and finite numbers cannot fail.
    let mut line = serde_json::to_vec(&BatchEntry::of(sample)).unwrap_or_default();
    line.push(b'\n');
    line
}

/// A segment's line back as a sample; `None` if it is not a valid one.
fn from_line(line: &[u8]) -> Option<Sample> {
    let entry: BatchEntry = serde_json::from_slice(line).ok()?;
    let cpu = sperform_model::model::parse_percent("cpu", entry.cpu).ok()?;
    let ram = sperform_model::model::parse_percent("ram", entry.ram).ok()?;
    Some(Sample {
        server: ServerName::parse(&entry.server).ok()?,
        time: entry.time?.timestamp(),
        cpu,
        ram,
    })
}

/// The body of `POST /api/v1/samples` for `samples`.
pub fn batch_body(samples: &[Sample]) -> Vec<u8> {
    let entries: Vec<BatchEntry> = samples.iter().map(BatchEntry::of).collect();
    serde_json::to_vec(&entries).unwrap_or_default()
}

/// Whether a segment may be in the daemon's database already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Never sent (`.unsent`).
    Unsent,
    /// Sent at least once (`.sent`); `in_doubt` when the last attempt may
    /// have been stored (no answer came), so the daemon must be asked first.
    Sent { in_doubt: bool },
}

impl Mark {
    fn extension(self) -> &'static str {
        match self {
            Mark::Unsent => "unsent",
            Mark::Sent { .. } => "sent",
        }
    }
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    bytes: u64,
    samples: u64,
    mark: Mark,
}

/// A segment taken for sending.
#[derive(Debug)]
pub struct Batch {
    pub seq: u64,
    pub samples: Vec<Sample>,
    /// The segment was sent before and its answer was lost: ask the daemon
    /// whether it holds the batch before sending it again.
    pub verify_first: bool,
}

/// What became of a batch that was taken for sending.
#[derive(Debug)]
pub enum Settled {
    /// The daemon holds it: delete the segment.
    Stored,
    /// The daemon certainly did not store it; send it again later.
    NotStored,
    /// It may have been stored; ask the daemon before sending it again.
    InDoubt,
    /// The daemon stored nothing and refused some samples: keep only these
    /// (none: delete the segment).
    Keep(Vec<Sample>),
}

/// What `Spool::open` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub samples: u64,
    /// Segments that were sent before the last stop without an answer.
    pub in_doubt: u64,
    /// Samples dropped because the spool was over its limit.
    pub dropped: u64,
}

pub struct Spool {
    dir: PathBuf,
    // Held for the lifetime of the spool: the lock is released on close.
    _lock: File,
    max_bytes: u64,
    segment_max_bytes: u64,
    /// Oldest first.
    segments: VecDeque<Segment>,
    /// The newest segment's file while samples are appended to it.
    open: Option<File>,
    next_seq: u64,
    bytes: u64,
    /// The segment taken for sending and not yet settled; never dropped.
    in_flight: Option<u64>,
    /// Lines that could not be read back (a torn write), skipped.
    unreadable: u64,
    /// Whether appends are synced; off only in tests that append thousands.
    sync: bool,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, takes its lock, and drops the
    /// oldest samples if it holds more than `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Spool, Recovered), String> {
        let context =
            |what: &str, err: io::Error| format!("spool {}: {what}: {err}", dir.display());
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|err| context("cannot create the directory", err))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(|err| context("cannot open the lock file", err))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "spool {}: another sperform-agent is using this directory",
                    dir.display()
                ));
            }
            Err(TryLockError::Error(err)) => return Err(context("cannot lock", err)),
        }
        let mut segments = Vec::new();
        let entries = fs::read_dir(dir).map_err(|err| context("cannot list", err))?;
        for entry in entries {
            let entry = entry.map_err(|err| context("cannot list", err))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((seq, extension)) = parse_name(&name) else {
                continue;
            };
            let path = entry.path();
            let mark = match extension {
                "unsent" => Mark::Unsent,
                "sent" => Mark::Sent { in_doubt: true },
                // A rewrite that did not finish; the segment it was to
                // replace is still there.
                "tmp" => {
                    fs::remove_file(&path).map_err(|err| context("cannot clean up", err))?;
                    continue;
                }
                _ => continue,
            };
            let data = fs::read(&path).map_err(|err| context("cannot read", err))?;
            segments.push(Segment {
                seq,
                bytes: data.len() as u64,
                samples: count_lines(&data),
                mark,
            });
        }
        segments.sort_by_key(|segment| segment.seq);
        let next_seq = segments.last().map_or(1, |segment| segment.seq + 1);
        let bytes = segments.iter().map(|segment| segment.bytes).sum();
        let mut spool = Spool {
            dir: dir.to_owned(),
            _lock: lock,
            max_bytes,
            segment_max_bytes: (max_bytes / SEGMENT_SHARE).max(1),
            segments: segments.into(),
            open: None,
            next_seq,
            bytes,
            in_flight: None,
            unreadable: 0,
            sync: true,
        };
        let dropped = spool
            .make_room(0)
            .map_err(|err| context("cannot drop old samples", err))?;
        let recovered = Recovered {
            samples: spool.samples(),
            in_doubt: spool
                .segments
                .iter()
                .filter(|segment| segment.mark == Mark::Sent { in_doubt: true })
                .count() as u64,
            dropped,
        };
        Ok((spool, recovered))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Samples waiting (a segment's last line may be torn, so this can be
    /// one high per segment after a crash).
    pub fn samples(&self) -> u64 {
        self.segments.iter().map(|segment| segment.samples).sum()
    }

    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Lines skipped so far because they could not be read back.
    pub fn unreadable(&self) -> u64 {
        self.unreadable
    }

    /// Appends `sample` and syncs it to disk. If the spool would exceed its
    /// limit, the oldest segments are dropped first; returns how many
    /// samples that dropped.
    pub fn append(&mut self, sample: &Sample) -> io::Result<u64> {
        let line = to_line(sample);
        let len = line.len() as u64;
        if let (Some(_), Some(newest)) = (&self.open, self.segments.back())
            && (newest.samples >= MAX_SEGMENT_SAMPLES
                || newest.bytes + len > self.segment_max_bytes)
        {
            self.open = None;
        }
        let dropped = self.make_room(len)?;
        let created = self.open.is_none();
        if created {
            let seq = self.next_seq;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.path(seq, Mark::Unsent))?;
            self.next_seq += 1;
            self.segments.push_back(Segment {
                seq,
                bytes: 0,
                samples: 0,
                mark: Mark::Unsent,
            });
            self.open = Some(file);
        }
        let (Some(file), Some(newest)) = (self.open.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("the spool has no open segment"));
        };
        let sync = self.sync;
        let written = file
            .write_all(&line)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        // Counted even if the write failed part way: the file may hold part
        // of the line.
        newest.bytes += len;
        self.bytes += len;
        if let Err(err) = written {
            // A torn line must not run into the next one: start a new
            // segment with the next sample.
            self.open = None;
            return Err(err);
        }
        newest.samples += 1;
        if created {
            sync_dir(&self.dir)?;
        }
        Ok(dropped)
    }

    /// Takes the oldest segment for sending: closes it if samples were being
    /// appended to it, marks it `.sent` on disk, and reads it. `None` when
    /// the spool is empty (or a batch is already taken).
    pub fn take_batch(&mut self) -> io::Result<Option<Batch>> {
        if self.in_flight.is_some() {
            return Ok(None);
        }
        while let Some(oldest) = self.segments.front() {
            let (seq, mark) = (oldest.seq, oldest.mark);
            if self.segments.len() == 1 {
                self.open = None;
            }
            let path = self.path(seq, mark);
            let data = fs::read(&path)?;
            let (samples, unreadable) = parse_segment(&data);
            self.unreadable += unreadable;
            if samples.is_empty() {
                self.remove_oldest()?;
                continue;
            }
            if mark == Mark::Unsent {
                let sent = Mark::Sent { in_doubt: false };
                fs::rename(&path, self.path(seq, sent))?;
                sync_dir(&self.dir)?;
                if let Some(oldest) = self.segments.front_mut() {
                    oldest.mark = sent;
                }
            }
            self.in_flight = Some(seq);
            return Ok(Some(Batch {
                seq,
                samples,
                verify_first: mark == Mark::Sent { in_doubt: true },
            }));
        }
        Ok(None)
    }

    /// Records what became of the batch taken as `seq`.
    pub fn settle(&mut self, seq: u64, settled: Settled) -> io::Result<()> {
        if self.in_flight == Some(seq) {
            self.in_flight = None;
        }
        let Some(index) = self.segments.iter().position(|segment| segment.seq == seq) else {
            // Dropped meanwhile: nothing left to record.
            return Ok(());
        };
        match settled {
            Settled::Stored => self.remove(index),
            Settled::Keep(rest) if rest.is_empty() => self.remove(index),
            Settled::Keep(rest) => self.rewrite(index, &rest),
            Settled::NotStored => {
                self.segments[index].mark = Mark::Sent { in_doubt: false };
                Ok(())
            }
            Settled::InDoubt => {
                self.segments[index].mark = Mark::Sent { in_doubt: true };
                Ok(())
            }
        }
    }

    /// Replaces segment `index` with `samples`, atomically: a crash leaves
    /// either the old or the new content.
    fn rewrite(&mut self, index: usize, samples: &[Sample]) -> io::Result<()> {
        let seq = self.segments[index].seq;
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        let content: Vec<u8> = samples.iter().flat_map(to_line).collect();
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&content)?;
            file.sync_data()?;
        }
        let mark = Mark::Sent { in_doubt: false };
        fs::rename(&tmp, self.path(seq, mark))?;
        sync_dir(&self.dir)?;
        let segment = &mut self.segments[index];
        self.bytes = self.bytes - segment.bytes + content.len() as u64;
        segment.bytes = content.len() as u64;
        segment.samples = samples.len() as u64;
        segment.mark = mark;
        Ok(())
    }

    /// Drops the oldest segments (never the one in flight) until `incoming`
    /// more bytes fit; returns how many samples were dropped.
    fn make_room(&mut self, incoming: u64) -> io::Result<u64> {
        let mut dropped = 0;
        while self.bytes + incoming > self.max_bytes {
            let Some(index) = self
                .segments
                .iter()
                .position(|segment| Some(segment.seq) != self.in_flight)
            else {
                break;
            };
            dropped += self.segments[index].samples;
            self.remove(index)?;
        }
        Ok(dropped)
    }

    fn remove_oldest(&mut self) -> io::Result<()> {
        self.remove(0)
    }

    /// Deletes segment `index`. Not synced: should the deletion be lost in
    /// a power cut, a `.sent` segment comes back in doubt and is checked
    /// with the daemon before it is sent again.
    fn remove(&mut self, index: usize) -> io::Result<()> {
        let segment = &self.segments[index];
        match fs::remove_file(self.path(segment.seq, segment.mark)) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        if index + 1 == self.segments.len() {
            self.open = None;
        }
        if let Some(segment) = self.segments.remove(index) {
            self.bytes -= segment.bytes;
        }
        Ok(())
    }

    fn path(&self, seq: u64, mark: Mark) -> PathBuf {
        self.dir.join(format!("{seq:020}.{}", mark.extension()))
    }
}

/// `00000000000000000042.sent` -> (42, "sent").
fn parse_name(name: &str) -> Option<(u64, &str)> {
    let (stem, extension) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, extension))
}

fn count_lines(data: &[u8]) -> u64 {
    let newlines = data.iter().filter(|&&byte| byte == b'\n').count() as u64;
    let torn = u64::from(data.last().is_some_and(|&byte| byte != b'\n'));
    newlines + torn
}

/// The samples of a segment and the number of lines that are not samples.
fn parse_segment(data: &[u8]) -> (Vec<Sample>, u64) {
    let mut samples = Vec::new();
    let mut unreadable = 0;
    for line in data.split(|&byte| byte == b'\n') {
        if line.is_empty() {
            continue;
        }
        match from_line(line) {
            Some(sample) => samples.push(sample),
            None => unreadable += 1,
        }
    }
    (samples, unreadable)
}

/// Makes a created, renamed or replaced file in `dir` survive a power cut.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sperform_model::model::Timestamp;

    fn sample(index: i64) -> Sample {
        Sample {
            server: ServerName::parse("web-1").unwrap(),
            time: Timestamp::from_millis(1_764_273_483_000 + index * 10_000).unwrap(),
            // Two digits before the point: every line has the same length.
            cpu: 10.25 + (index % 80) as f64,
            ram: 40.5,
        }
    }

    fn times(samples: &[Sample]) -> Vec<i64> {
        samples.iter().map(|sample| sample.time.millis()).collect()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_line_is_the_json_object_the_batch_endpoint_takes() {
        let line = to_line(&sample(0));
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "{\"server\":\"web-1\",\"cpu\":10.25,\"ram\":40.5,\"time\":\"2025-11-27T19:58:03Z\"}\n"
        );
        assert_eq!(from_line(&line[..line.len() - 1]), Some(sample(0)));
        assert_eq!(
            String::from_utf8(batch_body(&[sample(0), sample(1)])).unwrap(),
            "[{\"server\":\"web-1\",\"cpu\":10.25,\"ram\":40.5,\"time\":\"2025-11-27T19:58:03Z\"},\
             {\"server\":\"web-1\",\"cpu\":11.25,\"ram\":40.5,\"time\":\"2025-11-27T19:58:13Z\"}]"
        );
    }

    #[test]
    fn samples_come_back_oldest_first_and_go_once_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, recovered) = Spool::open(dir.path(), 64 * MIB).unwrap();
        assert_eq!(recovered, Recovered::default());
        for index in 0..3 {
            assert_eq!(spool.append(&sample(index)).unwrap(), 0);
        }
        let batch = spool.take_batch().unwrap().unwrap();
        assert_eq!(
            times(&batch.samples),
            times(&[sample(0), sample(1), sample(2)])
        );
        assert!(!batch.verify_first);
        // Marked as sent on disk before the request goes out.
        assert_eq!(files(dir.path()), ["00000000000000000001.sent", "lock"]);
        // Taken: no second batch until this one is settled; new samples go
        // to a new segment.
        assert!(spool.take_batch().unwrap().is_none());
        spool.append(&sample(3)).unwrap();
        spool.settle(batch.seq, Settled::Stored).unwrap();
        assert_eq!(files(dir.path()), ["00000000000000000002.unsent", "lock"]);
        let batch = spool.take_batch().unwrap().unwrap();
        assert_eq!(times(&batch.samples), times(&[sample(3)]));
        spool.settle(batch.seq, Settled::Stored).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert_eq!(files(dir.path()), ["lock"]);
    }

    #[test]
    fn a_spool_survives_a_restart_and_a_batch_sent_without_answer_is_in_doubt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, _) = Spool::open(dir.path(), 64 * MIB).unwrap();
            spool.append(&sample(0)).unwrap();
            // Taken and never settled, as when the agent is killed while
            // the request is in flight.
            spool.take_batch().unwrap().unwrap();
            spool.append(&sample(1)).unwrap();
            spool.append(&sample(2)).unwrap();
        }
        let (mut spool, recovered) = Spool::open(dir.path(), 64 * MIB).unwrap();
        assert_eq!(
            recovered,
            Recovered {
                samples: 3,
                in_doubt: 1,
                dropped: 0
            }
        );
        let batch = spool.take_batch().unwrap().unwrap();
        assert!(batch.verify_first);
        assert_eq!(times(&batch.samples), times(&[sample(0)]));
        spool.settle(batch.seq, Settled::Stored).unwrap();
        // Samples appended after the restart go to a new segment behind.
        spool.append(&sample(3)).unwrap();
        let batch = spool.take_batch().unwrap().unwrap();
        assert!(!batch.verify_first);
        assert_eq!(times(&batch.samples), times(&[sample(1), sample(2)]));
        spool.settle(batch.seq, Settled::Stored).unwrap();
        let batch = spool.take_batch().unwrap().unwrap();
        assert_eq!(times(&batch.samples), times(&[sample(3)]));
    }

    #[test]
    fn an_answer_decides_whether_the_daemon_is_asked_first() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 64 * MIB).unwrap();
        spool.append(&sample(0)).unwrap();
        let batch = spool.take_batch().unwrap().unwrap();
        spool.settle(batch.seq, Settled::NotStored).unwrap();
        let batch = spool.take_batch().unwrap().unwrap();
        assert!(!batch.verify_first);
        spool.settle(batch.seq, Settled::InDoubt).unwrap();
        let batch = spool.take_batch().unwrap().unwrap();
        assert!(batch.verify_first);
        assert_eq!(times(&batch.samples), times(&[sample(0)]));
    }

    #[test]
    fn refused_samples_are_removed_from_their_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 64 * MIB).unwrap();
        for index in 0..4 {
            spool.append(&sample(index)).unwrap();
        }
        let batch = spool.take_batch().unwrap().unwrap();
        let kept = vec![sample(1), sample(3)];
        spool
            .settle(batch.seq, Settled::Keep(kept.clone()))
            .unwrap();
        assert_eq!(spool.samples(), 2);
        let batch = spool.take_batch().unwrap().unwrap();
        assert!(!batch.verify_first);
        assert_eq!(batch.samples, kept);
        spool.settle(batch.seq, Settled::Keep(Vec::new())).unwrap();
        assert!(spool.is_empty());
        assert_eq!(files(dir.path()), ["lock"]);
    }

    #[test]
    fn segments_hold_at_most_the_batch_size() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 64 * MIB).unwrap();
        spool.sync = false;
        let count = 2 * MAX_SEGMENT_SAMPLES as i64 + 5;
        for index in 0..count {
            spool.append(&sample(index)).unwrap();
        }
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(batch) = spool.take_batch().unwrap() {
            sizes.push(batch.samples.len());
            all.extend(times(&batch.samples));
            spool.settle(batch.seq, Settled::Stored).unwrap();
        }
        assert_eq!(sizes, [1000, 1000, 5]);
        assert_eq!(
            all,
            (0..count)
                .map(|index| sample(index).time.millis())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_full_spool_drops_the_oldest_samples_and_says_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let line = to_line(&sample(0)).len() as u64;
        // Room for 64 lines; a segment holds at most 4 of them.
        let max = 64 * line;
        let (mut spool, _) = Spool::open(dir.path(), max).unwrap();
        let mut dropped = 0;
        for index in 0..100 {
            dropped += spool.append(&sample(index)).unwrap();
            assert!(spool.bytes() <= max, "{} > {max}", spool.bytes());
        }
        // 36 had to go, whole segments of 4 at a time, oldest first.
        assert_eq!(dropped, 36);
        assert_eq!(spool.samples(), 64);
        let mut left = Vec::new();
        while let Some(batch) = spool.take_batch().unwrap() {
            left.extend(times(&batch.samples));
            spool.settle(batch.seq, Settled::Stored).unwrap();
        }
        assert_eq!(
            left,
            (36..100)
                .map(|index| sample(index).time.millis())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_batch_in_flight_is_never_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let line = to_line(&sample(0)).len() as u64;
        let (mut spool, _) = Spool::open(dir.path(), 32 * line).unwrap();
        spool.append(&sample(0)).unwrap();
        let batch = spool.take_batch().unwrap().unwrap();
        let mut dropped = 0;
        for index in 1..100 {
            dropped += spool.append(&sample(index)).unwrap();
        }
        assert!(dropped > 0);
        spool.settle(batch.seq, Settled::NotStored).unwrap();
        let batch = spool.take_batch().unwrap().unwrap();
        assert_eq!(times(&batch.samples), times(&[sample(0)]));
    }

    #[test]
    fn a_lower_limit_at_start_drops_the_oldest_samples() {
        let dir = tempfile::tempdir().unwrap();
        let line = to_line(&sample(0)).len() as u64;
        {
            let (mut spool, _) = Spool::open(dir.path(), 64 * MIB).unwrap();
            spool.sync = false;
            for index in 0..2500 {
                spool.append(&sample(index)).unwrap();
            }
        }
        let (mut spool, recovered) = Spool::open(dir.path(), 1200 * line).unwrap();
        // Segments of 1000, 1000 and 500: the two older ones go.
        assert_eq!(recovered.dropped, 2000);
        assert_eq!(recovered.samples, 500);
        let batch = spool.take_batch().unwrap().unwrap();
        assert_eq!(batch.samples[0], sample(2000));
    }

    #[test]
    fn a_torn_line_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, _) = Spool::open(dir.path(), 64 * MIB).unwrap();
            spool.append(&sample(0)).unwrap();
            spool.append(&sample(1)).unwrap();
        }
        let path = dir.path().join("00000000000000000001.unsent");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"server\":\"web-1\",\"cpu\":1").unwrap();
        let (mut spool, recovered) = Spool::open(dir.path(), 64 * MIB).unwrap();
        assert_eq!(recovered.samples, 3);
        let batch = spool.take_batch().unwrap().unwrap();
        assert_eq!(times(&batch.samples), times(&[sample(0), sample(1)]));
        assert_eq!(spool.unreadable(), 1);
    }

    #[test]
    fn leftovers_of_a_rewrite_are_removed_and_other_files_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("00000000000000000007.tmp"), b"partial").unwrap();
        fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let (spool, recovered) = Spool::open(dir.path(), 64 * MIB).unwrap();
        assert!(spool.is_empty());
        assert_eq!(recovered, Recovered::default());
        assert_eq!(files(dir.path()), ["lock", "notes.txt"]);
    }

    #[test]
    fn a_second_agent_cannot_open_the_same_spool() {
        let dir = tempfile::tempdir().unwrap();
        let (_spool, _) = Spool::open(dir.path(), 64 * MIB).unwrap();
        let err = Spool::open(dir.path(), 64 * MIB).err().unwrap();
        assert!(err.contains("another sperform-agent"), "{err}");
    }
}
