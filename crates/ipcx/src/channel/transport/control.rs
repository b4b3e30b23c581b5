//! The rendezvous socket after the handshake: one setup message from the listener's side
//! (a Data frame with sequence number 0, fds attached), one Ack frame with sequence number 0
//! from the connector once it has opened the data path, then silence until one side goes
//! away. Its end-of-file tells a side that the other is gone.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use ipcx_sys::uds::{RecvError, RecvFdsError, UdsStream};

use crate::channel::error::ConnectError;
use crate::channel::link::{Deadline, LinkError};
use crate::frame::{FrameFlags, FrameHeader, FrameKind, HEADER_LEN};

/// Largest setup payload.
pub const MAX_SETUP: usize = 4096;

/// The wait left before `deadline`, at least a microsecond (the socket calls take zero as
/// "do not wait", which `Deadline::Now` means anyway).
fn wait_for(deadline: Deadline) -> Result<Option<Duration>, ConnectError> {
    match deadline.remaining() {
        None => Ok(None),
        Some(t) if t.is_zero() && deadline != Deadline::Now => Err(ConnectError::Timeout),
        Some(t) => Ok(Some(t)),
    }
}

/// Sends a frame of `kind` with `payload` and `fds` in one message.
fn send_frame(
    ctl: &UdsStream,
    kind: FrameKind,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), ConnectError> {
    let header = FrameHeader::for_payload(kind, FrameFlags::NONE, 0, payload)
        .map_err(|e| ConnectError::os("encoding the setup frame", e))?;
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(payload);
    let sent = ctl
        .send_with_fds(&bytes, fds)
        .map_err(|e| ConnectError::os("sending the setup message", e))?;
    if sent < bytes.len() {
        ctl.send_all(&bytes[sent..], Duration::from_secs(5))
            .map_err(|e| ConnectError::os("sending the setup message", e))?;
    }
    Ok(())
}

/// Receives a frame of `kind` (and up to `max_fds` fds), waiting until `deadline`.
fn recv_frame(
    ctl: &UdsStream,
    kind: FrameKind,
    max_fds: usize,
    deadline: Deadline,
) -> Result<(Vec<u8>, Vec<OwnedFd>), ConnectError> {
    let mut buf = vec![0; HEADER_LEN + MAX_SETUP];
    let r = match wait_for(deadline)? {
        None => ctl.recv_with_fds(&mut buf, max_fds),
        Some(t) => ctl.recv_with_fds_timeout(&mut buf, max_fds, t),
    };
    let (mut n, fds) = match r {
        Ok((0, _)) => return Err(ConnectError::PeerGone),
        Ok(got) => got,
        Err(RecvFdsError::Recv(RecvError::Timeout | RecvError::WouldBlock)) => {
            return Err(ConnectError::Timeout)
        }
        Err(RecvFdsError::Recv(RecvError::PeerReset)) => return Err(ConnectError::PeerGone),
        // More fds than the transport takes, or a message larger than a setup: the peer's
        // fault, refused like a bad handshake (the fds were closed).
        Err(
            e @ (RecvFdsError::TooManyFds { .. } | RecvFdsError::Recv(RecvError::Truncated { .. })),
        ) => return Err(ConnectError::Handshake(Box::new(e))),
        Err(e) => return Err(ConnectError::os("receiving the setup message", e)),
    };
    let broken = |e: crate::frame::FrameError| ConnectError::Handshake(Box::new(e));
    while n < HEADER_LEN {
        n += recv_more(ctl, &mut buf[n..HEADER_LEN], deadline)?;
    }
    let header = FrameHeader::decode(&buf, MAX_SETUP as u32).map_err(broken)?;
    let total = HEADER_LEN + header.len as usize;
    while n < total {
        n += recv_more(ctl, &mut buf[n..total], deadline)?;
    }
    if header.kind != kind || header.seq != 0 || n != total {
        let what = format!("expected a {kind:?} setup frame, got {:?} of {n} bytes", header.kind);
        return Err(ConnectError::Handshake(what.into()));
    }
    header.check_payload(&buf[HEADER_LEN..total]).map_err(broken)?;
    buf.truncate(total);
    buf.drain(..HEADER_LEN);
    Ok((buf, fds))
}

/// Reads more bytes of a setup frame.
fn recv_more(ctl: &UdsStream, buf: &mut [u8], deadline: Deadline) -> Result<usize, ConnectError> {
    let r = match wait_for(deadline)? {
        None => ctl.recv(buf),
        Some(t) => ctl.recv_timeout(buf, t),
    };
    match r {
        Ok(0) | Err(RecvError::PeerReset) => Err(ConnectError::PeerGone),
        Ok(n) => Ok(n),
        Err(RecvError::Timeout | RecvError::WouldBlock) => Err(ConnectError::Timeout),
        Err(e) => Err(ConnectError::os("receiving the setup message", e)),
    }
}

/// Listener side: describes the data path (`payload`, `fds`) to the connector.
pub fn send_setup(
    ctl: &UdsStream,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), ConnectError> {
    send_frame(ctl, FrameKind::Data, payload, fds)
}

/// Connector side: receives the description of the data path.
pub fn recv_setup(
    ctl: &UdsStream,
    max_fds: usize,
    deadline: Deadline,
) -> Result<(Vec<u8>, Vec<OwnedFd>), ConnectError> {
    recv_frame(ctl, FrameKind::Data, max_fds, deadline)
}

/// Connector side: confirms that the data path is open.
pub fn send_ready(ctl: &UdsStream) -> Result<(), ConnectError> {
    send_frame(ctl, FrameKind::Ack, &[], &[])
}

/// Listener side: waits for the connector's confirmation.
pub fn recv_ready(ctl: &UdsStream, deadline: Deadline) -> Result<(), ConnectError> {
    recv_frame(ctl, FrameKind::Ack, 0, deadline).map(drop)
}

/// Whether the other side of the rendezvous socket is gone (closed or dead). Bytes after
/// the setup are a protocol violation.
pub fn peer_gone(ctl: &UdsStream) -> Result<bool, LinkError> {
    let mut byte = [0u8; 1];
    match ctl.try_recv(&mut byte) {
        Ok(None) => Ok(false),
        Ok(Some(0)) | Err(RecvError::PeerReset) => Ok(true),
        Ok(Some(_)) => Err(LinkError::broken(UnexpectedBytes)),
        Err(RecvError::WouldBlock) => Ok(false),
        Err(e) => Err(LinkError::os("checking the rendezvous socket", e)),
    }
}

/// The peer wrote to the rendezvous socket after the setup.
#[derive(Debug, thiserror::Error)]
#[error("the peer wrote to the rendezvous socket after the setup")]
struct UnexpectedBytes;
