//! Reading and setting values and status of a [`SysvSemSet`] (`semctl`).

use thiserror::Error;

use super::{SysvSemSet, SEMVMX};
use crate::errno::last_errno;
use crate::{Errno, Permissions};

/// Reading or setting a semaphore's value or the set's status failed.
#[derive(Debug, Error)]
pub enum CtlError {
    /// The index is not below the set's size.
    #[error("semaphore index {index} is out of range; this set has {nsems} semaphores")]
    IndexOutOfRange {
        /// The rejected index.
        index: usize,
        /// Semaphores in the set.
        nsems: usize,
    },
    /// The value is above [`SEMVMX`].
    #[error("semaphore value {value} exceeds SEMVMX ({max}); use a smaller value")]
    ValueTooLarge {
        /// The rejected value.
        value: u32,
        /// The limit, [`SEMVMX`].
        max: u32,
    },
    /// The set was removed.
    #[error("the semaphore set was removed; create or open it again")]
    Removed(#[source] Errno),
    /// This user may not read or alter the set.
    #[error("permission denied on the semaphore set; run as its owner")]
    PermissionDenied(#[source] Errno),
    /// `semctl` failed for another reason.
    #[error("semctl failed")]
    Os(#[source] Errno),
}

/// The errno table of `semctl`.
fn ctl_error(e: Errno) -> CtlError {
    match e {
        Errno::INVAL | Errno::IDRM => CtlError::Removed(e),
        Errno::ACCESS | Errno::PERM => CtlError::PermissionDenied(e),
        _ => CtlError::Os(e),
    }
}

/// The fourth argument of `semctl` (glibc leaves defining it to the caller). Passing the
/// union, not a bare int, keeps SETVAL right on big-endian 64-bit targets.
#[repr(C)]
#[derive(Clone, Copy)]
union Semun {
    val: libc::c_int,
    buf: *mut libc::semid_ds,
}

impl SysvSemSet {
    pub(super) fn check_index(&self, index: usize) -> Result<i32, CtlError> {
        if index >= self.nsems {
            return Err(CtlError::IndexOutOfRange { index, nsems: self.nsems });
        }
        Ok(index as i32)
    }

    /// Sets semaphore `index` to `value` (`SETVAL`), waking waiters as needed.
    pub fn set_value(&self, index: usize, value: u32) -> Result<(), CtlError> {
        let num = self.check_index(index)?;
        if value > SEMVMX {
            return Err(CtlError::ValueTooLarge { value, max: SEMVMX });
        }
        let arg = Semun { val: value as libc::c_int };
        // SAFETY: SETVAL takes a `union semun` by value and reads its `val`, which we set.
        let r = unsafe { libc::semctl(self.id, num, libc::SETVAL, arg) };
        if r < 0 {
            return Err(ctl_error(last_errno()));
        }
        Ok(())
    }

    /// The value of semaphore `index` (`GETVAL`).
    pub fn value(&self, index: usize) -> Result<u32, CtlError> {
        self.get(index, libc::GETVAL)
    }

    /// How many processes wait for semaphore `index` to increase (`GETNCNT`).
    pub fn waiters(&self, index: usize) -> Result<u32, CtlError> {
        self.get(index, libc::GETNCNT)
    }

    fn get(&self, index: usize, cmd: i32) -> Result<u32, CtlError> {
        let num = self.check_index(index)?;
        // SAFETY: GETVAL and GETNCNT take no argument and touch no memory of ours.
        let r = unsafe { libc::semctl(self.id, num, cmd) };
        if r < 0 {
            return Err(ctl_error(last_errno()));
        }
        Ok(r as u32)
    }

    /// The set's permission bits, as the kernel holds them (`IPC_STAT`).
    pub fn permissions(&self) -> Result<Permissions, CtlError> {
        let mode = u32::from(self.stat()?.sem_perm.mode) & 0o777;
        Permissions::from_mode(mode).ok_or(CtlError::Os(Errno::INVAL))
    }

    pub(super) fn stat(&self) -> Result<libc::semid_ds, CtlError> {
        // SAFETY: semid_ds is plain integers, for which all-zero bytes are a valid value.
        let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
        let arg = Semun { buf: &mut ds };
        // SAFETY: IPC_STAT writes one semid_ds through `arg.buf`, which points to `ds`.
        let r = unsafe { libc::semctl(self.id, 0, libc::IPC_STAT, arg) };
        if r < 0 {
            return Err(ctl_error(last_errno()));
        }
        Ok(ds)
    }
}
