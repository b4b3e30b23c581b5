//! Process-shared robust mutexes (`pthread_mutex_t` with `PTHREAD_PROCESS_SHARED` and
//! `PTHREAD_MUTEX_ROBUST`) living inside shared memory.
//!
//! One process initialises the mutex at an offset of a writable
//! [`SharedRegion`](crate::mapping::SharedRegion) with
//! [`RobustMutex::init_in`](crate::robust_mutex::RobustMutex::init_in); the others reach it with
//! [`RobustMutex::open_in`](crate::robust_mutex::RobustMutex::open_in). Locking returns a
//! [`Locked`](crate::robust_mutex::Locked) value:
//! [`Locked::OwnerDied`](crate::robust_mutex::Locked::OwnerDied) means the previous holder died
//! while holding the lock (the kernel noticed at its exit), so the data the mutex protects may be
//! half-updated; repair or reset it before relying on it. The mutex itself is made consistent again
//! at once (`pthread_mutex_consistent`), so it never becomes unrecoverable. Relocking from the
//! thread that holds it is an error
//! ([`LockError::WouldDeadlock`](crate::robust_mutex::LockError::WouldDeadlock)), not a deadlock.
//!
//! Lifetime: a `RobustMutex` borrows the region, and a guard borrows the mutex, so the mapping
//! cannot be unmapped while a lock is held. If a guard is leaked (`mem::forget`), the mapping is
//! never unmapped either: the thread's robust list still points into it.
//!
//! Limits: every process must use the same C library (the layout is glibc's) and live in the same
//! PID namespace (the lock word holds the owner's thread id). There is no poisoning: a panic while
//! holding the guard unlocks normally. The mutex is only as safe as the processes that can write
//! its bytes; see the `# Safety` sections.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::time::Duration;

use rustix::io::Errno;
use thiserror::Error;

use crate::mapping::{AccessError, SharedRegion};

/// Initialising a mutex failed.
#[derive(Debug, Error)]
pub enum InitError {
    /// The offset is out of bounds, misaligned, or the region is read-only.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// A pthread call failed.
    #[error("{op} failed initialising a robust mutex")]
    Os {
        /// The call that failed.
        op: &'static str,
        /// Its error number.
        #[source]
        source: Errno,
    },
}

/// Locking a mutex failed.
#[derive(Debug, Error)]
pub enum LockError {
    /// The timeout passed while another thread or process held the lock.
    #[error(
        "robust mutex still held by another thread or process after the timeout; retry, or check \
         the holder is alive"
    )]
    Timeout,
    /// This thread already holds the lock.
    #[error("this thread already holds the robust mutex; drop its guard before locking again")]
    WouldDeadlock,
    /// A holder unlocked it after its owner died without making it consistent.
    #[error(
        "the robust mutex is unrecoverable (a holder unlocked it after an owner died without \
         repairing it); re-initialise it with init_in once no process uses it"
    )]
    NotRecoverable,
    /// The bytes do not hold an initialised mutex.
    #[error("the bytes at this offset are not an initialised robust mutex; call init_in first")]
    NotInitialised(#[source] Errno),
    /// Another failure.
    #[error("locking the robust mutex failed")]
    Os(#[source] Errno),
}

/// A process-shared robust mutex inside a [`SharedRegion`].
#[derive(Debug)]
pub struct RobustMutex<'a> {
    region: &'a SharedRegion,
    raw: *mut libc::pthread_mutex_t,
}

// SAFETY: the mutex is process-shared: any thread of any process may lock it, and the
// region it points into is Sync and outlives 'a.
unsafe impl Send for RobustMutex<'_> {}
// SAFETY: as for Send; all operations go through pthread calls made for concurrent use.
unsafe impl Sync for RobustMutex<'_> {}

impl<'a> RobustMutex<'a> {
    /// Bytes a mutex occupies in shared memory.
    pub const SIZE: usize = size_of::<libc::pthread_mutex_t>();
    /// Alignment its offset needs.
    pub const ALIGN: usize = align_of::<libc::pthread_mutex_t>();

