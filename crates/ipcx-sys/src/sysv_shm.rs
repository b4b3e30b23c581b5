//! System V shared memory segments (`shmget`, `shmat`): kernel objects named by a numeric
//! key (or private, reached by id), listed in `/proc/sysvipc/shm` and by `ipcs -m`.
//!
//! A segment is made or opened with [`SysvShm::builder`], or reached by id with
//! [`SysvShm::from_id`]. Its mode is passed straight to `shmget`, where the umask does not
//! apply, so it is exact. [`SysvShm::attach`] maps it as a [`SysvAttachment`], which
//! dereferences to the same [`SharedRegion`] accessors as a [`Mapping`](crate::mapping::Mapping),
//! sized from `IPC_STAT`.
//!
//! Lifecycle: the handle that created a segment marks it for removal (`IPC_RMID`) on drop;
//! the kernel destroys it once the last attachment is gone, so attachments stay valid.
//! A segment outlives every process that used it unless removed: a crashed creator leaves
//! it behind, and [`SysvShm::remove`] (or `ipcrm`) clears it.
//!
//! Limits: `kernel.shmmax` caps a segment's size, `kernel.shmmni` the number of segments
//! and `kernel.shmall` the total pages. Segments are not reserved up front, so a system
//! short of memory can still fail on first touch; prefer POSIX shm or memfd where that
//! matters.

use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::ptr::NonNull;

use rustix::io::Errno;
use thiserror::Error;

use crate::errno::last_errno;
use crate::mapping::{Access, SharedRegion};
use crate::options::{CreateMode, Permissions};
use crate::posix_shm::{ObjectOwner, OwnerText};

/// The key a segment is created or found under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SysvKey {
    /// A new segment no key can find (`IPC_PRIVATE`); share its [`SysvShm::id`].
    Private,
    /// A numeric key (non-zero; 0 is `IPC_PRIVATE`).
    Key(i32),
}

/// Which segment an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A segment found or made by key.
    Key(i32),
    /// A segment by identifier.
    Id(i32),
    /// A new private segment.
    Private,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Key(k) => write!(f, "System V shm segment with key {k:#010x}"),
            Segment::Id(id) => write!(f, "System V shm segment id {id}"),
            Segment::Private => f.write_str("private System V shm segment"),
        }
    }
}

