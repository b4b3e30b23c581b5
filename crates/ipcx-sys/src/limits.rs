//! System IPC limits and health: what the kernel and this process allow, read from `/proc`
//! and a few syscalls, and the [`Warning`]s that follow from them (`ipcx doctor` prints
//! both).
//!
//! Every value is read on its own and kept as a `Result`: a missing `/proc` file (an old
//! kernel, a sandbox, `CONFIG_POSIX_MQUEUE=n`) is reported as a [`LimitError`], never a
//! panic, and the other values are still read. Parsers take `&str` and are tested on
//! sample texts. A [`SystemLimits`] is a snapshot: limits can change after it is read.
//!
//! [`Warning`]: crate::limits::Warning
//! [`LimitError`]: crate::limits::LimitError
//! [`SystemLimits`]: crate::limits::SystemLimits

use std::fmt;

use rustix::io::Errno;
use thiserror::Error;

mod parse;
mod warnings;

pub use parse::{mqueue_mount_point, parse_sem, parse_u64};
pub use warnings::{Warning, WarningKind};

/// Reading one limit failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LimitError {
    /// The file or syscall is not available (missing, not permitted, not compiled in).
    #[error("cannot read {what}; check that /proc is mounted and the kernel has this feature")]
    Unreadable {
        /// The file or syscall, e.g. `/proc/sys/fs/mqueue/msg_max`.
        what: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// The file holds something the parser does not understand.
    #[error("unexpected contents in {what}; please report this kernel's format")]
    Malformed {
        /// The file, e.g. `/proc/sys/kernel/sem`.
        what: &'static str,
    },
}

/// Size and free space of a filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsSpace {
    /// Total size in bytes.
    pub total_bytes: u64,
    /// Bytes available to unprivileged users.
    pub free_bytes: u64,
}

/// A process resource limit; `None` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceLimit {
    /// The soft limit, which applies now.
    pub soft: Option<u64>,
    /// The hard limit, up to which an unprivileged process may raise the soft one.
    pub hard: Option<u64>,
}

/// POSIX message queue limits (`/proc/sys/fs/mqueue`, `RLIMIT_MSGQUEUE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PosixMqLimits {
    /// Deepest queue an unprivileged process may create (`msg_max`).
    pub msg_max: Result<u64, LimitError>,
    /// Largest message of a queue an unprivileged process may create (`msgsize_max`).
    pub msgsize_max: Result<u64, LimitError>,
    /// Most queues system-wide (`queues_max`).
    pub queues_max: Result<u64, LimitError>,
    /// Where the `mqueue` filesystem is mounted (`/dev/mqueue` normally); `None` if nowhere.
    pub mount_point: Result<Option<String>, LimitError>,
    /// Bytes of queue memory this user may hold (`RLIMIT_MSGQUEUE`).
    pub rlimit: ResourceLimit,
}

/// System V semaphore limits (`/proc/sys/kernel/sem`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemLimits {
    /// Most semaphores per set (`SEMMSL`).
    pub semmsl: u64,
    /// Most semaphores system-wide (`SEMMNS`).
    pub semmns: u64,
    /// Most operations per `semop` call (`SEMOPM`).
    pub semopm: u64,
    /// Most semaphore sets system-wide (`SEMMNI`).
    pub semmni: u64,
}

/// System V IPC limits (`/proc/sys/kernel`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysvLimits {
    /// Largest message in bytes (`msgmax`).
    pub msgmax: Result<u64, LimitError>,
    /// Bytes a queue may hold in total (`msgmnb`).
    pub msgmnb: Result<u64, LimitError>,
    /// Most message queues system-wide (`msgmni`).
    pub msgmni: Result<u64, LimitError>,
    /// Largest segment in bytes (`shmmax`).
    pub shmmax: Result<u64, LimitError>,
    /// Total shared memory in pages (`shmall`).
    pub shmall: Result<u64, LimitError>,
    /// Most segments system-wide (`shmmni`).
    pub shmmni: Result<u64, LimitError>,
    /// Semaphore limits.
    pub sem: Result<SemLimits, LimitError>,
}

/// A snapshot of the limits that decide what ipcx can do on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemLimits {
    /// Size and free space of `/dev/shm` (POSIX shared memory and named semaphores).
    pub dev_shm: Result<FsSpace, LimitError>,
    /// POSIX message queue limits.
    pub posix_mq: PosixMqLimits,
    /// System V IPC limits.
    pub sysv: SysvLimits,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub nofile: ResourceLimit,
    /// Largest pipe buffer an unprivileged process may set (`/proc/sys/fs/pipe-max-size`).
    pub pipe_max_size: Result<u64, LimitError>,
    /// CPUs this process may run on (its affinity mask).
    pub cpus: Result<u32, LimitError>,
    /// Kernel release, e.g. `6.18.0`.
    pub kernel_release: String,
    /// Page size in bytes.
    pub page_size: u64,
}

