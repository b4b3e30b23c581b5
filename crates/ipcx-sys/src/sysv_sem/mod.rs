//! System V semaphore sets (`semget`, `semop`, `semtimedop`, `semctl`): an array of
//! counters in the kernel, found by a numeric key, on which a list of operations is applied
//! atomically (all of them or none).
//!
//! What they add over POSIX semaphores: atomic multi-semaphore operations, and `SEM_UNDO`,
//! with which the kernel reverts a process's operations when it exits, even by SIGKILL, so
//! a semaphore held by a dead process is given back. Limits (see [`SemLimits`]): at most
//! SEMMSL semaphores per set, SEMOPM operations per call, values up to [`SEMVMX`] (32767).
//!
//! Lifecycle: [`SysvSemSet::builder`] creates or opens a set. The mode is given to `semget`
//! directly, so the umask does not apply. A new set's values are all 0; the creator
//! initialises them with [`SysvSemSet::set_value`] before telling others to use it. The
//! handle that created the set removes it (`IPC_RMID`) when dropped; processes blocked on it
//! then fail with [`OpError::Removed`].
//!
//! [`SemLimits`]: crate::sysv_sem::SemLimits
//! [`SEMVMX`]: crate::sysv_sem::SEMVMX
//! [`SysvSemSet::builder`]: crate::sysv_sem::SysvSemSet::builder
//! [`SysvSemSet::set_value`]: crate::sysv_sem::SysvSemSet::set_value
//! [`OpError::Removed`]: crate::sysv_sem::OpError::Removed

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::errno::last_errno;
use crate::{CreateMode, Errno, Permissions};

mod ctl;
mod ops;

pub use ctl::CtlError;
pub use ops::{OpError, SemOp};

/// Largest value of one System V semaphore (`SEMVMX`).
pub const SEMVMX: u32 = 32767;

/// Where a set is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SemKey {
    /// A new set only reachable through its id (`IPC_PRIVATE`); always created.
    Private,
    /// A set found by this key (any value but 0, which means `IPC_PRIVATE`).
    Key(i32),
}

/// The kernel's System V semaphore limits (`/proc/sys/kernel/sem`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemLimits {
    /// Most semaphores in one set (SEMMSL).
    pub semmsl: u32,
    /// Most semaphores in the whole system (SEMMNS).
    pub semmns: u32,
    /// Most operations in one `semop` call (SEMOPM).
    pub semopm: u32,
    /// Most sets in the whole system (SEMMNI).
    pub semmni: u32,
}

impl SemLimits {
    /// Reads the limits; `None` if `/proc/sys/kernel/sem` is missing or malformed.
    pub fn read() -> Option<SemLimits> {
        let text = std::fs::read_to_string("/proc/sys/kernel/sem").ok()?;
        let mut it = text.split_whitespace().map(|s| s.parse::<u32>().ok());
        let mut next = || it.next().flatten();
        Some(SemLimits { semmsl: next()?, semmns: next()?, semopm: next()?, semmni: next()? })
    }
}

