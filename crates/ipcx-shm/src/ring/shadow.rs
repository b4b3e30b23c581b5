//! loom cannot overlay its atomics on raw bytes, so under loom the data area's header
//! words of the MPSC and SPSC rings live here (in their control blocks), one loom atomic
//! per 8-byte word, together with a loom cell per word through which payload writes and
//! reads are reported (MPSC). loom then checks the commit (header) ordering and that payload
//! reads and writes are ordered by it.

use crate::sync::AtomicU64;

/// Largest ring capacity loom models use.
pub(crate) const MAX_CAPACITY: u64 = 512;

pub(crate) struct Word {
    pub(crate) header: AtomicU64,
    pub(crate) payload: loom::cell::UnsafeCell<()>,
}

pub(crate) struct Shadow {
    pub(crate) words: [Word; (MAX_CAPACITY / 8) as usize],
}

impl Shadow {
    pub(crate) fn new() -> Shadow {
        Shadow {
            words: std::array::from_fn(|_| Word {
                header: AtomicU64::new(0),
                payload: loom::cell::UnsafeCell::new(()),
            }),
        }
    }
}
