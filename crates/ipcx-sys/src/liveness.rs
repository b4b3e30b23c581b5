//! Liveness tokens and pidfds: telling whether another process is still alive without
//! pid-reuse races.
//!
//! # Tokens
//!
//! A [`LivenessToken`] is a small file that its owner holds under an exclusive `flock` for
//! as long as it lives. The kernel drops the lock when the last descriptor of the open file
//! is closed, which happens when the owner exits *or is killed*. So "can I lock it?" means
//! "its owner is dead", and no pid is involved that could have been reused.
//!
//! - [`LivenessToken::acquire`] makes the file appear at its path *already locked*: it is
//!   created unnamed (`O_TMPFILE`), given its exact mode, locked, filled with the owner's pid
//!   (for diagnostics only), and only then linked into place. A prober can never see an
//!   unlocked fresh token and mistake it for a dead one.
//! - [`probe`] answers [`Liveness::Alive`], [`Liveness::Dead`] or [`Liveness::Missing`].
//! - [`claim_dead`] locks a dead owner's token and keeps it locked, so exactly one cleaner
//!   handles that owner; [`DeadToken::remove`] then unlinks the file while still holding the
//!   lock.
//!
//! ## The race-free cleanup protocol
//!
//! 1. Open the token file and try `LOCK_EX | LOCK_NB`. Failure means a live owner (or another
//!    cleaner) holds it: leave it alone.
//! 2. Re-check that the path still names the inode just locked (compare device and inode
//!    numbers). If not, another cleaner already removed it (and perhaps a new owner created a
//!    fresh token at the same path): leave it alone.
//! 3. Clean the dead owner's resources while holding the lock, then unlink the file, and only
//!    then close it (which unlocks). A second cleaner blocks at step 1 or fails step 2.
//!
//! An owner likewise unlinks its token *before* closing it, so nobody can claim a token that
//! is being released.
//!
//! ## Limits
//!
//! - `flock` locks belong to the *open file description*, not to the process. Opening the
//!   token again inside the owner's process gives a second description whose lock conflicts
//!   with the first: the owner probing its own token sees [`Liveness::Alive`], and the owner
//!   cannot [`claim_dead`] it. Probe from another process to observe death.
//! - Descriptors duplicated by `dup` or inherited across `fork` share the description, so a
//!   forked child that does not `exec` keeps its parent's token alive. Tokens are opened
//!   `O_CLOEXEC`, so children that `exec` do not inherit them.
//! - Use a local filesystem (tmpfs such as `$XDG_RUNTIME_DIR`, ext4, xfs, btrfs): `O_TMPFILE`
//!   is required, and `flock` over NFS is emulated with record locks of other semantics.
//! - Anyone who can open the file for reading can lock it; give tokens `0o600` (the default
//!   of [`Permissions`]) unless other users must probe them.
//!
//! # Pidfds
//!
//! A [`Pidfd`] refers to one process, not to a pid number: once taken it can never come to
//! mean another process. See [`Pidfd::open`] for when taking one is itself race-free.
//!
//! [`LivenessToken`]: crate::liveness::LivenessToken
//! [`LivenessToken::acquire`]: crate::liveness::LivenessToken::acquire
//! [`probe`]: crate::liveness::probe
//! [`Liveness::Alive`]: crate::liveness::Liveness::Alive
//! [`Liveness::Dead`]: crate::liveness::Liveness::Dead
//! [`Liveness::Missing`]: crate::liveness::Liveness::Missing
//! [`claim_dead`]: crate::liveness::claim_dead
//! [`DeadToken::remove`]: crate::liveness::DeadToken::remove
//! [`Permissions`]: crate::Permissions
//! [`Pidfd`]: crate::liveness::Pidfd
//! [`Pidfd::open`]: crate::liveness::Pidfd::open

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, linkat, AtFlags, FlockOperation, Mode, OFlags, CWD};
use rustix::io::Errno;
use thiserror::Error;

use crate::Permissions;

mod pidfd;
mod probe;

pub use pidfd::{Pidfd, PidfdOpenError, PidfdWaitError};
pub use probe::{claim_dead, probe, DeadToken, Liveness, ProbeError};

/// How many times [`LivenessToken::acquire`] retries when a stale token vanishes or is
/// replaced under it before it gives up with [`AcquireError::AlreadyHeld`].
const ACQUIRE_ATTEMPTS: usize = 16;