/// Creating or opening a semaphore set failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// `SemKey::Key(0)` is `IPC_PRIVATE` in disguise.
    #[error("semaphore key 0 means IPC_PRIVATE; use SemKey::Private or a non-zero key")]
    BadKey,
    /// `SemKey::Private` with `CreateMode::Open`: a private set cannot be opened by key.
    #[error(
        "a private semaphore set can only be created; use CreateMode::CreateExclusive or a key"
    )]
    PrivateNeedsCreate,
    /// A set must hold at least one semaphore when it may be created.
    #[error("a semaphore set needs at least one semaphore; pass nsems >= 1")]
    NoSems,
    /// More semaphores than the kernel allows in one set.
    #[error("{requested} semaphores exceed SEMMSL ({semmsl}); use fewer or raise the first field of kernel.sem")]
    TooManySems {
        /// Semaphores asked for.
        requested: usize,
        /// The SEMMSL limit (0 if it could not be read).
        semmsl: u32,
    },
    /// `CreateMode::CreateExclusive` and a set with this key exists.
    #[error(
        "a semaphore set with this key already exists; pick another key or use CreateMode::Open"
    )]
    AlreadyExists(#[source] Errno),
    /// `CreateMode::Open` and no set has this key.
    #[error("no semaphore set with this key; create it first or use CreateMode::OpenOrCreate")]
    NotFound(#[source] Errno),
    /// The existing set has fewer semaphores than asked for.
    #[error(
        "the existing semaphore set has fewer than {requested} semaphores; open it with nsems 0"
    )]
    SetTooSmall {
        /// Semaphores asked for.
        requested: usize,
        /// The kernel's answer (EINVAL).
        #[source]
        source: Errno,
    },
    /// The set's permissions do not let this user read and alter it.
    #[error("permission denied on the semaphore set; run as its owner or create it with wider Permissions")]
    PermissionDenied(#[source] Errno),
    /// The system-wide set or semaphore limit is reached.
    #[error("no space for another semaphore set; remove stale sets (`ipcs -s`) or raise SEMMNI/SEMMNS in kernel.sem")]
    NoSpace(#[source] Errno),
    /// `semget` or `semctl(IPC_STAT)` failed for another reason.
    #[error("semget failed")]
    Os(#[source] Errno),
}

/// Removing a semaphore set failed.
#[derive(Debug, Error)]
pub enum RemoveError {
    /// The set is already gone.
    #[error("the semaphore set was already removed")]
    AlreadyRemoved(#[source] Errno),
    /// Only the owner, the creator or root may remove the set.
    #[error("not permitted to remove the semaphore set; run as its owner or creator")]
    NotPermitted(#[source] Errno),
    /// `semctl(IPC_RMID)` failed for another reason.
    #[error("semctl(IPC_RMID) failed")]
    Os(#[source] Errno),
}

/// Describes a semaphore set to create or open; see [`SysvSemSet::builder`].
#[derive(Clone, Debug)]
pub struct SysvSemSetBuilder {
    key: SemKey,
    nsems: usize,
    create_mode: CreateMode,
    permissions: Permissions,
    undo: bool,
    remove_on_drop: Option<bool>,
}

impl SysvSemSetBuilder {
    /// How to treat an existing set (default [`CreateMode::OpenOrCreate`]).
    pub fn create_mode(mut self, mode: CreateMode) -> Self {
        self.create_mode = mode;
        self
    }

    /// Permissions of a new set (default `0o600`), given to `semget` (no umask applies).
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Whether [`SysvSemSet::wait`] and [`SysvSemSet::post`] use `SEM_UNDO` (default false).
    pub fn undo(mut self, undo: bool) -> Self {
        self.undo = undo;
        self
    }

    /// Whether dropping the handle removes the set (default: only if this handle created it).
    pub fn remove_on_drop(mut self, remove: bool) -> Self {
        self.remove_on_drop = Some(remove);
        self
    }

    /// Creates or opens the set.
    pub fn open(self) -> Result<SysvSemSet, OpenError> {
        let may_create = self.create_mode.may_create();
        if may_create && self.nsems == 0 {
            return Err(OpenError::NoSems);
        }
        let limits = SemLimits::read();
        let semmsl = limits.map_or(0, |l| l.semmsl);
        if limits.is_some_and(|l| self.nsems > l.semmsl as usize) || self.nsems > i32::MAX as usize
        {
            return Err(OpenError::TooManySems { requested: self.nsems, semmsl });
        }
        let nsems = self.nsems as i32;
        let mode = self.permissions.mode() as i32;
        let key = match self.key {
            SemKey::Key(0) => return Err(OpenError::BadKey),
            SemKey::Key(k) => k,
            SemKey::Private if !may_create => return Err(OpenError::PrivateNeedsCreate),
            SemKey::Private => {
                let id = semget(libc::IPC_PRIVATE, nsems, libc::IPC_CREAT | mode)
                    .map_err(|e| self.create_error(e, semmsl))?;
                return self.handle(id, true);
            }
        };
        loop {
            if may_create {
                match semget(key, nsems, libc::IPC_CREAT | libc::IPC_EXCL | mode) {
                    Ok(id) => return self.handle(id, true),
                    Err(Errno::EXIST) if self.create_mode == CreateMode::OpenOrCreate => {}
                    Err(e) => return Err(self.create_error(e, semmsl)),
                }
            }
            // Ask for read and alter access so semget checks the permissions now.
            match semget(key, nsems, 0o600) {
                Ok(id) => return self.handle(id, false),
                // Removed between our two calls: try creating it again.
                Err(Errno::NOENT) if self.create_mode == CreateMode::OpenOrCreate => {}
                Err(e @ Errno::INVAL) => {
                    return Err(OpenError::SetTooSmall { requested: self.nsems, source: e })
                }
                Err(e) => return Err(open_error(e)),
            }
        }
    }

    /// The errno table of a creating `semget`.
    fn create_error(&self, e: Errno, semmsl: u32) -> OpenError {
        match e {
            Errno::INVAL => OpenError::TooManySems { requested: self.nsems, semmsl },
            e => open_error(e),
        }
    }

    fn handle(&self, id: i32, created: bool) -> Result<SysvSemSet, OpenError> {
        let mut set = SysvSemSet {
            id,
            nsems: self.nsems,
            created,
            undo: self.undo,
            remove_on_drop: self.remove_on_drop.unwrap_or(created),
        };
        // The real size matters when an opener passed nsems 0.
        match set.stat() {
            Ok(ds) => {
                set.nsems = ds.sem_nsems as usize;
                Ok(set)
            }
            Err(e) => {
                set.remove_on_drop = created; // never leave a set we just made behind
                Err(match e {
                    CtlError::PermissionDenied(e) => OpenError::PermissionDenied(e),
                    CtlError::Removed(e) => OpenError::NotFound(e),
                    CtlError::Os(e) => OpenError::Os(e),
                    CtlError::IndexOutOfRange { .. } | CtlError::ValueTooLarge { .. } => {
                        OpenError::Os(Errno::INVAL)
                    }
                })
            }
        }
    }
}

/// The errno table of `semget`.
fn open_error(e: Errno) -> OpenError {
    match e {
        Errno::EXIST => OpenError::AlreadyExists(e),
        Errno::NOENT | Errno::IDRM => OpenError::NotFound(e),
        Errno::ACCESS | Errno::PERM => OpenError::PermissionDenied(e),
        Errno::NOSPC | Errno::NOMEM => OpenError::NoSpace(e),
        _ => OpenError::Os(e),
    }
}

/// One `semget` call.
fn semget(key: i32, nsems: i32, flags: i32) -> Result<i32, Errno> {
    // SAFETY: semget takes plain integers and touches no memory of ours.
    let id = unsafe { libc::semget(key, nsems, flags) };
    if id < 0 {
        Err(last_errno())
    } else {
        Ok(id)
    }
}

/// A System V semaphore set. Removed on drop if this handle created it.
#[derive(Debug)]
pub struct SysvSemSet {
    id: i32,
    nsems: usize,
    created: bool,
    undo: bool,
    remove_on_drop: bool,
}

impl SysvSemSet {
    /// Starts describing the set found by `key` with `nsems` semaphores (0 when opening
    /// means "whatever size it has").
    pub fn builder(key: SemKey, nsems: usize) -> SysvSemSetBuilder {
        SysvSemSetBuilder {
            key,
            nsems,
            create_mode: CreateMode::OpenOrCreate,
            permissions: Permissions::default(),
            undo: false,
            remove_on_drop: None,
        }
    }

    /// The kernel's identifier of the set (as `ipcs -s` shows it).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// How many semaphores the set holds.
    pub fn nsems(&self) -> usize {
        self.nsems
    }

    /// Whether this handle created the set.
    pub fn is_creator(&self) -> bool {
        self.created
    }

    /// Sets whether [`wait`](Self::wait) and [`post`](Self::post) use `SEM_UNDO`.
    pub fn set_undo(&mut self, undo: bool) {
        self.undo = undo;
    }

    /// Applies `ops` atomically, waiting (without limit) until all of them can proceed.
    pub fn op(&self, ops: &[SemOp]) -> Result<(), OpError> {
        self.run(ops, false, None)
    }

    /// Applies `ops` atomically if all of them can proceed now; returns whether they did.
    pub fn try_op(&self, ops: &[SemOp]) -> Result<bool, OpError> {
        match self.run(ops, true, None) {
            Ok(()) => Ok(true),
            Err(OpError::WouldBlock) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Applies `ops` atomically, waiting up to `timeout` (`semtimedop`).
    pub fn op_timeout(&self, ops: &[SemOp], timeout: Duration) -> Result<(), OpError> {
        self.run(ops, false, Some(Instant::now() + timeout))
    }

    /// Decrements semaphore `index` by one, waiting while it is zero.
    pub fn wait(&self, index: usize) -> Result<(), OpError> {
        self.op(&[self.single(index, -1)?])
    }

    /// Decrements semaphore `index` by one if it is non-zero; returns whether it did.
    pub fn try_wait(&self, index: usize) -> Result<bool, OpError> {
        self.try_op(&[self.single(index, -1)?])
    }

    /// Decrements semaphore `index` by one, waiting up to `timeout` while it is zero.
    pub fn wait_timeout(&self, index: usize, timeout: Duration) -> Result<(), OpError> {
        self.op_timeout(&[self.single(index, -1)?], timeout)
    }

    /// Increments semaphore `index` by one.
    pub fn post(&self, index: usize) -> Result<(), OpError> {
        self.op(&[self.single(index, 1)?])
    }

    fn single(&self, index: usize, delta: i16) -> Result<SemOp, OpError> {
        let num = u16::try_from(index)
            .map_err(|_| OpError::IndexOutOfRange { index, nsems: self.nsems })?;
        Ok(SemOp { num, delta, undo: self.undo, nowait: false })
    }

    /// Removes the set now (`IPC_RMID`): waiters fail with [`OpError::Removed`]. Drop
    /// will not try again.
    pub fn remove(&mut self) -> Result<(), RemoveError> {
        self.remove_on_drop = false;
        rmid(self.id)
    }
}

/// Removes the set with identifier `id` now (e.g. one a crashed process left behind);
/// processes waiting on it get an error.
pub fn remove_id(id: i32) -> Result<(), RemoveError> {
    rmid(id)
}

/// One `semctl(IPC_RMID)` call with its errno table.
fn rmid(id: i32) -> Result<(), RemoveError> {
    // SAFETY: IPC_RMID takes no argument and touches no memory of ours.
    if unsafe { libc::semctl(id, 0, libc::IPC_RMID) } == 0 {
        return Ok(());
    }
    match last_errno() {
        e @ (Errno::INVAL | Errno::IDRM) => Err(RemoveError::AlreadyRemoved(e)),
        e @ Errno::PERM => Err(RemoveError::NotPermitted(e)),
        e => Err(RemoveError::Os(e)),
    }
}

impl Drop for SysvSemSet {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = rmid(self.id);
        }
    }
}
