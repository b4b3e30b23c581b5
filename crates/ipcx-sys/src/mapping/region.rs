//! [`SharedRegion`]: bounds-checked access to bytes that other processes may change at any
//! time. Shared by [`Mapping`](super::Mapping) and
//! [`SysvAttachment`](crate::sysv_shm::SysvAttachment), so both expose the same accessors.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use thiserror::Error;

/// An access to a [`SharedRegion`] that cannot be done.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum AccessError {
    /// The range does not lie inside the region.
    #[error(
        "access of {len} bytes at offset {offset} is outside this {region_len}-byte region; \
         check the offset and length against len()"
    )]
    OutOfBounds {
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
        /// Length of the region.
        region_len: usize,
    },
    /// The offset is not aligned for the type asked for.
    #[error(
        "offset {offset} is not a multiple of {align}; atomics and mutexes need aligned offsets"
    )]
    Misaligned {
        /// Offset asked for.
        offset: usize,
        /// Alignment the type needs.
        align: usize,
    },
    /// The region is mapped read-only and the access would write.
    #[error("this region is mapped read-only; map it with Access::ReadWrite to write to it")]
    ReadOnly,
}

/// Bytes of shared memory, mapped for as long as the owner (a
/// [`Mapping`](super::Mapping) or a [`SysvAttachment`](crate::sysv_shm::SysvAttachment))
/// lives; reached through the owner, which dereferences to it.
///
/// Other processes may write these bytes at any moment, so the region never hands out
/// `&[u8]` or `&mut [u8]` into them: that would promise Rust the bytes do not change.
/// Instead it offers copies ([`read_at`](Self::read_at), [`write_at`](Self::write_at)),
/// made with volatile accesses (the mapping lies outside every Rust allocation, so they
/// are treated like device memory and a concurrent writer is not a data race), references
/// to atomics, which tolerate concurrent access by design, and raw pointers for the
/// layers above that build their own protocols.
pub struct SharedRegion {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    /// Locks held by this process on robust mutexes inside the region. While it is above
    /// zero the owner must not unmap the region: the thread's robust list points into it.
    pins: AtomicUsize,
}

// SAFETY: the region is plain memory shared with other processes; every accessor treats it
// as concurrently modified (volatile copies, atomics) and the owner keeps it mapped until
// it is dropped, so using it from any thread is as sound as from another process.
unsafe impl Send for SharedRegion {}
// SAFETY: as for Send; `&SharedRegion` only allows volatile copies and atomic accesses.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// Wraps `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr..ptr+len` must be a mapping outside every Rust allocation that stays mapped,
    /// readable (and writable if `writable`) until the returned region is dropped, and
    /// `len` must be at most `isize::MAX`.
    pub(crate) unsafe fn new(ptr: NonNull<u8>, len: usize, writable: bool) -> SharedRegion {
        SharedRegion { ptr, len, writable, pins: AtomicUsize::new(0) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes (never true for a mapping, which needs one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the region may be written (mapped with `Access::ReadWrite`).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Address of the first byte. Valid for [`len`](Self::len) bytes while the owner lives.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Mutable address of the first byte. Writing through it faults if the region is
    /// read-only ([`is_writable`](Self::is_writable)).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// The copy is not atomic: a concurrent writer can leave it torn. Validate what you
    /// read (or publish it with an atomic flag) before trusting it.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), AccessError> {
        let src = self.checked(offset, buf.len(), 1, false)?;
        // SAFETY: `checked` proved src..src+buf.len() lies inside the live mapping.
        unsafe { volatile_copy_out(src, buf) };
        Ok(())
    }

    /// Copies `data` into the region starting at `offset`.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        let dst = self.checked(offset, data.len(), 1, true)?;
        // SAFETY: `checked` proved dst..dst+data.len() lies inside the live, writable mapping.
        unsafe { volatile_copy_in(dst, data) };
        Ok(())
    }

    /// The `AtomicU32` at `offset` (4-byte aligned, inside the region, region writable).
    pub fn atomic_u32_at(&self, offset: usize) -> Result<&AtomicU32, AccessError> {
        let p = self.checked(offset, 4, align_of::<AtomicU32>(), true)?;
        // SAFETY: p is aligned, in bounds and writable for the borrow of self; atomics allow
        // concurrent access from this and other processes.
        Ok(unsafe { AtomicU32::from_ptr(p.cast()) })
    }

    /// The `AtomicU64` at `offset` (8-byte aligned, inside the region, region writable).
    pub fn atomic_u64_at(&self, offset: usize) -> Result<&AtomicU64, AccessError> {
        let p = self.checked(offset, 8, align_of::<AtomicU64>(), true)?;
        // SAFETY: as in atomic_u32_at, with 8-byte size and alignment.
        Ok(unsafe { AtomicU64::from_ptr(p.cast()) })
    }

    /// Pointer to `len` bytes at `offset`, checked to be in bounds, aligned to `align` and,
    /// if `write`, writable.
    pub(crate) fn checked(
        &self,
        offset: usize,
        len: usize,
        align: usize,
        write: bool,
    ) -> Result<*mut u8, AccessError> {
        let out = AccessError::OutOfBounds { offset, len, region_len: self.len };
        let end = offset.checked_add(len).ok_or(out)?;
        if end > self.len {
            return Err(out);
        }
        let p = self.ptr.as_ptr().wrapping_add(offset);
        if (p as usize) % align != 0 {
            return Err(AccessError::Misaligned { offset, align });
        }
        if write && !self.writable {
            return Err(AccessError::ReadOnly);
        }
        Ok(p)
    }

    /// Records that a lock inside the region is held, so the owner must not unmap it.
    pub(crate) fn pin(&self) {
        self.pins.fetch_add(1, Ordering::Relaxed);
    }

    /// Undoes one [`pin`](Self::pin).
    pub(crate) fn unpin(&self) {
        self.pins.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether a lock inside the region is still held (its guard was leaked); the owner
    /// then leaks the mapping instead of unmapping memory a robust list points into.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pins.load(Ordering::Relaxed) != 0
    }
}

