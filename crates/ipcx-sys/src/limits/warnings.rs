//! What will bite: [`Warning`]s derived from a [`SystemLimits`] snapshot, each saying what
//! goes wrong and how to fix it.

use std::fmt;

use super::{Bytes, LimitError, SystemLimits};

/// Queues shallower than this many messages get a warning (the kernel default is 10).
const MQ_MIN_DEPTH: u64 = 64;
/// Queue messages smaller than this get a warning (the kernel default is 8 KiB).
const MQ_MIN_MSGSIZE: u64 = 64 << 10;
/// Fewer POSIX queues system-wide than this get a warning (the kernel default is 256).
const MQ_MIN_QUEUES: u64 = 64;
/// `RLIMIT_MSGQUEUE` allowing fewer maximum-size queues than this gets a warning.
const MQ_MIN_QUEUES_PER_USER: u64 = 16;
/// A soft `RLIMIT_NOFILE` below this gets a warning (the usual default is 1024).
const NOFILE_MIN: u64 = 4096;
/// A `/dev/shm` smaller than this gets a warning (Docker's default is 64 MiB).
const SHM_MIN_TOTAL: u64 = 256 << 20;
/// Less free space in `/dev/shm` than this gets a warning...
const SHM_MIN_FREE: u64 = 64 << 20;
/// ...as does less than this percentage of it free.
const SHM_MIN_FREE_PERCENT: u64 = 10;
/// System V queues holding fewer bytes than this get a warning (the default is 16 KiB).
const SYSV_MIN_MSGMNB: u64 = 64 << 10;
/// System V segments limited below this get a warning.
const SYSV_MIN_SHMMAX: u64 = 256 << 20;
/// A `pipe-max-size` below this gets a warning (the default is 1 MiB).
const PIPE_MIN_MAX_SIZE: u64 = 1 << 20;

/// Which limit a [`Warning`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WarningKind {
    /// POSIX queues are shallow or hold small messages (`msg_max`, `msgsize_max`).
    MqSmallQueues,
    /// Few POSIX queues may exist system-wide (`queues_max`).
    MqFewQueues,
    /// `RLIMIT_MSGQUEUE` allows few queues per user.
    MqRlimitLow,
    /// The `mqueue` filesystem is not mounted.
    MqueueNotMounted,
    /// The soft `RLIMIT_NOFILE` is low.
    NofileLow,
    /// `/dev/shm` is missing or unreadable.
    ShmMissing,
    /// `/dev/shm` is small.
    ShmSmall,
    /// `/dev/shm` is nearly full.
    ShmNearlyFull,
    /// Only one CPU is available to this process.
    SingleCpu,
    /// System V queues are small (`msgmnb`).
    SysvMsgSmall,
    /// System V segments are limited (`shmmax`, `shmall`).
    SysvShmSmall,
    /// Pipes cannot be enlarged much (`pipe-max-size`).
    PipeMaxSizeSmall,
}

