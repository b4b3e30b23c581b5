//! POSIX named semaphores (`sem_open`): a counter in shared memory that any process knowing
//! the name can post (increment) and wait on (decrement, blocking while it is zero).
//!
//! glibc keeps each semaphore in the file `/dev/shm/sem.<name>` and maps it into every
//! process that opens it. Limits: the value is at most [`SEM_VALUE_MAX`]; a name is at most
//! [`crate::name::MAX_NAME_LEN`] bytes. There is no owner-death recovery: a process killed
//! between `wait` and `post` leaves the count one lower (use System V semaphores with
//! `SEM_UNDO` when that matters).
//!
//! Lifecycle: [`PosixSem::builder`] opens or creates the semaphore. `sem_open` applies the
//! umask to the mode of the file it creates, so the creator then `chmod`s
//! `/dev/shm/sem.<name>` to the exact [`Permissions`] (until then the mode is at most as
//! permissive as asked). The handle that created the semaphore unlinks the name when
//! dropped; processes that still have it open keep using it until they drop their handle.
//!
//! [`SEM_VALUE_MAX`]: crate::posix_sem::SEM_VALUE_MAX
//! [`PosixSem::builder`]: crate::posix_sem::PosixSem::builder
//! [`Permissions`]: crate::Permissions

use std::ffi::CString;
use std::ptr::NonNull;
use std::time::Duration;

use rustix::fs::{chmod, Mode};
use thiserror::Error;

use crate::errno::last_errno;
use crate::name::{posix_name, NameError};
use crate::{CreateMode, Errno, Permissions};

/// Largest value a POSIX semaphore can hold on Linux (`SEM_VALUE_MAX`, `i32::MAX`).
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// Directory where glibc keeps named semaphores (as `sem.<name>` files).
const SEM_DIR: &str = "/dev/shm";

