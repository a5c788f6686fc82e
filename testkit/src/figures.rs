//! Figures shared by the benchmarks: percentiles and milliseconds of timing
//! samples, and a process's memory from `/proc`. Measuring and printing
//! stay with each benchmark.

use std::time::Duration;

/// The `p`th percentile (0 to 100) of `samples` by nearest rank, sorting
/// them in place; zero when there are none.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let Some(last) = samples.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let rank = ((p / 100.0) * last as f64).round() as usize;
    samples[rank.min(last)]
}

/// A duration in (fractional) milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A memory figure of `/proc/PID/status` in KiB (`VmRSS:` now, `VmHWM:`
/// at peak); `pid` may be `self`. Zero when it cannot be read.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut samples: Vec<Duration> = (1..=11).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut samples, 50.0), Duration::from_millis(6));
        assert_eq!(percentile(&mut samples, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&mut samples, 90.0), Duration::from_millis(10));
        assert_eq!(percentile(&mut samples, 100.0), Duration::from_millis(11));
        assert_eq!(percentile(&mut [], 50.0), Duration::ZERO);
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
