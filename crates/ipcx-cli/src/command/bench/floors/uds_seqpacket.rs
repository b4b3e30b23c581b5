//! `floor.uds-seqpacket`: a connected pair of Unix seqpacket sockets; the peer's end is its
//! stdin. Each message is one packet, boundaries kept. A packet must fit the sender's socket
//! buffer (`SO_SNDBUF` - 32 bytes, from `net.core.wmem_default`), so larger sizes are
//! skipped.
//!
//! The sockets are ipcx-sys sockets: the timeout forms send and receive with `MSG_DONTWAIT`
//! and wait in `poll`, so a receive that has to wait costs a `poll` more than
//! `floor.uds-dgram`'s blocking `recv`.

use anyhow::{bail, Context, Result};
use ipcx_sys::uds::UdsSeqpacket as Socket;

use super::{Channel, Endpoint, Floor, PeerIo, OP_TIMEOUT};

/// Unix domain seqpacket sockets (`socketpair(AF_UNIX, SOCK_SEQPACKET)`).
#[derive(Debug)]
pub struct UdsSeqpacket;

impl Floor for UdsSeqpacket {
    fn name(&self) -> &'static str {
        "floor.uds-seqpacket"
    }

    /// Compares `size` with the largest packet a fresh socket can send.
    fn cannot_carry(&self, size: usize) -> Option<String> {
        let (sock, _other) = Socket::pair().ok()?;
        let max = sock.max_message_size().ok()?;
        if size <= max {
            return None;
        }
        let wmem = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
            .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned());
        Some(format!(
            "a packet of {size} bytes exceeds the socket's largest message ({max} bytes, \
             SO_SNDBUF - 32); raise net.core.wmem_default (now {wmem}) to measure it"
        ))
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let (ours, theirs) = Socket::pair().context("socketpair failed")?;
        Ok(Channel::ready(PacketEnd { sock: ours }).stdin(theirs.into_fd()))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        Ok(Box::new(PacketEnd { sock: Socket::from_fd(io.stdin()?) }))
    }
}

/// One packet per message.
#[derive(Debug)]
struct PacketEnd {
    sock: Socket,
}

impl Endpoint for PacketEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.sock.send_timeout(msg, OP_TIMEOUT).context("send failed")
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        let n = self.sock.recv_timeout(buf, OP_TIMEOUT).context("recv failed")?;
        match n {
            0 => bail!("the peer closed its socket"),
            n if n != buf.len() => bail!("received a packet of {n} bytes, expected {}", buf.len()),
            _ => Ok(1),
        }
    }
}
