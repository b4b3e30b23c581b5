//! Sending and receiving, in blocking, non-blocking (`try_`) and timeout forms.
//!
//! On a blocking descriptor the kernel does the waiting: `mq_timedsend`/`mq_timedreceive`
//! get no deadline (block), a deadline in 1970 (fail at once) or an absolute
//! `CLOCK_REALTIME` deadline. On an `O_NONBLOCK` descriptor the call fails at once and we
//! wait with `poll` on the descriptor, measuring the timeout on the monotonic clock.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;

use super::{PosixMq, RecvError, SendError, PRIO_MAX};
use crate::errno::last_errno;

/// How long an operation may wait.
#[derive(Clone, Copy, Debug)]
enum Wait {
    Never,
    Forever,
    For(Duration),
}

/// Why an operation that would block stops.
enum Stop {
    /// The call was not allowed to wait.
    NoWait,
    /// The deadline passed.
    TimedOut,
    /// `poll` failed.
    Os(Errno),
}

/// The deadline of one operation, in both the forms the two waiting strategies need.
struct Waiter {
    wait: Wait,
    polls: bool,
    abs: libc::timespec,
    until: Option<Instant>,
}

impl Waiter {
    fn new(wait: Wait, nonblocking_fd: bool) -> Waiter {
        let (abs, until) = match wait {
            Wait::For(d) => (crate::time::realtime_deadline(d), Instant::now().checked_add(d)),
            Wait::Never | Wait::Forever => (libc::timespec { tv_sec: 0, tv_nsec: 0 }, None),
        };
        Waiter { wait, polls: nonblocking_fd, abs, until }
    }

    /// The `abs_timeout` argument: null to block, else the deadline (1970 for "never").
    fn abs_timeout(&self) -> *const libc::timespec {
        match self.wait {
            Wait::Forever => std::ptr::null(),
            _ if self.polls => std::ptr::null(),
            Wait::Never | Wait::For(_) => &self.abs,
        }
    }

    /// The call failed with `EAGAIN` or `ETIMEDOUT`: waits for `events` if time is left,
    /// so the caller retries, or says why to stop.
    fn blocked(&self, q: &PosixMq, events: PollFlags) -> Result<(), Stop> {
        let timeout = match (self.wait, self.polls) {
            (Wait::Never, _) => return Err(Stop::NoWait),
            (Wait::For(_), false) => return Err(Stop::TimedOut),
            (Wait::Forever, false) => return Ok(()),
            (Wait::Forever, true) => None,
            (Wait::For(_), true) => match self.until {
                None => None,
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Stop::TimedOut);
                    }
                    Some(crate::time::relative(left))
                }
            },
        };
        let mut fds = [PollFd::new(&q.fd, events)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => Ok(()),
            Err(e) => Err(Stop::Os(e)),
        }
    }
}

impl PosixMq {
    /// Sends `msg` with priority `prio` (`0..PRIO_MAX`, higher is received first), waiting
    /// while the queue is full.
    pub fn send(&self, msg: &[u8], prio: u32) -> Result<(), SendError> {
        self.send_with(msg, prio, Wait::Forever)
    }

    /// Sends `msg` if there is room now; [`SendError::Full`] otherwise.
    pub fn try_send(&self, msg: &[u8], prio: u32) -> Result<(), SendError> {
        self.send_with(msg, prio, Wait::Never)
    }

    /// Sends `msg`, waiting up to `timeout` for room; [`SendError::Timeout`] otherwise.
    pub fn send_timeout(&self, msg: &[u8], prio: u32, timeout: Duration) -> Result<(), SendError> {
        self.send_with(msg, prio, Wait::For(timeout))
    }

    /// Receives the oldest message of the highest priority into `buf`, waiting while the
    /// queue is empty. Returns its length and priority. `buf` must hold at least the queue's
    /// `msgsize` bytes, so no message is ever truncated.
    pub fn recv(&self, buf: &mut [u8]) -> Result<(usize, u32), RecvError> {
        self.recv_with(buf, Wait::Forever)
    }

    /// Receives a message if one is queued now; [`RecvError::Empty`] otherwise.
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<(usize, u32), RecvError> {
        self.recv_with(buf, Wait::Never)
    }

    /// Receives a message, waiting up to `timeout`; [`RecvError::Timeout`] otherwise.
    pub fn recv_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(usize, u32), RecvError> {
        self.recv_with(buf, Wait::For(timeout))
    }