/// Acquiring a liveness token failed.
#[derive(Debug, Error)]
pub enum AcquireError {
    /// A live process holds the token (or a cleaner is removing a dead owner's token at
    /// this instant: retrying shortly then succeeds).
    #[error(
        "liveness token {path:?} is held by a live process; stop that process or use another path"
    )]
    AlreadyHeld {
        /// The token path.
        path: PathBuf,
    },
    /// The path has no file name (it is empty or ends in `..` or `/`).
    #[error("liveness token path {path:?} has no file name; pass a path such as \"/run/user/1000/ipcx/node.lock\"")]
    BadPath {
        /// The rejected path.
        path: PathBuf,
    },
    /// The directory does not exist.
    #[error("directory of liveness token {path:?} does not exist; create it first")]
    NoDirectory {
        /// The token path.
        path: PathBuf,
        /// The errno (`ENOENT` or `ENOTDIR`).
        #[source]
        source: Errno,
    },
    /// The caller may not create files in the directory or open an existing token there.
    #[error("no permission to create or open liveness token {path:?}; check the directory's owner and mode")]
    PermissionDenied {
        /// The token path.
        path: PathBuf,
        /// The errno (`EACCES` or `EPERM`).
        #[source]
        source: Errno,
    },
    /// The filesystem cannot create unnamed files (`O_TMPFILE`).
    #[error("filesystem of {path:?} does not support O_TMPFILE; put liveness tokens on tmpfs, ext4, xfs or btrfs")]
    Unsupported {
        /// The token path.
        path: PathBuf,
        /// The errno (`EOPNOTSUPP`).
        #[source]
        source: Errno,
    },
    /// Something that is not a regular file sits at the path.
    #[error("{path:?} is not a liveness token file; remove it or use another path")]
    NotAToken {
        /// The token path.
        path: PathBuf,
    },
    /// Any other failure of `open`, `flock`, `write`, `linkat` or `unlink`.
    #[error("cannot acquire liveness token {path:?}")]
    Os {
        /// The token path.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
}

impl AcquireError {
    /// The single errno table of [`LivenessToken::acquire`].
    fn from_errno(path: &Path, e: Errno) -> AcquireError {
        let path = path.to_path_buf();
        match e {
            Errno::NOENT | Errno::NOTDIR => AcquireError::NoDirectory { path, source: e },
            Errno::ACCESS | Errno::PERM | Errno::ROFS => {
                AcquireError::PermissionDenied { path, source: e }
            }
            Errno::OPNOTSUPP | Errno::ISDIR => AcquireError::Unsupported { path, source: e },
            Errno::LOOP => AcquireError::NotAToken { path },
            _ => AcquireError::Os { path, source: e },
        }
    }
}

impl From<ProbeError> for AcquireError {
    fn from(e: ProbeError) -> AcquireError {
        match e {
            ProbeError::PermissionDenied { path, source } => {
                AcquireError::PermissionDenied { path, source }
            }
            ProbeError::NotAToken { path } => AcquireError::NotAToken { path },
            ProbeError::Os { path, source } => AcquireError::Os { path, source },
        }
    }
}

/// Removing a token file failed.
#[derive(Debug, Error)]
#[error("cannot remove liveness token {path:?}; remove it by hand once its owner is gone")]
pub struct RemoveError {
    /// The token path.
    pub path: PathBuf,
    /// The errno of `unlink`.
    #[source]
    pub source: Errno,
}

/// A liveness token held by this process: the lock lasts until the token is dropped or the
/// process dies. Dropping it removes the file, then unlocks it.
pub struct LivenessToken {
    fd: Option<OwnedFd>,
    path: PathBuf,
}

