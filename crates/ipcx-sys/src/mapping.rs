//! Shared memory mappings (`mmap(MAP_SHARED)`) of a shm object, a memfd or any mappable fd.
//!
//! A [`Mapping`](crate::mapping::Mapping) is made from an fd with
//! [`Mapping::map`](crate::mapping::Mapping::map) or [`MapOptions`](crate::mapping::MapOptions).
//! Before mapping, the requested length is checked against the object's size (`fstat`): asking for
//! more than the object holds is an error, and nothing past its end is ever mapped, so touching any
//! byte of the mapping cannot raise `SIGBUS` for lack of backing. Writable mappings first reserve
//! their pages with `fallocate(FALLOC_FL_KEEP_SIZE)`: on tmpfs (`/dev/shm`, memfd) that allocates
//! the memory now, so a full `/dev/shm` gives
//! [`MapError::NoSpace`](crate::mapping::MapError::NoSpace) here instead of a `SIGBUS` on first
//! write.
//!
//! Limits: a process that can write the object can still shrink it with `ftruncate` after it was
//! mapped, after which touching the cut-off pages raises `SIGBUS`. Use a memfd sealed with
//! `Seals::SHRINK` when the peer is not trusted.
//!
//! Lifecycle: the mapping stays valid after the fd is closed and is unmapped when the
//! [`Mapping`](crate::mapping::Mapping) is dropped. It dereferences to a
//! [`SharedRegion`](crate::mapping::SharedRegion), which holds the accessors.

mod region;

use std::ops::Deref;
use std::os::fd::AsFd;
use std::ptr::NonNull;

use rustix::fs::{fallocate, fstat, FallocateFlags};
use rustix::io::Errno;
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
use thiserror::Error;

pub use region::{AccessError, SharedRegion};

/// Whether a mapping or attachment may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read only; writes through raw pointers fault.
    ReadOnly,
    /// Read and write.
    ReadWrite,
}

/// Mapping an fd failed.
#[derive(Debug, Error)]
pub enum MapError {
    /// The object has size 0.
    #[error(
        "the shared memory object is empty (0 bytes); its creator has not sized it yet, retry or \
         check the name"
    )]
    Empty,
    /// A length of 0 was requested.
    #[error("a mapping needs a length above 0")]
    ZeroLength,
    /// The object is smaller than the requested length.
    #[error(
        "the shared memory object holds {object_len} bytes but {requested} were requested; map at \
         most {object_len} bytes or have the creator size it larger"
    )]
    TooSmall {
        /// Size of the object (`st_size`).
        object_len: u64,
        /// Length requested.
        requested: usize,
    },
    /// The object is larger than this process can address.
    #[error(
        "the shared memory object holds {object_len} bytes, more than this process can map; map a \
         smaller length"
    )]
    TooLarge {
        /// Size of the object (`st_size`).
        object_len: u64,
    },
    /// Reserving the pages failed: the filesystem (usually `/dev/shm`) is full.
    #[error(
        "no space to back {len} bytes of shared memory: /dev/shm (or the memory cgroup) is full; \
         check `df -h /dev/shm`, remove stale objects or map less"
    )]
    NoSpace {
        /// Length that could not be reserved.
        len: usize,
        /// The errno (`ENOSPC`).
        #[source]
        source: Errno,
    },
    /// The fd is not open for the access asked for.
    #[error(
        "the fd is not open for the requested access; map it with Access::ReadOnly or open the \
         object read-write"
    )]
    FdAccess(#[source] Errno),
    /// The object is sealed against writing (memfd `WRITE`/`FUTURE_WRITE` seal).
    #[error("the object is sealed against writing; map it with Access::ReadOnly")]
    Sealed(#[source] Errno),
    /// The process is out of address space or map count.
    #[error(
        "out of memory or address space for the mapping; unmap unused mappings or check \
         vm.max_map_count and RLIMIT_AS"
    )]
    NoMemory(#[source] Errno),
    /// Another system call failed.
    #[error("{op} failed while mapping shared memory")]
    Os {
        /// The call that failed.
        op: &'static str,
        /// Its errno.
        #[source]
        source: Errno,
    },
}

/// How to map an fd: access, length, pre-faulting and page reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapOptions {
    access: Access,
    len: Option<usize>,
    populate: bool,
    reserve: bool,
}

impl MapOptions {
    /// Options for a mapping with `access` of the whole object, reserving pages if writable,
    /// without pre-faulting.
    pub fn new(access: Access) -> MapOptions {
        MapOptions { access, len: None, populate: false, reserve: true }
    }

    /// Maps only the first `len` bytes (the object must hold at least that many).
    pub fn length(mut self, len: usize) -> MapOptions {
        self.len = Some(len);
        self
    }

    /// Pre-faults the page tables (`MAP_POPULATE`) so the first touches do not fault.
    /// This is a latency option; it does not report a lack of memory (reserving does).
    pub fn populate(mut self, populate: bool) -> MapOptions {
        self.populate = populate;
        self
    }

    /// Whether a writable mapping reserves its pages with `fallocate` first (default on).
    /// Turn it off only for objects that are known to be fully allocated.
    pub fn reserve(mut self, reserve: bool) -> MapOptions {
        self.reserve = reserve;
        self
    }

