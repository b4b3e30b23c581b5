//! `posix-mq`: two POSIX message queues, one per direction, one frame per queue message.
//!
//! Setup: the listener's side creates `ipcx.<ns>.<name>.<id>.up` (connector → listener) and
//! `….down` (listener → connector) exclusively, with the channel's permissions and a
//! capacity of `min(msg_max, 10)` messages of the agreed largest frame, and sends the id in
//! the setup message. The connector opens both by name and confirms; the listener then
//! unlinks both names. The queues stay usable through the open descriptors and are freed by
//! the kernel when the last one closes, so nothing is left in the mqueue filesystem once the
//! connection is set up, whatever happens next (a crash before the confirmation leaves
//! nothing either: the creating handles unlink on drop).
//!
//! Limits: a frame (24-byte header and payload) is at most
//! `/proc/sys/fs/mqueue/msgsize_max` bytes ([`limit`]). Each connection charges two queues
//! of `depth × (max_frame + ~100)` bytes against the user's `RLIMIT_MSGQUEUE` (819200 bytes
//! by default: about four connections with 8 KiB frames); exceeding it fails the setup with
//! an error saying which limit to raise.
//!
//! Waits: send and receive are one `mq_timedsend`/`mq_timedreceive` each, with the
//! deadline cut into slices of at most [`PEER_CHECK_INTERVAL`]. A queue cannot tell that
//! its peer died, so when a slice ends without a message (or without room) the link asks
//! the rendezvous socket ([`control::peer_gone`]) and, if the peer is gone, tries the queue
//! once more before reporting [`LinkError::PeerGone`]. The fast path thus costs one system
//! call; a dead peer is noticed within one slice. (Queue descriptors are pollable on Linux,
//! but polling before each receive would double the cost of every message.) A send to a
//! dead peer succeeds while its queue has room and fails with `PeerGone` once it is full.

use std::time::Duration;

use ipcx_sys::posix_mq::{PosixMq, RecvError, SendError};
use ipcx_sys::uds::UdsStream;
use ipcx_sys::CreateMode;

use super::control::{self, recv_ready, recv_setup, send_ready, send_setup};
use super::{Link, Setup};
use crate::channel::error::ConnectError;
use crate::channel::link::{Deadline, LinkError, LinkOps, PEER_CHECK_INTERVAL};

/// The largest message of a POSIX queue: the largest frame.
const MSGSIZE_MAX: &str = "/proc/sys/fs/mqueue/msgsize_max";
/// The largest message count of a POSIX queue.
const MSG_MAX: &str = "/proc/sys/fs/mqueue/msg_max";
/// Messages per queue when `msg_max` allows it.
const DEPTH: usize = 10;
/// Priority of every frame (all equal, so the queue is FIFO).
const PRIO: u32 = 0;

/// A kernel limit file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProcLimitError {
    /// The file is missing or unreadable.
    #[error("cannot read {0}; check that /proc is mounted and the kernel has this IPC feature")]
    Unreadable(&'static str, #[source] std::io::Error),
    /// The file does not hold a number.
    #[error("{0} does not hold a number; please report this kernel's format")]
    Malformed(&'static str),
}

/// Reads the number in a `/proc/sys` limit file.
pub(super) fn proc_limit(path: &'static str) -> Result<usize, ProcLimitError> {
    let text = std::fs::read_to_string(path).map_err(|e| ProcLimitError::Unreadable(path, e))?;
    ipcx_sys::limits::parse_u64(&text)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or(ProcLimitError::Malformed(path))
}

/// The largest frame on this machine: `msgsize_max`.
pub(crate) fn limit() -> Result<usize, ConnectError> {
    proc_limit(MSGSIZE_MAX).map_err(|e| ConnectError::os("reading the posix-mq limit", e))
}

/// Messages per queue: [`DEPTH`], or fewer if `msg_max` is lower.
fn depth() -> usize {
    proc_limit(MSG_MAX).map_or(DEPTH, |max| max.clamp(1, DEPTH))
}

/// The names of the two queues of connection `id` (`up`: connector → listener).
fn queue_names(setup: &Setup<'_>, id: &str) -> (String, String) {
    let name = |dir| setup.namespace.object_name(&format!("{}.{id}.{dir}", setup.name));
    (name("up"), name("down"))
}

/// Listener side: creates both queues, names them, waits for the connector, unlinks them.
pub(crate) fn accept(ctl: UdsStream, setup: &Setup<'_>) -> Result<Link, ConnectError> {
    let id = format!("{:016x}", crate::node::random_u64());
    let (up_name, down_name) = queue_names(setup, &id);
    let depth = depth();
    let create = |name: &str| {
        PosixMq::builder(name)
            .create_mode(CreateMode::CreateExclusive)
            .permissions(setup.permissions)
            .capacity(depth, setup.max_frame)
            .open()
            .map_err(|e| ConnectError::os("creating a POSIX message queue", e))
    };
    // Both names are unlinked when these handles drop, on every early return.
    let (mut up, mut down) = (create(&up_name)?, create(&down_name)?);
    send_setup(&ctl, id.as_bytes(), &[])?;
    recv_ready(&ctl, setup.deadline)?;
    let unlink = |e| ConnectError::os("unlinking a POSIX message queue", e);
    up.remove().map_err(unlink)?;
    down.remove().map_err(unlink)?;
    MqLink::new(down, up, ctl, setup.max_frame).map(Link::PosixMq)
}

/// Connector side: opens both queues named by the setup message and confirms.
pub(crate) fn connect(ctl: UdsStream, setup: &Setup<'_>) -> Result<Link, ConnectError> {
    let (payload, _) = recv_setup(&ctl, 0, setup.deadline)?;
    let id = std::str::from_utf8(&payload)
        .ok()
        .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            ConnectError::Handshake("posix-mq setup does not hold a connection id".into())
        })?;
    let (up_name, down_name) = queue_names(setup, id);
    let open = |name: &str| {
        PosixMq::builder(name)
            .create_mode(CreateMode::Open)
            .open()
            .map_err(|e| ConnectError::os("opening a POSIX message queue", e))
    };
    let (up, down) = (open(&up_name)?, open(&down_name)?);
    let link = MqLink::new(up, down, ctl, setup.max_frame)?;
    send_ready(&link.ctl)?;
    Ok(Link::PosixMq(link))
}