impl SystemLimits {
    /// Reads every limit; each one that cannot be read is kept as its error.
    pub fn read() -> SystemLimits {
        SystemLimits {
            dev_shm: rustix::fs::statvfs("/dev/shm")
                .map(|s| FsSpace {
                    total_bytes: s.f_blocks.saturating_mul(s.f_frsize),
                    free_bytes: s.f_bavail.saturating_mul(s.f_frsize),
                })
                .map_err(|source| LimitError::Unreadable { what: "statvfs(/dev/shm)", source }),
            posix_mq: PosixMqLimits {
                msg_max: read_u64("/proc/sys/fs/mqueue/msg_max"),
                msgsize_max: read_u64("/proc/sys/fs/mqueue/msgsize_max"),
                queues_max: read_u64("/proc/sys/fs/mqueue/queues_max"),
                mount_point: read_text("/proc/self/mountinfo").map(|t| mqueue_mount_point(&t)),
                rlimit: rlimit(rustix::process::Resource::Msgqueue),
            },
            sysv: SysvLimits {
                msgmax: read_u64("/proc/sys/kernel/msgmax"),
                msgmnb: read_u64("/proc/sys/kernel/msgmnb"),
                msgmni: read_u64("/proc/sys/kernel/msgmni"),
                shmmax: read_u64("/proc/sys/kernel/shmmax"),
                shmall: read_u64("/proc/sys/kernel/shmall"),
                shmmni: read_u64("/proc/sys/kernel/shmmni"),
                sem: read_parsed("/proc/sys/kernel/sem", parse_sem),
            },
            nofile: rlimit(rustix::process::Resource::Nofile),
            pipe_max_size: read_u64("/proc/sys/fs/pipe-max-size"),
            cpus: rustix::thread::sched_getaffinity(None)
                .map(|set| set.count())
                .map_err(|source| LimitError::Unreadable { what: "sched_getaffinity", source }),
            kernel_release: rustix::system::uname().release().to_string_lossy().into_owned(),
            page_size: rustix::param::page_size() as u64,
        }
    }
}

fn rlimit(resource: rustix::process::Resource) -> ResourceLimit {
    let r = rustix::process::getrlimit(resource);
    ResourceLimit { soft: r.current, hard: r.maximum }
}

fn read_text(what: &'static str) -> Result<String, LimitError> {
    std::fs::read_to_string(what).map_err(|e| LimitError::Unreadable {
        what,
        source: e.raw_os_error().map_or(Errno::IO, Errno::from_raw_os_error),
    })
}

fn read_parsed<T>(what: &'static str, parse: fn(&str) -> Option<T>) -> Result<T, LimitError> {
    parse(&read_text(what)?).ok_or(LimitError::Malformed { what })
}

fn read_u64(what: &'static str) -> Result<u64, LimitError> {
    read_parsed(what, parse_u64)
}

/// A byte count that displays in binary units: `8192` shows as `8 KiB`, `1536` as
/// `1.5 KiB`, `100` as `100 bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return write!(f, "{} bytes", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        let tenths = (value * 10.0).round() / 10.0;
        if tenths.fract() == 0.0 {
            write!(f, "{} {}", tenths as u64, UNITS[unit])
        } else {
            write!(f, "{tenths:.1} {}", UNITS[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_display_in_binary_units() {
        assert_eq!(Bytes(100).to_string(), "100 bytes");
        assert_eq!(Bytes(8192).to_string(), "8 KiB");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes(819_200).to_string(), "800 KiB");
        assert_eq!(Bytes(64 << 20).to_string(), "64 MiB");
        assert_eq!(Bytes(u64::MAX).to_string(), "16 EiB");
    }

    #[test]
    fn reads_values_on_this_machine() {
        let l = SystemLimits::read();
        assert!(!l.kernel_release.is_empty());
        assert!(l.page_size >= 4096);
        assert!(l.cpus.clone().unwrap() >= 1);
        assert!(l.posix_mq.msg_max.clone().unwrap() >= 1);
        assert!(l.posix_mq.msgsize_max.clone().unwrap() >= 128);
        assert!(l.posix_mq.mount_point.is_ok());
        assert!(l.sysv.msgmnb.is_ok() && l.sysv.shmmax.is_ok());
        assert!(l.sysv.sem.clone().unwrap().semmsl >= 1);
        assert!(l.pipe_max_size.clone().unwrap() >= 4096);
        assert!(l.dev_shm.clone().unwrap().total_bytes > 0);
        assert!(l.nofile.soft.is_none_or(|n| n >= 3));
        // Whatever the machine, computing warnings must not panic.
        let _ = l.warnings();
    }
}
