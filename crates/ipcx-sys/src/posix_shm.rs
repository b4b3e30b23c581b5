//! POSIX shared memory objects (`shm_open`): named files in `/dev/shm` (tmpfs) that any
//! process with permission can open and map.
//!
//! An object is made or opened with [`PosixShm::builder`]. The creator sizes it
//! (`ftruncate`), reserves its memory (`fallocate`, so a full `/dev/shm` fails at creation
//! instead of with `SIGBUS` later) and sets its mode exactly with `fchmod`, whatever the
//! umask. Map it with [`PosixShm::map`].
//!
//! Lifecycle: the handle that created the object unlinks its name on drop (an opener does
//! not unless [`PosixShmBuilder::remove_on_drop`] says so); existing mappings and open fds
//! keep the memory alive until they go. Unlinking first checks that the name still refers
//! to this handle's object, so a dropped handle never removes a newer object of the same
//! name. [`unlink`] removes a name left behind by a crashed process.
//!
//! Limits: anyone who can write the object can resize it; see [`crate::mapping`].

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{fchmod, fstat, ftruncate, stat, Mode};
use rustix::io::Errno;
use rustix::shm;
use thiserror::Error;

use crate::mapping::{self, Access, MapError, MapOptions, Mapping};
use crate::name::{posix_name, NameError};
use crate::options::{CreateMode, Permissions};

/// How many times `OpenOrCreate` retries when the object vanishes or appears under it.
const OPEN_OR_CREATE_TRIES: usize = 16;

/// Owner and mode of an object, when they could be read, for permission errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectOwner {
    /// Owning uid.
    pub uid: u32,
    /// Permission bits.
    pub mode: u32,
}

/// Formats "created by uid U with mode M" or nothing when the owner is unknown.
pub(crate) struct OwnerText(pub(crate) Option<ObjectOwner>);

impl fmt::Display for OwnerText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(o) => {
                write!(f, " (created by another user, uid {}, with mode {:#o})", o.uid, o.mode)
            }
            None => Ok(()),
        }
    }
}

/// Opening or creating a POSIX shm object failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The name cannot be used.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// The builder may create the object but has no size, or a size of 0.
    #[error("creating shm object {name} needs a size above 0; call .size(n)")]
    MissingSize {
        /// Object name (`/name`).
        name: String,
    },
    /// A read-only handle was asked to create the object.
    #[error("a read-only handle cannot create shm object {name}; use CreateMode::Open or Access::ReadWrite")]
    ReadOnlyCreate {
        /// Object name.
        name: String,
    },
    /// `CreateExclusive` found an object of that name.
    #[error("shm object {name} already exists; open it with CreateMode::Open, or remove it if it is stale (`ipcx clean`)")]
    AlreadyExists {
        /// Object name.
        name: String,
    },
    /// `Open` found no object of that name.
    #[error("shm object {name} does not exist; check the name, or create it first")]
    NotFound {
        /// Object name.
        name: String,
    },
    /// The object exists but this process may not open it.
    #[error("permission denied on shm object {name}{}; ask its owner to grant access or run as that user", OwnerText(*.owner))]
    PermissionDenied {
        /// Object name.
        name: String,
        /// Owner and mode of the object, if they could be read.
        owner: Option<ObjectOwner>,
        /// The errno (`EACCES`/`EPERM`).
        #[source]
        source: Errno,
    },
    /// `/dev/shm` has no room for the object.
    #[error("/dev/shm is full: cannot reserve {size} bytes for shm object {name}; check `df -h /dev/shm`, remove stale objects or ask for less")]
    NoSpace {
        /// Object name.
        name: String,
        /// Size asked for.
        size: usize,
        /// The errno (`ENOSPC`).
        #[source]
        source: Errno,
    },
    /// The existing object is smaller than the size required by the opener.
    #[error("shm object {name} holds {size} bytes but {required} are required; its creator may still be setting it up, retry")]
    TooSmall {
        /// Object name.
        name: String,
        /// Its current size.
        size: u64,
        /// Size required.
        required: usize,
    },
    /// `/dev/shm/<name>` is a symbolic link, which is never followed.
    #[error("/dev/shm{name} is a symbolic link, not a shm object; remove it")]
    Symlink {
        /// Object name.
        name: String,
        /// The errno (`ELOOP`).
        #[source]
        source: Errno,
    },
    /// The process or system is out of file descriptors.
    #[error("out of file descriptors; close unused fds or raise RLIMIT_NOFILE (`ipcx doctor`)")]
    TooManyFiles(#[source] Errno),
    /// Another system call failed.
    #[error("{op} failed on shm object {name}")]
    Os {
        /// The call that failed.
        op: &'static str,
        /// Object name.
        name: String,
        /// Its errno.
        #[source]
        source: Errno,
    },
}