impl fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRegion")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("writable", &self.writable)
            .finish()
    }
}

const WORD: usize = size_of::<u64>();

/// Copies `dst.len()` bytes from `src` with volatile loads, a word at a time where aligned.
///
/// # Safety
///
/// `src..src+dst.len()` must be readable mapped memory outside every Rust allocation.
unsafe fn volatile_copy_out(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let mut i = 0;
    while i < n {
        let p = src.wrapping_add(i);
        if (p as usize) % WORD == 0 && n - i >= WORD {
            // SAFETY: p is word-aligned and p..p+8 lies inside the caller's readable range.
            let w = unsafe { p.cast::<u64>().read_volatile() };
            dst[i..i + WORD].copy_from_slice(&w.to_ne_bytes());
            i += WORD;
        } else {
            // SAFETY: p lies inside the caller's readable range.
            dst[i] = unsafe { p.read_volatile() };
            i += 1;
        }
    }
}

/// Copies `src` to `dst` with volatile stores, a word at a time where aligned.
///
/// # Safety
///
/// `dst..dst+src.len()` must be writable mapped memory outside every Rust allocation.
unsafe fn volatile_copy_in(dst: *mut u8, src: &[u8]) {
    let n = src.len();
    let mut i = 0;
    while i < n {
        let p = dst.wrapping_add(i);
        if (p as usize) % WORD == 0 && n - i >= WORD {
            let mut w = [0u8; WORD];
            w.copy_from_slice(&src[i..i + WORD]);
            // SAFETY: p is word-aligned and p..p+8 lies inside the caller's writable range.
            unsafe { p.cast::<u64>().write_volatile(u64::from_ne_bytes(w)) };
            i += WORD;
        } else {
            // SAFETY: p lies inside the caller's writable range.
            unsafe { p.write_volatile(src[i]) };
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A region over heap words (8-aligned), standing in for a mapping.
    fn region(words: &mut [u64], writable: bool) -> SharedRegion {
        let ptr = NonNull::new(words.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the test keeps `words` alive and unaliased while the region is used.
        unsafe { SharedRegion::new(ptr, words.len() * 8, writable) }
    }

    #[test]
    fn copies_round_trip_at_every_alignment() {
        let mut mem = [0u64; 8];
        let r = region(&mut mem, true);
        for offset in 0..9 {
            for len in [0, 1, 7, 8, 9, 17, 40] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + offset) as u8).collect();
                r.write_at(offset, &data).unwrap();
                let mut back = vec![0u8; len];
                r.read_at(offset, &mut back).unwrap();
                assert_eq!(back, data, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn rejects_out_of_bounds_and_overflow() {
        let mut mem = [0u64; 2];
        let r = region(&mut mem, true);
        let mut buf = [0u8; 4];
        assert!(r.read_at(12, &mut buf).is_ok());
        assert_eq!(
            r.read_at(13, &mut buf),
            Err(AccessError::OutOfBounds { offset: 13, len: 4, region_len: 16 })
        );
        assert!(matches!(r.write_at(usize::MAX, &buf), Err(AccessError::OutOfBounds { .. })));
        assert!(matches!(r.atomic_u64_at(16), Err(AccessError::OutOfBounds { .. })));
        assert!(r.atomic_u32_at(12).is_ok());
    }

    #[test]
    fn atomics_need_alignment_and_write_access() {
        let mut mem = [0u64; 2];
        let r = region(&mut mem, true);
        assert_eq!(
            r.atomic_u32_at(2).unwrap_err(),
            AccessError::Misaligned { offset: 2, align: 4 }
        );
        assert_eq!(
            r.atomic_u64_at(4).unwrap_err(),
            AccessError::Misaligned { offset: 4, align: 8 }
        );
        r.atomic_u64_at(8).unwrap().store(0x0102_0304_0506_0708, Ordering::Relaxed);
        let mut buf = [0u8; 8];
        r.read_at(8, &mut buf).unwrap();
        assert_eq!(u64::from_ne_bytes(buf), 0x0102_0304_0506_0708);

        let ro = region(&mut mem, false);
        assert_eq!(ro.atomic_u32_at(0).unwrap_err(), AccessError::ReadOnly);
        assert_eq!(ro.write_at(0, &[1]).unwrap_err(), AccessError::ReadOnly);
        assert!(ro.read_at(0, &mut buf).is_ok());
    }

    #[test]
    fn pins_count_up_and_down() {
        let mut mem = [0u64; 1];
        let r = region(&mut mem, true);
        assert!(!r.is_pinned());
        r.pin();
        r.pin();
        r.unpin();
        assert!(r.is_pinned());
        r.unpin();
        assert!(!r.is_pinned());
    }
}
