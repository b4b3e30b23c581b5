//! Semaphore operations (`semop`, `semtimedop`) on a [`SysvSemSet`].

use std::time::Instant;

use thiserror::Error;

use super::SysvSemSet;
use crate::errno::last_errno;
use crate::Errno;

/// One operation of an atomic [`SysvSemSet::op`] call (a `struct sembuf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SemOp {
    /// Index of the semaphore in the set.
    pub num: u16,
    /// Added to the value: negative waits until the value is large enough, positive
    /// posts, zero waits until the value is zero.
    pub delta: i16,
    /// `SEM_UNDO`: the kernel reverts this operation when the process exits (even by
    /// SIGKILL), so a semaphore taken by a dead process is given back.
    pub undo: bool,
    /// `IPC_NOWAIT`: fail with [`OpError::WouldBlock`] instead of waiting.
    pub nowait: bool,
}

impl SemOp {
    /// Decrement semaphore `num` by one (no undo, may wait).
    pub const fn wait(num: u16) -> SemOp {
        SemOp { num, delta: -1, undo: false, nowait: false }
    }

    /// Increment semaphore `num` by one (no undo).
    pub const fn post(num: u16) -> SemOp {
        SemOp { num, delta: 1, undo: false, nowait: false }
    }

    /// Wait until semaphore `num` is zero.
    pub const fn wait_zero(num: u16) -> SemOp {
        SemOp { num, delta: 0, undo: false, nowait: false }
    }

    /// This operation with `SEM_UNDO`.
    pub const fn with_undo(self) -> SemOp {
        SemOp { undo: true, ..self }
    }

    /// This operation with `IPC_NOWAIT`.
    pub const fn with_nowait(self) -> SemOp {
        SemOp { nowait: true, ..self }
    }

    fn sembuf(self, force_nowait: bool) -> libc::sembuf {
        let mut flg = 0;
        if self.undo {
            flg |= libc::SEM_UNDO;
        }
        if self.nowait || force_nowait {
            flg |= libc::IPC_NOWAIT;
        }
        libc::sembuf { sem_num: self.num, sem_op: self.delta, sem_flg: flg as libc::c_short }
    }
}

/// Applying semaphore operations failed; none of them took effect.
#[derive(Debug, Error)]
pub enum OpError {
    /// The operation list is empty.
    #[error("no semaphore operations given; pass at least one SemOp")]
    NoOps,
    /// An operation names a semaphore beyond the set's size.
    #[error("semaphore index {index} is out of range; this set has {nsems} semaphores")]
    IndexOutOfRange {
        /// The rejected index.
        index: usize,
        /// Semaphores in the set.
        nsems: usize,
    },
    /// More operations than the kernel allows in one call (E2BIG).
    #[error("{count} operations exceed SEMOPM; split them or raise the third field of kernel.sem")]
    TooManyOps {
        /// Operations given.
        count: usize,
        /// The kernel's answer.
        #[source]
        source: Errno,
    },
    /// An operation marked `nowait` (or a `try_` call) could not proceed at once.
    #[error("semaphore operation would block")]
    WouldBlock,
    /// The operations could not proceed within the timeout.
    #[error("semaphore operation did not complete within the timeout")]
    Timeout,
    /// The set was removed (before or while waiting).
    #[error("the semaphore set was removed; create or open it again")]
    Removed(#[source] Errno),
    /// A value would exceed SEMVMX, or an undo adjustment would overflow.
    #[error("semaphore value would exceed SEMVMX (32767); post less or wait more")]
    OutOfRange(#[source] Errno),
    /// This user may not alter the set.
    #[error("permission denied on the semaphore set; run as its owner or widen its Permissions")]
    PermissionDenied(#[source] Errno),
    /// `semop` failed for another reason.
    #[error("semop failed")]
    Os(#[source] Errno),
}

extern "C" {
    /// glibc's `semtimedop` (the libc crate has no binding for it).
    fn semtimedop(
        semid: libc::c_int,
        sops: *mut libc::sembuf,
        nsops: libc::size_t,
        timeout: *const libc::timespec,
    ) -> libc::c_int;
}

impl SysvSemSet {
    /// Runs `ops` with `semop`, or `semtimedop` when there is a deadline; retries EINTR.
    pub(super) fn run(
        &self,
        ops: &[SemOp],
        force_nowait: bool,
        deadline: Option<Instant>,
    ) -> Result<(), OpError> {
        if ops.is_empty() {
            return Err(OpError::NoOps);
        }
        if let Some(op) = ops.iter().find(|op| usize::from(op.num) >= self.nsems) {
            return Err(OpError::IndexOutOfRange { index: op.num.into(), nsems: self.nsems });
        }
        let mut bufs: Vec<libc::sembuf> = ops.iter().map(|op| op.sembuf(force_nowait)).collect();
        let nowait = force_nowait || ops.iter().any(|op| op.nowait);
        loop {
            let r = match deadline {
                None => {
                    // SAFETY: `bufs` holds `bufs.len()` initialised sembufs the kernel reads.
                    unsafe { libc::semop(self.id, bufs.as_mut_ptr(), bufs.len()) }
                }
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let rel = crate::time::relative(left);
                    let ts = libc::timespec { tv_sec: rel.tv_sec, tv_nsec: rel.tv_nsec };
                    // SAFETY: `bufs` holds `bufs.len()` sembufs; `ts` is a valid timespec.
                    unsafe { semtimedop(self.id, bufs.as_mut_ptr(), bufs.len(), &ts) }
                }
            };
            if r == 0 {
                return Ok(());
            }
            return Err(match last_errno() {
                Errno::INTR => continue,
                Errno::AGAIN if nowait => OpError::WouldBlock,
                Errno::AGAIN => OpError::Timeout,
                e @ Errno::TOOBIG => OpError::TooManyOps { count: ops.len(), source: e },
                // EINVAL: every argument was checked, so the id is no longer valid.
                e @ (Errno::IDRM | Errno::INVAL) => OpError::Removed(e),
                e @ Errno::RANGE => OpError::OutOfRange(e),
                e @ (Errno::ACCESS | Errno::PERM) => OpError::PermissionDenied(e),
                e => OpError::Os(e),
            });
        }
    }
}
