//! Anonymous shared memory with seals (`memfd_create`): a tmpfs file with no name in any directory,
//! shared by passing its fd (over a Unix socket) or by inheritance.
//!
//! Seals make promises the receiver can check: `SHRINK` and `GROW` fix the size (so a mapping can
//! never fault with `SIGBUS` because the sender truncated it), `WRITE` makes the contents
//! immutable, `FUTURE_WRITE` forbids new writable mappings while keeping the sender's existing one,
//! and `SEAL` forbids adding more. A receiver wraps the fd with
//! [`Memfd::from_received`](crate::memfd::Memfd::from_received), which verifies the seals it needs
//! before anything is mapped.
//!
//! Limits: `WRITE` cannot be added while any writable shared mapping of the memfd exists (the
//! kernel answers `EBUSY`, reported as
//! [`SealError::MappedWritable`](crate::memfd::SealError::MappedWritable)): drop the
//! [`Access::ReadWrite`](crate::mapping::Access::ReadWrite) mappings first, or use `FUTURE_WRITE`.
//! Once `WRITE` or `FUTURE_WRITE` is set, mapping with `Access::ReadWrite` fails with
//! [`MapError::Sealed`](crate::mapping::MapError::Sealed). Regular `/dev/shm` files also answer
//! `F_GET_SEALS` (with `SEAL` set), so what `from_received` really checks is the seals, which is
//! what matters.
//!
//! Lifecycle: the memory lives until the last fd and mapping of it are gone; nothing is left in any
//! filesystem.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{
    fcntl_add_seals, fcntl_get_seals, ftruncate, memfd_create, MemfdFlags, SealFlags,
};
use rustix::io::Errno;
use thiserror::Error;

use crate::mapping::{self, Access, MapError, MapOptions, Mapping};

/// Longest memfd name the kernel accepts (`255 - strlen("memfd:")`).
pub const MAX_NAME_LEN: usize = 249;

/// A set of memfd seals (`F_SEAL_*`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Seals(u32);

impl Seals {
    /// No seals.
    pub const EMPTY: Seals = Seals(0);
    /// No further seals may be added (`F_SEAL_SEAL`).
    pub const SEAL: Seals = Seals(libc::F_SEAL_SEAL as u32);
    /// The size may not shrink (`F_SEAL_SHRINK`): mappings never lose their backing.
    pub const SHRINK: Seals = Seals(libc::F_SEAL_SHRINK as u32);
    /// The size may not grow (`F_SEAL_GROW`).
    pub const GROW: Seals = Seals(libc::F_SEAL_GROW as u32);
    /// The contents may not change at all (`F_SEAL_WRITE`).
    pub const WRITE: Seals = Seals(libc::F_SEAL_WRITE as u32);
    /// No new writable mapping or write may be made; existing writable mappings keep
    /// working (`F_SEAL_FUTURE_WRITE`, Linux 5.1).
    pub const FUTURE_WRITE: Seals = Seals(libc::F_SEAL_FUTURE_WRITE as u32);
    /// The execute bits may not change (`F_SEAL_EXEC`, Linux 6.3); set on every memfd
    /// this module creates where the kernel supports it.
    pub const EXEC: Seals = Seals(libc::F_SEAL_EXEC as u32);
    /// `SHRINK | GROW`: the size is fixed.
    pub const FIXED_SIZE: Seals = Seals(Self::SHRINK.0 | Self::GROW.0);

