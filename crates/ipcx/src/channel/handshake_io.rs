//! Running the sans-IO [`handshake`](crate::handshake) over a connected socket.
//!
//! Handshake frames are read exactly (header, then payload), never ahead: on rendezvous
//! sockets the setup message with its fds follows, and a read-ahead would swallow it.

use ipcx_sys::uds::PeerCred;

use super::error::ConnectError;
use super::link::{Deadline, LinkError};
use super::transport::stream::ByteIo;
use crate::frame::{FrameHeader, HEADER_LEN};
use crate::handshake::{
    Acceptor, Agreed, Connector, HandshakeError, Hello, RefuseReason, HANDSHAKE_MAX_LEN,
};

/// A connection that carries whole handshake frames.
pub(crate) trait FrameIo {
    /// Sends one whole frame.
    fn send_frame(&mut self, bytes: &[u8], deadline: Deadline) -> Result<(), LinkError>;
    /// Receives one frame of at most `HANDSHAKE_MAX_LEN` payload bytes.
    fn recv_frame(&mut self, deadline: Deadline) -> Result<(FrameHeader, Vec<u8>), LinkError>;
}

/// Reads exactly `buf.len()` bytes.
fn read_exact<T: ByteIo>(io: &mut T, buf: &mut [u8], deadline: Deadline) -> Result<(), LinkError> {
    let mut n = 0;
    while n < buf.len() {
        match io.read(&mut buf[n..], deadline)? {
            0 => return Err(LinkError::PeerGone),
            got => n += got,
        }
    }
    Ok(())
}

impl<T: ByteIo> FrameIo for T {
    fn send_frame(&mut self, mut bytes: &[u8], deadline: Deadline) -> Result<(), LinkError> {
        while !bytes.is_empty() {
            let n = self.write(bytes, deadline)?;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn recv_frame(&mut self, deadline: Deadline) -> Result<(FrameHeader, Vec<u8>), LinkError> {
        let mut head = [0u8; HEADER_LEN];
        read_exact(self, &mut head, deadline)?;
        let header = FrameHeader::decode(&head, HANDSHAKE_MAX_LEN).map_err(LinkError::broken)?;
        let mut payload = vec![0; header.len as usize];
        read_exact(self, &mut payload, deadline)?;
        Ok((header, payload))
    }
}

/// Maps a handshake error of the connector.
fn refused(e: HandshakeError) -> ConnectError {
    match e {
        e @ (HandshakeError::Refused { .. }
        | HandshakeError::Contract(_)
        | HandshakeError::Transport { .. }
        | HandshakeError::ProtocolVersion { .. }) => ConnectError::Refused(e.to_string()),
        e => ConnectError::Handshake(Box::new(e)),
    }
}

/// Connector side: sends our hello, judges the reply.
pub(crate) fn connect(
    io: &mut impl FrameIo,
    local: Hello,
    deadline: Deadline,
) -> Result<Agreed, ConnectError> {
    let connector = Connector::new(local).map_err(|e| ConnectError::Handshake(Box::new(e)))?;
    io.send_frame(&connector.hello_frame(), deadline)?;
    let (header, payload) = io.recv_frame(deadline)?;
    connector.on_reply(&header, &payload).map_err(refused)
}

/// Who may connect: uids and gids (empty lists: anyone who can reach the socket).
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowList {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl AllowList {
    /// Whether a peer with these credentials may connect.
    pub(crate) fn admits(&self, cred: Option<PeerCred>) -> bool {
        if self.uids.is_empty() && self.gids.is_empty() {
            return true;
        }
        cred.is_some_and(|c| self.uids.contains(&c.uid) || self.gids.contains(&c.gid))
    }
}

/// How an accepted connection's handshake ended.
pub(crate) enum Outcome {
    /// Agreed.
    Agreed(Agreed),
    /// We refused the peer (incompatible, not allowed, or garbage); it was told why if
    /// possible. Count it and go on accepting.
    Refused(ConnectError),
}

/// Listener side: judges the peer's hello (and `admitted`, the allow-list verdict), replies.
pub(crate) fn accept(
    io: &mut impl FrameIo,
    local: Hello,
    admitted: bool,
    deadline: Deadline,
) -> Result<Outcome, ConnectError> {
    let acceptor = Acceptor::new(local).map_err(|e| ConnectError::Handshake(Box::new(e)))?;
    let (header, payload) = match io.recv_frame(deadline) {
        Ok(frame) => frame,
        Err(e @ LinkError::Broken(_)) => return Ok(Outcome::Refused(e.into())),
        Err(e) => return Err(e.into()),
    };
    let pending = match acceptor.on_hello(&header, &payload) {
        Ok(pending) => pending,
        Err(rejection) => {
            if let Some(reply) = rejection.reply {
                let _ = io.send_frame(&reply, Deadline::Now);
            }
            return Ok(Outcome::Refused(refused(rejection.error)));
        }
    };
    if !admitted {
        let uid = pending.peer().uid;
        let reply = pending.refuse(RefuseReason::NotAllowed);
        let _ = io.send_frame(&reply, Deadline::Now);
        return Ok(Outcome::Refused(ConnectError::Refused(format!(
            "uid {uid} is not in the allow-list"
        ))));
    }
    let (reply, agreed) = pending.accept();
    io.send_frame(&reply, deadline)?;
    Ok(Outcome::Agreed(agreed))
}
