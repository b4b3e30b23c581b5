//! `ipcx-shm` — data structures that live in shared memory: versioned segment headers,
//! lock-free rings of variable-size records and doorbells. (Skeleton: filled in by the
//! shared-memory core work.)
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
