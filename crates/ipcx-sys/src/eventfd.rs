//! Event counters (`eventfd`): a 64-bit counter in the kernel that a writer adds to and a
//! reader drains, pollable with epoll. Shared with another process by fd passing.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use rustix::io::{read, write, Errno};
use thiserror::Error;

/// Creating an eventfd failed.
#[derive(Debug, Error)]
#[error("cannot create eventfd; check RLIMIT_NOFILE (`ipcx doctor`)")]
pub struct CreateError(#[source] pub Errno);

/// Notifying an eventfd failed.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// Adding the value would overflow the counter (the reader is not draining it).
    #[error("eventfd counter would overflow; the reader is not draining it")]
    WouldOverflow,
    /// A value of 0 or `u64::MAX` cannot be added.
    #[error("eventfd notify value must be between 1 and 2^64-2")]
    BadValue,
    /// The kernel refused the write.
    #[error("eventfd write failed")]
    Os(#[source] Errno),
}

/// Reading an eventfd failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// Nothing arrived within the timeout.
    #[error("no eventfd notification within the timeout")]
    Timeout,
    /// The kernel refused the read or poll.
    #[error("eventfd read failed")]
    Os(#[source] Errno),
}

/// A non-blocking eventfd in counter mode (reads return and reset the whole count).
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd with count 0, close-on-exec and non-blocking.
    pub fn new() -> Result<EventFd, CreateError> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(CreateError)?;
        Ok(EventFd { fd })
    }

    /// Wraps an eventfd received from elsewhere (e.g. by fd passing). The caller vouches
    /// that `fd` is an eventfd; reads and writes on anything else return errors.
    pub fn from_fd(fd: OwnedFd) -> EventFd {
        EventFd { fd }
    }

    /// Adds `value` to the counter, waking readers.
    pub fn notify(&self, value: u64) -> Result<(), NotifyError> {
        if value == 0 || value == u64::MAX {
            return Err(NotifyError::BadValue);
        }
        match write(&self.fd, &value.to_ne_bytes()) {
            Ok(_) => Ok(()),
            Err(Errno::AGAIN) => Err(NotifyError::WouldOverflow),
            Err(e) => Err(NotifyError::Os(e)),
        }
    }

    /// Takes the whole count if it is non-zero, without blocking.
    pub fn try_read(&self) -> Result<Option<u64>, ReadError> {
        let mut buf = [0u8; 8];
        loop {
            match read(&self.fd, &mut buf) {
                Ok(8) => return Ok(Some(u64::from_ne_bytes(buf))),
                Ok(_) => return Err(ReadError::Os(Errno::IO)),
                Err(Errno::AGAIN) => return Ok(None),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(ReadError::Os(e)),
            }
        }
    }

    /// Waits up to `timeout` for a non-zero count and takes it.
    pub fn read_timeout(&self, timeout: Duration) -> Result<u64, ReadError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(v) = self.try_read()? {
                return Ok(v);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            let ts = crate::time::relative(left);
            match poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(ReadError::Os(e)),
            }
        }
    }

    /// Gives up the wrapper and returns the fd (e.g. to send it to another process).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_drain() {
        let ev = EventFd::new().unwrap();
        assert_eq!(ev.try_read().unwrap(), None);
        ev.notify(2).unwrap();
        ev.notify(3).unwrap();
        assert_eq!(ev.read_timeout(Duration::from_secs(1)).unwrap(), 5);
        assert_eq!(ev.try_read().unwrap(), None);
    }

    #[test]
    fn times_out_when_nothing_arrives() {
        let ev = EventFd::new().unwrap();
        assert!(matches!(ev.read_timeout(Duration::from_millis(20)), Err(ReadError::Timeout)));
    }

    #[test]
    fn rejects_bad_values_and_overflow() {
        let ev = EventFd::new().unwrap();
        assert!(matches!(ev.notify(0), Err(NotifyError::BadValue)));
        assert!(matches!(ev.notify(u64::MAX), Err(NotifyError::BadValue)));
        ev.notify(u64::MAX - 1).unwrap();
        assert!(matches!(ev.notify(1), Err(NotifyError::WouldOverflow)));
    }
}
