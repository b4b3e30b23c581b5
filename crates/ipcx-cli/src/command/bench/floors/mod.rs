//! The raw floors: one file per OS primitive, each a [`Floor`] in the [`ALL`] table.
//!
//! A floor says how to make a channel between the bench (the parent) and its peer process,
//! and how each side sends and receives one message on it; the harness does the rest
//! (spawning and pinning the peer, warm-up, ping-pong timing, throughput, timeouts).
//!
//! Adding a floor: write `floors/<primitive>.rs` with a unit struct implementing [`Floor`]
//! (and an [`Endpoint`] for each side, or reuse [`stream::StreamEnd`]), declare the module
//! below and turn its `Entry::NotWired` line into `Entry::Ready(&<file>::<Struct>)`.

mod eventfd;
mod pipe;
pub mod stream;
mod tcp;
mod uds_dgram;
mod uds_stream;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// Every floor `ipcx bench` knows, in table order.
pub static ALL: &[Entry] = &[
    // TODO(lead): busy-wait on one cache line in shm (ipcx_sys::posix_shm + mapping).
    Entry::NotWired("floor.spin"),
    // TODO(lead): futex wait/wake on a shm word (ipcx_sys::futex); signal only.
    Entry::NotWired("floor.futex"),
    Entry::Ready(&eventfd::Eventfd),
    Entry::Ready(&pipe::Pipe),
    // TODO(lead): two FIFOs by path in the rendezvous (ipcx_sys::pipe); reuse StreamEnd.
    Entry::NotWired("floor.fifo"),
    Entry::Ready(&uds_stream::UdsStream),
    // TODO(lead): SOCK_SEQPACKET socketpair (ipcx_sys::uds), one end as the peer's stdin.
    Entry::NotWired("floor.uds-seqpacket"),
    Entry::Ready(&uds_dgram::UdsDgram),
    Entry::Ready(&tcp::Tcp),
    // TODO(lead): two queues by name (ipcx_sys::posix_mq); sizes above msgsize_max skipped.
    Entry::NotWired("floor.posix-mq"),
    // TODO(lead): one queue, two mtypes, id in the rendezvous (ipcx_sys::sysv_msg); msgmax.
    Entry::NotWired("floor.sysv-msg"),
    // TODO(lead): two named semaphores (ipcx_sys::posix_sem); signal only.
    Entry::NotWired("floor.posix-sem"),
    // TODO(lead): one set of two semaphores (ipcx_sys::sysv_sem); signal only.
    Entry::NotWired("floor.sysv-sem"),
];

/// How long one send or receive may block where the primitive has a timeout; the harness's
/// watchdog covers the primitives that do not (it kills the peer, which ends their waits).
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// A line of the floor table.
#[derive(Clone, Copy)]
pub enum Entry {
    /// A floor that can be measured.
    Ready(&'static dyn Floor),
    /// A floor whose primitive is not wired to the bench yet.
    NotWired(&'static str),
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if matches!(self, Entry::Ready(_)) { "Ready" } else { "NotWired" };
        write!(f, "{state}({})", self.name())
    }
}

impl Entry {
    /// The entry name, e.g. `floor.pipe`.
    pub fn name(&self) -> &'static str {
        match self {
            Entry::Ready(f) => f.name(),
            Entry::NotWired(name) => name,
        }
    }
}

/// The floor with this name, if it can be measured.
pub fn find(name: &str) -> Option<&'static dyn Floor> {
    ALL.iter().find_map(|e| match e {
        Entry::Ready(f) if f.name() == name => Some(*f),
        _ => None,
    })
}

/// One OS primitive measured between two processes.
pub trait Floor: Sync {
    /// The entry name: `floor.<primitive>`.
    fn name(&self) -> &'static str;

    /// True for primitives that only signal (futex, eventfd, semaphores): they are measured
    /// once at size 0 and every requested size is skipped as carrying no payload.
    fn signal_only(&self) -> bool {
        false
    }

