//! `floor.uds-stream`: a connected pair of Unix stream sockets; the peer's end is its stdin.

use std::os::unix::net::UnixStream;

use anyhow::{Context, Result};

use super::stream::StreamEnd;
use super::{Channel, Endpoint, Floor, PeerIo, OP_TIMEOUT};

/// Unix domain stream sockets (`socketpair(AF_UNIX, SOCK_STREAM)`).
#[derive(Debug)]
pub struct UdsStream;

impl Floor for UdsStream {
    fn name(&self) -> &'static str {
        "floor.uds-stream"
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let (ours, theirs) = UnixStream::pair().context("socketpair failed")?;
        Ok(Channel::ready(end(ours)?).stdin(std::os::fd::OwnedFd::from(theirs)))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        Ok(Box::new(end(UnixStream::from(io.stdin()?))?))
    }
}

fn end(sock: UnixStream) -> Result<StreamEnd<UnixStream, UnixStream>> {
    sock.set_read_timeout(Some(OP_TIMEOUT))?;
    sock.set_write_timeout(Some(OP_TIMEOUT))?;
    let reader = sock.try_clone().context("cannot clone the socket")?;
    Ok(StreamEnd::new(reader, sock))
}
