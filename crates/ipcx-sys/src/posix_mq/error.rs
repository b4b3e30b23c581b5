//! Errors of POSIX message queue operations, and the errno tables that produce them.

use rustix::io::Errno;
use rustix::process::{getrlimit, Resource};
use thiserror::Error;

use crate::name::NameError;

/// Kernel cap on `maxmsg`, even for a process with `CAP_SYS_RESOURCE` (`HARD_MSGMAX`).
pub const HARD_MSGMAX: usize = 65_536;
/// Kernel cap on `msgsize`, even for a process with `CAP_SYS_RESOURCE` (`HARD_MSGSIZEMAX`).
pub const HARD_MSGSIZEMAX: usize = 16 * 1024 * 1024;
/// Largest priority plus one (`MQ_PRIO_MAX` on Linux).
pub const PRIO_MAX: u32 = 32_768;

const MSG_MAX: &str = "/proc/sys/fs/mqueue/msg_max";
const MSGSIZE_MAX: &str = "/proc/sys/fs/mqueue/msgsize_max";
const QUEUES_MAX: &str = "/proc/sys/fs/mqueue/queues_max";

/// Opening or creating a POSIX message queue failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The queue name is not usable.
    #[error(transparent)]
    Name(#[from] NameError),
    /// `capacity` was given a zero message count or size.
    #[error("message queue capacity needs at least 1 message of at least 1 byte")]
    ZeroCapacity,
    /// The capacity is above what the kernel allows anyone, privileged or not.
    #[error(
        "capacity of {maxmsg} messages of {msgsize} bytes exceeds the kernel's hard caps \
         ({HARD_MSGMAX} messages, {HARD_MSGSIZEMAX} bytes); ask for less or use the shm transport"
    )]
    OverHardCap {
        /// Requested message count.
        maxmsg: usize,
        /// Requested message size.
        msgsize: usize,
    },
    /// `maxmsg` is above `/proc/sys/fs/mqueue/msg_max` and the process is not privileged.
    #[error("maxmsg {requested} exceeds {MSG_MAX} ({limit}); raise it or ask for at most {limit}")]
    MaxMsgOverLimit {
        /// Requested message count.
        requested: usize,
        /// Current value of `msg_max`.
        limit: usize,
        /// The errno (`EINVAL`).
        #[source]
        errno: Errno,
    },
    /// `msgsize` is above `/proc/sys/fs/mqueue/msgsize_max` and the process is not privileged.
    #[error(
        "msgsize {requested} exceeds {MSGSIZE_MAX} ({limit}); raise it, ask for at most \
         {limit} bytes, or use the shm transport for large messages"
    )]
    MsgSizeOverLimit {
        /// Requested message size.
        requested: usize,
        /// Current value of `msgsize_max`.
        limit: usize,
        /// The errno (`EINVAL`).
        #[source]
        errno: Errno,
    },
    /// The kernel refused the capacity for a reason the limits files do not explain.
    #[error(
        "the kernel refused a capacity of {maxmsg} messages of {msgsize} bytes; check \
         {MSG_MAX} and {MSGSIZE_MAX} and ask for less"
    )]
    CapacityRefused {
        /// Requested message count.
        maxmsg: usize,
        /// Requested message size.
        msgsize: usize,
        /// The errno (`EINVAL` or `EOVERFLOW`).
        #[source]
        errno: Errno,
    },
    /// The system-wide number of queues (`queues_max`) is reached.
    #[error(
        "the limit of {} message queues ({QUEUES_MAX}) is reached; unlink stale queues \
         (`ipcx clean`) or raise it", shown(*.limit)
    )]
    TooManyQueues {
        /// Current value of `queues_max`, if readable.
        limit: Option<u64>,
        /// The errno (`ENOSPC`).
        #[source]
        errno: Errno,
    },
    /// This user's queues would use more bytes than `RLIMIT_MSGQUEUE` allows.
    #[error(
        "the queue needs about {needed} bytes but this user's message queues would exceed \
         RLIMIT_MSGQUEUE ({} bytes); raise it (`ulimit -q`, msgqueue in limits.conf), close \
         other queues, or ask for a smaller capacity", shown(*.rlimit)
    )]
    MemoryLimit {
        /// Bytes the kernel charges for the requested queue (an estimate).
        needed: u64,
        /// Current soft `RLIMIT_MSGQUEUE`.
        rlimit: Option<u64>,
        /// The errno (`EMFILE`).
        #[source]
        errno: Errno,
    },
    /// The process has no free file descriptor (`RLIMIT_NOFILE`).
    #[error("too many open files; close descriptors or raise RLIMIT_NOFILE (`ulimit -n`)")]
    TooManyFiles(#[source] Errno),
    /// The kernel had no memory for the queue.
    #[error("the kernel is out of memory for the queue; ask for a smaller capacity")]
    OutOfMemory(#[source] Errno),
    /// `CreateExclusive` was asked and the queue exists.
    #[error("message queue already exists; pick another name, open it, or unlink the stale one")]
    AlreadyExists(#[source] Errno),
    /// `Open` was asked and there is no such queue.
    #[error("message queue does not exist; create it first or use CreateMode::OpenOrCreate")]
    NotFound(#[source] Errno),
    /// The queue's mode does not grant this user read and write access.
    #[error(
        "permission denied on message queue; run as its owner or create it with wider permissions"
    )]
    PermissionDenied(#[source] Errno),
    /// Any other failure of `mq_open`, `fchmod` or `mq_getattr`.
    #[error("message queue open failed")]
    Os(#[source] Errno),
}

/// What a failed `mq_open` was asked for, so its errno can be explained.
pub(super) struct OpenAttempt {
    pub creating: bool,
    pub capacity: Option<(usize, usize)>,
}

/// The errno table of `mq_open`.
pub(super) fn open_error(e: Errno, at: &OpenAttempt) -> OpenError {
    let (maxmsg, msgsize) = at.capacity.unwrap_or_default();
    match e {
        Errno::EXIST => OpenError::AlreadyExists(e),
        Errno::NOENT => OpenError::NotFound(e),
        Errno::ACCESS | Errno::PERM => OpenError::PermissionDenied(e),
        Errno::INVAL | Errno::OVERFLOW if at.capacity.is_some() => {
            match (read_limit(MSG_MAX), read_limit(MSGSIZE_MAX)) {
                (Some(limit), _) if maxmsg as u64 > limit => OpenError::MaxMsgOverLimit {
                    requested: maxmsg,
                    limit: limit as usize,
                    errno: e,
                },
                (_, Some(limit)) if msgsize as u64 > limit => OpenError::MsgSizeOverLimit {
                    requested: msgsize,
                    limit: limit as usize,
                    errno: e,
                },
                _ => OpenError::CapacityRefused { maxmsg, msgsize, errno: e },
            }
        }
        Errno::NOSPC => OpenError::TooManyQueues { limit: read_limit(QUEUES_MAX), errno: e },
        Errno::MFILE if at.creating && !fds_exhausted() => OpenError::MemoryLimit {
            needed: charged_bytes(maxmsg, msgsize),
            rlimit: getrlimit(Resource::Msgqueue).current,
            errno: e,
        },
        Errno::MFILE | Errno::NFILE => OpenError::TooManyFiles(e),
        Errno::NOMEM => OpenError::OutOfMemory(e),
        _ => OpenError::Os(e),
    }
}

/// Bytes the kernel charges against `RLIMIT_MSGQUEUE` for a queue (mirrors ipc/mqueue.c:
/// a `msg_msg` header per message and a priority tree node per message, plus the payloads).
fn charged_bytes(maxmsg: usize, msgsize: usize) -> u64 {
    const PER_MSG_OVERHEAD: u64 = 48 + 48;
    let (maxmsg, msgsize) = (maxmsg.max(1) as u64, msgsize.max(1) as u64);
    maxmsg.saturating_mul(msgsize.saturating_add(PER_MSG_OVERHEAD))
}

/// Whether the process's descriptor table is full (the other cause of `EMFILE`).
fn fds_exhausted() -> bool {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    getrlimit(Resource::Nofile).current.is_some_and(|max| open + 1 >= max)
}

fn read_limit(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn shown(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
}

/// Unlinking a POSIX message queue failed.
#[derive(Debug, Error)]
pub enum UnlinkError {
    /// The queue name is not usable.
    #[error(transparent)]
    Name(#[from] NameError),
    /// There is no queue by that name (already unlinked).
    #[error("message queue does not exist (already unlinked?)")]
    NotFound(#[source] Errno),
    /// This user may not unlink the queue (only its owner or root may).
    #[error("permission denied unlinking message queue; run as its owner")]
    PermissionDenied(#[source] Errno),
    /// Any other failure of `mq_unlink`.
    #[error("message queue unlink failed")]
    Os(#[source] Errno),
}

pub(super) fn unlink_error(e: Errno) -> UnlinkError {
    match e {
        Errno::NOENT => UnlinkError::NotFound(e),
        Errno::ACCESS | Errno::PERM => UnlinkError::PermissionDenied(e),
        _ => UnlinkError::Os(e),
    }
}

/// Sending on a POSIX message queue failed.
#[derive(Debug, Error)]
pub enum SendError {
    /// The message is longer than the queue's `msgsize`.
    #[error(
        "message of {len} bytes exceeds this queue's msgsize ({msgsize}); create the queue \
         with a larger capacity (up to {MSGSIZE_MAX}) or use the shm transport"
    )]
    TooLarge {
        /// Length of the refused message.
        len: usize,
        /// The queue's `msgsize`.
        msgsize: usize,
    },
    /// The priority is not below [`PRIO_MAX`].
    #[error("message priority {prio} is out of range; use 0..{PRIO_MAX}")]
    BadPriority {
        /// The refused priority.
        prio: u32,
    },
    /// The queue is full and the call was not allowed to wait.
    #[error("message queue is full; retry later or wait with send_timeout")]
    Full,
    /// The queue stayed full for the whole timeout.
    #[error("message queue stayed full for the whole timeout; the receiver is not keeping up")]
    Timeout,
    /// Any other failure of `mq_timedsend` or `poll`.
    #[error("message queue send failed")]
    Os(#[source] Errno),
}

/// Receiving from a POSIX message queue failed.
#[derive(Debug, Error)]
pub enum RecvError {
    /// The buffer is shorter than the queue's `msgsize`, so a message might not fit.
    #[error(
        "receive buffer of {len} bytes is shorter than this queue's msgsize ({msgsize}); \
         pass a buffer of at least {msgsize} bytes"
    )]
    BufferTooSmall {
        /// Length of the caller's buffer.
        len: usize,
        /// The queue's `msgsize`.
        msgsize: usize,
    },
    /// The queue is empty and the call was not allowed to wait.
    #[error("message queue is empty; retry later or wait with recv_timeout")]
    Empty,
    /// Nothing arrived within the timeout.
    #[error("no message arrived within the timeout")]
    Timeout,
    /// Any other failure of `mq_timedreceive` or `poll`.
    #[error("message queue receive failed")]
    Os(#[source] Errno),
}

/// Reading a queue's attributes failed.
#[derive(Debug, Error)]
#[error("mq_getattr failed on the message queue")]
pub struct AttrError(#[source] pub Errno);
