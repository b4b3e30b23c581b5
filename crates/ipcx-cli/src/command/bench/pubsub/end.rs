//! One side of a `pubsub.*` entry: a node in a fresh random namespace
//! (`ipcx-bench-<pid>-<hex>`, the peer's `--rendezvous`), a publisher and a subscriber.
//!
//! The bench creates the namespace, its node and the `ping` publisher; the peer creates
//! the `pong` publisher and subscribes to `ping` before it says `ready`; then the bench
//! subscribes to `pong`. Nothing is sent before both subscribers are attached.
//!
//! Lifecycle: each side's node removes its objects when dropped; the bench also removes the
//! namespace's runtime directory ([`Scratch`]) after its node.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipcx::node::Node;
use ipcx::pubsub::{PubSubConfig, Publisher, RecvError, Subscriber};
use ipcx::Namespace;

use super::super::floors::{Channel, Endpoint, PeerIo, Scratch};

/// Service the bench publishes to.
const PING: &str = "ping";
/// Service the peer publishes to.
const PONG: &str = "pong";
/// Longest wait for one message: far beyond any round trip, short of a hang.
const RECV_WITHIN: Duration = Duration::from_secs(10);

/// How an entry's subscribers wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How long a receive busy-polls before it parks.
    pub spin: Duration,
}

/// The publisher config for `size`-byte messages.
fn config(size: usize) -> PubSubConfig {
    // Like the shm.* rings: 16 messages per lap for large sizes (a 16 MiB ring at 1 MiB), so
    // both measure the same memory footprint.
    let capacity = if size <= 4 << 10 { 64 } else { 16 };
    PubSubConfig { capacity, max_message: size.max(8), ..PubSubConfig::default() }
}

/// Bench side: namespace, node, `ping` publisher; subscribes to `pong` once the peer is
/// ready.
pub fn create(config_: Config, size: usize) -> Result<Channel> {
    let scratch = Scratch::new()?;
    let name = scratch.ns.name().to_owned();
    let node = Node::builder().namespace(scratch.ns.clone()).name("bench").create()?;
    let publisher = Publisher::<Vec<u8>>::create(&node, PING, config(size))
        .context("cannot create the ping publisher")?;
    let channel = Channel::connect_with(move |_peer| {
        let mut sub = Subscriber::<Vec<u8>>::open(&scratch.ns, PONG)
            .context("cannot subscribe to the peer's pong service")?;
        sub.set_spin(config_.spin);
        if !publisher.wait_for_subscribers(1, RECV_WITHIN) {
            bail!("the peer's subscriber never attached");
        }
        Ok(Box::new(End { publisher, sub, _node: node, _scratch: Some(scratch) }))
    });
    Ok(channel.rendezvous(name))
}

/// Peer side: `pong` publisher and `ping` subscriber in the bench's namespace.
pub fn open(config_: Config, size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
    let ns = Namespace::new(io.rendezvous()?).context("the bench's namespace is invalid")?;
    let node = Node::builder().namespace(ns.clone()).name("bench-peer").create()?;
    let publisher = Publisher::<Vec<u8>>::create(&node, PONG, config(size))
        .context("cannot create the pong publisher")?;
    let mut sub =
        Subscriber::<Vec<u8>>::open(&ns, PING).context("cannot subscribe to the bench's ping")?;
    sub.set_spin(config_.spin);
    Ok(Box::new(End { publisher, sub, _node: node, _scratch: None }))
}

/// One side: its publisher and subscriber, then its node, then (bench side) the namespace
/// directory, dropped in that order.
struct End {
    publisher: Publisher<Vec<u8>>,
    sub: Subscriber<Vec<u8>>,
    _node: Node,
    _scratch: Option<Scratch>,
}

impl Endpoint for End {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.publisher.send_bytes(msg).map_err(|e| anyhow::anyhow!("send failed: {e}"))
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        let len = match self.sub.recv_in_place_timeout(RECV_WITHIN, |msg| msg.len()) {
            Ok(len) => len,
            Err(RecvError::Timeout) => bail!("no message within {RECV_WITHIN:?}"),
            Err(e) => return Err(e).context("receive failed"),
        };
        if len != buf.len() {
            bail!("a message of {len} bytes where {} were sent", buf.len());
        }
        Ok(1)
    }
}
