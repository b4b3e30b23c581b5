//! Binding a socket to its address: create-mode handling, exact permissions, reclaiming a
//! stale socket file, and removing the file again when the creator is done.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{chmod, lstat, unlink, FileType, Mode};
use rustix::io::Errno;
use rustix::net::{bind, connect, SocketType};
use rustix::process::{getpid, Pid};

use super::{io, BindError, RemoveError, UdsAddr};
use crate::{CreateMode, Permissions};

/// How a listener or datagram socket claims its address.
///
/// `create_mode` decides what happens when a file is already at the path:
/// [`CreateMode::CreateExclusive`] fails with [`BindError::AlreadyExists`];
/// [`CreateMode::OpenOrCreate`] removes it if it is a socket nobody listens on (a probe
/// connect is refused) and fails with [`BindError::InUse`] otherwise. A probe that finds a
/// live listener leaves it one connection that closes at once. [`CreateMode::Open`] is
/// refused: binding always creates. Abstract names have no file; a taken name is `InUse`.
///
/// `permissions` is set on the socket file with `chmod` right after `bind` and before
/// `listen`, so it is exact whatever the umask. (A bound datagram socket can receive in the
/// instant between `bind` and `chmod`; put it in a directory only trusted users can search
/// if that matters.) Abstract names ignore it.
///
/// `backlog` is the listen queue length (clamped by `net.core.somaxconn`); datagram
/// sockets ignore it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindOptions {
    /// What to do when the path exists.
    pub create_mode: CreateMode,
    /// Mode of the socket file.
    pub permissions: Permissions,
    /// Length of the listen queue.
    pub backlog: u32,
}

impl BindOptions {
    /// Listen queue length used by [`BindOptions::default`].
    pub const DEFAULT_BACKLOG: u32 = 128;

    /// Options with the given create mode, mode `0o600` and the default backlog.
    pub fn new(create_mode: CreateMode) -> BindOptions {
        BindOptions { create_mode, ..BindOptions::default() }
    }

    /// The same options with `permissions`.
    pub fn permissions(self, permissions: Permissions) -> BindOptions {
        BindOptions { permissions, ..self }
    }

    /// The same options with a listen queue of `backlog`.
    pub fn backlog(self, backlog: u32) -> BindOptions {
        BindOptions { backlog, ..self }
    }

    /// The backlog as `listen` takes it.
    pub(super) fn listen_backlog(&self) -> i32 {
        i32::try_from(self.backlog).unwrap_or(i32::MAX)
    }
}

impl Default for BindOptions {
    /// `CreateExclusive`, `0o600`, a backlog of [`BindOptions::DEFAULT_BACKLOG`].
    fn default() -> BindOptions {
        BindOptions {
            create_mode: CreateMode::CreateExclusive,
            permissions: Permissions::default(),
            backlog: BindOptions::DEFAULT_BACKLOG,
        }
    }
}

/// A socket file this process created; unlinked on drop if it is still the same file.
#[derive(Debug)]
pub(super) struct BoundPath {
    addr: UdsAddr,
    path: PathBuf,
    dev: u64,
    ino: u64,
    creator: Pid,
    /// Whether dropping it unlinks the file.
    armed: bool,
}

impl BoundPath {
    /// Unlinks the file if it is still the one this process created (same inode, and not
    /// a forked child dropping a copy of the parent's handle).
    pub(super) fn remove(mut self) -> Result<(), RemoveError> {
        self.armed = false;
        self.unlink_if_ours()
    }

    /// Leaves the file in place for good.
    pub(super) fn keep(mut self) {
        self.armed = false;
    }

    fn unlink_if_ours(&self) -> Result<(), RemoveError> {
        if getpid() != self.creator {
            return Ok(());
        }
        match lstat(&self.path) {
            Ok(st) if st.st_dev == self.dev && st.st_ino == self.ino => {}
            _ => return Ok(()), // gone, or replaced by someone else's socket
        }
        match unlink(&self.path) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(source) => Err(RemoveError { path: self.addr.clone(), source }),
        }
    }
}

impl Drop for BoundPath {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.unlink_if_ours();
        }
    }
}

