//! `epoll`: wait until any of many fds is ready, each registered with a caller-chosen `u64`
//! key that comes back with its readiness.
//!
//! Registrations are level-triggered: an fd with unread data is reported by every
//! [`Epoll::wait`] until it is drained. The epoll instance does not own the fds it watches;
//! the kernel drops a registration when the last descriptor of its file closes, but delete
//! an fd ([`Epoll::delete`]) before closing it when it may have been duplicated (fd passing,
//! `dup`), or it keeps being reported. The instance is close-on-exec and closes on drop.
//!
//! Every wait has a blocking (`None`), timeout and non-blocking (zero) form; `EINTR` is
//! retried with the time left. Timeouts longer than `i32::MAX` ms (about 24 days) are waited
//! in several pieces.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::io::Errno;
use thiserror::Error;

/// Longest single kernel wait (the limit of `epoll_wait` before Linux 5.11).
const MAX_WAIT: Duration = Duration::from_millis(i32::MAX as u64);

/// Creating an epoll instance failed.
#[derive(Debug, Error)]
#[error(
    "cannot create an epoll instance; check RLIMIT_NOFILE and fs.epoll.max_user_watches \
     (`ipcx doctor`)"
)]
pub struct CreateError(#[source] pub Errno);

/// Adding, changing or removing a registration failed.
#[derive(Debug, Error)]
pub enum CtlError {
    /// `add`: the fd is already registered; use `modify`.
    #[error("the fd is already registered with this epoll instance; use modify")]
    AlreadyAdded,
    /// `modify`/`delete`: the fd is not registered.
    #[error("the fd is not registered with this epoll instance; add it first")]
    NotAdded,
    /// The fd cannot be polled (a regular file or directory).
    #[error("this kind of fd cannot be watched with epoll (regular files and directories are always ready)")]
    Unsupported,
    /// The per-user watch limit is reached.
    #[error("too many epoll watches for this user; raise fs.epoll.max_user_watches")]
    TooManyWatches,
    /// Another failure of `epoll_ctl`.
    #[error("epoll_ctl failed")]
    Os(#[source] Errno),
}

impl CtlError {
    /// The errno table of `epoll_ctl`.
    fn from_errno(e: Errno) -> CtlError {
        match e {
            Errno::EXIST => CtlError::AlreadyAdded,
            Errno::NOENT => CtlError::NotAdded,
            Errno::PERM => CtlError::Unsupported,
            Errno::NOSPC => CtlError::TooManyWatches,
            e => CtlError::Os(e),
        }
    }
}

/// Waiting failed (a timeout is not an error: the wait returns no events).
#[derive(Debug, Error)]
#[error("epoll_wait failed")]
pub struct WaitError(#[source] pub Errno);

/// What a registration waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Data to read (or end of file, hang-up, error).
    Readable,
    /// Room to write (or hang-up, error).
    Writable,
    /// Either.
    Both,
}

impl Interest {
    fn flags(self) -> EventFlags {
        match self {
            Interest::Readable => EventFlags::IN | EventFlags::RDHUP,
            Interest::Writable => EventFlags::OUT,
            Interest::Both => EventFlags::IN | EventFlags::RDHUP | EventFlags::OUT,
        }
    }
}

/// One ready registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The key given at registration.
    pub key: u64,
    /// Data (or end of file) is there to read.
    pub readable: bool,
    /// There is room to write.
    pub writable: bool,
    /// The peer hung up (fully, or its writing half).
    pub hangup: bool,
    /// The fd has an error pending.
    pub error: bool,
}

/// A reusable buffer of ready registrations, filled by [`Epoll::wait`].
pub struct Events {
    buf: Vec<epoll::Event>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Events {
    /// Room for up to `capacity` events per wait (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        Events { buf: Vec::with_capacity(capacity.max(1)) }
    }

    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the last wait returned no events (it timed out).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The events of the last wait.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf.iter().map(|ev| {
            let flags = ev.flags;
            Event {
                key: ev.data.u64(),
                readable: flags.intersects(EventFlags::IN | EventFlags::PRI),
                writable: flags.contains(EventFlags::OUT),
                hangup: flags.intersects(EventFlags::HUP | EventFlags::RDHUP),
                error: flags.contains(EventFlags::ERR),
            }
        })
    }
}

