//! The shared socket core of every Unix socket type: creation, connect, and send/receive
//! in blocking, deadline and non-blocking forms.
//!
//! Blocking calls honour the fd's own `O_NONBLOCK` (set by `set_nonblocking`); deadline and
//! non-blocking calls pass `MSG_DONTWAIT` and wait with `poll`, so they behave the same
//! whatever mode the fd is in.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    connect, recvmsg, send, sendto, socket_with, socketpair, sockopt, AddressFamily,
    RecvAncillaryBuffer, RecvFlags, RecvMsg, ReturnFlags, SendFlags, SocketAddrAny, SocketAddrUnix,
    SocketFlags, SocketType,
};

use super::{ConnectError, RecvError, SendError, SockOptError, SocketError, UdsAddr};

/// Linux refuses a datagram or seqpacket message longer than `SO_SNDBUF` minus this.
const SNDBUF_OVERHEAD: usize = 32;

/// Pause before retrying an operation that poll called ready but that still would block.
const BACKOFF: Duration = Duration::from_millis(1);

/// How long an operation may wait.
#[derive(Clone, Copy, Debug)]
pub(super) enum Wait {
    /// A plain syscall; the fd's `O_NONBLOCK` decides whether it waits.
    Blocking,
    /// Wait until the instant (`None`: forever), whatever the fd's mode.
    Until(Option<Instant>),
    /// Do not wait at all.
    Never,
}

impl Wait {
    /// Wait at most `timeout` from now (an overflowing timeout waits forever).
    pub(super) fn timeout(timeout: Duration) -> Wait {
        Wait::Until(Instant::now().checked_add(timeout))
    }

    /// Whether calls under this wait pass `MSG_DONTWAIT`.
    fn dontwait(self) -> bool {
        !matches!(self, Wait::Blocking)
    }
}

/// Why an operation stopped without a result.
#[derive(Debug)]
pub(super) enum Stop {
    /// `EAGAIN` with no time to wait (non-blocking fd or [`Wait::Never`]).
    WouldBlock,
    /// The deadline passed.
    Timeout,
    /// The syscall failed.
    Os(Errno),
}

impl From<Stop> for RecvError {
    fn from(s: Stop) -> RecvError {
        match s {
            Stop::WouldBlock => RecvError::WouldBlock,
            Stop::Timeout => RecvError::Timeout,
            Stop::Os(e) => RecvError::from_errno(e),
        }
    }
}

/// Runs `op` (given whether to pass `MSG_DONTWAIT`) until it succeeds, fails, or `wait`
/// runs out; between tries it polls `fd` for `ready`. `EINTR` is retried.
pub(super) fn retry<T>(
    fd: BorrowedFd<'_>,
    ready: PollFlags,
    wait: Wait,
    mut op: impl FnMut(bool) -> Result<T, Errno>,
) -> Result<T, Stop> {
    let mut polled_ready = false;
    loop {
        match op(wait.dontwait()) {
            Ok(v) => return Ok(v),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {}
            Err(e) => return Err(Stop::Os(e)),
        }
        let deadline = match wait {
            Wait::Blocking | Wait::Never => return Err(Stop::WouldBlock),
            Wait::Until(d) => d,
        };
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Err(Stop::Timeout);
        }
        if polled_ready {
            // poll said ready but the op still could not proceed (e.g. an unconnected
            // datagram send to a full receiver, which poll cannot see): back off briefly.
            std::thread::sleep(left.map_or(BACKOFF, |l| l.min(BACKOFF)));
            polled_ready = false;
            continue;
        }
        let ts = left.map(crate::time::relative);
        let mut fds = [PollFd::new(&fd, ready)];
        polled_ready = match poll(&mut fds, ts.as_ref()) {
            Ok(n) => n > 0,
            Err(Errno::INTR) => false,
            Err(e) => return Err(Stop::Os(e)),
        };
    }
}

/// A new close-on-exec `AF_UNIX` socket.
pub(super) fn socket(ty: SocketType, nonblock: bool) -> Result<OwnedFd, SocketError> {
    let mut flags = SocketFlags::CLOEXEC;
    if nonblock {
        flags |= SocketFlags::NONBLOCK;
    }
    socket_with(AddressFamily::UNIX, ty, flags, None).map_err(SocketError)
}

/// A connected pair of close-on-exec sockets.
pub(super) fn pair(ty: SocketType) -> Result<(OwnedFd, OwnedFd), SocketError> {
    socketpair(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None).map_err(SocketError)
}

/// A new blocking socket of type `ty` connected to `addr`, waiting at most `timeout` for
/// room in the listener's backlog (`None`: as long as it takes).
pub(super) fn connect_new(
    ty: SocketType,
    addr: &UdsAddr,
    timeout: Option<Duration>,
) -> Result<OwnedFd, ConnectError> {
    let sa = addr.to_sockaddr();
    let err = |e| ConnectError::from_errno(e, addr);
    if timeout == Some(Duration::ZERO) {
        // SO_SNDTIMEO cannot express "no wait"; a non-blocking connect can.
        let fd = socket(ty, true)?;
        retry_intr(|| connect(&fd, &sa)).map_err(err)?;
        set_nonblocking(fd.as_fd(), false).map_err(|e| ConnectError::Os(e.0))?;
        return Ok(fd);
    }
    let fd = socket(ty, false)?;
    // A blocking AF_UNIX connect waits for backlog room for at most SO_SNDTIMEO.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnectError::Timeout);
            }
            sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, Some(left))
                .map_err(ConnectError::Os)?;
        }
        match connect(&fd, &sa) {
            Ok(()) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(err(e)),
        }
    }
    if deadline.is_some() {
        sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, None).map_err(ConnectError::Os)?;
    }
    Ok(fd)
}