    /// Initialises a robust, process-shared, error-checking mutex at `offset` of
    /// `region` (which must be writable) and returns it.
    ///
    /// # Safety
    ///
    /// No thread or process may use `offset..offset + SIZE` of the shared memory while
    /// this runs (initialise once, before anyone opens it). Afterwards, as long as any
    /// process uses the mutex, those bytes may only be touched through `RobustMutex`, in
    /// every process: glibc keeps the holder's robust-list pointers inside the mutex and
    /// writes through them on unlock, so bytes overwritten by anyone (including this
    /// process's `write_at`) can make the holder write to arbitrary memory.
    pub unsafe fn init_in(region: &'a SharedRegion, offset: usize) -> Result<Self, InitError> {
        let raw = region.checked(offset, Self::SIZE, Self::ALIGN, true)?.cast();
        let mut attr = Attr::new()?;
        attr.set("pthread_mutexattr_setpshared", |a| {
            // SAFETY: a points to an initialised attribute object owned by `attr`.
            unsafe { libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED) }
        })?;
        attr.set("pthread_mutexattr_setrobust", |a| {
            // SAFETY: as above.
            unsafe { libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST) }
        })?;
        attr.set("pthread_mutexattr_settype", |a| {
            // SAFETY: as above.
            unsafe { libc::pthread_mutexattr_settype(a, libc::PTHREAD_MUTEX_ERRORCHECK) }
        })?;
        // SAFETY: raw is aligned, in bounds and writable, and the caller guarantees nobody
        // uses those bytes while they are initialised.
        let rc = unsafe { libc::pthread_mutex_init(raw, attr.as_ptr()) };
        check("pthread_mutex_init", rc)?;
        Ok(RobustMutex { region, raw })
    }

    /// The mutex another process initialised at `offset` of `region` (which must be
    /// writable: locking writes to it).
    ///
    /// # Safety
    ///
    /// The bytes must hold a mutex initialised by [`init_in`](Self::init_in), and the rule
    /// of `init_in` holds: while any process uses the mutex, its bytes are only touched
    /// through `RobustMutex`. Only share such regions with processes you trust.
    pub unsafe fn open_in(region: &'a SharedRegion, offset: usize) -> Result<Self, AccessError> {
        let raw = region.checked(offset, Self::SIZE, Self::ALIGN, true)?.cast();
        Ok(RobustMutex { region, raw })
    }

    /// Waits for the lock as long as it takes.
    pub fn lock(&self) -> Result<Locked<'_>, LockError> {
        // SAFETY: raw is a mutex initialised per the constructor's contract, kept mapped by
        // the borrow of the region.
        let rc = unsafe { libc::pthread_mutex_lock(self.raw) };
        self.locked(rc)
    }

    /// Waits for the lock at most `timeout` (measured on `CLOCK_REALTIME`).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Locked<'_>, LockError> {
        let deadline = crate::time::realtime_deadline(timeout);
        // SAFETY: as in lock; deadline is a valid timespec on the stack.
        let rc = unsafe { libc::pthread_mutex_timedlock(self.raw, &deadline) };
        self.locked(rc)
    }

    /// Takes the lock if it is free; `None` if another thread or process holds it.
    pub fn try_lock(&self) -> Result<Option<Locked<'_>>, LockError> {
        // SAFETY: as in lock.
        let rc = unsafe { libc::pthread_mutex_trylock(self.raw) };
        match rc {
            libc::EBUSY => Ok(None),
            _ => self.locked(rc).map(Some),
        }
    }

    /// Turns a pthread lock result into a guard or an error.
    fn locked(&self, rc: i32) -> Result<Locked<'_>, LockError> {
        match rc {
            0 => Ok(Locked::Acquired(self.guard())),
            libc::EOWNERDEAD => {
                let guard = self.guard();
                // SAFETY: this thread holds the lock (EOWNERDEAD acquires it).
                match unsafe { libc::pthread_mutex_consistent(self.raw) } {
                    0 => Ok(Locked::OwnerDied(guard)),
                    rc => Err(LockError::Os(errno(rc))),
                }
            }
            libc::ETIMEDOUT => Err(LockError::Timeout),
            libc::EDEADLK => Err(LockError::WouldDeadlock),
            libc::ENOTRECOVERABLE => Err(LockError::NotRecoverable),
            libc::EINVAL => Err(LockError::NotInitialised(errno(rc))),
            _ => Err(LockError::Os(errno(rc))),
        }
    }

    /// A guard for a lock this thread has just acquired.
    fn guard(&self) -> RobustMutexGuard<'_> {
        self.region.pin();
        RobustMutexGuard { raw: self.raw, region: self.region, _not_send: PhantomData }
    }
}

