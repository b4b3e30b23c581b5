//! `ipcx-shm` — data structures that live in shared memory: versioned segment headers,
//! lock-free rings of variable-size records and doorbells.
//!
//! Everything here is generic over a [`Region`]: a shared mapping for real use
//! ([`MappedRegion`]), or heap memory ([`HeapRegion`]) so loom and Miri can check the same
//! code. Bytes written by another process are hostile: every header and position read from
//! shared memory is copied once and validated with checked arithmetic (see [`record`]).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod sync;

/// Doorbells: sleep until a ring's state changes, wake with no syscall when nobody sleeps.
pub mod doorbell;
/// Fuzzing entry points for `fuzz/` (not a stable API).
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
/// Layout helpers for shared-memory types (cache-line padding).
pub mod layout;
/// Record header format and validation.
pub mod record;
/// Memory regions the structures live in.
pub mod region;
/// Lock-free rings of variable-size records.
pub mod ring;
/// Versioned shared-memory segments: header, creation and validated opening.
pub mod segment;

pub use doorbell::{
    Bell, Doorbell, DoorbellStats, EventfdDoorbell, RingError, WaitError, WaitPolicy,
};
pub use region::{HeapRegion, MappedRegion, NotWritable, Region, SharedMemory, SysvRegion};
pub use segment::{Expect, Segment, SegmentInfo, SegmentKind, SegmentSpec};
