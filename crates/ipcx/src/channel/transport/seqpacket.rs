//! `uds-seqpacket`: a unix seqpacket socket, one frame per message. The kernel keeps
//! message boundaries, so no stream framing: the receiver checks each message against its
//! header. The largest message is bounded by the socket send buffer
//! (`SO_SNDBUF` − 32 bytes, about 208 KiB by default).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use ipcx_sys::uds::{
    AcceptError as SysAccept, BindError, BindOptions, ConnectError as SysConnect, RecvError,
    RecvFdsError, SendError, SendFdsError, UdsAddr, UdsSeqpacket, UdsSeqpacketListener, MAX_FDS,
};
use ipcx_sys::{CreateMode, Permissions};

use super::recv_fds_in_slices;
use crate::channel::error::{AcceptError, ConnectError};
use crate::channel::handshake_io::FrameIo;
use crate::channel::link::{Deadline, LinkError, LinkOps};
use crate::frame::{FrameHeader, HEADER_LEN};
use crate::handshake::HANDSHAKE_MAX_LEN;

/// The data path of one `uds-seqpacket` connection.
pub(crate) struct SeqpacketLink {
    sock: UdsSeqpacket,
    max_frame: usize,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Fds that came with the last message received.
    fds: Option<Vec<OwnedFd>>,
}

impl SeqpacketLink {
    /// A link over a connected socket carrying frames of at most `max_frame` bytes; the
    /// socket's receives block in slices of [`RECV_SLICE`](super::RECV_SLICE) (which the
    /// link's timed receives need: see [`UdsWait`]).
    pub(crate) fn new(
        sock: UdsSeqpacket,
        max_frame: usize,
    ) -> Result<SeqpacketLink, ipcx_sys::uds::SockOptError> {
        sock.set_recv_timeout(Some(super::RECV_SLICE))?;
        let (buf, out) = (vec![0; max_frame], Vec::new());
        Ok(SeqpacketLink { sock, max_frame, buf, out, fds: None })
    }
}

/// Sends one message on `sock`, waiting until `deadline`.
fn send(sock: &UdsSeqpacket, msg: &[u8], deadline: Deadline) -> Result<(), LinkError> {
    let r = match deadline {
        Deadline::Never => sock.send(msg),
        Deadline::Now => {
            sock.try_send(msg).and_then(|sent| sent.then_some(()).ok_or(SendError::WouldBlock))
        }
        d => match d.remaining() {
            Some(t) if !t.is_zero() => sock.send_timeout(msg, t),
            _ => return Err(LinkError::Timeout),
        },
    };
    match r {
        Ok(()) => Ok(()),
        Err(SendError::Timeout | SendError::WouldBlock) => Err(LinkError::Timeout),
        Err(SendError::PeerClosed) => Err(LinkError::PeerGone),
        Err(SendError::TooLarge { len, max }) => Err(LinkError::TooLarge { len, max }),
        Err(e) => Err(LinkError::os("send on the seqpacket socket", e)),
    }
}

/// Receives one message into `buf`, waiting until `deadline`; returns its length.
fn recv(sock: &UdsSeqpacket, buf: &mut [u8], deadline: Deadline) -> Result<usize, LinkError> {
    let r = match deadline {
        Deadline::Never => sock.recv(buf),
        Deadline::Now => sock.try_recv(buf).and_then(|n| n.ok_or(RecvError::WouldBlock)),
        d => match d.remaining() {
            Some(t) if !t.is_zero() => sock.recv_timeout(buf, t),
            _ => return Err(LinkError::Timeout),
        },
    };
    match r {
        // Every frame is at least a header long: an empty read is the end of the connection.
        Ok(0) | Err(RecvError::PeerReset) => Err(LinkError::PeerGone),
        Ok(n) => Ok(n),
        Err(RecvError::Timeout | RecvError::WouldBlock) => Err(LinkError::Timeout),
        Err(e @ RecvError::Truncated { .. }) => Err(LinkError::broken(e)),
        Err(e) => Err(LinkError::os("recv on the seqpacket socket", e)),
    }
}

