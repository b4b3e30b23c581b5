//! `ipcx` — inter-process communication for Linux: one API over shared memory, Unix
//! sockets, pipes, FIFOs, message queues and semaphores.
//!
//! Today this facade re-exports the OS layer; channels, contracts and patterns build on it.
#![forbid(unsafe_code)]

/// The OS layer: safe wrappers over each Linux IPC primitive.
pub use ipcx_sys as sys;