/// A held lock, telling whether the previous holder died while holding it.
#[must_use = "dropping the Locked value unlocks the mutex at once"]
#[derive(Debug)]
pub enum Locked<'m> {
    /// The lock was free or released normally.
    Acquired(RobustMutexGuard<'m>),
    /// The previous holder died holding the lock: the protected data may be inconsistent.
    /// The mutex itself has been made consistent again.
    OwnerDied(RobustMutexGuard<'m>),
}

impl<'m> Locked<'m> {
    /// Whether the previous holder died holding the lock.
    pub fn owner_died(&self) -> bool {
        matches!(self, Locked::OwnerDied(_))
    }

    /// The guard, once any repair the death of an owner calls for is done.
    pub fn into_guard(self) -> RobustMutexGuard<'m> {
        match self {
            Locked::Acquired(g) | Locked::OwnerDied(g) => g,
        }
    }
}

/// Holds the lock until dropped. Not `Send`: a pthread mutex is unlocked by the thread
/// that locked it.
#[must_use = "dropping the guard unlocks the mutex at once"]
#[derive(Debug)]
pub struct RobustMutexGuard<'m> {
    raw: *mut libc::pthread_mutex_t,
    region: &'m SharedRegion,
    _not_send: PhantomData<*const ()>,
}

impl Drop for RobustMutexGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the lock (the guard is not Send) and the borrow keeps
        // the mutex mapped.
        unsafe { libc::pthread_mutex_unlock(self.raw) };
        self.region.unpin();
    }
}

/// An initialised mutex attribute object, destroyed on drop (boxed so it never moves).
struct Attr(Box<MaybeUninit<libc::pthread_mutexattr_t>>);

impl Attr {
    fn new() -> Result<Attr, InitError> {
        let mut raw = Box::new(MaybeUninit::uninit());
        // SAFETY: the pointer is to writable storage for an attribute object.
        let rc = unsafe { libc::pthread_mutexattr_init(raw.as_mut_ptr()) };
        check("pthread_mutexattr_init", rc)?;
        Ok(Attr(raw))
    }

    fn as_ptr(&self) -> *const libc::pthread_mutexattr_t {
        self.0.as_ptr()
    }

    fn set(
        &mut self,
        op: &'static str,
        f: impl FnOnce(*mut libc::pthread_mutexattr_t) -> i32,
    ) -> Result<(), InitError> {
        check(op, f(self.0.as_mut_ptr()))
    }
}

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: the attribute was initialised by Attr::new and is destroyed once.
        unsafe { libc::pthread_mutexattr_destroy(self.0.as_mut_ptr()) };
    }
}

fn check(op: &'static str, rc: i32) -> Result<(), InitError> {
    match rc {
        0 => Ok(()),
        _ => Err(InitError::Os { op, source: errno(rc) }),
    }
}

fn errno(rc: i32) -> Errno {
    Errno::from_raw_os_error(rc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr::NonNull;

    /// A region over heap words, standing in for a mapping (threads only).
    fn with_region(f: impl FnOnce(&SharedRegion)) {
        let mut mem = vec![0u64; 16];
        let ptr = NonNull::new(mem.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: mem outlives the region, which only this test uses.
        let region = unsafe { SharedRegion::new(ptr, 128, true) };
        f(&region);
    }

    #[test]
    fn lock_relock_and_try_lock_in_one_process() {
        with_region(|region| {
            // SAFETY: nobody else uses this heap region.
            let m = unsafe { RobustMutex::init_in(region, 8) }.unwrap();
            let held = m.lock().unwrap();
            assert!(!held.owner_died());
            assert!(matches!(m.lock(), Err(LockError::WouldDeadlock)));
            std::thread::scope(|s| {
                s.spawn(|| {
                    assert!(m.try_lock().unwrap().is_none());
                    let e = m.lock_timeout(Duration::from_millis(10)).unwrap_err();
                    assert!(matches!(e, LockError::Timeout));
                });
            });
            assert!(region.is_pinned());
            drop(held);
            assert!(!region.is_pinned());
            assert!(m.try_lock().unwrap().is_some());
        });
    }

    #[test]
    fn rejects_bad_offsets() {
        with_region(|region| {
            // SAFETY: the offsets are rejected before any byte is touched.
            let e = unsafe { RobustMutex::init_in(region, 4) }.unwrap_err();
            assert!(matches!(e, InitError::Access(AccessError::Misaligned { .. })), "{e}");
            // SAFETY: as above.
            let e = unsafe { RobustMutex::open_in(region, 128 - 8) }.unwrap_err();
            assert!(matches!(e, AccessError::OutOfBounds { .. }), "{e}");
        });
    }
}