/// Creating or opening a segment failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// Key 0 was given; it means `IPC_PRIVATE`.
    #[error("key 0 is IPC_PRIVATE; use SysvKey::Private or a non-zero key")]
    ZeroKey,
    /// A private segment was to be opened; private segments are reached by id.
    #[error("a private segment cannot be opened by key; create it, or open it by id with SysvShm::from_id")]
    PrivateOpen,
    /// The builder may create but has no size, or a size of 0.
    #[error("creating a System V segment needs a size above 0; call .size(n)")]
    MissingSize,
    /// A read-only handle was asked to create the segment.
    #[error(
        "a read-only handle cannot create a segment; use CreateMode::Open or Access::ReadWrite"
    )]
    ReadOnlyCreate,
    /// `CreateExclusive` found a segment with that key.
    #[error(
        "{segment} already exists; open it with CreateMode::Open, or remove it if stale (`ipcrm`)"
    )]
    AlreadyExists {
        /// The segment.
        segment: Segment,
    },
    /// No segment with that key or id.
    #[error("{segment} does not exist (or was removed); check the key or id, or create it first")]
    NotFound {
        /// The segment.
        segment: Segment,
    },
    /// The segment exists but this process may not use it.
    #[error("permission denied on {segment}{}; ask its owner to grant access or run as that user", OwnerText(*.owner))]
    PermissionDenied {
        /// The segment.
        segment: Segment,
        /// Owner and mode, if `/proc/sysvipc/shm` shows them.
        owner: Option<ObjectOwner>,
        /// The errno (`EACCES`/`EPERM`).
        #[source]
        source: Errno,
    },
    /// The existing segment is smaller than the size required.
    #[error("{segment} holds {size} bytes but {required} are required; check the key, or remove the old segment")]
    TooSmall {
        /// The segment.
        segment: Segment,
        /// Its size.
        size: usize,
        /// Size required.
        required: usize,
    },
    /// The size is outside the kernel's limits.
    #[error("a segment of {size} bytes is outside the kernel's limits; ask for at most /proc/sys/kernel/shmmax bytes")]
    BadSize {
        /// Size asked for.
        size: usize,
        /// The errno (`EINVAL`).
        #[source]
        source: Errno,
    },
    /// A system-wide limit on segments or shared pages is reached.
    #[error("System V shm limits reached (kernel.shmmni segments or kernel.shmall pages); remove unused segments (`ipcs -m`, `ipcrm`) or raise the limits")]
    NoSpace(#[source] Errno),
    /// The kernel is out of memory.
    #[error("out of memory creating a System V segment; free memory or ask for less")]
    NoMemory(#[source] Errno),
    /// Another system call failed.
    #[error("{op} failed on a System V shm segment")]
    Os {
        /// The call that failed.
        op: &'static str,
        /// Its errno.
        #[source]
        source: Errno,
    },
}

/// Attaching a segment failed.
#[derive(Debug, Error)]
pub enum AttachError {
    /// The segment is gone.
    #[error("{segment} no longer exists; it was removed")]
    NotFound {
        /// The segment.
        segment: Segment,
    },
    /// This process may not attach the segment with the access asked for.
    #[error("permission denied attaching {segment}{}; attach with Access::ReadOnly, or ask its owner to grant access", OwnerText(*.owner))]
    PermissionDenied {
        /// The segment.
        segment: Segment,
        /// Owner and mode, if `/proc/sysvipc/shm` shows them.
        owner: Option<ObjectOwner>,
        /// The errno (`EACCES`).
        #[source]
        source: Errno,
    },
    /// The process is out of address space.
    #[error("out of memory or address space attaching a segment; detach unused ones")]
    NoMemory(#[source] Errno),
    /// Another system call failed.
    #[error("{op} failed attaching a System V shm segment")]
    Os {
        /// The call that failed.
        op: &'static str,
        /// Its errno.
        #[source]
        source: Errno,
    },
}

/// Removing a segment failed.
#[derive(Debug, Error)]
pub enum RemoveError {
    /// The segment is already gone.
    #[error("{segment} does not exist (already removed?)")]
    NotFound {
        /// The segment.
        segment: Segment,
    },
    /// Only the segment's owner, creator or root may remove it.
    #[error("permission denied removing {segment}{}; only its owner, creator or root can", OwnerText(*.owner))]
    PermissionDenied {
        /// The segment.
        segment: Segment,
        /// Owner and mode, if `/proc/sysvipc/shm` shows them.
        owner: Option<ObjectOwner>,
        /// The errno (`EPERM`).
        #[source]
        source: Errno,
    },
    /// Another failure.
    #[error("shmctl(IPC_RMID) failed")]
    Os(#[source] Errno),
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
    /// created). The handle does not remove it unless [`set_remove_on_drop`](Self::set_remove_on_drop).
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

fn open_error(op: &'static str, segment: Segment, size: usize, source: Errno) -> OpenError {
    match source {
        Errno::EXIST => OpenError::AlreadyExists { segment },
        Errno::NOENT | Errno::IDRM => OpenError::NotFound { segment },
        Errno::INVAL if matches!(segment, Segment::Id(_)) => OpenError::NotFound { segment },
        Errno::INVAL => OpenError::BadSize { size, source },
        Errno::ACCESS | Errno::PERM => {
            OpenError::PermissionDenied { segment, owner: owner_of(segment), source }
        }
        Errno::NOSPC => OpenError::NoSpace(source),
        Errno::NOMEM => OpenError::NoMemory(source),
        _ => OpenError::Os { op, source },
    }
}

fn attach_error(op: &'static str, segment: Segment, source: Errno) -> AttachError {
    match source {
        Errno::INVAL | Errno::IDRM => AttachError::NotFound { segment },
        Errno::ACCESS | Errno::PERM => {
            AttachError::PermissionDenied { segment, owner: owner_of(segment), source }
        }
        Errno::NOMEM => AttachError::NoMemory(source),
        _ => AttachError::Os { op, source },
    }
}

/// Owner and mode of a segment from `/proc/sysvipc/shm`, which anyone may read.
fn owner_of(segment: Segment) -> Option<ObjectOwner> {
    let text = std::fs::read_to_string("/proc/sysvipc/shm").ok()?;
    owner_in_table(&text, segment)
}

/// Finds `segment` in the text of `/proc/sysvipc/shm`
/// (`key shmid perms size cpid lpid nattch uid gid ...`, perms in octal).
fn owner_in_table(text: &str, segment: Segment) -> Option<ObjectOwner> {
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let key: i32 = cols.first()?.parse().ok()?;
        let id: i32 = cols.get(1)?.parse().ok()?;
        let hit = match segment {
            Segment::Key(k) => k == key,
            Segment::Id(i) => i == id,
            Segment::Private => false,
        };
        if !hit {
            return None;
        }
        let mode = u32::from_str_radix(cols.get(2)?, 8).ok()? & 0o777;
        let uid = cols.get(7)?.parse().ok()?;
        Some(ObjectOwner { uid, mode })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
    305419896         12  1600                  4096   100   100      1  1000  1000  1000  1000          0          0 1700000000                  4096                     0
           0         13   640                  8192   100   100      0     0     0     0     0          0          0 1700000000                     0                     0
";

    #[test]
    fn owner_is_found_by_key_or_id() {
        let by_key = owner_in_table(TABLE, Segment::Key(0x1234_5678)).unwrap();
        assert_eq!(by_key, ObjectOwner { uid: 1000, mode: 0o600 });
        let by_id = owner_in_table(TABLE, Segment::Id(13)).unwrap();
        assert_eq!(by_id, ObjectOwner { uid: 0, mode: 0o640 });
        assert_eq!(owner_in_table(TABLE, Segment::Id(14)), None);
        assert_eq!(owner_in_table(TABLE, Segment::Private), None);
    }

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

    #[test]
    fn errno_table_tells_size_errors_from_missing_ids() {
        let e = open_error("shmget", Segment::Private, 5, Errno::INVAL);
        assert!(matches!(e, OpenError::BadSize { size: 5, .. }));
        let e = open_error("shmctl", Segment::Id(3), 0, Errno::INVAL);
        assert!(matches!(e, OpenError::NotFound { .. }));
        assert!(Segment::Key(0x10).to_string().contains("0x00000010"));
    }
}