/// Unlinking a POSIX shm object failed.
#[derive(Debug, Error)]
pub enum UnlinkError {
    /// The name cannot be used.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// There is no object of that name (or it is no longer this handle's object).
    #[error("shm object {name} does not exist (already removed?)")]
    NotFound {
        /// Object name.
        name: String,
    },
    /// This process may not remove the object.
    #[error("permission denied removing shm object {name}{}; only its owner or root can remove it", OwnerText(*.owner))]
    PermissionDenied {
        /// Object name.
        name: String,
        /// Owner and mode of the object, if they could be read.
        owner: Option<ObjectOwner>,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Another system call failed.
    #[error("shm_unlink failed on {name}")]
    Os {
        /// Object name.
        name: String,
        /// Its errno.
        #[source]
        source: Errno,
    },
}

/// Describes a POSIX shm object to open or create; see [`PosixShm::builder`].
#[derive(Clone, Debug)]
pub struct PosixShmBuilder {
    name: String,
    create_mode: CreateMode,
    permissions: Permissions,
    size: Option<usize>,
    access: Access,
    remove_on_drop: Option<bool>,
}

impl PosixShmBuilder {
    /// Whether to create, open, or either (default [`CreateMode::CreateExclusive`]).
    pub fn create_mode(mut self, mode: CreateMode) -> Self {
        self.create_mode = mode;
        self
    }

    /// Mode of a created object (default `0o600`), applied exactly.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Size in bytes of a created object; when opening, the size the object must at least
    /// have. Required when the builder may create.
    pub fn size(mut self, size: usize) -> Self {
        self.size = Some(size);
        self
    }

    /// Open the fd read-only or read-write (default). Read-only handles cannot create.
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Whether dropping the handle unlinks the name. Default: only if this handle created it.
    pub fn remove_on_drop(mut self, remove: bool) -> Self {
        self.remove_on_drop = Some(remove);
        self
    }

    /// Opens or creates the object.
    pub fn open(self) -> Result<PosixShm, OpenError> {
        let path = posix_name(&self.name)?;
        if self.create_mode.may_create() {
            if self.access == Access::ReadOnly {
                return Err(OpenError::ReadOnlyCreate { name: path });
            }
            if matches!(self.size, None | Some(0)) {
                return Err(OpenError::MissingSize { name: path });
            }
        }
        let (fd, created) = match self.create_mode {
            CreateMode::CreateExclusive => (self.create(&path)?, true),
            CreateMode::Open => (self.open_existing(&path)?, false),
            CreateMode::OpenOrCreate => self.open_or_create(&path)?,
        };
        let size = fstat(&fd).map_err(|e| open_error("fstat", &path, 0, e))?.st_size;
        let size = u64::try_from(size).unwrap_or(0);
        if let Some(required) = self.size.filter(|&r| r as u64 > size) {
            return Err(OpenError::TooSmall { name: path, size, required });
        }
        let remove_on_drop = self.remove_on_drop.unwrap_or(created);
        Ok(PosixShm { fd, name: path, created, remove_on_drop, size })
    }

