//! The channel of a `chan.*` entry: an [`ipcx::Channel`] named [`NAME`] in a fresh random
//! namespace (`ipcx-bench-<pid>-<hex>`), which the bench listens in and the peer connects to.
//!
//! The peer connects while it opens its end, before it says `ready`, and connecting waits
//! for the handshake: so the bench accepts from a thread started in [`create`] and takes the
//! accepted channel once the peer is ready. The namespace name is the peer's `--rendezvous`.
//!
//! Lifecycle: the bench owns the namespace's runtime directory ([`Scratch`]) and removes it,
//! with whatever is left in it, when its end is dropped (or when the peer never came). The
//! transports remove their own kernel objects when the channel closes or the peer dies.

use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipcx::channel::{
    Channel as IpcxChannel, ChannelBuilder, SendMode, Transport, DEFAULT_MAX_MESSAGE,
};
use ipcx::Namespace;

use super::super::floors::{Channel, Endpoint, PeerIo, Scratch, OP_TIMEOUT};

/// The endpoint name inside the namespace.
pub const NAME: &str = "bench";
/// How long the bench's accept waits for the peer (as long as the peer may take to start).
const ACCEPT_WITHIN: Duration = Duration::from_secs(10);
/// How long the in-process probe's connect waits.
const PROBE_WITHIN: Duration = Duration::from_secs(5);

/// How an entry builds its channel; both sides build it alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The transport.
    pub transport: Transport,
    /// `shm`: how long a receive busy-polls before it parks.
    pub spin: Duration,
}

impl Config {
    /// The builder of either side for `size`-byte messages.
    fn builder(&self, ns: &Namespace, size: usize) -> ChannelBuilder {
        let builder = IpcxChannel::builder(NAME, self.transport)
            .namespace(ns.clone())
            .send_mode(SendMode::Buffered)
            .spin(self.spin);
        if size > DEFAULT_MAX_MESSAGE {
            builder.max_message(size)
        } else {
            builder
        }
    }
}

/// Whether `size`-byte messages can be measured over `config`: connects once, within this
/// process, and checks the channel's `max_message`. The error says why not.
pub fn probe(config: Config, size: usize) -> Result<()> {
    let t = config.transport;
    let scratch = Scratch::new()?;
    let mut listener = config
        .builder(&scratch.ns, size)
        .listen()
        .with_context(|| format!("cannot listen over {t}"))?;
    let accept = thread::Builder::new()
        .name("ipcx-bench-probe".into())
        .spawn(move || listener.accept_timeout(PROBE_WITHIN).map(|c| c.max_message()))
        .context("cannot start the probe's accept thread")?;
    // On a failed connect the accept thread is left to time out on its own.
    let ours = config
        .builder(&scratch.ns, size)
        .connect_timeout(PROBE_WITHIN)
        .with_context(|| format!("cannot connect over {t}"))?;
    let theirs = accept
        .join()
        .map_err(|_| anyhow!("the probe's accept thread panicked"))?
        .with_context(|| format!("cannot accept over {t}"))?;
    let max = ours.max_message().min(theirs);
    if size > max {
        bail!("{size}-byte messages exceed this {t} channel's max_message ({max} bytes)");
    }
    Ok(())
}

/// Bench side: listens in a fresh namespace and accepts the peer from a thread.
pub fn create(config: Config, size: usize) -> Result<Channel> {
    let t = config.transport;
    let scratch = Scratch::new()?;
    let mut listener = config
        .builder(&scratch.ns, size)
        .listen()
        .with_context(|| format!("cannot listen over {t}"))?;
    let accept = thread::Builder::new()
        .name("ipcx-bench-accept".into())
        .spawn(move || listener.accept_timeout(ACCEPT_WITHIN))
        .context("cannot start the accept thread")?;
    let rendezvous = scratch.ns.name().to_owned();
    let channel = Channel::connect_with(move |_peer| {
        let chan = accept
            .join()
            .map_err(|_| anyhow!("the accept thread panicked"))?
            .with_context(|| format!("cannot accept the peer's connection over {t}"))?;
        Ok(Box::new(ChanEnd { chan, _scratch: Some(scratch) }))
    });
    Ok(channel.rendezvous(rendezvous))
}

/// Peer side: connects to the bench's namespace.
pub fn open(config: Config, size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
    let t = config.transport;
    let ns = Namespace::new(io.rendezvous()?).context("the bench's namespace is invalid")?;
    let chan = config
        .builder(&ns, size)
        .connect()
        .with_context(|| format!("cannot connect to the bench over {t}"))?;
    Ok(Box::new(ChanEnd { chan, _scratch: None }))
}

/// One side: the channel, and on the bench's side the namespace it removes when done
/// (declared after the channel, so dropped after it).
#[derive(Debug)]
struct ChanEnd {
    chan: IpcxChannel,
    _scratch: Option<Scratch>,
}

impl Endpoint for ChanEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.chan.send(msg).context("send failed")
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        let len =
            self.chan.recv_in_place(Some(OP_TIMEOUT), |msg| msg.len()).context("receive failed")?;
        if len != buf.len() {
            bail!("a message of {len} bytes where {} were sent", buf.len());
        }
        Ok(1)
    }
}