    /// Maps `fd` (`MAP_SHARED`) with these options.
    pub fn map(&self, fd: impl AsFd) -> Result<Mapping, MapError> {
        let fd = fd.as_fd();
        let st = fstat(fd).map_err(|e| os("fstat", e))?;
        let object_len = u64::try_from(st.st_size).unwrap_or(0);
        let len = mapped_len(object_len, self.len)?;
        if self.access == Access::ReadWrite && self.reserve {
            reserve(fd, len).map_err(|source| MapError::NoSpace { len, source })?;
        }
        let (prot, writable) = match self.access {
            Access::ReadOnly => (ProtFlags::READ, false),
            Access::ReadWrite => (ProtFlags::READ | ProtFlags::WRITE, true),
        };
        let mut flags = MapFlags::SHARED;
        if self.populate {
            flags |= MapFlags::POPULATE;
        }
        // SAFETY: a new mapping chosen by the kernel (null hint, no MAP_FIXED) replaces nothing.
        let addr =
            unsafe { mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) }.map_err(mmap_error)?;
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or(MapError::NoMemory(Errno::NOMEM))?;
        // SAFETY: the kernel mapped len bytes at ptr with `prot`; Mapping unmaps them only on
        // drop, and len <= isize::MAX was checked by mapped_len.
        let region = unsafe { SharedRegion::new(ptr, len, writable) };
        Ok(Mapping { region })
    }
}

/// A `MAP_SHARED` mapping, unmapped on drop. Dereferences to its [`SharedRegion`].
#[derive(Debug)]
pub struct Mapping {
    region: SharedRegion,
}

impl Mapping {
    /// Maps the whole object behind `fd` with `access` (see [`MapOptions`] for more).
    pub fn map(fd: impl AsFd, access: Access) -> Result<Mapping, MapError> {
        MapOptions::new(access).map(fd)
    }

    /// The mapped bytes.
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }
}

impl Deref for Mapping {
    type Target = SharedRegion;

    fn deref(&self) -> &SharedRegion {
        &self.region
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.region.is_pinned() {
            // A leaked robust-mutex guard: this thread's robust list still points into the
            // region, so unmapping would let glibc or the kernel write into whatever is
            // mapped here next. Leaking the mapping is the safe choice.
            return;
        }
        // SAFETY: the region was mapped by MapOptions::map with exactly this address and
        // length, and no borrow of it outlives self.
        let _ = unsafe { munmap(self.region.as_mut_ptr().cast(), self.region.len()) };
    }
}

/// Length to map: `requested` (checked against the object) or the whole object.
fn mapped_len(object_len: u64, requested: Option<usize>) -> Result<usize, MapError> {
    let len = match requested {
        Some(0) => return Err(MapError::ZeroLength),
        Some(n) if (n as u64) > object_len => {
            return Err(MapError::TooSmall { object_len, requested: n })
        }
        Some(n) => n,
        None if object_len == 0 => return Err(MapError::Empty),
        None => usize::try_from(object_len).map_err(|_| MapError::TooLarge { object_len })?,
    };
    if len > isize::MAX as usize {
        return Err(MapError::TooLarge { object_len });
    }
    Ok(len)
}

/// Allocates the first `len` bytes of `fd` now, so a full tmpfs fails here, not on a write.
/// Only `ENOSPC` is returned: fds that cannot be fallocated (read-only, sealed, other
/// filesystems) are used as they are, and mmap reports what really matters.
pub(crate) fn reserve(fd: impl AsFd, len: usize) -> Result<(), Errno> {
    loop {
        match fallocate(&fd, FallocateFlags::KEEP_SIZE, 0, len as u64) {
            Err(Errno::INTR) => continue,
            Err(Errno::NOSPC) => return Err(Errno::NOSPC),
            Ok(()) | Err(_) => return Ok(()),
        }
    }
}

fn mmap_error(e: Errno) -> MapError {
    match e {
        Errno::ACCESS => MapError::FdAccess(e),
        Errno::PERM => MapError::Sealed(e),
        Errno::NOMEM => MapError::NoMemory(e),
        _ => os("mmap", e),
    }
}

fn os(op: &'static str, source: Errno) -> MapError {
    MapError::Os { op, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_checked_against_the_object() {
        assert_eq!(mapped_len(4096, None).unwrap(), 4096);
        assert_eq!(mapped_len(4096, Some(100)).unwrap(), 100);
        assert!(matches!(
            mapped_len(4096, Some(4097)),
            Err(MapError::TooSmall { object_len: 4096, requested: 4097 })
        ));
        assert!(matches!(mapped_len(0, None), Err(MapError::Empty)));
        assert!(matches!(mapped_len(10, Some(0)), Err(MapError::ZeroLength)));
        assert!(matches!(mapped_len(u64::MAX, None), Err(MapError::TooLarge { .. })));
    }

    #[test]
    fn maps_a_memfd_and_sees_its_writes() {
        let fd =
            rustix::fs::memfd_create("ipcx-map-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 8192).unwrap();
        let a = Mapping::map(&fd, Access::ReadWrite).unwrap();
        let b = MapOptions::new(Access::ReadOnly).length(4096).populate(true).map(&fd).unwrap();
        assert_eq!((a.len(), b.len()), (8192, 4096));
        a.write_at(4000, b"hello").unwrap();
        let mut buf = [0u8; 5];
        b.read_at(4000, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(b.write_at(0, b"x"), Err(AccessError::ReadOnly));
        a.atomic_u32_at(8188).unwrap().store(7, std::sync::atomic::Ordering::Release);
        assert!(matches!(
            MapOptions::new(Access::ReadOnly).length(8193).map(&fd),
            Err(MapError::TooSmall { .. })
        ));
    }
}
