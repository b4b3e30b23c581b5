//! Probing a liveness token and claiming a dead owner's token (see the parent module for
//! the protocol).

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use thiserror::Error;

use super::RemoveError;

/// What a probe found at a token path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// A process holds the token's lock: the owner is alive (or, for an instant, a cleaner
    /// is removing a dead owner's token; the next probe then finds it missing).
    Alive,
    /// Nobody holds the lock: the owner died without removing its token.
    Dead,
    /// There is no token file: the owner exited cleanly, was cleaned up, or never existed.
    Missing,
}

/// Probing or claiming a token failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// The caller may not open the token file (or search its directory).
    #[error("no permission to open liveness token {path:?}; probe as its owner or give the token a mode others can read")]
    PermissionDenied {
        /// The token path.
        path: PathBuf,
        /// The errno (`EACCES` or `EPERM`).
        #[source]
        source: Errno,
    },
    /// Something other than a regular file (a directory, a symlink, a FIFO) is at the path.
    #[error("{path:?} is not a liveness token file; remove it or use another path")]
    NotAToken {
        /// The token path.
        path: PathBuf,
    },
    /// Any other failure of `open`, `fstat`, `flock` or `stat`.
    #[error("cannot probe liveness token {path:?}")]
    Os {
        /// The token path.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
}

impl ProbeError {
    /// The single errno table of [`probe`] and [`claim_dead`].
    fn from_errno(path: &Path, e: Errno) -> ProbeError {
        let path = path.to_path_buf();
        match e {
            Errno::ACCESS | Errno::PERM => ProbeError::PermissionDenied { path, source: e },
            Errno::LOOP | Errno::NXIO => ProbeError::NotAToken { path },
            _ => ProbeError::Os { path, source: e },
        }
    }
}

/// Tells whether the owner of the token at `path` is alive.
///
/// The probe takes a *shared* lock for an instant, so concurrent probes never mistake each
/// other for the owner. A probe from the owner's own process reports [`Liveness::Alive`]
/// (see the module docs on open file descriptions).
pub fn probe(path: impl AsRef<Path>) -> Result<Liveness, ProbeError> {
    let path = path.as_ref();
    let Some(fd) = open_token(path)? else { return Ok(Liveness::Missing) };
    match try_lock(&fd, FlockOperation::NonBlockingLockShared) {
        // Closing `fd` on return releases the shared lock.
        Ok(true) => Ok(Liveness::Dead),
        Ok(false) => Ok(Liveness::Alive),
        Err(e) => Err(ProbeError::from_errno(path, e)),
    }
}

/// Claims the token at `path` if its owner is dead: returns a [`DeadToken`] holding the
/// lock, so no other cleaner can claim it until it is dropped.
///
/// Returns `Ok(None)` if the owner is alive, another cleaner holds the token, or the file
/// is missing or was replaced while claiming. Call [`DeadToken::remove`] once the dead
/// owner's resources are cleaned; dropping the [`DeadToken`] instead leaves the file for
/// another cleaner to retry.
pub fn claim_dead(path: impl AsRef<Path>) -> Result<Option<DeadToken>, ProbeError> {
    match claim(path.as_ref())? {
        Claim::Claimed(dead) => Ok(Some(dead)),
        Claim::Held | Claim::Gone => Ok(None),
    }
}

/// Outcome of one claim attempt, finer than [`claim_dead`] tells its callers.
pub(super) enum Claim {
    /// The owner was dead and the caller now holds the lock.
    Claimed(DeadToken),
    /// Somebody holds the lock.
    Held,
    /// The file is missing, or the path now names another file.
    Gone,
}

/// Steps 1 and 2 of the cleanup protocol: lock, then re-check the path.
pub(super) fn claim(path: &Path) -> Result<Claim, ProbeError> {
    let err = |e| ProbeError::from_errno(path, e);
    let Some(fd) = open_token(path)? else { return Ok(Claim::Gone) };
    if !try_lock(&fd, FlockOperation::NonBlockingLockExclusive).map_err(err)? {
        return Ok(Claim::Held);
    }
    let locked = rustix::fs::fstat(&fd).map_err(err)?;
    match rustix::fs::lstat(path) {
        Ok(now) if (now.st_dev, now.st_ino) == (locked.st_dev, locked.st_ino) => {
            Ok(Claim::Claimed(DeadToken { fd, path: path.to_path_buf() }))
        }
        Ok(_) | Err(Errno::NOENT) => Ok(Claim::Gone),
        Err(e) => Err(err(e)),
    }
}

/// Opens a token file for locking; `None` if there is none.
fn open_token(path: &Path) -> Result<Option<OwnedFd>, ProbeError> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(ProbeError::from_errno(path, e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| ProbeError::from_errno(path, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(ProbeError::NotAToken { path: path.to_path_buf() });
    }
    Ok(Some(fd))
}

/// `Ok(true)` if the lock was taken, `Ok(false)` if somebody else holds a conflicting one.
fn try_lock(fd: &OwnedFd, op: FlockOperation) -> Result<bool, Errno> {
    loop {
        match flock(fd, op) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The token of a dead owner, locked by this process: only its holder cleans up after that
/// owner. Dropping it unlocks the file and leaves it in place.
pub struct DeadToken {
    fd: OwnedFd,
    path: PathBuf,
}

impl DeadToken {
    /// The path of the token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid the dead owner wrote into its token, for diagnostics. The number may already
    /// belong to another process: never signal it.
    pub fn recorded_pid(&self) -> Option<u32> {
        let mut buf = [0u8; 16];
        let n = rustix::io::pread(&self.fd, &mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }

    /// Step 3 of the cleanup protocol: unlinks the token file while holding its lock, then
    /// unlocks it.
    pub fn remove(self) -> Result<(), RemoveError> {
        let res = match rustix::fs::unlink(&self.path) {
            Ok(()) => Ok(()),
            Err(source) => Err(RemoveError { path: self.path.clone(), source }),
        };
        drop(self.fd);
        res
    }
}

impl fmt::Debug for DeadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadToken").field("path", &self.path).finish_non_exhaustive()
    }
}