/// An epoll instance (see the module docs).
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new, empty epoll instance (close-on-exec).
    pub fn new() -> Result<Epoll, CreateError> {
        let fd = epoll::create(CreateFlags::CLOEXEC).map_err(CreateError)?;
        Ok(Epoll { fd })
    }

    /// Watches `fd` for `interest`, reporting it with `key`.
    pub fn add(&self, fd: BorrowedFd<'_>, key: u64, interest: Interest) -> Result<(), CtlError> {
        epoll::add(&self.fd, fd, EventData::new_u64(key), interest.flags())
            .map_err(CtlError::from_errno)
    }

    /// Changes the key or interest of a registered `fd`.
    pub fn modify(&self, fd: BorrowedFd<'_>, key: u64, interest: Interest) -> Result<(), CtlError> {
        epoll::modify(&self.fd, fd, EventData::new_u64(key), interest.flags())
            .map_err(CtlError::from_errno)
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> Result<(), CtlError> {
        epoll::delete(&self.fd, fd).map_err(CtlError::from_errno)
    }

    /// Waits until at least one registration is ready or `timeout` passes (`None`: no limit;
    /// zero: just look), filling `events` (cleared first) with up to its capacity. Returns
    /// how many are ready; 0 means the timeout passed.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> Result<usize, WaitError> {
        // An overflowing timeout waits forever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            events.buf.clear();
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let ts = left.map(|l| crate::time::relative(l.min(MAX_WAIT)));
            match epoll::wait(&self.fd, spare_capacity(&mut events.buf), ts.as_ref()) {
                // Woken early (a long timeout waited in pieces): wait for the rest.
                Ok(0) if left.is_none_or(|l| l > MAX_WAIT) => continue,
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(WaitError(e)),
            }
        }
    }
}

impl AsFd for Epoll {
    /// The epoll fd itself, which is readable while a registration is ready (so an epoll
    /// instance can be nested in another, or in `poll`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventfd::EventFd;

    #[test]
    fn reports_ready_fds_by_key() {
        let ep = Epoll::new().unwrap();
        let (a, b) = (EventFd::new().unwrap(), EventFd::new().unwrap());
        ep.add(a.as_fd(), 7, Interest::Readable).unwrap();
        ep.add(b.as_fd(), 9, Interest::Readable).unwrap();
        assert!(matches!(ep.add(a.as_fd(), 7, Interest::Readable), Err(CtlError::AlreadyAdded)));
        let mut events = Events::with_capacity(8);
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
        b.notify(1).unwrap();
        assert_eq!(ep.wait(&mut events, None).unwrap(), 1);
        let ev = events.iter().next().unwrap();
        assert_eq!((ev.key, ev.readable), (9, true));
        ep.modify(b.as_fd(), 10, Interest::Readable).unwrap();
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 1);
        assert_eq!(events.iter().next().unwrap().key, 10);
        ep.delete(b.as_fd()).unwrap();
        assert!(matches!(ep.delete(b.as_fd()), Err(CtlError::NotAdded)));
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
    }

    #[test]
    fn times_out_within_bounds() {
        let ep = Epoll::new().unwrap();
        let mut events = Events::with_capacity(1);
        let start = Instant::now();
        assert_eq!(ep.wait(&mut events, Some(Duration::from_millis(50))).unwrap(), 0);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn regular_files_are_refused() {
        let ep = Epoll::new().unwrap();
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        assert!(matches!(ep.add(f.as_fd(), 1, Interest::Readable), Err(CtlError::Unsupported)));
    }
}
