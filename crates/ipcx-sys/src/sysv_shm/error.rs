//! Errors of [`SysvShm`](super::SysvShm) and the errno table that produces them.

use std::fmt;

use rustix::io::Errno;
use thiserror::Error;

use crate::posix_shm::{ObjectOwner, OwnerText};

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
    #[error(
        "a private segment cannot be opened by key; create it, or open it by id with \
         SysvShm::from_id"
    )]
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
    #[error(
        "permission denied on {segment}{}; ask its owner to grant access or run as that user",
        OwnerText(*.owner)
    )]
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
    #[error(
        "{segment} holds {size} bytes but {required} are required; check the key, or remove the \
         old segment"
    )]
    TooSmall {
        /// The segment.
        segment: Segment,
        /// Its size.
        size: usize,
        /// Size required.
        required: usize,
    },
    /// The size is outside the kernel's limits.
    #[error(
        "a segment of {size} bytes is outside the kernel's limits; ask for at most \
         /proc/sys/kernel/shmmax bytes"
    )]
    BadSize {
        /// Size asked for.
        size: usize,
        /// The errno (`EINVAL`).
        #[source]
        source: Errno,
    },
    /// A system-wide limit on segments or shared pages is reached.
    #[error(
        "System V shm limits reached (kernel.shmmni segments or kernel.shmall pages); remove \
         unused segments (`ipcs -m`, `ipcrm`) or raise the limits"
    )]
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
    #[error(
        "permission denied attaching {segment}{}; attach with Access::ReadOnly, or ask its owner \
         to grant access", OwnerText(*.owner)
    )]
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
    #[error(
        "permission denied removing {segment}{}; only its owner, creator or root can",
        OwnerText(*.owner)
    )]
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

pub(super) fn open_error(
    op: &'static str,
    segment: Segment,
    size: usize,
    source: Errno,
) -> OpenError {
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

pub(super) fn attach_error(op: &'static str, segment: Segment, source: Errno) -> AttachError {
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
pub(super) fn owner_of(segment: Segment) -> Option<ObjectOwner> {
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
    fn errno_table_tells_size_errors_from_missing_ids() {
        let e = open_error("shmget", Segment::Private, 5, Errno::INVAL);
        assert!(matches!(e, OpenError::BadSize { size: 5, .. }));
        let e = open_error("shmctl", Segment::Id(3), 0, Errno::INVAL);
        assert!(matches!(e, OpenError::NotFound { .. }));
        assert!(Segment::Key(0x10).to_string().contains("0x00000010"));
    }
}