/// A limit that will bite, with a message saying what goes wrong and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Which limit.
    pub kind: WarningKind,
    /// One line for humans: the symptom, the numbers, the fix.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl SystemLimits {
    /// The limits that will bite, grouped by area. Values that could not be read produce no
    /// warning (`ipcx doctor` shows them as unknown), except a missing `/dev/shm`.
    pub fn warnings(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        self.shm_warnings(&mut out);
        self.mq_warnings(&mut out);
        self.sysv_warnings(&mut out);
        self.process_warnings(&mut out);
        out
    }

    fn shm_warnings(&self, out: &mut Vec<Warning>) {
        let s = match &self.dev_shm {
            Ok(s) => s,
            Err(e) => {
                let why = match e {
                    LimitError::Unreadable { source, .. } => source.to_string(),
                    LimitError::Malformed { .. } => e.to_string(),
                };
                return warn(
                    out,
                    WarningKind::ShmMissing,
                    format!(
                        "/dev/shm is unusable ({why}): POSIX shared memory and named semaphores \
                         will fail; mount -t tmpfs tmpfs /dev/shm"
                    ),
                );
            }
        };
        if s.total_bytes < SHM_MIN_TOTAL {
            let msg = format!(
                "/dev/shm is only {}: large shared-memory channels fail with ENOSPC or SIGBUS; \
                 enlarge it (docker run --shm-size=1g, or mount -o remount,size=1G /dev/shm)",
                Bytes(s.total_bytes)
            );
            warn(out, WarningKind::ShmSmall, msg);
        }
        let percent = s.free_bytes.saturating_mul(100) / s.total_bytes.max(1);
        if s.free_bytes < SHM_MIN_FREE || percent < SHM_MIN_FREE_PERCENT {
            let msg = format!(
                "/dev/shm has only {} free of {} ({percent}%): new segments will fail; remove \
                 stale objects (ipcx clean, or look in /dev/shm) or enlarge it",
                Bytes(s.free_bytes),
                Bytes(s.total_bytes)
            );
            warn(out, WarningKind::ShmNearlyFull, msg);
        }
    }

    fn mq_warnings(&self, out: &mut Vec<Warning>) {
        let mq = &self.posix_mq;
        if let (&Ok(depth), &Ok(size)) = (&mq.msg_max, &mq.msgsize_max) {
            let mut fixes = Vec::new();
            if depth < MQ_MIN_DEPTH {
                fixes.push("raise /proc/sys/fs/mqueue/msg_max for deeper queues");
            }
            if size < MQ_MIN_MSGSIZE {
                fixes.push(
                    "raise /proc/sys/fs/mqueue/msgsize_max for bigger messages \
                     (or use the shm transport)",
                );
            }
            if !fixes.is_empty() {
                let msg = format!(
                    "POSIX queues hold at most {depth} messages of {} here \
                     (msg_max={depth}, msgsize_max={size}); {}",
                    Bytes(size),
                    fixes.join(" and ")
                );
                warn(out, WarningKind::MqSmallQueues, msg);
            }
            let queues =
                mq.rlimit.soft.map(|soft| (soft, soft / depth.saturating_mul(size).max(1)));
            if let Some((soft, queues)) = queues.filter(|&(_, q)| q < MQ_MIN_QUEUES_PER_USER) {
                let msg = format!(
                    "RLIMIT_MSGQUEUE ({}) lets this user create only about {queues} POSIX queues \
                     of the largest size ({depth} x {}); raise it with ulimit -q or \
                     LimitMSGQUEUE= in the systemd unit",
                    Bytes(soft),
                    Bytes(size)
                );
                warn(out, WarningKind::MqRlimitLow, msg);
            }
        }
        if let Some(n) = mq.queues_max.clone().ok().filter(|&n| n < MQ_MIN_QUEUES) {
            let msg = format!(
                "at most {n} POSIX queues may exist system-wide (queues_max={n}); \
                 raise /proc/sys/fs/mqueue/queues_max"
            );
            warn(out, WarningKind::MqFewQueues, msg);
        }
        if let Ok(None) = mq.mount_point {
            let msg = "/dev/mqueue is not mounted: POSIX queues work but cannot be listed; \
                       mount -t mqueue none /dev/mqueue";
            warn(out, WarningKind::MqueueNotMounted, msg.to_owned());
        }
    }

    fn sysv_warnings(&self, out: &mut Vec<Warning>) {
        if let (&Ok(mnb), &Ok(max)) = (&self.sysv.msgmnb, &self.sysv.msgmax) {
            if mnb < SYSV_MIN_MSGMNB {
                let msg = format!(
                    "System V queues hold at most {} in total (msgmnb={mnb}, msgmax={max} per \
                     message): senders block early; raise it with sysctl -w kernel.msgmnb=1048576",
                    Bytes(mnb)
                );
                warn(out, WarningKind::SysvMsgSmall, msg);
            }
        }
        let shmmax = self.sysv.shmmax.clone().ok();
        let shmall = self.sysv.shmall.clone().ok().map(|p| p.saturating_mul(self.page_size));
        let limit = match (shmmax, shmall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(limit) = limit.filter(|&l| l < SYSV_MIN_SHMMAX) {
            let msg = format!(
                "System V shared memory is limited to {} (kernel.shmmax / kernel.shmall): big \
                 segments fail with EINVAL or ENOSPC; raise both with sysctl",
                Bytes(limit)
            );
            warn(out, WarningKind::SysvShmSmall, msg);
        }
    }

    fn process_warnings(&self, out: &mut Vec<Warning>) {
        if let Some(soft) = self.nofile.soft.filter(|&s| s < NOFILE_MIN) {
            let hard = self.nofile.hard.map_or("unlimited".to_owned(), |h| h.to_string());
            let fix = match self.nofile.hard {
                Some(h) if h < NOFILE_MIN => {
                    "ask root to raise the hard limit (limits.conf, LimitNOFILE= in systemd)"
                        .to_owned()
                }
                h => format!("raise it with ulimit -n {}", h.map_or(65536, |h| h.min(1 << 20))),
            };
            let msg = format!(
                "RLIMIT_NOFILE soft limit is {soft} (hard {hard}): every channel, eventfd and \
                 pidfd costs a descriptor and many peers run out; {fix}"
            );
            warn(out, WarningKind::NofileLow, msg);
        }
        if let Ok(1) = self.cpus {
            let msg = "only 1 CPU is available to this process: busy-polling peers starve each \
                       other and benchmark pinning cannot separate them; allow more CPUs \
                       (taskset, cgroup cpuset, VM size)";
            warn(out, WarningKind::SingleCpu, msg.to_owned());
        }
        if let Some(p) = self.pipe_max_size.clone().ok().filter(|&p| p < PIPE_MIN_MAX_SIZE) {
            let msg = format!(
                "pipes can be enlarged only to {} (pipe-max-size={p}): pipe throughput suffers; \
                 raise /proc/sys/fs/pipe-max-size",
                Bytes(p)
            );
            warn(out, WarningKind::PipeMaxSizeSmall, msg);
        }
    }
}

fn warn(out: &mut Vec<Warning>, kind: WarningKind, message: String) {
    out.push(Warning { kind, message });
}

