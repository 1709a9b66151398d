//! Log lines on standard error: with their syslog priority (`<4>...`) when
//! standard error is the journal, so `journalctl -p warning` works and the
//! journal adds the time; with the time and level otherwise.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    level: LevelFilter,
    journal: bool,
}

/// Installs the logger: the agent's own records at `level`, those of the
/// libraries it uses only from warnings up.
pub fn init(level: LevelFilter) {
    let logger = Logger {
        level,
        journal: stderr_is_journal(),
    };
    if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
        log::set_max_level(level.max(LevelFilter::Warn));
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        if metadata.target().starts_with(env!("CARGO_CRATE_NAME")) {
            metadata.level() <= self.level
        } else {
            metadata.level() <= Level::Warn
        }
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.journal {
            let priority = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            format!("<{priority}>{}\n", record.args())
        } else {
            format!(
                "{} {:<5} {}\n",
                sperform_model::model::Timestamp::now(),
                record.level(),
                record.args()
            )
        };
        // One write per line, so lines of concurrent writers do not mix;
        // a log that cannot be written is not worth stopping for.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Whether standard error is the journal stream systemd names in
/// `JOURNAL_STREAM` (`<device>:<inode>`), not merely inherited from it.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", stderr.dev(), stderr.ino())
}
