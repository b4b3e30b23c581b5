//! Errors of System V message queue operations, and the errno tables that produce them.

use rustix::io::Errno;
use thiserror::Error;

pub(super) const MSGMAX: &str = "/proc/sys/kernel/msgmax";
const MSGMNI: &str = "/proc/sys/kernel/msgmni";

/// Opening or creating a System V message queue failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// Key 0 was given as a named key; it means `IPC_PRIVATE`.
    #[error("key 0 is IPC_PRIVATE; use MsgKey::Private for a private queue, or another key")]
    BadKey,
    /// A private queue was asked for with `CreateMode::Open`.
    #[error("a private queue cannot be opened by key; create it, then share its id for open_id")]
    PrivateNeedsCreate,
    /// `CreateExclusive` was asked and a queue with this key exists.
    #[error("a message queue with this key already exists; pick another key, open it, or remove it (`ipcrm -q`)")]
    AlreadyExists(#[source] Errno),
    /// There is no queue with this key or id.
    #[error("message queue does not exist; create it first or use CreateMode::OpenOrCreate")]
    NotFound(#[source] Errno),
    /// The queue's mode does not grant this user read and write access.
    #[error(
        "permission denied on message queue; run as its owner or create it with wider permissions"
    )]
    PermissionDenied(#[source] Errno),
    /// The system-wide number of queues (`msgmni`) is reached.
    #[error(
        "the limit of {} System V message queues ({MSGMNI}) is reached; remove stale queues \
         (`ipcs -q`, `ipcx clean`) or raise it", shown(*.limit)
    )]
    TooManyQueues {
        /// Current value of `msgmni`, if readable.
        limit: Option<u64>,
        /// The errno (`ENOSPC`).
        #[source]
        errno: Errno,
    },
    /// The kernel had no memory for the queue.
    #[error("the kernel is out of memory for a new message queue")]
    OutOfMemory(#[source] Errno),
    /// Any other failure of `msgget` or `msgctl`.
    #[error("message queue open failed")]
    Os(#[source] Errno),
}

pub(super) fn open_error(e: Errno) -> OpenError {
    match e {
        Errno::EXIST => OpenError::AlreadyExists(e),
        // EINVAL and EIDRM come from IPC_STAT on an id that is not (or no longer) a queue.
        Errno::NOENT | Errno::INVAL | Errno::IDRM => OpenError::NotFound(e),
        Errno::ACCESS | Errno::PERM => OpenError::PermissionDenied(e),
        Errno::NOSPC => OpenError::TooManyQueues { limit: read_limit(MSGMNI), errno: e },
        Errno::NOMEM => OpenError::OutOfMemory(e),
        _ => OpenError::Os(e),
    }
}

/// Sending on a System V message queue failed.
#[derive(Debug, Error)]
pub enum SendError {
    /// The message type is not positive.
    #[error("message type {mtype} is invalid; types are positive integers")]
    BadType {
        /// The refused type.
        mtype: i64,
    },
    /// The message is longer than the system's `msgmax`.
    #[error(
        "message of {len} bytes exceeds {MSGMAX} ({limit}); raise it or send smaller \
         messages (the shm transport has no such limit)"
    )]
    TooLarge {
        /// Length of the refused message.
        len: usize,
        /// Current value of `msgmax`.
        limit: usize,
    },
    /// The message is longer than this queue's byte capacity, so it could never be queued.
    #[error(
        "message of {len} bytes exceeds this queue's capacity msg_qbytes ({limit}) and could \
         never be sent; raise /proc/sys/kernel/msgmnb before creating the queue"
    )]
    TooLargeForQueue {
        /// Length of the refused message.
        len: usize,
        /// The queue's `msg_qbytes`.
        limit: usize,
    },
    /// The queue is full and the call was not allowed to wait.
    #[error("message queue is full; retry later or wait with send_timeout")]
    Full,
    /// The queue stayed full for the whole timeout.
    #[error("message queue stayed full for the whole timeout; the receiver is not keeping up")]
    Timeout,
    /// The queue was removed (before or while waiting); its peer is gone.
    #[error("message queue was removed; its owner closed it or exited, reconnect or give up")]
    Removed(#[source] Errno),
    /// The queue's mode does not let this user write.
    #[error(
        "permission denied sending on message queue; run as its owner or widen its permissions"
    )]
    PermissionDenied(#[source] Errno),
    /// Any other failure of `msgsnd`.
    #[error("message queue send failed")]
    Os(#[source] Errno),
}

pub(super) fn send_error(e: Errno, len: usize) -> SendError {
    match e {
        Errno::INVAL => match read_limit(MSGMAX) {
            Some(limit) if len as u64 > limit => SendError::TooLarge { len, limit: limit as usize },
            // msgsnd's other EINVAL is an id that is no longer a queue.
            _ => SendError::Removed(e),
        },
        Errno::IDRM => SendError::Removed(e),
        Errno::ACCESS => SendError::PermissionDenied(e),
        _ => SendError::Os(e),
    }
}

/// Receiving from a System V message queue failed.
#[derive(Debug, Error)]
pub enum RecvError {
    /// The type selector holds a type that is not positive.
    #[error("message type selector {mtype} is invalid; selectors take positive types")]
    BadType {
        /// The refused type.
        mtype: i64,
    },
    /// The next matching message is longer than the buffer; it stays queued.
    #[error(
        "the next matching message is longer than the {len}-byte buffer and stays queued; \
         receive with a buffer as long as the longest message (at most {MSGMAX} bytes)"
    )]
    BufferTooSmall {
        /// Length of the caller's buffer.
        len: usize,
    },
    /// No matching message is queued and the call was not allowed to wait.
    #[error("no matching message is queued; retry later or wait with recv_timeout")]
    Empty,
    /// No matching message arrived within the timeout.
    #[error("no matching message arrived within the timeout")]
    Timeout,
    /// The queue was removed (before or while waiting); its peer is gone.
    #[error("message queue was removed; its owner closed it or exited, reconnect or give up")]
    Removed(#[source] Errno),
    /// The queue's mode does not let this user read.
    #[error(
        "permission denied receiving from message queue; run as its owner or widen its permissions"
    )]
    PermissionDenied(#[source] Errno),
    /// Any other failure of `msgrcv`.
    #[error("message queue receive failed")]
    Os(#[source] Errno),
}

pub(super) fn recv_error(e: Errno, len: usize) -> RecvError {
    match e {
        Errno::TOOBIG => RecvError::BufferTooSmall { len },
        Errno::IDRM | Errno::INVAL => RecvError::Removed(e),
        Errno::ACCESS => RecvError::PermissionDenied(e),
        _ => RecvError::Os(e),
    }
}

/// Removing a System V message queue failed.
#[derive(Debug, Error)]
pub enum RemoveError {
    /// The queue is already gone.
    #[error("message queue was already removed")]
    AlreadyRemoved(#[source] Errno),
    /// Only the queue's owner, creator or root may remove it.
    #[error("permission denied removing message queue; run as its owner or creator")]
    PermissionDenied(#[source] Errno),
    /// Any other failure of `msgctl(IPC_RMID)`.
    #[error("message queue removal failed")]
    Os(#[source] Errno),
}

pub(super) fn remove_error(e: Errno) -> RemoveError {
    match e {
        Errno::INVAL | Errno::IDRM => RemoveError::AlreadyRemoved(e),
        Errno::PERM | Errno::ACCESS => RemoveError::PermissionDenied(e),
        _ => RemoveError::Os(e),
    }
}

/// Reading a queue's status (`IPC_STAT`) failed.
#[derive(Debug, Error)]
pub enum StatError {
    /// The queue was removed.
    #[error("message queue was removed")]
    Removed(#[source] Errno),
    /// The queue's mode does not let this user read it.
    #[error("permission denied reading message queue status; run as its owner")]
    PermissionDenied(#[source] Errno),
    /// Any other failure of `msgctl(IPC_STAT)`.
    #[error("message queue status failed")]
    Os(#[source] Errno),
}

pub(super) fn stat_error(e: Errno) -> StatError {
    match e {
        Errno::INVAL | Errno::IDRM => StatError::Removed(e),
        Errno::ACCESS => StatError::PermissionDenied(e),
        _ => StatError::Os(e),
    }
}

pub(super) fn read_limit(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn shown(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
}
