//! Resources a node owns: what a cleaner removes once the node is dead.
//!
//! A node appends one JSON [`Resource`] per line to `<nsdir>/nodes/<id>.resources` when it
//! registers one. Removal is idempotent: a resource that is already gone counts as done.

use std::fmt;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Something a node created that must not outlive it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Resource {
    /// A filesystem entry: a socket file, FIFO or regular file (absolute path).
    Path {
        /// The path.
        path: PathBuf,
    },
    /// A POSIX shared memory object (name without the leading `/`).
    PosixShm {
        /// The name.
        name: String,
    },
    /// A POSIX message queue (name without the leading `/`).
    PosixMq {
        /// The name.
        name: String,
    },
    /// A POSIX named semaphore (name without the leading `/`).
    PosixSem {
        /// The name.
        name: String,
    },
    /// A System V message queue.
    SysvMsg {
        /// The queue id (`msqid`).
        id: i32,
    },
    /// A System V semaphore set.
    SysvSem {
        /// The set id (`semid`).
        id: i32,
    },
    /// A System V shared memory segment.
    SysvShm {
        /// The segment id (`shmid`).
        id: i32,
    },
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Path { path } => write!(f, "file {}", path.display()),
            Resource::PosixShm { name } => write!(f, "posix shm /{name}"),
            Resource::PosixMq { name } => write!(f, "posix mq /{name}"),
            Resource::PosixSem { name } => write!(f, "posix sem /{name}"),
            Resource::SysvMsg { id } => write!(f, "sysv msg queue {id}"),
            Resource::SysvSem { id } => write!(f, "sysv semaphore set {id}"),
            Resource::SysvShm { id } => write!(f, "sysv shm segment {id}"),
        }
    }
}

/// Removing a resource failed (a resource that is already gone is not a failure).
#[derive(Debug, Error)]
pub enum RemoveResourceError {
    /// Unlinking a file failed.
    #[error("cannot remove {path:?}; check the directory's owner and mode")]
    Path {
        /// The path.
        path: PathBuf,
        /// The error of `unlink`.
        #[source]
        source: io::Error,
    },
    /// Unlinking a POSIX shm object failed.
    #[error("cannot remove posix shm object")]
    PosixShm(#[source] ipcx_sys::posix_shm::UnlinkError),
    /// Unlinking a POSIX message queue failed.
    #[error("cannot remove posix message queue")]
    PosixMq(#[source] ipcx_sys::posix_mq::UnlinkError),
    /// Unlinking a POSIX semaphore failed.
    #[error("cannot remove posix semaphore")]
    PosixSem(#[source] ipcx_sys::posix_sem::UnlinkError),
    /// Removing a System V queue failed.
    #[error("cannot remove system v message queue")]
    SysvMsg(#[source] ipcx_sys::sysv_msg::RemoveError),
    /// Looking up a System V queue by id failed.
    #[error("cannot look up system v message queue")]
    SysvMsgOpen(#[source] ipcx_sys::sysv_msg::OpenError),
    /// Looking up a System V segment by id failed.
    #[error("cannot look up system v shm segment")]
    SysvShmOpen(#[source] ipcx_sys::sysv_shm::OpenError),
    /// Removing a System V semaphore set failed.
    #[error("cannot remove system v semaphore set")]
    SysvSem(#[source] ipcx_sys::sysv_sem::RemoveError),
    /// Removing a System V segment failed.
    #[error("cannot remove system v shm segment")]
    SysvShm(#[source] ipcx_sys::sysv_shm::RemoveError),
}

impl Resource {
    /// Removes the resource. `Ok(true)` if this call removed it, `Ok(false)` if it was
    /// already gone.
    pub fn remove(&self) -> Result<bool, RemoveResourceError> {
        use ipcx_sys::{posix_mq, posix_sem, posix_shm, sysv_msg, sysv_sem, sysv_shm};
        match self {
            Resource::Path { path } => super::record::remove_file(path)
                .map_err(|source| RemoveResourceError::Path { path: path.clone(), source }),
            Resource::PosixShm { name } => match posix_shm::unlink(name) {
                Ok(()) => Ok(true),
                Err(posix_shm::UnlinkError::NotFound { .. }) => Ok(false),
                Err(e) => Err(RemoveResourceError::PosixShm(e)),
            },
            Resource::PosixMq { name } => match posix_mq::unlink(name) {
                Ok(()) => Ok(true),
                Err(posix_mq::UnlinkError::NotFound(_)) => Ok(false),
                Err(e) => Err(RemoveResourceError::PosixMq(e)),
            },
            Resource::PosixSem { name } => match posix_sem::PosixSem::unlink(name) {
                Ok(()) => Ok(true),
                Err(posix_sem::UnlinkError::NotFound(_)) => Ok(false),
                Err(e) => Err(RemoveResourceError::PosixSem(e)),
            },
            Resource::SysvMsg { id } => match sysv_msg::SysvMsgQueue::open_id(*id) {
                Ok(q) => match q.remove() {
                    Ok(()) => Ok(true),
                    Err(sysv_msg::RemoveError::AlreadyRemoved(_)) => Ok(false),
                    Err(e) => Err(RemoveResourceError::SysvMsg(e)),
                },
                Err(sysv_msg::OpenError::NotFound(_)) => Ok(false),
                Err(e) => Err(RemoveResourceError::SysvMsgOpen(e)),
            },
            Resource::SysvSem { id } => match sysv_sem::remove_id(*id) {
                Ok(()) => Ok(true),
                Err(sysv_sem::RemoveError::AlreadyRemoved(_)) => Ok(false),
                Err(e) => Err(RemoveResourceError::SysvSem(e)),
            },
            Resource::SysvShm { id } => match sysv_shm::SysvShm::from_id(*id) {
                Ok(seg) => match seg.remove() {
                    Ok(()) => Ok(true),
                    Err(sysv_shm::RemoveError::NotFound { .. }) => Ok(false),
                    Err(e) => Err(RemoveResourceError::SysvShm(e)),
                },
                Err(sysv_shm::OpenError::NotFound { .. }) => Ok(false),
                Err(e) => Err(RemoveResourceError::SysvShmOpen(e)),
            },
        }
    }
}

/// Reads a resource list; a missing file is an empty list, and lines that do not parse (a
/// line cut short by a crash, or a kind from a newer ipcx) are skipped.
pub(crate) fn read_list(path: &Path) -> io::Result<Vec<Resource>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut list = Vec::new();
    for line in io::BufReader::new(file).lines() {
        if let Ok(r) = serde_json::from_str::<Resource>(&line?) {
            if !list.contains(&r) {
                list.push(r);
            }
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_one_json_line() {
        let r = Resource::PosixShm { name: "ipcx.ns.x".into() };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line, r#"{"kind":"posix-shm","name":"ipcx.ns.x"}"#);
        assert_eq!(serde_json::from_str::<Resource>(&line).unwrap(), r);
        let line = serde_json::to_string(&Resource::SysvMsg { id: 7 }).unwrap();
        assert_eq!(line, r#"{"kind":"sysv-msg","id":7}"#);
    }

    #[test]
    fn removing_a_missing_resource_is_fine() {
        let r = Resource::Path { path: "/nonexistent-ipcx/x.sock".into() };
        assert!(!r.remove().unwrap());
        assert!(!Resource::PosixShm { name: "ipcx.unit.missing-xyz".into() }.remove().unwrap());
    }
}
