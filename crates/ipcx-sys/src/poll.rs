//! Waiting for any of several fds to become readable (`poll`), for the layers above that
//! wait on a data fd and a liveness fd at once.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use crate::Errno;

/// Waits until one of `fds` is readable, hung up or in error, or `timeout` passes (`None`:
/// no limit; zero: just look). Returns the index of the first such fd, or `None` on timeout.
/// `EINTR` is retried with the time left.
pub fn wait_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> Result<Option<usize>, Errno> {
    let mut polled: Vec<PollFd<'_>> =
        fds.iter().map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN)).collect();
    if poll_for(&mut polled, timeout)? == 0 {
        return Ok(None);
    }
    Ok(polled.iter().position(|p| !p.revents().is_empty()))
}

/// `poll` on `polled` for at most `timeout` (`None`: no limit), `EINTR` retried with the
/// time left; the number of fds with events (0: the timeout passed).
fn poll_for(polled: &mut [PollFd<'_>], timeout: Option<Duration>) -> Result<usize, Errno> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = match (timeout, deadline) {
            (None, _) | (Some(_), None) => None,
            (Some(_), Some(d)) => {
                Some(crate::time::relative(d.saturating_duration_since(Instant::now())))
            }
        };
        match poll(polled, left.as_ref()) {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

/// What [`wait_read_write`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready {
    /// The reading fd has data, end-of-file or an error.
    pub readable: bool,
    /// The writing fd has room, or its peer hung up, or an error.
    pub writable: bool,
}

/// Waits until `read` is readable or `write` is writable (they may be the same fd), or
/// `timeout` passes (`None`: no limit; zero: just look). `EINTR` is retried with the time
/// left. Both fields false means the timeout passed.
pub fn wait_read_write(
    read: BorrowedFd<'_>,
    write: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> Result<Ready, Errno> {
    use std::os::fd::AsRawFd;
    let same = read.as_raw_fd() == write.as_raw_fd();
    let mut polled = if same {
        vec![PollFd::from_borrowed_fd(read, PollFlags::IN | PollFlags::OUT)]
    } else {
        vec![
            PollFd::from_borrowed_fd(read, PollFlags::IN),
            PollFd::from_borrowed_fd(write, PollFlags::OUT),
        ]
    };
    if poll_for(&mut polled, timeout)? == 0 {
        return Ok(Ready::default());
    }
    let bad = PollFlags::HUP | PollFlags::ERR;
    // One entry when both are the same fd: then the first is also the last.
    let r = polled[0].revents();
    let w = polled.last().map_or(PollFlags::empty(), PollFd::revents);
    Ok(Ready {
        readable: r.intersects(PollFlags::IN | bad),
        writable: w.intersects(PollFlags::OUT | bad),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn reports_the_readable_fd_or_a_timeout() {
        let (r1, _w1) = crate::pipe::pipe().unwrap();
        let (r2, w2) = crate::pipe::pipe().unwrap();
        let fds = [r1.as_fd(), r2.as_fd()];
        assert_eq!(wait_readable(&fds, Some(Duration::ZERO)).unwrap(), None);
        w2.write_all(b"x").unwrap();
        assert_eq!(wait_readable(&fds, Some(Duration::from_secs(5))).unwrap(), Some(1));
        drop(w2);
        let (r3, w3) = crate::pipe::pipe().unwrap();
        drop(w3);
        assert_eq!(wait_readable(&[r3.as_fd()], None).unwrap(), Some(0), "hang-up counts");
    }

    #[test]
    fn reports_room_to_write_and_data_to_read() {
        let (r, w) = crate::pipe::pipe().unwrap();
        let ready = wait_read_write(r.as_fd(), w.as_fd(), Some(Duration::ZERO)).unwrap();
        assert_eq!(ready, Ready { readable: false, writable: true });
        w.write_all(b"x").unwrap();
        let ready = wait_read_write(r.as_fd(), w.as_fd(), Some(Duration::ZERO)).unwrap();
        assert_eq!(ready, Ready { readable: true, writable: true });
    }
}
