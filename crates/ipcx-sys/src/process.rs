//! Process and CPU helpers: which CPUs this thread may run on, pinning the calling thread to
//! one of them (`sched_getaffinity`, `sched_setaffinity`), and the real user id.
//!
//! Affinity is per thread: pinning affects only the calling thread and the threads and
//! processes it starts afterwards (they inherit the mask). CPU numbers are those of the kernel
//! (`/sys/devices/system/cpu/cpuN`), below [`MAX_CPU`]; inside a container or under `taskset`
//! the available set can be any subset, not `0..n`.

use rustix::io::Errno;
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
use thiserror::Error;

/// Highest CPU number plus one that an affinity mask can hold here.
pub const MAX_CPU: usize = CpuSet::MAX_CPU;

/// Reading the calling thread's CPU affinity failed.
#[derive(Debug, Error)]
#[error("cannot read this thread's CPU affinity (sched_getaffinity)")]
pub struct AffinityError(#[source] pub Errno);

/// Pinning the calling thread to a CPU failed.
#[derive(Debug, Error)]
pub enum PinError {
    /// The CPU number is beyond what an affinity mask can hold.
    #[error("cpu {cpu} is out of range; CPU numbers here are below {max}", max = MAX_CPU)]
    OutOfRange {
        /// The CPU asked for.
        cpu: usize,
    },
    /// The CPU is offline or outside this process's cpuset (container, `taskset`).
    #[error(
        "cpu {cpu} is offline or outside this process's allowed CPUs; \
         pick one from `available_cpus()` (see `taskset -p $$` or the container's cpuset)"
    )]
    NotAllowed {
        /// The CPU asked for.
        cpu: usize,
        /// The errno the kernel returned.
        #[source]
        source: Errno,
    },
    /// The caller may not change this thread's affinity.
    #[error("not permitted to change CPU affinity (missing CAP_SYS_NICE?)")]
    Permission(#[source] Errno),
    /// The kernel refused for another reason.
    #[error("sched_setaffinity failed for cpu {cpu}")]
    Os {
        /// The CPU asked for.
        cpu: usize,
        /// The errno the kernel returned.
        #[source]
        source: Errno,
    },
}

/// The CPUs the calling thread may run on, in increasing order.
pub fn available_cpus() -> Result<Vec<usize>, AffinityError> {
    let set = sched_getaffinity(None).map_err(AffinityError)?;
    Ok((0..MAX_CPU).filter(|&cpu| set.is_set(cpu)).collect())
}

/// Restricts the calling thread (not the whole process) to run only on `cpu`.
///
/// Threads and processes started afterwards by this thread inherit the restriction.
pub fn pin_current_thread(cpu: usize) -> Result<(), PinError> {
    if cpu >= MAX_CPU {
        return Err(PinError::OutOfRange { cpu });
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).map_err(|e| match e {
        Errno::INVAL => PinError::NotAllowed { cpu, source: e },
        Errno::PERM => PinError::Permission(e),
        _ => PinError::Os { cpu, source: e },
    })
}

/// The real user id of this process.
pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_at_least_one_cpu() {
        let cpus = available_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn pins_the_calling_thread_only() {
        let cpus = available_cpus().unwrap();
        let last = *cpus.last().unwrap();
        // A fresh thread, so the test harness's other threads keep their affinity.
        std::thread::spawn(move || {
            pin_current_thread(last).unwrap();
            assert_eq!(available_cpus().unwrap(), vec![last]);
        })
        .join()
        .unwrap();
        assert_eq!(available_cpus().unwrap(), cpus);
    }

    #[test]
    fn rejects_cpus_it_cannot_use() {
        assert!(matches!(pin_current_thread(MAX_CPU), Err(PinError::OutOfRange { .. })));
        let cpus = available_cpus().unwrap();
        // The first CPU number that is not available (below MAX_CPU on any real machine).
        let absent = (0..MAX_CPU).find(|c| !cpus.contains(c)).unwrap();
        std::thread::spawn(move || {
            assert!(matches!(pin_current_thread(absent), Err(PinError::NotAllowed { .. })));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn uid_matches_the_process() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let real: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(current_uid(), real);
    }
}