#[cfg(test)]
mod tests {
    use super::super::{FsSpace, PosixMqLimits, ResourceLimit, SemLimits, SysvLimits};
    use super::*;
    use rustix::io::Errno;

    /// A generous machine: nothing to warn about.
    fn roomy() -> SystemLimits {
        SystemLimits {
            dev_shm: Ok(FsSpace { total_bytes: 8 << 30, free_bytes: 7 << 30 }),
            posix_mq: PosixMqLimits {
                msg_max: Ok(256),
                msgsize_max: Ok(1 << 20),
                queues_max: Ok(1024),
                mount_point: Ok(Some("/dev/mqueue".into())),
                rlimit: ResourceLimit { soft: None, hard: None },
            },
            sysv: SysvLimits {
                msgmax: Ok(65536),
                msgmnb: Ok(1 << 20),
                msgmni: Ok(32000),
                shmmax: Ok(u64::MAX >> 1),
                shmall: Ok(u64::MAX >> 13),
                shmmni: Ok(4096),
                sem: Ok(SemLimits { semmsl: 32000, semmns: 1 << 30, semopm: 500, semmni: 32000 }),
            },
            nofile: ResourceLimit { soft: Some(65536), hard: Some(524_288) },
            pipe_max_size: Ok(1 << 20),
            cpus: Ok(8),
            kernel_release: "6.18.0".into(),
            page_size: 4096,
        }
    }

    fn kinds(l: &SystemLimits) -> Vec<WarningKind> {
        l.warnings().iter().map(|w| w.kind).collect()
    }

    #[test]
    fn roomy_machine_has_nothing_to_say() {
        assert!(roomy().warnings().is_empty());
    }

    #[test]
    fn kernel_default_mqueue_limits_are_flagged() {
        let mut l = roomy();
        l.posix_mq.msg_max = Ok(10);
        l.posix_mq.msgsize_max = Ok(8192);
        l.posix_mq.rlimit = ResourceLimit { soft: Some(819_200), hard: Some(819_200) };
        l.posix_mq.mount_point = Ok(None);
        let w = l.warnings();
        assert_eq!(
            kinds(&l),
            [WarningKind::MqSmallQueues, WarningKind::MqRlimitLow, WarningKind::MqueueNotMounted]
        );
        assert!(w[0].message.starts_with(
            "POSIX queues hold at most 10 messages of 8 KiB here (msg_max=10, msgsize_max=8192); raise /proc/sys/fs/mqueue/msg_max"
        ));
        assert!(w[1].message.contains("only about 10 POSIX queues"));
        assert!(w[2].message.contains("mount -t mqueue none /dev/mqueue"));
    }

    #[test]
    fn shm_small_full_or_missing() {
        let mut l = roomy();
        l.dev_shm = Ok(FsSpace { total_bytes: 64 << 20, free_bytes: 1 << 20 });
        assert_eq!(kinds(&l), [WarningKind::ShmSmall, WarningKind::ShmNearlyFull]);
        assert!(l.warnings()[0].message.contains("only 64 MiB"));
        l.dev_shm = Ok(FsSpace { total_bytes: 100 << 30, free_bytes: 5 << 30 });
        assert_eq!(kinds(&l), [WarningKind::ShmNearlyFull]);
        l.dev_shm = Err(LimitError::Unreadable { what: "statvfs(/dev/shm)", source: Errno::NOENT });
        assert_eq!(kinds(&l), [WarningKind::ShmMissing]);
    }

    #[test]
    fn files_cpus_sysv_and_pipes() {
        let mut l = roomy();
        l.nofile = ResourceLimit { soft: Some(1024), hard: Some(524_288) };
        l.cpus = Ok(1);
        l.sysv.msgmnb = Ok(16384);
        l.sysv.shmall = Ok(8192); // 32 MiB of 4 KiB pages
        l.pipe_max_size = Ok(65536);
        assert_eq!(
            kinds(&l),
            [
                WarningKind::SysvMsgSmall,
                WarningKind::SysvShmSmall,
                WarningKind::NofileLow,
                WarningKind::SingleCpu,
                WarningKind::PipeMaxSizeSmall
            ]
        );
        let w = l.warnings();
        assert!(w[1].message.contains("limited to 32 MiB"));
        assert!(w[2].message.contains("ulimit -n 524288"));
        l.nofile = ResourceLimit { soft: Some(1024), hard: Some(1024) };
        assert!(l.warnings()[2].message.contains("ask root"));
    }

    #[test]
    fn unreadable_values_warn_about_nothing() {
        let mut l = roomy();
        let gone = || Err(LimitError::Malformed { what: "x" });
        l.posix_mq.msg_max = gone();
        l.posix_mq.queues_max = gone();
        l.posix_mq.mount_point = Err(LimitError::Malformed { what: "x" });
        l.sysv.msgmnb = gone();
        l.sysv.shmmax = gone();
        l.sysv.shmall = gone();
        l.pipe_max_size = gone();
        l.cpus = Err(LimitError::Malformed { what: "x" });
        assert!(l.warnings().is_empty());
    }
}
