//! POSIX shared memory objects (`shm_open`): named files in `/dev/shm` (tmpfs) that any process
//! with permission can open and map.
//!
//! An object is made or opened with [`PosixShm::builder`](crate::posix_shm::PosixShm::builder). The
//! creator sizes it (`ftruncate`), reserves its memory (`fallocate`, so a full `/dev/shm` fails at
//! creation instead of with `SIGBUS` later) and sets its mode exactly with `fchmod`, whatever the
//! umask. Map it with [`PosixShm::map`](crate::posix_shm::PosixShm::map).
//!
//! Lifecycle: the handle that created the object unlinks its name on drop (an opener does not
//! unless [`PosixShmBuilder::remove_on_drop`](crate::posix_shm::PosixShmBuilder::remove_on_drop)
//! says so); existing mappings and open fds keep the memory alive until they go. Unlinking first
//! checks that the name still refers to this handle's object, so a dropped handle never removes a
//! newer object of the same name. [`unlink`](crate::posix_shm::unlink) removes a name left behind
//! by a crashed process.
//!
//! Limits: anyone who can write the object can resize it; see [`crate::mapping`].

mod error;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{fchmod, fstat, ftruncate, stat, Mode};
use rustix::shm;

use crate::mapping::{self, Access, MapError, MapOptions, Mapping};
use crate::name::posix_name;
use crate::options::{CreateMode, Permissions};

pub(crate) use error::OwnerText;
use error::{open_error, unlink_error};
pub use error::{ObjectOwner, OpenError, UnlinkError};

/// How many times `OpenOrCreate` retries when the object vanishes or appears under it.
const OPEN_OR_CREATE_TRIES: usize = 16;

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

#[cfg(test)]
mod tests {
    use super::*;

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