    const NAMES: [(Seals, &'static str); 6] = [
        (Self::SEAL, "SEAL"),
        (Self::SHRINK, "SHRINK"),
        (Self::GROW, "GROW"),
        (Self::WRITE, "WRITE"),
        (Self::FUTURE_WRITE, "FUTURE_WRITE"),
        (Self::EXEC, "EXEC"),
    ];

    /// The raw `F_SEAL_*` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Seals from raw `F_SEAL_*` bits (unknown bits are kept).
    pub const fn from_bits_retain(bits: u32) -> Seals {
        Seals(bits)
    }

    /// Whether every seal in `other` is in `self`.
    pub const fn contains(self, other: Seals) -> bool {
        self.0 & other.0 == other.0
    }

    /// The seals in `self` that are not in `other`.
    pub const fn difference(self, other: Seals) -> Seals {
        Seals(self.0 & !other.0)
    }

    /// Whether there are no seals.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Seals {
    type Output = Seals;

    fn bitor(self, rhs: Seals) -> Seals {
        Seals(self.0 | rhs.0)
    }
}

impl BitOrAssign for Seals {
    fn bitor_assign(&mut self, rhs: Seals) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Seals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut rest = *self;
        let mut sep = "";
        for (seal, name) in Self::NAMES {
            if self.contains(seal) {
                write!(f, "{sep}{name}")?;
                sep = "|";
                rest = rest.difference(seal);
            }
        }
        if !rest.is_empty() {
            write!(f, "{sep}{:#x}", rest.0)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Seals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seals({self})")
    }
}

/// Creating a memfd failed.
#[derive(Debug, Error)]
pub enum CreateError {
    /// The name holds a NUL byte or is longer than [`MAX_NAME_LEN`].
    #[error(
        "memfd name {name:?} is longer than {MAX_NAME_LEN} bytes or holds a NUL byte; use a \
         shorter plain name"
    )]
    BadName {
        /// The rejected name.
        name: String,
    },
    /// A size of 0 was asked for; such a memfd cannot be mapped.
    #[error("a memfd needs a size above 0")]
    ZeroSize,
    /// The memory for the memfd could not be reserved.
    #[error(
        "no memory to back a {size}-byte memfd (shmem or memory cgroup limit reached); free \
         memory or ask for less"
    )]
    NoSpace {
        /// Size asked for.
        size: usize,
        /// The errno (`ENOSPC`).
        #[source]
        source: Errno,
    },
    /// The process or system is out of file descriptors.
    #[error("out of file descriptors; close unused fds or raise RLIMIT_NOFILE (`ipcx doctor`)")]
    TooManyFiles(#[source] Errno),
    /// Another system call failed.
    #[error("{op} failed while creating a memfd")]
    Os {
        /// The call that failed.
        op: &'static str,
        /// Its errno.
        #[source]
        source: Errno,
    },
}

