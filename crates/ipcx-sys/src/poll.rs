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
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut polled: Vec<PollFd<'_>> =
        fds.iter().map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN)).collect();
    loop {
        let left = match (timeout, deadline) {
            (None, _) | (Some(_), None) => None,
            (Some(_), Some(d)) => {
                Some(crate::time::relative(d.saturating_duration_since(Instant::now())))
            }
        };
        match poll(&mut polled, left.as_ref()) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(polled.iter().position(|p| !p.revents().is_empty())),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
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
}