    fn send_with(&self, msg: &[u8], prio: u32, wait: Wait) -> Result<(), SendError> {
        let too_large = || SendError::TooLarge { len: msg.len(), msgsize: self.msgsize };
        if msg.len() > self.msgsize {
            return Err(too_large());
        }
        if prio >= PRIO_MAX {
            return Err(SendError::BadPriority { prio });
        }
        let w = Waiter::new(wait, self.nonblocking);
        let fd = self.fd.as_fd().as_raw_fd();
        loop {
            // SAFETY: msg is a live slice of msg.len() bytes; the deadline is null or live.
            let r = unsafe {
                libc::mq_timedsend(fd, msg.as_ptr().cast(), msg.len(), prio, w.abs_timeout())
            };
            if r == 0 {
                return Ok(());
            }
            match last_errno() {
                Errno::INTR => {}
                Errno::AGAIN | Errno::TIMEDOUT => match w.blocked(self, PollFlags::OUT) {
                    Ok(()) => {}
                    Err(Stop::NoWait) => return Err(SendError::Full),
                    Err(Stop::TimedOut) => return Err(SendError::Timeout),
                    Err(Stop::Os(e)) => return Err(SendError::Os(e)),
                },
                Errno::MSGSIZE => return Err(too_large()),
                e => return Err(SendError::Os(e)),
            }
        }
    }

    fn recv_with(&self, buf: &mut [u8], wait: Wait) -> Result<(usize, u32), RecvError> {
        let too_small = |len| RecvError::BufferTooSmall { len, msgsize: self.msgsize };
        if buf.len() < self.msgsize {
            return Err(too_small(buf.len()));
        }
        let w = Waiter::new(wait, self.nonblocking);
        let fd = self.fd.as_fd().as_raw_fd();
        loop {
            let mut prio: libc::c_uint = 0;
            let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
            // SAFETY: ptr/len describe the live, writable buf; prio and the deadline are live.
            let n = unsafe { libc::mq_timedreceive(fd, ptr, len, &mut prio, w.abs_timeout()) };
            if let Ok(n) = usize::try_from(n) {
                return Ok((n, prio));
            }
            match last_errno() {
                Errno::INTR => {}
                Errno::AGAIN | Errno::TIMEDOUT => match w.blocked(self, PollFlags::IN) {
                    Ok(()) => {}
                    Err(Stop::NoWait) => return Err(RecvError::Empty),
                    Err(Stop::TimedOut) => return Err(RecvError::Timeout),
                    Err(Stop::Os(e)) => return Err(RecvError::Os(e)),
                },
                Errno::MSGSIZE => return Err(too_small(buf.len())),
                e => return Err(RecvError::Os(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::PosixMq;
    use super::*;
    use crate::CreateMode;

    fn queue(tag: &str, nonblocking: bool) -> PosixMq {
        let name = format!("ipcxu-mqio-{tag}-{}", std::process::id());
        let b = PosixMq::builder(&name).create_mode(CreateMode::CreateExclusive);
        b.capacity(2, 16).nonblocking(nonblocking).open().unwrap()
    }

    #[test]
    fn both_descriptor_kinds_report_full_empty_and_timeout() {
        for (tag, nb) in [("blk", false), ("nb", true)] {
            let q = queue(tag, nb);
            let mut buf = [0u8; 16];
            assert!(matches!(q.try_recv(&mut buf), Err(RecvError::Empty)));
            let t = Duration::from_millis(20);
            assert!(matches!(q.recv_timeout(&mut buf, t), Err(RecvError::Timeout)));
            q.send(b"a", 1).unwrap();
            q.try_send(b"b", 2).unwrap();
            assert!(matches!(q.try_send(b"c", 0), Err(SendError::Full)));
            assert!(matches!(q.send_timeout(b"c", 0, t), Err(SendError::Timeout)));
            assert_eq!(q.recv_timeout(&mut buf, t).unwrap(), (1, 2));
            assert_eq!(&buf[..1], b"b");
            assert_eq!(q.recv(&mut buf).unwrap(), (1, 1));
        }
    }

    #[test]
    fn refuses_oversize_messages_small_buffers_and_bad_priorities() {
        let q = queue("limits", false);
        let e = q.try_send(&[0u8; 17], 0).unwrap_err();
        assert!(matches!(e, SendError::TooLarge { len: 17, msgsize: 16 }));
        assert!(matches!(q.try_send(b"x", PRIO_MAX), Err(SendError::BadPriority { .. })));
        q.send(b"kept", 0).unwrap();
        let mut small = [0u8; 15];
        assert!(matches!(q.try_recv(&mut small), Err(RecvError::BufferTooSmall { len: 15, .. })));
        assert_eq!(q.attributes().unwrap().curmsgs, 1);
    }
}