/// Reading or adding seals failed.
#[derive(Debug, Error)]
pub enum SealError {
    /// `WRITE` was asked for while a writable shared mapping exists.
    #[error(
        "cannot add the WRITE seal while a writable shared mapping of this memfd exists; drop the \
         ReadWrite mappings first, or use FUTURE_WRITE"
    )]
    MappedWritable(#[source] Errno),
    /// The seals are locked: `SEAL` is set.
    #[error("this memfd's seals are locked (SEAL is set); no seal can be added")]
    Locked(#[source] Errno),
    /// The fd does not support seals.
    #[error("this fd does not support seals; it is not a memfd")]
    NotSealable(#[source] Errno),
    /// Another failure.
    #[error("fcntl on the memfd's seals failed")]
    Os(#[source] Errno),
}

/// A received fd is not an acceptable memfd.
#[derive(Debug, Error)]
pub enum ReceiveError {
    /// The fd does not support seals: it is not a memfd.
    #[error(
        "the received fd is not a memfd (F_GET_SEALS failed); the sender must send a sealed memfd"
    )]
    NotMemfd(#[source] Errno),
    /// Seals the receiver requires are not set.
    #[error(
        "the received memfd lacks the seals {missing} (it has {present}); the sender must add \
         them with add_seals before sending it"
    )]
    MissingSeals {
        /// Required seals that are missing.
        missing: Seals,
        /// Seals that are set.
        present: Seals,
    },
    /// Another failure reading the seals.
    #[error("reading the received memfd's seals failed")]
    Os(#[source] Errno),
}

/// An anonymous, sealable shared memory file.
#[derive(Debug)]
pub struct Memfd {
    fd: OwnedFd,
}

impl Memfd {
    /// A new memfd of `size` bytes, close-on-exec, sealable, with its memory reserved now.
    /// `name` only labels it in `/proc/<pid>/fd` and `/proc/<pid>/maps`.
    pub fn create(name: &str, size: usize) -> Result<Memfd, CreateError> {
        if name.len() > MAX_NAME_LEN || name.contains('\0') {
            return Err(CreateError::BadName { name: name.to_owned() });
        }
        if size == 0 {
            return Err(CreateError::ZeroSize);
        }
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        // Prefer NOEXEC_SEAL (Linux 6.3+; required when vm.memfd_noexec=2), else plain.
        let fd = match memfd_create(name, flags | MemfdFlags::NOEXEC_SEAL) {
            Err(Errno::INVAL) => memfd_create(name, flags),
            other => other,
        }
        .map_err(|e| create_error("memfd_create", size, e))?;
        ftruncate(&fd, size as u64).map_err(|e| create_error("ftruncate", size, e))?;
        mapping::reserve(&fd, size).map_err(|e| create_error("fallocate", size, e))?;
        Ok(Memfd { fd })
    }

    /// Wraps a memfd received from another process after checking it has at least the
    /// `required` seals (e.g. [`Seals::FIXED_SIZE`] before mapping it, so the sender
    /// cannot truncate it under the mapping).
    pub fn from_received(fd: OwnedFd, required: Seals) -> Result<Memfd, ReceiveError> {
        let present = match fcntl_get_seals(&fd) {
            Ok(s) => Seals(s.bits()),
            Err(e @ Errno::INVAL) => return Err(ReceiveError::NotMemfd(e)),
            Err(e) => return Err(ReceiveError::Os(e)),
        };
        let missing = required.difference(present);
        if !missing.is_empty() {
            return Err(ReceiveError::MissingSeals { missing, present });
        }
        Ok(Memfd { fd })
    }

    /// Adds `seals` (seals can never be removed).
    pub fn add_seals(&self, seals: Seals) -> Result<(), SealError> {
        fcntl_add_seals(&self.fd, SealFlags::from_bits_retain(seals.0)).map_err(seal_error)
    }

    /// The seals currently set.
    pub fn seals(&self) -> Result<Seals, SealError> {
        fcntl_get_seals(&self.fd).map(|s| Seals(s.bits())).map_err(seal_error)
    }

    /// Maps the whole memfd with `access`.
    pub fn map(&self, access: Access) -> Result<Mapping, MapError> {
        Mapping::map(&self.fd, access)
    }

    /// Maps the memfd with explicit options.
    pub fn map_with(&self, options: MapOptions) -> Result<Mapping, MapError> {
        options.map(&self.fd)
    }

    /// Gives up the wrapper and returns the fd (e.g. to send it to another process).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for Memfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn create_error(op: &'static str, size: usize, source: Errno) -> CreateError {
    match source {
        Errno::NOSPC | Errno::NOMEM => CreateError::NoSpace { size, source },
        Errno::MFILE | Errno::NFILE => CreateError::TooManyFiles(source),
        _ => CreateError::Os { op, source },
    }
}

fn seal_error(e: Errno) -> SealError {
    match e {
        Errno::BUSY => SealError::MappedWritable(e),
        Errno::PERM => SealError::Locked(e),
        Errno::INVAL => SealError::NotSealable(e),
        _ => SealError::Os(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_set_algebra_and_names() {
        let s = Seals::SHRINK | Seals::GROW;
        assert_eq!(s, Seals::FIXED_SIZE);
        assert!(s.contains(Seals::SHRINK) && !s.contains(Seals::WRITE));
        assert_eq!((s | Seals::WRITE).difference(s), Seals::WRITE);
        assert_eq!(s.to_string(), "SHRINK|GROW");
        assert_eq!(Seals::EMPTY.to_string(), "none");
        assert_eq!(Seals::from_bits_retain(0x100 | Seals::SEAL.bits()).to_string(), "SEAL|0x100");
    }

    #[test]
    fn create_rejects_bad_arguments() {
        assert!(matches!(Memfd::create("a\0b", 10), Err(CreateError::BadName { .. })));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(Memfd::create(&long, 10), Err(CreateError::BadName { .. })));
        assert!(matches!(Memfd::create("ok", 0), Err(CreateError::ZeroSize)));
        assert!(Memfd::create(&"x".repeat(MAX_NAME_LEN), 10).is_ok());
    }

    #[test]
    fn errno_tables() {
        assert!(matches!(seal_error(Errno::BUSY), SealError::MappedWritable(_)));
        assert!(matches!(seal_error(Errno::PERM), SealError::Locked(_)));
        assert!(matches!(create_error("x", 1, Errno::NOSPC), CreateError::NoSpace { .. }));
    }
}