impl LinkOps for SeqpacketLink {
    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn send(&mut self, parts: &[&[u8]], deadline: Deadline) -> Result<(), LinkError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_frame {
            return Err(LinkError::TooLarge { len, max: self.max_frame });
        }
        self.out.clear();
        parts.iter().for_each(|p| self.out.extend_from_slice(p));
        send(&self.sock, &self.out, deadline)
    }

    fn recv<R>(&mut self, deadline: Deadline, f: impl FnOnce(&[u8]) -> R) -> Result<R, LinkError> {
        let (sock, buf) = (&self.sock, &mut self.buf);
        let r = recv_fds_in_slices(deadline, |wait| match wait {
            Some(t) => sock.recv_with_fds_timeout(buf, MAX_FDS, t),
            None => sock.recv_with_fds(buf, MAX_FDS),
        })?;
        let n = match r {
            // Every frame is at least a header long: an empty read is the end of the connection.
            Ok((0, _)) | Err(RecvFdsError::Recv(RecvError::PeerReset)) => {
                return Err(LinkError::PeerGone)
            }
            Ok((n, fds)) => {
                self.fds = (!fds.is_empty()).then_some(fds);
                n
            }
            Err(RecvFdsError::Recv(RecvError::Timeout | RecvError::WouldBlock)) => {
                return Err(LinkError::Timeout)
            }
            Err(
                e @ (RecvFdsError::Recv(RecvError::Truncated { .. })
                | RecvFdsError::TooManyFds { .. }),
            ) => return Err(LinkError::broken(e)),
            Err(e) => return Err(LinkError::os("recvmsg on the seqpacket socket", e)),
        };
        Ok(f(&self.buf[..n]))
    }

    fn send_fds(
        &mut self,
        parts: &[&[u8]],
        fds: &[BorrowedFd<'_>],
        deadline: Deadline,
    ) -> Result<(), LinkError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_frame {
            return Err(LinkError::TooLarge { len, max: self.max_frame });
        }
        self.out.clear();
        parts.iter().for_each(|p| self.out.extend_from_slice(p));
        let r = match deadline {
            Deadline::Never => self.sock.send_with_fds(&self.out, fds),
            Deadline::Now => self.sock.send_with_fds_timeout(&self.out, fds, Duration::ZERO),
            d => match d.remaining() {
                Some(t) if !t.is_zero() => self.sock.send_with_fds_timeout(&self.out, fds, t),
                _ => return Err(LinkError::Timeout),
            },
        };
        match r {
            Ok(()) => Ok(()),
            Err(SendFdsError::Send(SendError::Timeout | SendError::WouldBlock)) => {
                Err(LinkError::Timeout)
            }
            Err(SendFdsError::Send(SendError::PeerClosed)) => Err(LinkError::PeerGone),
            Err(SendFdsError::Send(SendError::TooLarge { len, max })) => {
                Err(LinkError::TooLarge { len, max })
            }
            Err(e) => Err(LinkError::os("sendmsg with fds on the seqpacket socket", e)),
        }
    }

    fn take_fds(&mut self) -> Option<Vec<OwnedFd>> {
        self.fds.take()
    }

    fn readiness(&self) -> Option<crate::channel::link::Readiness<'_>> {
        use std::os::fd::AsFd;
        let fd = self.sock.as_fd();
        Some(crate::channel::link::Readiness { read: vec![fd], write: vec![fd] })
    }
}

impl FrameIo for UdsSeqpacket {
    fn send_frame(&mut self, bytes: &[u8], deadline: Deadline) -> Result<(), LinkError> {
        send(self, bytes, deadline)
    }

    fn recv_frame(&mut self, deadline: Deadline) -> Result<(FrameHeader, Vec<u8>), LinkError> {
        let mut buf = vec![0; HEADER_LEN + HANDSHAKE_MAX_LEN as usize];
        let n = recv(self, &mut buf, deadline)?;
        let header =
            FrameHeader::decode(&buf[..n], HANDSHAKE_MAX_LEN).map_err(LinkError::broken)?;
        buf.truncate(n);
        buf.drain(..HEADER_LEN);
        Ok((header, buf))
    }
}

/// The largest frame a seqpacket socket carries on this machine.
pub(crate) fn limit() -> Result<usize, ConnectError> {
    let (a, _b) =
        UdsSeqpacket::pair().map_err(|e| ConnectError::os("creating a socket pair", e))?;
    a.max_message_size().map_err(|e| ConnectError::os("reading SO_SNDBUF", e))
}

/// Why binding failed.
pub(crate) enum BindFailure {
    /// A live listener owns the path.
    InUse,
    /// Anything else.
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Binds the listening socket at `path`.
pub(crate) fn listen(path: &Path, perm: Permissions) -> Result<UdsSeqpacketListener, BindFailure> {
    let addr = UdsAddr::path(path).map_err(|e| BindFailure::Other(Box::new(e)))?;
    let opts = BindOptions::new(CreateMode::OpenOrCreate).permissions(perm);
    UdsSeqpacketListener::bind(&addr, &opts).map_err(|e| match e {
        BindError::InUse { .. } => BindFailure::InUse,
        e => BindFailure::Other(Box::new(e)),
    })
}

/// Connects to the listener at `path`; `Err(None)` when nobody listens there.
pub(crate) fn connect(
    path: &Path,
    deadline: Deadline,
) -> Result<UdsSeqpacket, Option<ConnectError>> {
    let addr = UdsAddr::path(path).map_err(|e| Some(ConnectError::os("naming the socket", e)))?;
    let r = match deadline.remaining() {
        None => UdsSeqpacket::connect(&addr),
        Some(t) => UdsSeqpacket::connect_timeout(&addr, t),
    };
    r.map_err(|e| match e {
        SysConnect::NotFound { .. } | SysConnect::Refused { .. } => None,
        SysConnect::Timeout => Some(ConnectError::Timeout),
        e => Some(ConnectError::os("connecting to the seqpacket socket", e)),
    })
}

/// Accepts on `listener`, waiting until `deadline`.
pub(crate) fn accept(
    listener: &UdsSeqpacketListener,
    deadline: Deadline,
) -> Result<UdsSeqpacket, AcceptError> {
    let r = match deadline {
        Deadline::Never => listener.accept(),
        Deadline::Now => listener.try_accept().and_then(|s| s.ok_or(SysAccept::Timeout)),
        d => listener.accept_timeout(d.remaining().unwrap_or_default()),
    };
    r.map_err(|e| match e {
        SysAccept::Timeout => AcceptError::Timeout,
        e => AcceptError::Os { op: "accepting on the seqpacket socket", source: Box::new(e) },
    })
}
