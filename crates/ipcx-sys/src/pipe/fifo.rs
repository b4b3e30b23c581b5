//! Named FIFOs (`mkfifo`): a pipe reached through a path, so unrelated processes can open
//! its two ends.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{chmod, fstat, lstat, mkfifoat, open, stat, unlink, FileType, Mode, OFlags, CWD};
use thiserror::Error;

use super::{PipeReader, PipeWriter, Wait};
use crate::{CreateMode, Errno, Permissions};

/// First pause between attempts to open a writer while no reader has the FIFO open.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
/// Longest pause between those attempts.
const BACKOFF_MAX: Duration = Duration::from_millis(32);

/// Creating or finding a FIFO failed.
#[derive(Debug, Error)]
pub enum FifoCreateError {
    /// `CreateMode::CreateExclusive` and something exists at the path.
    #[error("the FIFO path already exists; pick another path or use CreateMode::Open")]
    AlreadyExists(#[source] Errno),
    /// `CreateMode::Open` and nothing is at the path, or its directory does not exist.
    #[error("no FIFO at this path (or its directory is missing); create it first or use CreateMode::OpenOrCreate")]
    NotFound(#[source] Errno),
    /// Something other than a FIFO is at the path.
    #[error("the path exists but is not a FIFO; remove it or pick another path")]
    NotAFifo,
    /// The directory does not let this user create or look up the path.
    #[error("permission denied on the FIFO's directory; pick a directory this user may write to")]
    PermissionDenied(#[source] Errno),
    /// The FIFO was created but its mode could not be set exactly; it was removed again.
    #[error("cannot chmod the new FIFO to the requested permissions")]
    SetPermissions(#[source] Errno),
    /// `mkfifo` or `stat` failed for another reason.
    #[error("mkfifo failed")]
    Os(#[source] Errno),
}

/// Opening an end of a FIFO failed.
#[derive(Debug, Error)]
pub enum FifoOpenError {
    /// No reader opened the FIFO within the timeout (writers only).
    #[error("no reader opened the FIFO within the timeout; start the reading process first")]
    Timeout,
    /// The FIFO's permissions do not let this user open this end.
    #[error(
        "permission denied opening the FIFO; run as its owner or create it with wider Permissions"
    )]
    PermissionDenied(#[source] Errno),
    /// The path no longer exists.
    #[error("the FIFO path no longer exists; recreate it")]
    NotFound(#[source] Errno),
    /// The path was replaced by something other than a FIFO.
    #[error("the path is no longer a FIFO; recreate it")]
    NotAFifo,
    /// Out of file descriptors.
    #[error("out of file descriptors opening the FIFO; check RLIMIT_NOFILE (`ipcx doctor`)")]
    NoResources(#[source] Errno),
    /// `open` failed for another reason.
    #[error("opening the FIFO failed")]
    Os(#[source] Errno),
}

/// Removing a FIFO's path failed.
#[derive(Debug, Error)]
pub enum FifoRemoveError {
    /// Nothing is at the path any more.
    #[error("the FIFO path was already removed")]
    NotFound(#[source] Errno),
    /// The directory does not let this user remove the path.
    #[error("permission denied removing the FIFO; run as its owner")]
    PermissionDenied(#[source] Errno),
    /// `unlink` failed for another reason.
    #[error("unlinking the FIFO failed")]
    Os(#[source] Errno),
}

/// Describes a FIFO to create or find; see [`Fifo::builder`].
#[derive(Clone, Debug)]
pub struct FifoBuilder {
    path: PathBuf,
    create_mode: CreateMode,
    permissions: Permissions,
    remove_on_drop: Option<bool>,
}

impl FifoBuilder {
    /// How to treat an existing FIFO (default [`CreateMode::OpenOrCreate`]).
    pub fn create_mode(mut self, mode: CreateMode) -> Self {
        self.create_mode = mode;
        self
    }

    /// Permissions of a new FIFO (default `0o600`), applied exactly whatever the umask.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Whether dropping the handle removes the path (default: only if this handle created it).
    pub fn remove_on_drop(mut self, remove: bool) -> Self {
        self.remove_on_drop = Some(remove);
        self
    }

    /// Creates the FIFO or checks that the path is one. Opens neither end.
    pub fn open(self) -> Result<Fifo, FifoCreateError> {
        let mode = Mode::from_raw_mode(self.permissions.mode());
        loop {
            if self.create_mode.may_create() {
                match mkfifoat(CWD, &self.path, mode) {
                    Ok(()) => return self.created(mode),
                    Err(Errno::EXIST) if self.create_mode == CreateMode::OpenOrCreate => {}
                    Err(e) => return Err(create_error(e)),
                }
            }
            match stat(&self.path) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Fifo => {
                    let identity = lstat(&self.path).map(|st| (st.st_dev, st.st_ino));
                    let identity = identity.map_err(create_error)?;
                    let remove_on_drop = self.remove_on_drop.unwrap_or(false);
                    return Ok(Fifo { path: self.path, created: false, remove_on_drop, identity });
                }
                Ok(_) => return Err(FifoCreateError::NotAFifo),
                // Removed between our two calls: try creating it again.
                Err(Errno::NOENT) if self.create_mode == CreateMode::OpenOrCreate => {}
                Err(e) => return Err(create_error(e)),
            }
        }
    }

    /// Finishes a FIFO this builder just made: exact mode (mkfifo applied the umask).
    fn created(&self, mode: Mode) -> Result<Fifo, FifoCreateError> {
        let set = chmod(&self.path, mode).map_err(FifoCreateError::SetPermissions);
        let identity = set.and_then(|()| {
            let st = lstat(&self.path).map_err(FifoCreateError::Os)?;
            Ok((st.st_dev, st.st_ino))
        });
        match identity {
            Ok(identity) => Ok(Fifo {
                path: self.path.clone(),
                created: true,
                remove_on_drop: self.remove_on_drop.unwrap_or(true),
                identity,
            }),
            Err(e) => {
                let _ = unlink(&self.path);
                Err(e)
            }
        }
    }
}

/// The errno table of `mkfifo` and `stat`.
fn create_error(e: Errno) -> FifoCreateError {
    match e {
        Errno::EXIST => FifoCreateError::AlreadyExists(e),
        Errno::NOENT | Errno::NOTDIR => FifoCreateError::NotFound(e),
        Errno::ACCESS | Errno::PERM | Errno::ROFS => FifoCreateError::PermissionDenied(e),
        _ => FifoCreateError::Os(e),
    }
}

/// The errno table of `open` on a FIFO.
fn open_error(e: Errno) -> FifoOpenError {
    match e {
        Errno::ACCESS | Errno::PERM => FifoOpenError::PermissionDenied(e),
        Errno::NOENT => FifoOpenError::NotFound(e),
        Errno::MFILE | Errno::NFILE => FifoOpenError::NoResources(e),
        _ => FifoOpenError::Os(e),
    }
}

/// A FIFO in the filesystem. Its path is removed on drop if this handle created it.
///
/// Each call to `open_reader`/`open_writer` opens a new end; data written by any writer
/// goes to whichever reader reads first.
#[derive(Debug)]
pub struct Fifo {
    path: PathBuf,
    created: bool,
    remove_on_drop: bool,
    /// `(st_dev, st_ino)` of the path when opened, so drop never removes a replacement.
    identity: (u64, u64),
}

impl Fifo {
    /// Starts describing the FIFO at `path`.
    pub fn builder(path: impl AsRef<Path>) -> FifoBuilder {
        FifoBuilder {
            path: path.as_ref().to_owned(),
            create_mode: CreateMode::OpenOrCreate,
            permissions: Permissions::default(),
            remove_on_drop: None,
        }
    }

    /// The FIFO's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this handle created the FIFO.
    pub fn is_creator(&self) -> bool {
        self.created
    }

    /// Opens a reading end. This never waits: reads then wait for a writer to connect and
    /// write; they report [`PeerGone`](super::ReadError::PeerGone) only after a writer
    /// has connected and every writer has closed.
    pub fn open_reader(&self) -> Result<PipeReader, FifoOpenError> {
        match self.open_end(OFlags::RDONLY)? {
            Some(fd) => Ok(PipeReader::from_nonblocking(fd)),
            // Opening for reading never fails with ENXIO.
            None => Err(FifoOpenError::Os(Errno::NXIO)),
        }
    }

    /// Opens a writing end, waiting (without limit) until some process has a reading end
    /// open.
    pub fn open_writer(&self) -> Result<PipeWriter, FifoOpenError> {
        self.open_writer_until(Wait::Forever)
    }

    /// Opens a writing end, waiting at most `timeout` for some process to have a reading
    /// end open. The kernel cannot wait for a reader with a timeout, so this retries the
    /// non-blocking open (which fails with `ENXIO` while there is no reader) with pauses
    /// growing from 1 to 32 ms.
    pub fn open_writer_timeout(&self, timeout: Duration) -> Result<PipeWriter, FifoOpenError> {
        self.open_writer_until(Wait::Until(Instant::now() + timeout))
    }

    /// Opens a writing end if some process has a reading end open; `None` otherwise.
    pub fn try_open_writer(&self) -> Result<Option<PipeWriter>, FifoOpenError> {
        match self.open_writer_until(Wait::Now) {
            Ok(w) => Ok(Some(w)),
            Err(FifoOpenError::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open_writer_until(&self, wait: Wait) -> Result<PipeWriter, FifoOpenError> {
        let mut pause = BACKOFF_MIN;
        loop {
            if let Some(fd) = self.open_end(OFlags::WRONLY)? {
                return Ok(PipeWriter::from_nonblocking(fd));
            }
            let nap = match wait {
                Wait::Now => return Err(FifoOpenError::Timeout),
                Wait::Forever => pause,
                Wait::Until(t) => {
                    let left = t.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(FifoOpenError::Timeout);
                    }
                    pause.min(left)
                }
            };
            std::thread::sleep(nap);
            pause = (pause * 2).min(BACKOFF_MAX);
        }
    }

    /// Opens one end non-blocking and checks it is still a FIFO; `None` on `ENXIO` (a
    /// writer while no reader has the FIFO open).
    fn open_end(&self, access: OFlags) -> Result<Option<OwnedFd>, FifoOpenError> {
        let flags = access | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = match open(&self.path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NXIO) => return Ok(None),
            Err(e) => return Err(open_error(e)),
        };
        match fstat(&fd) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Fifo => Ok(Some(fd)),
            Ok(_) => Err(FifoOpenError::NotAFifo),
            Err(e) => Err(FifoOpenError::Os(e)),
        }
    }

    /// Removes the path now (open ends keep working); drop will not remove it again.
    pub fn remove(&mut self) -> Result<(), FifoRemoveError> {
        self.remove_on_drop = false;
        unlink(&self.path).map_err(|e| match e {
            Errno::NOENT => FifoRemoveError::NotFound(e),
            Errno::ACCESS | Errno::PERM => FifoRemoveError::PermissionDenied(e),
            e => FifoRemoveError::Os(e),
        })
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        if !self.remove_on_drop {
            return;
        }
        // Only remove the FIFO we made, not whatever replaced it since (filesystems
        // reuse inode numbers, so the type is checked too).
        if let Ok(st) = lstat(&self.path) {
            let is_fifo = FileType::from_raw_mode(st.st_mode) == FileType::Fifo;
            if is_fifo && (st.st_dev, st.st_ino) == self.identity {
                let _ = unlink(&self.path);
            }
        }
    }
}