/// The data path of one `posix-mq` connection.
pub(crate) struct MqLink {
    /// The queue we send on.
    tx: PosixMq,
    /// The queue we receive from.
    rx: PosixMq,
    /// The rendezvous socket: its end-of-file says the peer is gone.
    ctl: UdsStream,
    /// Largest frame we send.
    max_frame: usize,
    /// Receive buffer, as long as `rx`'s message size.
    rbuf: Vec<u8>,
    /// Send buffer for frames given in several parts.
    sbuf: Vec<u8>,
}

impl MqLink {
    fn new(
        tx: PosixMq,
        rx: PosixMq,
        ctl: UdsStream,
        max_frame: usize,
    ) -> Result<MqLink, ConnectError> {
        let attr = rx.attributes().map_err(|e| ConnectError::os("reading queue attributes", e))?;
        let rbuf = vec![0; attr.msgsize];
        Ok(MqLink { tx, rx, ctl, max_frame, rbuf, sbuf: Vec::with_capacity(max_frame) })
    }

    /// The wait of the next attempt: `None` means "try without waiting".
    fn slice(deadline: Deadline) -> Option<Duration> {
        deadline.slice(PEER_CHECK_INTERVAL)
    }
}

impl LinkOps for MqLink {
    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn readiness(&self) -> Option<crate::channel::link::Readiness<'_>> {
        use std::os::fd::AsFd;
        // Queue descriptors are pollable on Linux; the rendezvous socket reads end-of-file
        // when the peer is gone.
        let read = vec![self.rx.as_fd(), self.ctl.as_fd()];
        Some(crate::channel::link::Readiness {
            read,
            write: vec![self.tx.as_fd(), self.ctl.as_fd()],
        })
    }

    fn send(&mut self, parts: &[&[u8]], deadline: Deadline) -> Result<(), LinkError> {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        if len > self.max_frame {
            return Err(LinkError::TooLarge { len, max: self.max_frame });
        }
        let msg: &[u8] = match parts {
            [one] => one,
            _ => {
                self.sbuf.clear();
                parts.iter().for_each(|p| self.sbuf.extend_from_slice(p));
                &self.sbuf
            }
        };
        loop {
            let r = match MqLink::slice(deadline) {
                Some(t) => self.tx.send_timeout(msg, PRIO, t),
                None => self.tx.try_send(msg, PRIO),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(SendError::Full | SendError::Timeout) => {
                    if control::peer_gone(&self.ctl)? {
                        return Err(LinkError::PeerGone);
                    }
                    if deadline.expired() {
                        return Err(LinkError::Timeout);
                    }
                }
                Err(SendError::TooLarge { msgsize, .. }) => {
                    return Err(LinkError::TooLarge { len, max: msgsize })
                }
                Err(e) => return Err(LinkError::os("mq_timedsend on the posix-mq queue", e)),
            }
        }
    }

    fn recv<R>(&mut self, deadline: Deadline, f: impl FnOnce(&[u8]) -> R) -> Result<R, LinkError> {
        let os = |e| LinkError::os("mq_timedreceive on the posix-mq queue", e);
        loop {
            let r = match MqLink::slice(deadline) {
                Some(t) => self.rx.recv_timeout(&mut self.rbuf, t),
                None => self.rx.try_recv(&mut self.rbuf),
            };
            match r {
                Ok((n, _)) => return Ok(f(&self.rbuf[..n])),
                Err(RecvError::Empty | RecvError::Timeout) => {
                    if control::peer_gone(&self.ctl)? {
                        // Whatever the peer sent before it went is already queued.
                        return match self.rx.try_recv(&mut self.rbuf) {
                            Ok((n, _)) => Ok(f(&self.rbuf[..n])),
                            Err(RecvError::Empty) => Err(LinkError::PeerGone),
                            Err(e) => Err(os(e)),
                        };
                    }
                    if deadline.expired() {
                        return Err(LinkError::Timeout);
                    }
                }
                Err(e) => return Err(os(e)),
            }
        }
    }
}
