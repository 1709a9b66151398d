//! What the agent measures: CPU busy time over an interval from two readings
//! of `/proc/stat`, and RAM in use from `/proc/meminfo`. `procfs-core` parses
//! the files; the arithmetic is here, apart from any I/O, so that tests feed
//! it recorded snapshots.

use std::io::Read;

use procfs_core::{ExplicitSystemInfo, FromRead, FromReadSI, KernelStats, Meminfo};

const PROC_STAT: &str = "/proc/stat";
const PROC_MEMINFO: &str = "/proc/meminfo";

/// `/proc/stat` counts in USER_HZ, which is 100 on every Linux. The parser
/// wants it for its millisecond conversions; the agent only uses ratios of
/// ticks, so the value does not change a result.
const USER_HZ: u64 = 100;

/// The all-CPU line of `/proc/stat`, reduced to what a busy ratio needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// Ticks spent doing nothing: `idle` plus `iowait` (a CPU waiting for
    /// I/O could run something else).
    pub idle: u64,
    /// Every tick: user, nice, system, idle, iowait, irq, softirq and steal.
    /// `guest` and `guest_nice` are already counted in user and nice.
    pub total: u64,
}

impl CpuTicks {
    pub fn parse(stat: impl Read) -> Result<Self, String> {
        let system_info = ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: USER_HZ,
            page_size: 4096,
            is_little_endian: cfg!(target_endian = "little"),
        };
        let stats = KernelStats::from_read(stat, &system_info)
            .map_err(|err| format!("cannot parse {PROC_STAT}: {err}"))?;
        let cpu = stats.total;
        let idle = cpu.idle.saturating_add(cpu.iowait.unwrap_or(0));
        let total = [
            cpu.user,
            cpu.nice,
            cpu.system,
            idle,
            cpu.irq.unwrap_or(0),
            cpu.softirq.unwrap_or(0),
            cpu.steal.unwrap_or(0),
        ]
        .iter()
        .fold(0u64, |sum, ticks| sum.saturating_add(*ticks));
        Ok(CpuTicks { idle, total })
    }

    /// Reads the live `/proc/stat`.
    pub fn read() -> Result<Self, String> {
        let file = std::fs::File::open(PROC_STAT)
            .map_err(|err| format!("cannot read {PROC_STAT}: {err}"))?;
        Self::parse(file)
    }
}

/// The share of CPU time, all CPUs together, that was busy between two
/// readings, in percent (0 to 100). The kernel's `iowait` counter may step
/// backwards, so differences saturate at zero; no tick at all between the
/// readings counts as idle.
pub fn cpu_percent(before: CpuTicks, after: CpuTicks) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    let idle = after.idle.saturating_sub(before.idle).min(total);
    clamp_percent((total - idle) as f64 / total as f64 * 100.0)
}

/// RAM in use, in percent: `(MemTotal - MemAvailable) / MemTotal`. Kernels
/// before 3.14 have no `MemAvailable`; there the estimate `free` used before
/// it, `MemFree + Buffers + Cached`, stands in.
pub fn ram_percent(meminfo: impl Read) -> Result<f64, String> {
    let meminfo =
        Meminfo::from_read(meminfo).map_err(|err| format!("cannot parse {PROC_MEMINFO}: {err}"))?;
    if meminfo.mem_total == 0 {
        return Err(format!("{PROC_MEMINFO} says MemTotal is 0"));
    }
    let available = meminfo.mem_available.unwrap_or_else(|| {
        meminfo
            .mem_free
            .saturating_add(meminfo.buffers)
            .saturating_add(meminfo.cached)
    });
    let used = meminfo.mem_total.saturating_sub(available);
    Ok(clamp_percent(
        used as f64 / meminfo.mem_total as f64 * 100.0,
    ))
}

/// Reads the live `/proc/meminfo`.
pub fn read_ram_percent() -> Result<f64, String> {
    let file = std::fs::File::open(PROC_MEMINFO)
        .map_err(|err| format!("cannot read {PROC_MEMINFO}: {err}"))?;
    ram_percent(file)
}

/// Rounds to hundredths of a percent (what a dashboard shows, and shorter
/// spool lines) within 0 to 100.
pub fn round_percent(value: f64) -> f64 {
    clamp_percent((value * 100.0).round() / 100.0)
}

