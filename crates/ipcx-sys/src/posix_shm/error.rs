//! Errors of [`PosixShm`](super::PosixShm) and the errno table that produces them.

use std::fmt;

use rustix::fs::stat;
use rustix::io::Errno;
use thiserror::Error;

use crate::name::NameError;

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
    #[error(
        "a read-only handle cannot create shm object {name}; use CreateMode::Open or \
         Access::ReadWrite"
    )]
    ReadOnlyCreate {
        /// Object name.
        name: String,
    },
    /// `CreateExclusive` found an object of that name.
    #[error(
        "shm object {name} already exists; open it with CreateMode::Open, or remove it if it is \
         stale (`ipcx clean`)"
    )]
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
    #[error(
        "permission denied on shm object {name}{}; ask its owner to grant access or run as that \
         user", OwnerText(*.owner)
    )]
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
    #[error(
        "/dev/shm is full: cannot reserve {size} bytes for shm object {name}; check `df -h \
         /dev/shm`, remove stale objects or ask for less"
    )]
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
    #[error(
        "shm object {name} holds {size} bytes but {required} are required; its creator may still \
         be setting it up, retry"
    )]
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
    #[error(
        "permission denied removing shm object {name}{}; only its owner or root can remove it",
        OwnerText(*.owner)
    )]
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

/// Owner and mode of `/dev/shm/<name>`, for permission errors.
fn owner_of(path: &str) -> Option<ObjectOwner> {
    let st = stat(format!("/dev/shm{path}")).ok()?;
    Some(ObjectOwner { uid: st.st_uid, mode: st.st_mode & 0o7777 })
}

pub(super) fn open_error(op: &'static str, path: &str, size: usize, source: Errno) -> OpenError {
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

pub(super) fn unlink_error(path: &str, source: Errno) -> UnlinkError {
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
}
