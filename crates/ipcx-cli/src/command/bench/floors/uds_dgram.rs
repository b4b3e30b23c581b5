//! `floor.uds-dgram`: a connected pair of Unix datagram sockets; the peer's end is its
//! stdin. A datagram must fit the sender's socket buffer (`net.core.wmem_default`), so
//! sizes above it (1 MiB by default) are skipped.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;

use anyhow::{bail, Context, Result};

use super::{Channel, Endpoint, Floor, PeerIo, OP_TIMEOUT};

/// Unix domain datagram sockets (`socketpair(AF_UNIX, SOCK_DGRAM)`).
#[derive(Debug)]
pub struct UdsDgram;

impl Floor for UdsDgram {
    fn name(&self) -> &'static str {
        "floor.uds-dgram"
    }

    /// Probes by sending one datagram of `size` bytes on a fresh pair.
    fn cannot_carry(&self, size: usize) -> Option<String> {
        let probe = UnixDatagram::pair().and_then(|(a, _b)| {
            a.set_nonblocking(true)?;
            a.send(&vec![0; size])
        });
        let err = probe.err()?;
        let wmem = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
            .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned());
        Some(format!(
            "a datagram of {size} bytes does not fit the socket send buffer ({err}); \
             raise net.core.wmem_default (now {wmem}) to measure it"
        ))
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let (ours, theirs) = UnixDatagram::pair().context("socketpair failed")?;
        Ok(Channel::ready(DgramEnd::new(ours)?).stdin(OwnedFd::from(theirs)))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        Ok(Box::new(DgramEnd::new(UnixDatagram::from(io.stdin()?))?))
    }
}

/// One datagram per message.
#[derive(Debug)]
struct DgramEnd {
    sock: UnixDatagram,
}

impl DgramEnd {
    fn new(sock: UnixDatagram) -> Result<DgramEnd> {
        sock.set_read_timeout(Some(OP_TIMEOUT))?;
        sock.set_write_timeout(Some(OP_TIMEOUT))?;
        Ok(DgramEnd { sock })
    }
}

impl Endpoint for DgramEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        let n = self.sock.send(msg).context("send failed (peer gone?)")?;
        if n != msg.len() {
            bail!("sent {n} of {} bytes of a datagram", msg.len());
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        let n = self.sock.recv(buf).context("recv failed (peer gone?)")?;
        if n != buf.len() {
            bail!("received a datagram of {n} bytes, expected {}", buf.len());
        }
        Ok(1)
    }
}
