//! Conversions from `Duration` timeouts to the clock forms syscalls take.

use std::time::Duration;

use rustix::time::{clock_gettime, ClockId, Timespec};

/// Longest timeout passed to the kernel; longer ones are clamped (about 68 years).
const MAX_SECS: i64 = i32::MAX as i64;

/// `timeout` as a relative `Timespec`, clamped so it never overflows.
pub(crate) fn relative(timeout: Duration) -> Timespec {
    let secs = i64::try_from(timeout.as_secs()).unwrap_or(MAX_SECS).min(MAX_SECS);
    Timespec { tv_sec: secs, tv_nsec: i64::from(timeout.subsec_nanos()) }
}

/// Absolute `CLOCK_REALTIME` deadline `timeout` from now, as `sem_timedwait`,
/// `mq_timedsend` and `mq_timedreceive` take it.
pub(crate) fn realtime_deadline(timeout: Duration) -> libc::timespec {
    let now = clock_gettime(ClockId::Realtime);
    let rel = relative(timeout);
    let mut sec = now.tv_sec.saturating_add(rel.tv_sec);
    let mut nsec = now.tv_nsec + rel.tv_nsec;
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    libc::timespec { tv_sec: sec as libc::time_t, tv_nsec: nsec as libc::c_long }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_clamps_huge_timeouts() {
        let t = relative(Duration::MAX);
        assert_eq!(t.tv_sec, MAX_SECS);
        assert!(t.tv_nsec < 1_000_000_000);
    }

    #[test]
    fn deadline_normalises_nanoseconds() {
        let d = realtime_deadline(Duration::from_nanos(999_999_999));
        assert!((0..1_000_000_000).contains(&d.tv_nsec));
    }
}
