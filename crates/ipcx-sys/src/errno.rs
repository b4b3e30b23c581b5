//! errno helpers for the few calls that go through libc instead of rustix.

pub use rustix::io::Errno;

/// The calling thread's errno after a failed libc call.
pub(crate) fn last_errno() -> Errno {
    let raw = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    Errno::from_raw_os_error(raw)
}