    fn open_or_create(&self, path: &str) -> Result<(OwnedFd, bool), OpenError> {
        let mut last = None;
        for _ in 0..OPEN_OR_CREATE_TRIES {
            match self.create(path) {
                Ok(fd) => return Ok((fd, true)),
                Err(OpenError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            match self.open_existing(path) {
                Ok(fd) => return Ok((fd, false)),
                Err(e @ OpenError::NotFound { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(OpenError::NotFound { name: path.to_owned() }))
    }

    fn create(&self, path: &str) -> Result<OwnedFd, OpenError> {
        let size = self.size.unwrap_or(0);
        let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR | no_follow();
        let mode = Mode::from_raw_mode(self.permissions.mode());
        let fd = shm::open(path, flags, mode).map_err(|e| open_error("shm_open", path, size, e))?;
        let setup = (|| {
            fchmod(&fd, mode).map_err(|e| open_error("fchmod", path, size, e))?;
            ftruncate(&fd, size as u64).map_err(|e| open_error("ftruncate", path, size, e))?;
            mapping::reserve(&fd, size).map_err(|e| open_error("fallocate", path, size, e))
        })();
        if let Err(e) = setup {
            // Never leave a half-made object behind.
            let _ = shm::unlink(path);
            return Err(e);
        }
        Ok(fd)
    }

    fn open_existing(&self, path: &str) -> Result<OwnedFd, OpenError> {
        let access = match self.access {
            Access::ReadOnly => shm::OFlags::RDONLY,
            Access::ReadWrite => shm::OFlags::RDWR,
        };
        shm::open(path, access | no_follow(), Mode::empty())
            .map_err(|e| open_error("shm_open", path, self.size.unwrap_or(0), e))
    }
}

/// A POSIX shared memory object: an fd on `/dev/shm/<name>`.
#[derive(Debug)]
pub struct PosixShm {
    fd: OwnedFd,
    name: String,
    created: bool,
    remove_on_drop: bool,
    size: u64,
}

impl PosixShm {
    /// Starts describing the object called `name` (without the leading `/`, e.g.
    /// `"ipcx.myns.chan"`): exclusive creation, mode `0o600`, read-write.
    pub fn builder(name: &str) -> PosixShmBuilder {
        PosixShmBuilder {
            name: name.to_owned(),
            create_mode: CreateMode::CreateExclusive,
            permissions: Permissions::default(),
            size: None,
            access: Access::ReadWrite,
            remove_on_drop: None,
        }
    }

    /// The object's name, with its leading `/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this handle created the object.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Size of the object in bytes when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Maps the whole object with `access`.
    pub fn map(&self, access: Access) -> Result<Mapping, MapError> {
        Mapping::map(&self.fd, access)
    }

    /// Maps the object with explicit options (length, pre-faulting).
    pub fn map_with(&self, options: MapOptions) -> Result<Mapping, MapError> {
        options.map(&self.fd)
    }

    /// Unlinks the name now (if it still names this object) and closes the handle.
    /// Mappings stay valid.
    pub fn remove(mut self) -> Result<(), UnlinkError> {
        self.remove_on_drop = false;
        self.unlink_if_ours()
    }

    fn unlink_if_ours(&self) -> Result<(), UnlinkError> {
        let ours = fstat(&self.fd).map_err(|e| unlink_error(&self.name, e))?;
        let there =
            stat(format!("/dev/shm{}", self.name)).map_err(|e| unlink_error(&self.name, e))?;
        if (there.st_dev, there.st_ino) != (ours.st_dev, ours.st_ino) {
            return Err(UnlinkError::NotFound { name: self.name.clone() });
        }
        shm::unlink(self.name.as_str()).map_err(|e| unlink_error(&self.name, e))
    }
}

impl AsFd for PosixShm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for PosixShm {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = self.unlink_if_ours();
        }
    }
}

/// Unlinks the POSIX shm object `name` (without the leading `/`), e.g. one left behind by a
/// crashed process. Processes that have it open or mapped keep their memory.
pub fn unlink(name: &str) -> Result<(), UnlinkError> {
    let path = posix_name(name)?;
    shm::unlink(path.as_str()).map_err(|e| unlink_error(&path, e))
}

/// `O_NOFOLLOW`, which glibc's `shm_open` also passes: never follow a planted symlink.
fn no_follow() -> shm::OFlags {
    shm::OFlags::from_bits_retain(libc::O_NOFOLLOW as _)
}

/// Owner and mode of `/dev/shm/<name>`, for permission errors.
fn owner_of(path: &str) -> Option<ObjectOwner> {
    let st = stat(format!("/dev/shm{path}")).ok()?;
    Some(ObjectOwner { uid: st.st_uid, mode: st.st_mode & 0o7777 })
}

fn open_error(op: &'static str, path: &str, size: usize, source: Errno) -> OpenError {
    let name = path.to_owned();
    match source {
        Errno::EXIST => OpenError::AlreadyExists { name },
        Errno::NOENT => OpenError::NotFound { name },
        Errno::ACCESS | Errno::PERM => {
            OpenError::PermissionDenied { owner: owner_of(path), name, source }
        }
        Errno::NOSPC => OpenError::NoSpace { name, size, source },
        Errno::LOOP => OpenError::Symlink { name, source },
        Errno::MFILE | Errno::NFILE => OpenError::TooManyFiles(source),
        _ => OpenError::Os { op, name, source },
    }
}

fn unlink_error(path: &str, source: Errno) -> UnlinkError {
    let name = path.to_owned();
    match source {
        Errno::NOENT => UnlinkError::NotFound { name },
        Errno::ACCESS | Errno::PERM => {
            UnlinkError::PermissionDenied { owner: owner_of(path), name, source }
        }
        _ => UnlinkError::Os { name, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table_maps_the_common_cases() {
        assert!(matches!(open_error("x", "/a", 1, Errno::EXIST), OpenError::AlreadyExists { .. }));
        assert!(matches!(open_error("x", "/a", 1, Errno::NOENT), OpenError::NotFound { .. }));
        assert!(matches!(open_error("x", "/a", 1, Errno::LOOP), OpenError::Symlink { .. }));
        assert!(matches!(open_error("x", "/a", 1, Errno::MFILE), OpenError::TooManyFiles(_)));
        assert!(matches!(open_error("x", "/a", 1, Errno::IO), OpenError::Os { op: "x", .. }));
        assert!(matches!(unlink_error("/a", Errno::NOENT), UnlinkError::NotFound { .. }));
    }

    #[test]
    fn permission_message_names_owner_and_mode() {
        let e = OpenError::PermissionDenied {
            name: "/x".into(),
            owner: Some(ObjectOwner { uid: 0, mode: 0o600 }),
            source: Errno::ACCESS,
        };
        let text = e.to_string();
        assert!(text.contains("uid 0") && text.contains("0o600"), "{text}");
        assert!(text.contains("ask its owner"), "{text}");
    }

    #[test]
    fn builder_rejects_bad_arguments_before_any_syscall() {
        let e = PosixShm::builder("a/b").size(1).open().unwrap_err();
        assert!(matches!(e, OpenError::BadName(_)));
        let e = PosixShm::builder("ipcx-unit-nosize").open().unwrap_err();
        assert!(matches!(e, OpenError::MissingSize { .. }));
        let e = PosixShm::builder("ipcx-unit-ro").size(1).access(Access::ReadOnly).open();
        assert!(matches!(e.unwrap_err(), OpenError::ReadOnlyCreate { .. }));
    }
}
