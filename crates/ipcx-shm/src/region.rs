//! [`Region`]: the memory a shared data structure lives in — a shared mapping for real use,
//! a heap allocation for tests, loom and Miri.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use ipcx_sys::mapping::{Mapping, SharedRegion};
use ipcx_sys::sysv_shm::SysvAttachment;

/// Alignment every region guarantees for its base address.
pub const REGION_ALIGN: usize = 4096;

/// A block of memory, writable, at least [`REGION_ALIGN`]-aligned, that stays valid while
/// the value lives. Other processes (or threads) may access it concurrently; the data
/// structures built on it synchronise through atomics only.
///
/// # Safety
///
/// Implementors guarantee that `base()..base()+len()` is readable and writable, aligned to
/// [`REGION_ALIGN`], and stays mapped at the same address for as long as the value lives.
pub unsafe trait Region: Send + Sync {
    /// Address of the first byte.
    fn base(&self) -> NonNull<u8>;
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: Arc keeps the inner region alive and does not move it.
unsafe impl<R: Region + ?Sized> Region for Arc<R> {
    fn base(&self) -> NonNull<u8> {
        (**self).base()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
}

/// Zeroed heap memory, for in-process use, tests, loom models and Miri.
#[derive(Debug)]
pub struct HeapRegion {
    ptr: NonNull<u8>,
    len: usize,
}

impl HeapRegion {
    /// `len` zeroed bytes (`len` ≥ 1), aligned to [`REGION_ALIGN`].
    ///
    /// Panics if `len` is 0 or the allocation fails; this type is for tests and models.
    pub fn new(len: usize) -> HeapRegion {
        let layout = Layout::from_size_align(len, REGION_ALIGN).expect("heap region layout");
        assert!(len > 0, "heap region must not be empty");
        // SAFETY: layout has a non-zero size (checked above).
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).expect("heap region allocation");
        HeapRegion { ptr, len }
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, REGION_ALIGN).expect("heap region layout");
        // SAFETY: ptr was allocated in `new` with this very layout and is freed once.
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

// SAFETY: the allocation is owned by the value; concurrent access goes through atomics.
unsafe impl Send for HeapRegion {}
// SAFETY: as above; `&HeapRegion` only exposes the base pointer.
unsafe impl Sync for HeapRegion {}

// SAFETY: allocated with REGION_ALIGN, freed only on drop.
unsafe impl Region for HeapRegion {
    fn base(&self) -> NonNull<u8> {
        self.ptr
    }
    fn len(&self) -> usize {
        self.len
    }
}

/// A writable shared mapping ([`Mapping`] or [`SysvAttachment`]) as a [`Region`].
#[derive(Debug)]
pub struct SharedMemory<M> {
    inner: M,
}

/// A read-only mapping cannot hold a ring or any other structure that is written.
#[derive(Debug, thiserror::Error)]
#[error(
    "this mapping is read-only; map it with Access::ReadWrite to place shared structures in it"
)]
pub struct NotWritable;

impl<M: Deref<Target = SharedRegion>> SharedMemory<M> {
    /// Wraps a mapping, refusing a read-only one.
    pub fn new(inner: M) -> Result<SharedMemory<M>, NotWritable> {
        if !inner.is_writable() || inner.len() == 0 {
            return Err(NotWritable);
        }
        Ok(SharedMemory { inner })
    }

    /// The wrapped mapping.
    pub fn get(&self) -> &M {
        &self.inner
    }
}

// SAFETY: mmap and shmat return page-aligned addresses; the mapping is writable (checked
// in `new`) and stays mapped until the wrapped owner is dropped with this value.
unsafe impl<M: Deref<Target = SharedRegion> + Send + Sync> Region for SharedMemory<M> {
    fn base(&self) -> NonNull<u8> {
        NonNull::new(self.inner.as_mut_ptr()).expect("mapping base is never null")
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// A [`Region`] over a POSIX or memfd [`Mapping`].
pub type MappedRegion = SharedMemory<Mapping>;
/// A [`Region`] over a System V [`SysvAttachment`].
pub type SysvRegion = SharedMemory<SysvAttachment>;