/// Binds `fd` (a socket of type `ty`) to `addr` following `opts`, and sets the mode of a
/// path socket. Returns the created file, if any, for removal later.
pub(super) fn bind_to(
    fd: BorrowedFd<'_>,
    ty: SocketType,
    addr: &UdsAddr,
    opts: &BindOptions,
) -> Result<Option<BoundPath>, BindError> {
    if opts.create_mode == CreateMode::Open {
        return Err(BindError::OpenUnsupported);
    }
    let sa = addr.to_sockaddr();
    let mut reclaimed = false;
    loop {
        match bind(fd, &sa) {
            Ok(()) => break,
            Err(Errno::ADDRINUSE) => {}
            Err(e) => return Err(bind_errno(e, addr)),
        }
        let Some(path) = addr.as_path() else {
            return Err(BindError::InUse { addr: addr.clone() });
        };
        match opts.create_mode {
            CreateMode::OpenOrCreate if !reclaimed => {
                reclaim_stale(path, ty, addr)?;
                reclaimed = true;
            }
            CreateMode::OpenOrCreate => return Err(BindError::InUse { addr: addr.clone() }),
            _ => return Err(BindError::AlreadyExists { addr: addr.clone() }),
        }
    }
    let Some(path) = addr.as_path() else { return Ok(None) };
    let st = match lstat(path) {
        Ok(st) => st,
        Err(e) => return Err(BindError::Os(e)),
    };
    let bound = BoundPath {
        addr: addr.clone(),
        path: path.to_path_buf(),
        dev: st.st_dev,
        ino: st.st_ino,
        creator: getpid(),
        armed: true,
    };
    // On failure `bound` drops here and unlinks the half-made socket file.
    chmod(path, Mode::from_raw_mode(opts.permissions.mode()))
        .map_err(|source| BindError::Chmod { addr: addr.clone(), source })?;
    Ok(Some(bound))
}

/// The errno table of `bind`, apart from `EADDRINUSE`.
fn bind_errno(e: Errno, addr: &UdsAddr) -> BindError {
    let addr = addr.clone();
    match e {
        Errno::ACCESS | Errno::PERM | Errno::ROFS => {
            BindError::PermissionDenied { addr, source: e }
        }
        Errno::NOENT | Errno::NOTDIR => BindError::NoDirectory { addr, source: e },
        e => BindError::Os(e),
    }
}

/// Removes the socket file at `path` if nobody listens on it; errors if it is alive or is
/// not a socket.
fn reclaim_stale(path: &Path, ty: SocketType, addr: &UdsAddr) -> Result<(), BindError> {
    match lstat(path) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Socket => {}
        Ok(_) => return Err(BindError::NotASocket { addr: addr.clone() }),
        Err(Errno::NOENT) => return Ok(()), // vanished meanwhile: bind again
        Err(e) => return Err(BindError::Os(e)),
    }
    // Non-blocking, so a live listener with a full backlog answers EAGAIN instead of hanging.
    let probe = io::socket(ty, true)?;
    match io::retry_intr(|| connect(probe.as_fd(), &addr.to_sockaddr())) {
        Err(Errno::CONNREFUSED) => match unlink(path) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(bind_errno(e, addr)),
        },
        Err(Errno::NOENT) => Ok(()),
        Ok(()) | Err(Errno::AGAIN | Errno::PROTOTYPE) => {
            Err(BindError::InUse { addr: addr.clone() })
        }
        Err(e) => Err(bind_errno(e, addr)),
    }
}

/// How long [`is_stale`] waits between its two probes.
const STALE_RECHECK: std::time::Duration = std::time::Duration::from_millis(10);

/// Whether the socket file at `path` is stale: nobody listens on it, as a listener killed
/// before it could unlink its file leaves it. The probe is the one binding with
/// [`CreateMode::OpenOrCreate`] uses (a connect that is refused), made twice
/// 10 ms apart on the same file, because a listener between its `bind` and `listen` refuses
/// connections for an instant. `seqpacket` must match the listener's socket type (a probe
/// of the wrong type counts as alive). A probe that finds a live listener leaves it one
/// connection that closes at once. `Ok(false)` if no file is there; [`BindError::NotASocket`]
/// if something else is. Removing the file is the caller's business (recheck nothing
/// replaced it: a new listener may reclaim it meanwhile).
pub fn is_stale(path: &Path, seqpacket: bool) -> Result<bool, BindError> {
    // A path no socket can be bound to was never a listener's.
    let Ok(addr) = UdsAddr::path(path) else { return Ok(false) };
    let ty = if seqpacket { SocketType::SEQPACKET } else { SocketType::STREAM };
    let identity = |addr: &UdsAddr| match lstat(path) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Socket => {
            Ok(Some((st.st_dev, st.st_ino)))
        }
        Ok(_) => Err(BindError::NotASocket { addr: addr.clone() }),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(BindError::Os(e)),
    };
    let Some(first) = identity(&addr)? else { return Ok(false) };
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(STALE_RECHECK);
        }
        // Non-blocking, so a live listener with a full backlog answers EAGAIN.
        let probe = io::socket(ty, true)?;
        match io::retry_intr(|| connect(probe.as_fd(), &addr.to_sockaddr())) {
            Err(Errno::CONNREFUSED) => {}
            Err(Errno::NOENT) | Ok(()) | Err(Errno::AGAIN | Errno::PROTOTYPE) => return Ok(false),
            Err(e) => return Err(bind_errno(e, &addr)),
        }
    }
    Ok(identity(&addr)? == Some(first))
}
