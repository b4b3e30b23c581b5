#![allow(dead_code, unused_imports)] // not every item is used under every cfg

//! The one place atomics come from: std normally, loom's under `cfg(loom)` so the model
//! checker sees every access. Nothing else in the crate names `std::sync::atomic`.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A spin-loop hint (a loom yield under the model checker, so spinning terminates there).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// A word inside a ring's data area (a record header), reinterpreted from raw bytes.
///
/// Always the std type, even under loom: loom atomics cannot be overlaid on bytes. The data
/// area is ordered by the control-block positions, which loom does see; Miri checks the
/// data area itself.
pub(crate) type DataWord = std::sync::atomic::AtomicU64;