    /// Why `size`-byte messages cannot be measured on this system, or `None` if they can.
    /// Said so the user knows what limit to raise.
    fn cannot_carry(&self, _size: usize) -> Option<String> {
        None
    }

    /// Parent side, before the peer starts: makes the channel for `size`-byte messages.
    fn create(&self, size: usize) -> Result<Channel>;

    /// Peer side: opens the peer's end from what [`Floor::create`] handed over.
    fn open(&self, size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>>;
}

/// One side of a channel, moving whole messages.
pub trait Endpoint {
    /// Sends one message: all of `msg` (empty for signal-only floors).
    fn send(&mut self, msg: &[u8]) -> Result<()>;

    /// Waits for one message, filling all of `buf`, and returns how many messages that
    /// accounts for: 1, or more for counters that coalesce signals (eventfd).
    fn recv(&mut self, buf: &mut [u8]) -> Result<u64>;
}

/// The parent half of a channel and what the peer process gets.
pub struct Channel {
    /// The peer's stdin (a channel fd, or null).
    pub stdin: Stdio,
    /// The peer's stdout (a channel fd, or null).
    pub stdout: Stdio,
    /// A name the peer opens (path, port, object name), passed as `--rendezvous`.
    pub rendezvous: Option<String>,
    /// Makes the parent's endpoint once the peer said it is ready.
    pub connect: Connect,
}

/// Makes the parent's endpoint, given the started peer (e.g. to take its stdin pipe).
pub type Connect = Box<dyn FnOnce(&mut Child) -> Result<Box<dyn Endpoint>>>;

impl Channel {
    /// A channel whose parent endpoint exists already; nothing handed to the peer yet.
    pub fn ready(endpoint: impl Endpoint + 'static) -> Channel {
        Channel::connect_with(move |_| Ok(Box::new(endpoint)))
    }

    /// A channel whose parent endpoint is made by `connect` after the peer is ready.
    pub fn connect_with(
        connect: impl FnOnce(&mut Child) -> Result<Box<dyn Endpoint>> + 'static,
    ) -> Channel {
        Channel {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            rendezvous: None,
            connect: Box::new(connect),
        }
    }

    /// Hands `stdin` to the peer as its standard input.
    pub fn stdin(mut self, stdin: impl Into<Stdio>) -> Channel {
        self.stdin = stdin.into();
        self
    }

    /// Hands `stdout` to the peer as its standard output.
    pub fn stdout(mut self, stdout: impl Into<Stdio>) -> Channel {
        self.stdout = stdout.into();
        self
    }

    /// Passes `rendezvous` to the peer.
    pub fn rendezvous(mut self, rendezvous: impl Into<String>) -> Channel {
        self.rendezvous = Some(rendezvous.into());
        self
    }
}

/// What the peer process received from [`Floor::create`].
#[derive(Debug)]
pub struct PeerIo {
    rendezvous: Option<String>,
}

impl PeerIo {
    /// The peer's view, with the `--rendezvous` argument it was started with.
    pub fn new(rendezvous: Option<String>) -> PeerIo {
        PeerIo { rendezvous }
    }

    /// The channel fd handed over as stdin.
    pub fn stdin(&self) -> Result<OwnedFd> {
        dup(io::stdin().as_fd().try_clone_to_owned(), "stdin")
    }

    /// The channel fd handed over as stdout.
    pub fn stdout(&self) -> Result<OwnedFd> {
        dup(io::stdout().as_fd().try_clone_to_owned(), "stdout")
    }

    /// The rendezvous argument.
    pub fn rendezvous(&self) -> Result<&str> {
        self.rendezvous.as_deref().context("this floor needs --rendezvous; `ipcx bench` passes it")
    }
}

fn dup(fd: io::Result<OwnedFd>, what: &str) -> Result<OwnedFd> {
    fd.with_context(|| format!("cannot duplicate the peer's {what}"))
}
