//! `floor.eventfd`: two eventfds, one per direction, handed to the peer as its stdin
//! (parent → peer) and stdout (peer → parent). A notification adds 1 to the counter and the
//! reader blocks in `poll` until it is non-zero; signals coalesce, so throughput counts the
//! notifications the reader drained. Signal only: no payload.

use std::os::fd::AsFd;

use anyhow::{Context, Result};
use ipcx_sys::eventfd::EventFd;

use super::{Channel, Endpoint, Floor, PeerIo, OP_TIMEOUT};

/// Event counters.
#[derive(Debug)]
pub struct Eventfd;

impl Floor for Eventfd {
    fn name(&self) -> &'static str {
        "floor.eventfd"
    }

    fn signal_only(&self) -> bool {
        true
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let to_peer = EventFd::new()?;
        let from_peer = EventFd::new()?;
        let peer_rx = to_peer.as_fd().try_clone_to_owned().context("cannot dup the eventfd")?;
        let peer_tx = from_peer.as_fd().try_clone_to_owned().context("cannot dup the eventfd")?;
        Ok(Channel::ready(EventEnd { tx: to_peer, rx: from_peer }).stdin(peer_rx).stdout(peer_tx))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        let rx = EventFd::from_fd(io.stdin()?);
        let tx = EventFd::from_fd(io.stdout()?);
        Ok(Box::new(EventEnd { tx, rx }))
    }
}

/// Notifies `tx`, waits on `rx`.
#[derive(Debug)]
struct EventEnd {
    tx: EventFd,
    rx: EventFd,
}

impl Endpoint for EventEnd {
    fn send(&mut self, _msg: &[u8]) -> Result<()> {
        Ok(self.tx.notify(1)?)
    }

    fn recv(&mut self, _buf: &mut [u8]) -> Result<u64> {
        Ok(self.rx.read_timeout(OP_TIMEOUT)?)
    }
}
