//! Who is on the other end: `SO_PEERCRED` (pid, uid, gid captured by the kernel when the
//! connection was made, or at `socketpair`) and `SO_PEERPIDFD` (a pidfd of that process,
//! Linux 6.5+, immune to pid reuse).
//!
//! Both go through libc's `getsockopt`: rustix's `UCred` holds the pid as a non-zero type,
//! but the kernel reports pid 0 for a peer outside this pid namespace, and rustix has no
//! `SO_PEERPIDFD`.

use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::CredError;
use crate::errno::last_errno;

/// `SO_PEERPIDFD` from the asm-generic socket options (x86, arm, riscv, ...; Linux 6.5).
const SO_PEERPIDFD: libc::c_int = 77;

/// The credentials of the process at the other end of a connected Unix socket, as the
/// kernel recorded them at `connect` (or `socketpair`) time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// Process id of the peer; 0 when the peer is not visible in this pid namespace.
    /// It may have exited and been reused since; use `peer_pidfd` to hold on to it.
    pub pid: u32,
    /// Effective user id of the peer.
    pub uid: u32,
    /// Effective group id of the peer.
    pub gid: u32,
}

/// Option values made only of integers, for which all-zero bytes are a valid value.
trait PlainOpt: Copy {}
impl PlainOpt for libc::c_int {}
impl PlainOpt for libc::ucred {}

/// `getsockopt(fd, SOL_SOCKET, opt)` for a fixed-size value.
fn getsockopt<T: PlainOpt>(fd: BorrowedFd<'_>, opt: libc::c_int) -> Result<T, CredError> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is valid for writes of `len` bytes and `len` points to its size.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, value.as_mut_ptr().cast(), &mut len)
    };
    if rc != 0 {
        return Err(CredError::from_errno(last_errno()));
    }
    if len as usize != size_of::<T>() {
        return Err(CredError::Os(rustix::io::Errno::INVAL));
    }
    // SAFETY: `T: PlainOpt` is all integers, so any bytes (zeroes or the kernel's) are valid.
    Ok(unsafe { value.assume_init() })
}

/// The peer's credentials via `SO_PEERCRED`.
pub(super) fn peer_cred(fd: BorrowedFd<'_>) -> Result<PeerCred, CredError> {
    let c: libc::ucred = getsockopt(fd, libc::SO_PEERCRED)?;
    if c.pid == 0 && c.uid == u32::MAX && c.gid == u32::MAX {
        // What Linux reports for a socket that never had a peer.
        return Err(CredError::NotConnected);
    }
    Ok(PeerCred { pid: u32::try_from(c.pid).unwrap_or(0), uid: c.uid, gid: c.gid })
}

/// A pidfd of the peer process via `SO_PEERPIDFD` (close-on-exec).
pub(super) fn peer_pidfd(fd: BorrowedFd<'_>) -> Result<OwnedFd, CredError> {
    // Kernels before 6.5 reject the unknown option with ENOPROTOOPT (`Unsupported`).
    let raw: libc::c_int = getsockopt(fd, SO_PEERPIDFD)?;
    if raw < 0 {
        return Err(CredError::NotConnected);
    }
    // SAFETY: the kernel just installed `raw` as a new pidfd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
