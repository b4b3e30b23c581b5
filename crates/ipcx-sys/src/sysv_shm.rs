//! System V shared memory segments (`shmget`, `shmat`): kernel objects named by a numeric key (or
//! private, reached by id), listed in `/proc/sysvipc/shm` and by `ipcs -m`.
//!
//! A segment is made or opened with [`SysvShm::builder`](crate::sysv_shm::SysvShm::builder), or
//! reached by id with [`SysvShm::from_id`](crate::sysv_shm::SysvShm::from_id). Its mode is passed
//! straight to `shmget`, where the umask does not apply, so it is exact.
//! [`SysvShm::attach`](crate::sysv_shm::SysvShm::attach) maps it as a
//! [`SysvAttachment`](crate::sysv_shm::SysvAttachment), which dereferences to the same
//! [`SharedRegion`](crate::mapping::SharedRegion) accessors as a
//! [`Mapping`](crate::mapping::Mapping), sized from `IPC_STAT`.
//!
//! Lifecycle: the handle that created a segment marks it for removal (`IPC_RMID`) on drop; the
//! kernel destroys it once the last attachment is gone, so attachments stay valid. A segment
//! outlives every process that used it unless removed: a crashed creator leaves it behind, and
//! [`SysvShm::remove`](crate::sysv_shm::SysvShm::remove) (or `ipcrm`) clears it.
//!
//! Limits: `kernel.shmmax` caps a segment's size, `kernel.shmmni` the number of segments and
//! `kernel.shmall` the total pages. Segments are not reserved up front, so a system short of memory
//! can still fail on first touch; prefer POSIX shm or memfd where that matters.

mod error;

use std::mem::MaybeUninit;
use std::ops::Deref;
use std::ptr::NonNull;

use rustix::io::Errno;

use crate::errno::last_errno;
use crate::mapping::{Access, SharedRegion};
use crate::options::{CreateMode, Permissions};

use error::{attach_error, open_error, owner_of};
pub use error::{AttachError, OpenError, RemoveError, Segment};

/// The key a segment is created or found under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SysvKey {
    /// A new segment no key can find (`IPC_PRIVATE`); share its [`SysvShm::id`].
    Private,
    /// A numeric key (non-zero; 0 is `IPC_PRIVATE`).
    Key(i32),
}

/// Describes a segment to open or create; see [`SysvShm::builder`].
#[derive(Clone, Debug)]
pub struct SysvShmBuilder {
    key: SysvKey,
    create_mode: CreateMode,
    permissions: Permissions,
    size: Option<usize>,
    access: Access,
    remove_on_drop: Option<bool>,
}

impl SysvShmBuilder {
    /// Whether to create, open, or either (default [`CreateMode::CreateExclusive`]).
    pub fn create_mode(mut self, mode: CreateMode) -> Self {
        self.create_mode = mode;
        self
    }

    /// Mode of a created segment (default `0o600`), exact: `shmget` ignores the umask.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Size in bytes of a created segment; when opening, the size it must at least have.
    pub fn size(mut self, size: usize) -> Self {
        self.size = Some(size);
        self
    }

    /// The access this handle needs (default read-write); checked when opening.
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Whether dropping the handle removes the segment. Default: only if it created it.
    pub fn remove_on_drop(mut self, remove: bool) -> Self {
        self.remove_on_drop = Some(remove);
        self
    }

    /// Opens or creates the segment.
    pub fn open(self) -> Result<SysvShm, OpenError> {
        let (key, segment) = match self.key {
            SysvKey::Key(0) => return Err(OpenError::ZeroKey),
            SysvKey::Key(k) => (k, Segment::Key(k)),
            SysvKey::Private if self.create_mode == CreateMode::Open => {
                return Err(OpenError::PrivateOpen)
            }
            SysvKey::Private => (libc::IPC_PRIVATE, Segment::Private),
        };
        let size = match (self.create_mode.may_create(), self.size, self.access) {
            (true, _, Access::ReadOnly) => return Err(OpenError::ReadOnlyCreate),
            (true, None | Some(0), _) => return Err(OpenError::MissingSize),
            (_, size, _) => size.unwrap_or(0),
        };
        let create = libc::IPC_CREAT | libc::IPC_EXCL | self.permissions.mode() as libc::c_int;
        let open = match self.access {
            Access::ReadOnly => 0o400,
            Access::ReadWrite => 0o600,
        };
        let (id, created) = match self.create_mode {
            CreateMode::CreateExclusive => (shmget(key, size, create, segment)?, true),
            CreateMode::Open => (shmget(key, 0, open, segment)?, false),
            CreateMode::OpenOrCreate => match shmget(key, size, create, segment) {
                Ok(id) => (id, true),
                Err(OpenError::AlreadyExists { .. }) => (shmget(key, 0, open, segment)?, false),
                Err(e) => return Err(e),
            },
        };
        let actual =
            ipc_stat(id).map_err(|e| open_error("shmctl(IPC_STAT)", Segment::Id(id), 0, e));
        // Until every check passed, only a segment this call created is removed on error.
        let mut shm = SysvShm {
            id,
            created,
            remove_on_drop: created,
            size: actual.as_ref().map_or(0, |ds| ds.shm_segsz),
        };
        actual?;
        if shm.size < size {
            return Err(OpenError::TooSmall { segment, size: shm.size, required: size });
        }
        shm.remove_on_drop = self.remove_on_drop.unwrap_or(created);
        Ok(shm)
    }
}

