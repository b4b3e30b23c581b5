//! Passing file descriptors (`SCM_RIGHTS`) with a message, on every Unix socket type.
//!
//! The sender's fds are duplicated into the receiver when it receives the message; the
//! sender keeps its own. fds travel with at least one data byte. The receiver states how
//! many fds it accepts: it counts what arrived from the control message itself (rustix
//! parses `cmsg_len`), and if the kernel had to cut the control data (`MSG_CTRUNC`) or more
//! fds arrived than allowed, or the data did not fit, the receive is an error and every fd
//! that did arrive is closed. Received fds are close-on-exec (`MSG_CMSG_CLOEXEC`).

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::event::PollFlags;
use rustix::net::{
    sendmsg, sendmsg_addr, RecvAncillaryBuffer, RecvAncillaryMessage, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SocketAddrAny, SocketAddrUnix,
};

use super::io::{self, Wait};
use super::{RecvError, RecvFdsError, SendFdsError};

/// Most fds one message can carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// Control buffer bytes for [`MAX_FDS`] descriptors, alignment slack included.
const CONTROL_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS));

/// Sends `data` with `fds` attached (to `to`, if given); returns the data bytes sent.
pub(super) fn send_with_fds(
    fd: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    to: Option<&SocketAddrUnix>,
    wait: Wait,
) -> Result<usize, SendFdsError> {
    if fds.len() > MAX_FDS {
        return Err(SendFdsError::TooManyFds { count: fds.len() });
    }
    if data.is_empty() {
        return Err(SendFdsError::EmptyData);
    }
    let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(SendFdsError::TooManyFds { count: fds.len() });
    }
    let iov = [IoSlice::new(data)];
    let res = io::retry(fd, PollFlags::OUT, wait, |dontwait| {
        let flags = io::send_flags(dontwait);
        match to {
            Some(addr) => sendmsg_addr(fd, addr, &iov, &mut control, flags),
            None => sendmsg(fd, &iov, &mut control, flags),
        }
    });
    res.map_err(|s| SendFdsError::Send(io::send_stop(fd, s, data.len())))
}

/// What [`recv_with_fds`] got: data length, the fds, and the sender's address if reported.
pub(super) type Received = (usize, Vec<OwnedFd>, Option<SocketAddrAny>);

/// Receives into `buf` with up to `max_fds` (at most [`MAX_FDS`]) descriptors.
pub(super) fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
    message: bool,
    wait: Wait,
) -> Result<Received, RecvFdsError> {
    let max_fds = max_fds.min(MAX_FDS);
    let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
    let len = if max_fds == 0 { 0 } else { rustix::cmsg_space!(ScmRights(max_fds)) };
    let mut control = RecvAncillaryBuffer::new(&mut space[..len]);
    let m = io::recv_msg(fd, buf, &mut control, message, wait).map_err(RecvError::from)?;
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(arrived) = msg {
            fds.extend(arrived);
        }
    }
    // From here every fd that arrived is owned by `fds` and is closed on an error return.
    // The alignment slack of the control buffer can fit a few more than `max_fds`.
    if m.flags.contains(ReturnFlags::CTRUNC) || fds.len() > max_fds {
        return Err(RecvFdsError::TooManyFds { max_fds });
    }
    io::check_truncation(&m, buf.len())?;
    Ok((m.bytes, fds, m.address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::SocketType;
    use std::os::fd::AsFd;

    #[test]
    fn fds_round_trip_and_limits() {
        let (a, b) = io::pair(SocketType::SEQPACKET).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let n = send_with_fds(a.as_fd(), b"x", &[r.as_fd(), w.as_fd()], None, Wait::Blocking);
        assert_eq!(n.unwrap(), 1);
        let mut buf = [0u8; 4];
        let (n, fds, _) = recv_with_fds(b.as_fd(), &mut buf, 2, true, Wait::Never).unwrap();
        assert_eq!((n, fds.len()), (1, 2));
        assert!(matches!(
            send_with_fds(a.as_fd(), b"", &[r.as_fd()], None, Wait::Never),
            Err(SendFdsError::EmptyData)
        ));
        let many = vec![r.as_fd(); MAX_FDS + 1];
        assert!(matches!(
            send_with_fds(a.as_fd(), b"x", &many, None, Wait::Never),
            Err(SendFdsError::TooManyFds { count }) if count == MAX_FDS + 1
        ));
    }
}
