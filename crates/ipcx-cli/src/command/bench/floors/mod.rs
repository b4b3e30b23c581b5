//! The raw floors: one file per OS primitive, each a [`Floor`] in the [`ALL`] table.
//!
//! A floor says how to make a channel between the bench (the parent) and its peer process,
//! and how each side sends and receives one message on it; the harness does the rest
//! (spawning and pinning the peer, warm-up, ping-pong timing, throughput, timeouts).
//!
//! Adding a floor: write `floors/<primitive>.rs` with a unit struct implementing [`Floor`]
//! (and an [`Endpoint`] for each side, or reuse [`stream::StreamEnd`]), declare the module
//! below and add an `Entry::Ready(&<file>::<Struct>)` line to [`ALL`] (or an
//! `Entry::NotWired` line while it is being written).
//!
//! Cleanup: the parent creates every named object and owns its removal. POSIX names and
//! FIFO paths are removed as soon as the peer has opened them (in [`Channel::connect`]), so
//! a kill of either process after that leaves nothing behind; System V objects live until
//! removed, so their floors also remove them when the other process exits.

mod eventfd;
mod fifo;
mod futex;
mod pipe;
mod posix_mq;
mod posix_sem;
mod spin;
pub mod stream;
mod sysv_msg;
mod sysv_sem;
mod tcp;
mod uds_dgram;
mod uds_seqpacket;
mod uds_stream;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipcx_sys::liveness::{Pidfd, PidfdWaitError};

/// Every floor `ipcx bench` knows, in table order.
pub static ALL: &[Entry] = &[
    Entry::Ready(&spin::Spin),
    Entry::Ready(&futex::Futex),
    Entry::Ready(&eventfd::Eventfd),
    Entry::Ready(&pipe::Pipe),
    Entry::Ready(&fifo::Fifo),
    Entry::Ready(&uds_stream::UdsStream),
    Entry::Ready(&uds_seqpacket::UdsSeqpacket),
    Entry::Ready(&uds_dgram::UdsDgram),
    Entry::Ready(&tcp::Tcp),
    Entry::Ready(&posix_mq::PosixMq),
    Entry::Ready(&sysv_msg::SysvMsg),
    Entry::Ready(&posix_sem::PosixSem),
    Entry::Ready(&sysv_sem::SysvSem),
];

/// The message sizes of an entry when `--sizes` is not given (unless it says otherwise).
pub const DEFAULT_SIZES: &[usize] = &[64, 4096, 65536, 1 << 20];

/// How long one send or receive may block where the primitive has a timeout; the harness's
/// watchdog covers the primitives that do not (it kills the peer, which ends their waits).
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// A name for a named object (shm, queue, semaphore, directory) that no other entry or run
/// uses: `ipcx-bench-<tag>-<pid>-<random hex>`. The pid says whose it is if one is left.
pub fn unique_name(tag: &str) -> String {
    format!("ipcx-bench-{tag}-{}-{:016x}", std::process::id(), random_u64())
}

/// A fresh namespace (`ipcx-bench-<pid>-<random hex>`) for one entry's channels or
/// services; its runtime directory is this process's own and is removed, with whatever is
/// left in it, on drop.
#[derive(Debug)]
pub struct Scratch {
    /// The namespace.
    pub ns: ipcx::Namespace,
}

impl Scratch {
    /// A namespace no other entry or run uses.
    pub fn new() -> Result<Scratch> {
        let name = format!("ipcx-bench-{}-{:016x}", std::process::id(), random_u64());
        let ns = ipcx::Namespace::new(&name).context("cannot name the bench's namespace")?;
        Ok(Scratch { ns })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.ns.dir());
    }
}

/// 64 unpredictable bits: the output of a fresh, randomly keyed std hasher.
pub fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// Runs an action once another process has exited, from a thread that sleeps on its
/// pidfd, unless the watch was dropped first. For objects that outlive processes (System V):
/// removing them when the other side dies both cleans up and ends waits it would never end.
/// The thread ends when the watched process does (or with this one); it is not joined.
#[derive(Debug)]
pub struct ExitWatch {
    /// Set on drop; checked under the lock before acting, so a dropped watch never acts.
    dropped: Arc<Mutex<bool>>,
}

impl ExitWatch {
    /// Starts watching `process`; `action` runs once it has exited.
    pub fn start(process: Pidfd, action: impl FnOnce() + Send + 'static) -> Result<ExitWatch> {
        /// One `poll` of the pidfd; the thread polls again until the process exits.
        const POLL: Duration = Duration::from_secs(3600);
        let dropped = Arc::new(Mutex::new(false));
        let flag = Arc::clone(&dropped);
        let watch = move || {
            loop {
                match process.wait_exit(POLL) {
                    Ok(()) => break,
                    Err(PidfdWaitError::Timeout) => continue,
                    Err(PidfdWaitError::Os(_)) => return,
                }
            }
            if !*flag.lock().unwrap_or_else(PoisonError::into_inner) {
                action();
            }
        };
        std::thread::Builder::new()
            .name("ipcx-exit-watch".into())
            .spawn(watch)
            .context("cannot start the exit watch thread")?;
        Ok(ExitWatch { dropped })
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        *self.dropped.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }
}

/// Peer side: a pidfd of the bench, the process that started this peer.
pub fn bench_process() -> Result<Pidfd> {
    let ppid = std::os::unix::process::parent_id();
    let pidfd = Pidfd::open(ppid).context("cannot watch the bench process")?;
    // Had the bench died before the open, this process would have a new parent by now.
    if std::os::unix::process::parent_id() != ppid {
        bail!("the bench exited");
    }
    Ok(pidfd)
}

/// A line of the floor table.
#[derive(Clone, Copy)]
pub enum Entry {
    /// A floor that can be measured.
    Ready(&'static dyn Floor),
    /// A floor whose primitive is not wired to the bench yet.
    #[expect(dead_code, reason = "every floor is wired; kept for the next primitive added")]
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

/// The entry with this name (a floor, a [`shm`](super::shm) or a [`chan`](super::chan)
/// entry), if it can be measured.
pub fn find(name: &str) -> Option<&'static dyn Floor> {
    ALL.iter()
        .chain(super::shm::ALL)
        .chain(super::chan::ALL)
        .chain(super::rpc::ALL)
        .chain(super::pubsub::ALL)
        .find_map(|e| match e {
            Entry::Ready(f) if f.name() == name => Some(*f),
            _ => None,
        })
}

/// One OS primitive (or, for `shm.*` and `chan.*` entries, one ipcx layer) measured between
/// two processes.
pub trait Floor: Sync {
    /// The entry name: `floor.<primitive>`, `shm.<mode>` or `chan.<transport>`.
    fn name(&self) -> &'static str;

    /// Whether the harness measures a one-direction rate after the round trips (`msgs/s`);
    /// entries measured for latency only say no.
    fn measures_throughput(&self) -> bool {
        true
    }

    /// Whether the throughput is measured at `size` (default: at every size when
    /// [`Floor::measures_throughput`]).
    fn throughput_at(&self, _size: usize) -> bool {
        self.measures_throughput()
    }

    /// The message sizes measured when `--sizes` is not given.
    fn default_sizes(&self) -> &'static [usize] {
        DEFAULT_SIZES
    }

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
