//! Process file descriptors (`pidfd_open`): a handle on one process that never comes to
//! mean another one, readable once the process has exited.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use thiserror::Error;

/// Opening a pidfd failed.
#[derive(Debug, Error)]
pub enum PidfdOpenError {
    /// The pid is 0, does not fit a kernel pid, or names a thread rather than a process.
    #[error("pid {pid} is not a valid process id; pass the pid (thread-group id) of a process")]
    BadPid {
        /// The rejected pid.
        pid: u32,
    },
    /// No process has this pid (it exited and was reaped).
    #[error("no process with pid {pid}; it has exited")]
    NoSuchProcess {
        /// The pid.
        pid: u32,
    },
    /// The kernel has no `pidfd_open` (Linux older than 5.3) or forbids it (seccomp).
    #[error("pidfd_open is not available; Linux 5.3 or newer is needed (check seccomp filters)")]
    Unsupported(#[source] Errno),
    /// Any other failure, such as running out of file descriptors.
    #[error("pidfd_open failed; check RLIMIT_NOFILE (`ipcx doctor`)")]
    Os(#[source] Errno),
}

/// Waiting on a pidfd failed.
#[derive(Debug, Error)]
pub enum PidfdWaitError {
    /// The process was still running when the timeout expired.
    #[error("process still running at the end of the timeout")]
    Timeout,
    /// `poll` failed.
    #[error("poll on pidfd failed")]
    Os(#[source] Errno),
}

/// A pidfd: a descriptor of one process, close-on-exec.
///
/// Unlike a pid number, a pidfd cannot be recycled: after the process exits it stays
/// readable forever, and a new process with the same pid is a different process. Taking it
/// is race-free only while the process is known to be alive (see [`Pidfd::open`]).
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
}

impl Pidfd {
    /// Opens a pidfd for `pid`.
    ///
    /// The pid number is only trustworthy at the moment of the call if the process cannot
    /// have been reaped before: your own unreaped child, or a peer whose liveness token you
    /// just found held, checked again *after* opening. A pidfd received from the kernel
    /// while the peer was connected (`SO_PEERPIDFD`, see the `uds` module) or passed over a
    /// socket has no such window at all: prefer those and wrap them with [`Pidfd::from_fd`].
    pub fn open(pid: u32) -> Result<Pidfd, PidfdOpenError> {
        let raw = i32::try_from(pid).map_err(|_| PidfdOpenError::BadPid { pid })?;
        let p = Pid::from_raw(raw).ok_or(PidfdOpenError::BadPid { pid })?;
        match pidfd_open(p, PidfdFlags::empty()) {
            Ok(fd) => Ok(Pidfd { fd }),
            Err(e) => Err(match e {
                Errno::SRCH => PidfdOpenError::NoSuchProcess { pid },
                Errno::INVAL => PidfdOpenError::BadPid { pid },
                Errno::NOSYS | Errno::PERM => PidfdOpenError::Unsupported(e),
                _ => PidfdOpenError::Os(e),
            }),
        }
    }

    /// Wraps a pidfd obtained elsewhere (`SO_PEERPIDFD`, fd passing, `clone3`). The caller
    /// vouches that `fd` is a pidfd; polling anything else gives meaningless answers.
    pub fn from_fd(fd: OwnedFd) -> Pidfd {
        Pidfd { fd }
    }

    /// Whether the process is still running, without waiting.
    pub fn is_alive(&self) -> Result<bool, PidfdWaitError> {
        match self.wait_exit(Duration::ZERO) {
            Ok(()) => Ok(false),
            Err(PidfdWaitError::Timeout) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&self, timeout: Duration) -> Result<(), PidfdWaitError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            let ts = crate::time::relative(left);
            match poll(&mut fds, Some(&ts)) {
                Ok(0) if left.is_zero() => return Err(PidfdWaitError::Timeout),
                Ok(0) | Err(Errno::INTR) => {}
                // A pidfd polls readable (and hung up, once reaped) when the process exits.
                Ok(_) => return Ok(()),
                Err(e) => return Err(PidfdWaitError::Os(e)),
            }
        }
    }

    /// Gives up the wrapper and returns the fd (e.g. to send it to another process).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_bad_pids_are_typed() {
        let me = Pidfd::open(std::process::id()).unwrap();
        assert!(me.is_alive().unwrap());
        assert!(matches!(me.wait_exit(Duration::from_millis(10)), Err(PidfdWaitError::Timeout)));
        assert!(matches!(Pidfd::open(0), Err(PidfdOpenError::BadPid { pid: 0 })));
        assert!(matches!(Pidfd::open(u32::MAX), Err(PidfdOpenError::BadPid { .. })));
        // Above any pid_max (at most 2^22), so no process can have it.
        let unused = i32::MAX as u32;
        assert!(matches!(Pidfd::open(unused), Err(PidfdOpenError::NoSuchProcess { .. })));
    }
}