fn clamp_percent(value: f64) -> f64 {
    if value.is_finite() {
        value.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// Takes samples: remembers the previous CPU reading, so each sample covers
/// the time since the one before.
pub struct Meter {
    previous: CpuTicks,
}

impl Meter {
    /// Takes the first CPU reading; fails if `/proc` cannot be read, so a
    /// host the agent cannot measure is reported at start-up.
    pub fn start() -> Result<Self, String> {
        read_ram_percent()?;
        Ok(Meter {
            previous: CpuTicks::read()?,
        })
    }

    /// CPU busy since the previous call (or `start`) and RAM in use now, in
    /// percent, rounded to hundredths.
    pub fn sample(&mut self) -> Result<(f64, f64), String> {
        let now = CpuTicks::read()?;
        let cpu = cpu_percent(self.previous, now);
        self.previous = now;
        let ram = read_ram_percent()?;
        Ok((round_percent(cpu), round_percent(ram)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded on a two-CPU Linux host one second apart, and its meminfo.
    const STAT_BEFORE: &str = include_str!("testdata/stat-before.txt");
    const STAT_AFTER: &str = include_str!("testdata/stat-after.txt");
    const MEMINFO: &str = include_str!("testdata/meminfo.txt");
    // The same meminfo without the MemAvailable line, as kernels before
    // 3.14 write it.
    const MEMINFO_OLD: &str = include_str!("testdata/meminfo-without-memavailable.txt");

    fn ticks(text: &str) -> CpuTicks {
        CpuTicks::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn cpu_ticks_are_read_from_the_all_cpu_line() {
        // cpu  356080 0 83520 171926 2730 0 11644 103 0 0
        assert_eq!(
            ticks(STAT_BEFORE),
            CpuTicks {
                idle: 171_926 + 2_730,
                total: 356_080 + 83_520 + 171_926 + 2_730 + 11_644 + 103,
            }
        );
    }

    #[test]
    fn cpu_percent_of_a_recorded_second() {
        // user +102, system +6, idle +86, iowait +5, softirq +1: 109 of 200
        // ticks busy.
        let percent = cpu_percent(ticks(STAT_BEFORE), ticks(STAT_AFTER));
        assert!((percent - 54.5).abs() < 1e-9, "{percent}");
        assert_eq!(round_percent(percent), 54.5);
    }

    #[test]
    fn cpu_percent_of_no_time_is_zero_and_a_backwards_counter_is_ignored() {
        let before = ticks(STAT_BEFORE);
        assert_eq!(cpu_percent(before, before), 0.0);
        // iowait stepped back by 10 ticks while 100 ticks passed, all busy.
        let after = CpuTicks {
            idle: before.idle - 10,
            total: before.total + 100,
        };
        assert_eq!(cpu_percent(before, after), 100.0);
        // Counters that went down as a whole (a restored snapshot) give 0.
        assert_eq!(cpu_percent(after, before), 0.0);
    }

    #[test]
    fn cpu_percent_counts_steal_as_busy_and_iowait_as_idle() {
        let before = ticks("cpu  100 0 100 800 0 0 0 0 0 0\nctxt 1\nbtime 1\nprocesses 1\n");
        let after = ticks("cpu  100 0 100 850 30 0 0 20 0 0\nctxt 1\nbtime 1\nprocesses 1\n");
        // 100 ticks: 50 idle + 30 iowait idle, 20 stolen busy.
        assert!((cpu_percent(before, after) - 20.0).abs() < 1e-9);
    }

    #[test]
    fn guest_time_is_not_counted_twice() {
        let before = ticks("cpu  100 0 0 100 0 0 0 0 0 0\nctxt 1\nbtime 1\nprocesses 1\n");
        // 50 user ticks of which 40 ran a guest, 50 idle.
        let after = ticks("cpu  150 0 0 150 0 0 0 0 40 0\nctxt 1\nbtime 1\nprocesses 1\n");
        assert!((cpu_percent(before, after) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn ram_percent_uses_memavailable() {
        // MemTotal 24684092 kB, MemAvailable 23206892 kB.
        let expected = (24_684_092.0 - 23_206_892.0) / 24_684_092.0 * 100.0;
        let percent = ram_percent(MEMINFO.as_bytes()).unwrap();
        assert!((percent - expected).abs() < 1e-9, "{percent}");
        assert_eq!(round_percent(percent), 5.98);
    }

    #[test]
    fn ram_percent_without_memavailable_estimates_it() {
        // MemFree 17331868 + Buffers 29460 + Cached of the same snapshot.
        let cached: f64 = MEMINFO
            .lines()
            .find_map(|line| line.strip_prefix("Cached:"))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        let expected = (24_684_092.0 - (17_331_868.0 + 29_460.0 + cached)) / 24_684_092.0 * 100.0;
        let percent = ram_percent(MEMINFO_OLD.as_bytes()).unwrap();
        assert!((percent - expected).abs() < 1e-9, "{percent} vs {expected}");
    }

    #[test]
    fn broken_proc_files_are_errors_not_panics() {
        assert!(CpuTicks::parse("nothing here\n".as_bytes()).is_err());
        assert!(CpuTicks::parse("cpu  1 2 x\n".as_bytes()).is_err());
        assert!(ram_percent("MemTotal: 0 kB\nMemFree: 0 kB\n".as_bytes()).is_err());
        assert!(ram_percent("".as_bytes()).is_err());
    }

    #[test]
    fn percentages_are_rounded_and_clamped() {
        assert_eq!(round_percent(12.345_67), 12.35);
        assert_eq!(round_percent(100.004), 100.0);
        assert_eq!(round_percent(-0.2), 0.0);
        assert_eq!(round_percent(f64::NAN), 0.0);
    }

    #[test]
    fn this_host_can_be_measured() {
        let mut meter = Meter::start().unwrap();
        let (cpu, ram) = meter.sample().unwrap();
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(ram > 0.0 && ram <= 100.0, "{ram}");
    }
}