impl LivenessToken {
    /// Creates the token file at `path` with exactly `permissions` (whatever the umask),
    /// locked, close-on-exec, holding this process's pid.
    ///
    /// If a token is already there and its owner is dead, it is claimed, removed and
    /// replaced. If its owner is alive, this fails with [`AcquireError::AlreadyHeld`].
    /// The directory must exist. Pass an absolute path: the token removes `path` again
    /// when dropped, and a relative one would follow a change of working directory.
    pub fn acquire(
        path: impl AsRef<Path>,
        permissions: Permissions,
    ) -> Result<LivenessToken, AcquireError> {
        let path = path.as_ref();
        let err = |e| AcquireError::from_errno(path, e);
        let dir = match (path.parent(), path.file_name()) {
            (_, None) => return Err(AcquireError::BadPath { path: path.to_path_buf() }),
            (Some(d), Some(_)) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mode = Mode::from_raw_mode(permissions.mode());
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        let fd = rustix::fs::open(dir, flags, mode).map_err(err)?;
        // The umask applied to `open`; set the exact bits.
        rustix::fs::fchmod(&fd, mode).map_err(err)?;
        // Nobody else can reach an unnamed file, so this cannot fail with EWOULDBLOCK.
        flock(&fd, FlockOperation::NonBlockingLockExclusive).map_err(err)?;
        write_pid(&fd).map_err(err)?;
        // Linking the magic /proc link publishes the unnamed file (see open(2), O_TMPFILE).
        let proc_link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        for _ in 0..ACQUIRE_ATTEMPTS {
            match linkat(CWD, &proc_link, CWD, path, AtFlags::SYMLINK_FOLLOW) {
                Ok(()) => return Ok(LivenessToken { fd: Some(fd), path: path.to_path_buf() }),
                Err(Errno::EXIST) => {}
                Err(e) => return Err(err(e)),
            }
            match probe::claim(path)? {
                probe::Claim::Claimed(dead) => {
                    dead.remove().map_err(|e| AcquireError::from_errno(path, e.source))?
                }
                probe::Claim::Held => break,
                probe::Claim::Gone => {}
            }
        }
        Err(AcquireError::AlreadyHeld { path: path.to_path_buf() })
    }

    /// The path of the token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the token file, then unlocks it. Dropping the token does the same but
    /// ignores errors.
    pub fn remove(mut self) -> Result<(), RemoveError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), RemoveError> {
        let Some(fd) = self.fd.take() else { return Ok(()) };
        // Someone who ignores the protocol (`rm`) may have put another owner's token there.
        if !same_file(&fd, &self.path) {
            return Ok(());
        }
        // Unlink while still locked: once unlocked, the file would look dead to a cleaner.
        let res = match rustix::fs::unlink(&self.path) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(source) => Err(RemoveError { path: self.path.clone(), source }),
        };
        drop(fd);
        res
    }
}

impl Drop for LivenessToken {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

impl fmt::Debug for LivenessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LivenessToken").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Whether `path` names the file open as `fd` (same device and inode).
fn same_file(fd: impl AsFd, path: &Path) -> bool {
    match (rustix::fs::fstat(fd), rustix::fs::lstat(path)) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    }
}

/// Writes `"<pid>\n"` at the start of the token file.
fn write_pid(fd: impl AsFd) -> Result<(), Errno> {
    let text = format!("{}\n", std::process::id());
    let mut done = 0;
    while done < text.len() {
        match rustix::io::pwrite(&fd, &text.as_bytes()[done..], done as u64) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ipcxt-liveunit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn acquire_writes_pid_and_drop_removes() {
        let dir = temp_dir();
        let path = dir.join("a.lock");
        let token = LivenessToken::acquire(&path, Permissions::OWNER_ONLY).unwrap();
        assert_eq!(token.path(), path);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        // A second description in the same process conflicts with the owner's lock.
        assert_eq!(probe(&path).unwrap(), Liveness::Alive);
        assert!(matches!(
            LivenessToken::acquire(&path, Permissions::OWNER_ONLY),
            Err(AcquireError::AlreadyHeld { .. })
        ));
        drop(token);
        assert_eq!(probe(&path).unwrap(), Liveness::Missing);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn drop_leaves_a_file_that_replaced_the_token() {
        let dir = temp_dir();
        let path = dir.join("r.lock");
        let token = LivenessToken::acquire(&path, Permissions::OWNER_ONLY).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else\n").unwrap();
        drop(token);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_paths_are_typed() {
        assert!(matches!(
            LivenessToken::acquire("/", Permissions::OWNER_ONLY),
            Err(AcquireError::BadPath { .. })
        ));
        assert!(matches!(
            LivenessToken::acquire("/nonexistent-ipcx-dir/x.lock", Permissions::OWNER_ONLY),
            Err(AcquireError::NoDirectory { .. })
        ));
    }
}
