//! `ipcx-sys` — safe RAII wrappers over the Linux IPC primitives ipcx is built on.
//!
//! This crate (with `ipcx-shm`) is the only place in ipcx that holds `unsafe` code; every
//! crate above it is `#![forbid(unsafe_code)]`. Each module wraps one primitive:
//! file descriptors are [`std::os::fd::OwnedFd`], named objects are made through a builder
//! with an explicit [`CreateMode`] and [`Permissions`] (default `0o600`, applied whatever
//! the umask), and the handle that created an object removes it when dropped. Every
//! operation has its own error enum that keeps the errno as its source and says what to do.
//!
//! ```
//! use ipcx_sys::eventfd::EventFd;
//!
//! let ev = EventFd::new().unwrap();
//! ev.notify(1).unwrap();
//! assert_eq!(ev.try_read().unwrap(), Some(1));
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod errno;
mod time;

/// Validation of POSIX IPC object names.
pub mod name;
/// How named objects are created and who may use them.
pub mod options;

/// Readiness of many fds at once, each with a caller's key (`epoll`).
pub mod epoll;
/// Event counters (`eventfd`).
pub mod eventfd;
/// Futex wait and wake on a shared `AtomicU32`.
pub mod futex;
/// System IPC limits and health, as `ipcx doctor` prints them.
pub mod limits;
/// Liveness tokens (`flock` on a file for a process's life) and pidfds.
pub mod liveness;
/// Memory mappings of shared memory, size-checked and pre-faulted.
pub mod mapping;
/// Anonymous shared memory with seals (`memfd_create`).
pub mod memfd;
/// Anonymous pipes and named FIFOs (`pipe2`, `mkfifo`).
pub mod pipe;
/// Waiting for any of several fds to become readable.
pub mod poll;
/// POSIX message queues (`mq_open`).
pub mod posix_mq;
/// POSIX named semaphores (`sem_open`).
pub mod posix_sem;
/// POSIX shared memory objects (`shm_open`).
pub mod posix_shm;
/// Process and CPU helpers: affinity, CPU count, uid.
pub mod process;
/// Process-shared robust mutexes living in shared memory.
pub mod robust_mutex;
/// System V message queues (`msgget`).
pub mod sysv_msg;
/// System V semaphore sets (`semget`, `semtimedop`).
pub mod sysv_sem;
/// System V shared memory segments (`shmget`, `shmat`).
pub mod sysv_shm;
/// Unix domain sockets: stream, seqpacket, datagram, credentials and fd passing.
pub mod uds;

pub use errno::Errno;
pub use options::{CreateMode, Permissions};