/// Calls `op` until it returns something other than `EINTR`.
pub(super) fn retry_intr<T>(mut op: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match op() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Sets or clears `O_NONBLOCK`.
pub(super) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> Result<(), SockOptError> {
    rustix::io::ioctl_fionbio(fd, on).map_err(SockOptError)
}

/// Sets `SO_RCVTIMEO`: a blocking receive on `fd` then ends with `WouldBlock` after
/// `timeout` (rounded up to a clock tick by the kernel); `None` (or zero) waits forever.
pub(super) fn set_recv_timeout(
    fd: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> Result<(), SockOptError> {
    let timeout = timeout.filter(|t| !t.is_zero());
    sockopt::set_socket_timeout(fd, sockopt::Timeout::Recv, timeout).map_err(SockOptError)
}

/// The largest datagram or seqpacket message `fd` can send (`SO_SNDBUF` - 32).
pub(super) fn max_message_size(fd: BorrowedFd<'_>) -> Result<usize, SockOptError> {
    let buf = sockopt::socket_send_buffer_size(fd).map_err(SockOptError)?;
    Ok(buf.saturating_sub(SNDBUF_OVERHEAD))
}

/// Sends `buf` (to `to`, if given) with `MSG_NOSIGNAL`; returns the bytes sent.
pub(super) fn send_bytes(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    to: Option<&SocketAddrUnix>,
    wait: Wait,
) -> Result<usize, SendError> {
    let res = retry(fd, PollFlags::OUT, wait, |dontwait| {
        let flags = send_flags(dontwait);
        match to {
            Some(addr) => sendto(fd, buf, flags, addr),
            None => send(fd, buf, flags),
        }
    });
    res.map_err(|s| send_stop(fd, s, buf.len()))
}

/// The flags of every send: never `SIGPIPE`, and `MSG_DONTWAIT` when asked.
pub(super) fn send_flags(dontwait: bool) -> SendFlags {
    if dontwait {
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT
    } else {
        SendFlags::NOSIGNAL
    }
}

/// The [`SendError`] for a stopped send of `len` bytes on `fd`.
pub(super) fn send_stop(fd: BorrowedFd<'_>, stop: Stop, len: usize) -> SendError {
    match stop {
        Stop::WouldBlock => SendError::WouldBlock,
        Stop::Timeout => SendError::Timeout,
        Stop::Os(e) => SendError::from_errno(e, len, || max_message_size(fd).unwrap_or(0)),
    }
}

/// One `recvmsg` into `buf` and `control` with `MSG_CMSG_CLOEXEC`. For message sockets
/// (`message`), `MSG_TRUNC` makes `bytes` the real message size.
pub(super) fn recv_msg(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    control: &mut RecvAncillaryBuffer<'_>,
    message: bool,
    wait: Wait,
) -> Result<RecvMsg, Stop> {
    retry(fd, PollFlags::IN, wait, |dontwait| {
        let mut flags = RecvFlags::CMSG_CLOEXEC;
        if message {
            flags |= RecvFlags::TRUNC;
        }
        if dontwait {
            flags |= RecvFlags::DONTWAIT;
        }
        recvmsg(fd, &mut [IoSliceMut::new(buf)], control, flags)
    })
}

/// Receives into `buf` without fds; a message larger than `buf` is an error.
/// Returns the bytes received and the sender's address if the socket reports one.
pub(super) fn recv_bytes(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    message: bool,
    wait: Wait,
) -> Result<(usize, Option<SocketAddrAny>), RecvError> {
    let m = recv_msg(fd, buf, &mut RecvAncillaryBuffer::default(), message, wait)?;
    check_truncation(&m, buf.len())?;
    Ok((m.bytes, m.address))
}

/// `MSG_TRUNC` on a received message as a [`RecvError::Truncated`].
pub(super) fn check_truncation(m: &RecvMsg, capacity: usize) -> Result<(), RecvError> {
    if m.flags.contains(ReturnFlags::TRUNC) || m.bytes > capacity {
        return Err(RecvError::Truncated { size: m.bytes, capacity });
    }
    Ok(())
}

/// Turns "nothing to do without waiting" into `None` for the `try_` forms.
pub(super) fn would_block_to_none<T, E>(
    r: Result<T, E>,
    is_would_block: impl FnOnce(&E) -> bool,
) -> Result<Option<T>, E> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_would_block(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_recv_times_out_and_never_would_block() {
        let (a, _b) = pair(SocketType::DGRAM).unwrap();
        let mut buf = [0u8; 4];
        let t = Instant::now();
        let r = recv_bytes(a.as_fd(), &mut buf, true, Wait::timeout(Duration::from_millis(30)));
        assert!(matches!(r, Err(RecvError::Timeout)));
        assert!(t.elapsed() >= Duration::from_millis(30));
        let r = recv_bytes(a.as_fd(), &mut buf, true, Wait::Never);
        assert!(matches!(r, Err(RecvError::WouldBlock)));
    }

    #[test]
    fn huge_timeout_does_not_overflow() {
        assert!(matches!(Wait::timeout(Duration::MAX), Wait::Until(None)));
    }
}