/// Opening or creating a named semaphore failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The name is not a valid POSIX IPC name.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// The initial value is above [`SEM_VALUE_MAX`].
    #[error("initial semaphore value {value} exceeds SEM_VALUE_MAX ({max}); use a smaller value")]
    InitialTooLarge {
        /// The rejected value.
        value: u32,
        /// The limit, [`SEM_VALUE_MAX`].
        max: u32,
    },
    /// `CreateMode::CreateExclusive` and a semaphore with this name exists.
    #[error("a semaphore with this name already exists; pick another name or open it with CreateMode::Open")]
    AlreadyExists(#[source] Errno),
    /// `CreateMode::Open` and no semaphore has this name.
    #[error("no semaphore with this name; create it first or use CreateMode::OpenOrCreate")]
    NotFound(#[source] Errno),
    /// The semaphore's permissions do not let this user open it.
    #[error("permission denied opening the semaphore; run as its owner or create it with wider Permissions")]
    PermissionDenied(#[source] Errno),
    /// Out of file descriptors, memory or space in /dev/shm.
    #[error("out of resources opening the semaphore; check RLIMIT_NOFILE and free space in /dev/shm (`ipcx doctor`)")]
    NoResources(#[source] Errno),
    /// The semaphore was created but its mode could not be set exactly; it was removed again.
    #[error("cannot chmod /dev/shm/sem.<name> to the requested permissions; check that /dev/shm is a tmpfs")]
    SetPermissions(#[source] Errno),
    /// `sem_open` failed for another reason.
    #[error("sem_open failed")]
    Os(#[source] Errno),
}

/// Waiting on a semaphore failed.
#[derive(Debug, Error)]
pub enum WaitError {
    /// The value stayed zero for the whole timeout.
    #[error("semaphore not posted within the timeout")]
    Timeout,
    /// The kernel or glibc refused the wait.
    #[error("sem_wait failed")]
    Os(#[source] Errno),
}

/// Posting a semaphore failed.
#[derive(Debug, Error)]
pub enum PostError {
    /// The value is already [`SEM_VALUE_MAX`].
    #[error("semaphore value would exceed SEM_VALUE_MAX; the waiters are not consuming posts")]
    Overflow(#[source] Errno),
    /// `sem_post` failed for another reason.
    #[error("sem_post failed")]
    Os(#[source] Errno),
}

/// Reading a semaphore's value failed.
#[derive(Debug, Error)]
#[error("sem_getvalue failed")]
pub struct ValueError(#[source] pub Errno);

/// Removing a semaphore's name failed.
#[derive(Debug, Error)]
pub enum UnlinkError {
    /// The name is not a valid POSIX IPC name.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// No semaphore has this name (already removed?).
    #[error("no semaphore with this name to remove; it was already removed")]
    NotFound(#[source] Errno),
    /// This user may not remove the semaphore.
    #[error("permission denied removing the semaphore; run as its owner")]
    PermissionDenied(#[source] Errno),
    /// `sem_unlink` failed for another reason.
    #[error("sem_unlink failed")]
    Os(#[source] Errno),
}

/// Describes a named semaphore to open or create; see [`PosixSem::builder`].
#[derive(Clone, Debug)]
pub struct PosixSemBuilder {
    name: String,
    create_mode: CreateMode,
    permissions: Permissions,
    initial: u32,
    remove_on_drop: Option<bool>,
}

impl PosixSemBuilder {
    /// How to treat an existing semaphore (default [`CreateMode::OpenOrCreate`]).
    pub fn create_mode(mut self, mode: CreateMode) -> Self {
        self.create_mode = mode;
        self
    }

    /// Permissions of a newly created semaphore (default `0o600`), applied exactly.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Value of a newly created semaphore (default 0); ignored when opening an existing one.
    pub fn initial(mut self, value: u32) -> Self {
        self.initial = value;
        self
    }

    /// Whether dropping the handle unlinks the name (default: only if this handle created it).
    pub fn remove_on_drop(mut self, remove: bool) -> Self {
        self.remove_on_drop = Some(remove);
        self
    }

    /// Opens or creates the semaphore.
    pub fn open(self) -> Result<PosixSem, OpenError> {
        if self.initial > SEM_VALUE_MAX {
            return Err(OpenError::InitialTooLarge { value: self.initial, max: SEM_VALUE_MAX });
        }
        let path = posix_name(&self.name)?;
        let cname =
            CString::new(path).map_err(|_| NameError::BadCharacter { name: self.name.clone() })?;
        let mode = self.permissions.mode();
        loop {
            if self.create_mode.may_create() {
                let flags = libc::O_CREAT | libc::O_EXCL;
                match sem_open(&cname, flags, mode, self.initial) {
                    Ok(sem) => {
                        let mut handle = self.handle(cname, sem, true);
                        let file = format!("{SEM_DIR}/sem.{}", self.name);
                        if let Err(e) = chmod(file.as_str(), Mode::from_raw_mode(mode)) {
                            handle.unlink_on_drop = true; // drop closes and unlinks it
                            return Err(OpenError::SetPermissions(e));
                        }
                        return Ok(handle);
                    }
                    Err(Errno::EXIST) if self.create_mode == CreateMode::OpenOrCreate => {}
                    Err(e) => return Err(open_error(e)),
                }
            }
            match sem_open(&cname, 0, 0, 0) {
                Ok(sem) => return Ok(self.handle(cname, sem, false)),
                // Unlinked between our two calls: try creating it again.
                Err(Errno::NOENT) if self.create_mode == CreateMode::OpenOrCreate => {}
                Err(e) => return Err(open_error(e)),
            }
        }
    }

    fn handle(&self, name: CString, sem: NonNull<libc::sem_t>, created: bool) -> PosixSem {
        let unlink_on_drop = self.remove_on_drop.unwrap_or(created);
        PosixSem { sem, name, created, unlink_on_drop }
    }
}

/// One `sem_open` call.
fn sem_open(
    name: &CString,
    flags: i32,
    mode: u32,
    value: u32,
) -> Result<NonNull<libc::sem_t>, Errno> {
    // SAFETY: `name` is a NUL-terminated string; mode and value match the variadic ABI.
    let sem = unsafe { libc::sem_open(name.as_ptr(), flags, mode as libc::mode_t, value) };
    if sem == libc::SEM_FAILED {
        return Err(last_errno());
    }
    NonNull::new(sem).ok_or(Errno::INVAL)
}

/// The errno table of `sem_open`.
fn open_error(e: Errno) -> OpenError {
    match e {
        Errno::EXIST => OpenError::AlreadyExists(e),
        Errno::NOENT => OpenError::NotFound(e),
        Errno::ACCESS | Errno::PERM => OpenError::PermissionDenied(e),
        Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::NOSPC => OpenError::NoResources(e),
        _ => OpenError::Os(e),
    }
}

/// An open POSIX named semaphore. Closed (and unlinked, if this handle created it) on drop.
#[derive(Debug)]
pub struct PosixSem {
    sem: NonNull<libc::sem_t>,
    name: CString,
    created: bool,
    unlink_on_drop: bool,
}

// SAFETY: the pointer is glibc's mapping of the semaphore, valid until `sem_close` in Drop;
// sem_post/sem_wait/sem_getvalue are thread-safe (atomic operations on shared memory).
unsafe impl Send for PosixSem {}
// SAFETY: as above; every method takes `&self` and only calls thread-safe sem_* functions.
unsafe impl Sync for PosixSem {}

impl PosixSem {
    /// Starts describing the semaphore called `name` (without a leading `/`).
    pub fn builder(name: &str) -> PosixSemBuilder {
        PosixSemBuilder {
            name: name.to_owned(),
            create_mode: CreateMode::OpenOrCreate,
            permissions: Permissions::default(),
            initial: 0,
            remove_on_drop: None,
        }
    }

    /// Removes the semaphore called `name` (without a leading `/`). Processes that have it
    /// open keep using it; a later `open` of the name makes a new one.
    pub fn unlink(name: &str) -> Result<(), UnlinkError> {
        let cname = CString::new(posix_name(name)?)
            .map_err(|_| NameError::BadCharacter { name: name.to_owned() })?;
        sem_unlink(&cname)
    }

    /// Removes this semaphore's name now (it stays usable through this handle); drop will
    /// not unlink again.
    pub fn remove(&mut self) -> Result<(), UnlinkError> {
        self.unlink_on_drop = false;
        sem_unlink(&self.name)
    }

    /// Whether this handle created the semaphore.
    pub fn is_creator(&self) -> bool {
        self.created
    }

    /// Increments the value, waking one waiter.
    pub fn post(&self) -> Result<(), PostError> {
        // SAFETY: `self.sem` is a live semaphore from sem_open (closed only in Drop).
        if unsafe { libc::sem_post(self.sem.as_ptr()) } == 0 {
            return Ok(());
        }
        match last_errno() {
            Errno::OVERFLOW => Err(PostError::Overflow(Errno::OVERFLOW)),
            e => Err(PostError::Os(e)),
        }
    }

    /// Decrements the value, waiting (without limit) while it is zero.
    pub fn wait(&self) -> Result<(), WaitError> {
        loop {
            // SAFETY: `self.sem` is a live semaphore from sem_open (closed only in Drop).
            if unsafe { libc::sem_wait(self.sem.as_ptr()) } == 0 {
                return Ok(());
            }
            match last_errno() {
                Errno::INTR => continue,
                e => return Err(WaitError::Os(e)),
            }
        }
    }

    /// Decrements the value if it is non-zero; returns whether it did.
    pub fn try_wait(&self) -> Result<bool, WaitError> {
        loop {
            // SAFETY: `self.sem` is a live semaphore from sem_open (closed only in Drop).
            if unsafe { libc::sem_trywait(self.sem.as_ptr()) } == 0 {
                return Ok(true);
            }
            match last_errno() {
                Errno::AGAIN => return Ok(false),
                Errno::INTR => continue,
                e => return Err(WaitError::Os(e)),
            }
        }
    }

    /// Decrements the value, waiting up to `timeout` while it is zero.
    ///
    /// The deadline is on `CLOCK_REALTIME` (what `sem_timedwait` takes), so a jump of the
    /// wall clock shortens or lengthens the wait.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), WaitError> {
        let deadline = crate::time::realtime_deadline(timeout);
        loop {
            // SAFETY: `self.sem` is live (closed only in Drop); `deadline` is a valid timespec.
            if unsafe { libc::sem_timedwait(self.sem.as_ptr(), &deadline) } == 0 {
                return Ok(());
            }
            match last_errno() {
                Errno::TIMEDOUT => return Err(WaitError::Timeout),
                Errno::INTR => continue,
                e => return Err(WaitError::Os(e)),
            }
        }
    }

    /// The current value (a snapshot: other processes may change it at once).
    pub fn value(&self) -> Result<u32, ValueError> {
        let mut v: libc::c_int = 0;
        // SAFETY: `self.sem` is live (closed only in Drop); `v` is a writable c_int.
        if unsafe { libc::sem_getvalue(self.sem.as_ptr(), &mut v) } != 0 {
            return Err(ValueError(last_errno()));
        }
        // glibc never reports waiters as a negative value.
        Ok(u32::try_from(v).unwrap_or(0))
    }
}

/// One `sem_unlink` call with its errno table.
fn sem_unlink(name: &CString) -> Result<(), UnlinkError> {
    // SAFETY: `name` is a NUL-terminated string.
    if unsafe { libc::sem_unlink(name.as_ptr()) } == 0 {
        return Ok(());
    }
    match last_errno() {
        e @ Errno::NOENT => Err(UnlinkError::NotFound(e)),
        e @ (Errno::ACCESS | Errno::PERM) => Err(UnlinkError::PermissionDenied(e)),
        e => Err(UnlinkError::Os(e)),
    }
}

impl Drop for PosixSem {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            let _ = sem_unlink(&self.name);
        }
        // SAFETY: `self.sem` came from sem_open and is closed exactly once, here.
        unsafe { libc::sem_close(self.sem.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(tag: &str) -> String {
        format!("ipcxu-sem-{tag}-{}-{:?}", std::process::id(), std::thread::current().id())
            .replace(['(', ')'], "")
    }

    #[test]
    fn post_wait_and_value() {
        let sem = PosixSem::builder(&name("pw")).initial(2).open().unwrap();
        assert!(sem.is_creator());
        assert_eq!(sem.value().unwrap(), 2);
        sem.wait().unwrap();
        assert!(sem.try_wait().unwrap());
        assert!(!sem.try_wait().unwrap());
        sem.post().unwrap();
        sem.wait_timeout(Duration::ZERO).unwrap();
        assert!(matches!(sem.wait_timeout(Duration::from_millis(10)), Err(WaitError::Timeout)));
    }

    #[test]
    fn initial_above_max_is_refused() {
        let r = PosixSem::builder(&name("max")).initial(SEM_VALUE_MAX + 1).open();
        assert!(matches!(r, Err(OpenError::InitialTooLarge { .. })));
    }
}
