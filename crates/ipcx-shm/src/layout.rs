//! Layout helpers for types that live in shared memory.

/// Bytes between two fields that two processes write, so they never share a cache line.
/// 128, not 64: x86 prefetches cache lines in adjacent pairs.
pub const CACHE_LINE: usize = 128;

/// `T` alone on its own [`CACHE_LINE`]-aligned slot. Our own type, not a dependency's
/// `CachePadded`, because its layout is part of the shared-memory format.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub const fn align_up(x: u64, align: u64) -> Option<u64> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<Padded<crate::sync::AtomicU64>>() == CACHE_LINE);
    assert!(std::mem::align_of::<Padded<crate::sync::AtomicU64>>() == CACHE_LINE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(0, 8), Some(0));
        assert_eq!(align_up(1, 8), Some(8));
        assert_eq!(align_up(16, 8), Some(16));
        assert_eq!(align_up(u64::MAX, 8), None);
    }
}