/// A System V shared memory segment, by identifier.
#[derive(Debug)]
pub struct SysvShm {
    id: i32,
    created: bool,
    remove_on_drop: bool,
    size: usize,
}

impl SysvShm {
    /// Starts describing the segment under `key`: exclusive creation, mode `0o600`.
    pub fn builder(key: SysvKey) -> SysvShmBuilder {
        SysvShmBuilder {
            key,
            create_mode: CreateMode::CreateExclusive,
            permissions: Permissions::default(),
            size: None,
            access: Access::ReadWrite,
            remove_on_drop: None,
        }
    }

    /// The existing segment with identifier `id` (e.g. a private one another process
    /// created). The handle does not remove it unless
    /// [`set_remove_on_drop`](Self::set_remove_on_drop).
    pub fn from_id(id: i32) -> Result<SysvShm, OpenError> {
        let ds = ipc_stat(id).map_err(|e| open_error("shmctl(IPC_STAT)", Segment::Id(id), 0, e))?;
        Ok(SysvShm { id, created: false, remove_on_drop: false, size: ds.shm_segsz })
    }

    /// The segment identifier (what `ipcs -m` shows as shmid).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Whether this handle created the segment.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Size of the segment in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether dropping this handle removes the segment.
    pub fn set_remove_on_drop(&mut self, remove: bool) {
        self.remove_on_drop = remove;
    }

    /// Attaches the segment (`shmat`) with `access`.
    pub fn attach(&self, access: Access) -> Result<SysvAttachment, AttachError> {
        let segment = Segment::Id(self.id);
        let (flags, writable) = match access {
            Access::ReadOnly => (libc::SHM_RDONLY, false),
            Access::ReadWrite => (0, true),
        };
        // SAFETY: a null address lets the kernel choose where to attach; nothing is replaced.
        let addr = unsafe { libc::shmat(self.id, std::ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(attach_error("shmat", segment, last_errno()));
        }
        let Some(ptr) = NonNull::new(addr.cast::<u8>()) else {
            return Err(AttachError::NoMemory(Errno::NOMEM));
        };
        // SAFETY: the kernel attached at least shm_segsz (self.size) bytes at ptr; the
        // attachment detaches them only on drop. A segment's size never changes.
        let region = unsafe { SharedRegion::new(ptr, self.size, writable) };
        Ok(SysvAttachment { region })
    }

    /// Marks the segment for removal now (`IPC_RMID`); it goes once nothing is attached.
    pub fn remove(mut self) -> Result<(), RemoveError> {
        self.remove_on_drop = false;
        remove_id(self.id)
    }
}

impl Drop for SysvShm {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = remove_id(self.id);
        }
    }
}

/// A segment attached into this process; detached on drop. Dereferences to its
/// [`SharedRegion`].
#[derive(Debug)]
pub struct SysvAttachment {
    region: SharedRegion,
}

impl SysvAttachment {
    /// The attached bytes.
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }
}

impl Deref for SysvAttachment {
    type Target = SharedRegion;

    fn deref(&self) -> &SharedRegion {
        &self.region
    }
}

impl Drop for SysvAttachment {
    fn drop(&mut self) {
        if self.region.is_pinned() {
            // A leaked robust-mutex guard points into the segment; see Mapping's drop.
            return;
        }
        // SAFETY: the address came from shmat and no borrow of the region outlives self.
        unsafe { libc::shmdt(self.region.as_ptr().cast()) };
    }
}

/// Marks segment `id` for removal.
fn remove_id(id: i32) -> Result<(), RemoveError> {
    // SAFETY: IPC_RMID takes no buffer.
    if unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } == 0 {
        return Ok(());
    }
    let segment = Segment::Id(id);
    match last_errno() {
        Errno::INVAL | Errno::IDRM => Err(RemoveError::NotFound { segment }),
        e @ (Errno::PERM | Errno::ACCESS) => {
            Err(RemoveError::PermissionDenied { segment, owner: owner_of(segment), source: e })
        }
        e => Err(RemoveError::Os(e)),
    }
}

fn shmget(key: i32, size: usize, flags: i32, segment: Segment) -> Result<i32, OpenError> {
    // SAFETY: shmget takes plain values and touches no memory of ours.
    let id = unsafe { libc::shmget(key, size, flags) };
    if id == -1 {
        return Err(open_error("shmget", segment, size, last_errno()));
    }
    Ok(id)
}

fn ipc_stat(id: i32) -> Result<libc::shmid_ds, Errno> {
    let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: ds points to a writable shmid_ds that IPC_STAT fills.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) } == -1 {
        return Err(last_errno());
    }
    // SAFETY: shmid_ds is plain integers, zero-initialised and then filled by the kernel.
    Ok(unsafe { ds.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_rejects_bad_arguments() {
        let e = SysvShm::builder(SysvKey::Key(0)).size(1).open().unwrap_err();
        assert!(matches!(e, OpenError::ZeroKey));
        let e = SysvShm::builder(SysvKey::Private).create_mode(CreateMode::Open).open();
        assert!(matches!(e.unwrap_err(), OpenError::PrivateOpen));
        let e = SysvShm::builder(SysvKey::Private).open().unwrap_err();
        assert!(matches!(e, OpenError::MissingSize));
        let e = SysvShm::builder(SysvKey::Private).size(1).access(Access::ReadOnly).open();
        assert!(matches!(e.unwrap_err(), OpenError::ReadOnlyCreate));
    }
}
