//! `sysv-msg`: one private System V message queue, one message type per direction, one
//! frame per queue message.
//!
//! Setup: the listener's side creates an `IPC_PRIVATE` queue with the channel's permissions
//! and sends its id in the setup message; the connector opens it by id and confirms. Type
//! [`TO_CONNECTOR`] carries frames from the listener, [`TO_LISTENER`] frames from the
//! connector; both directions share the queue's byte capacity (`msg_qbytes`).
//!
//! Limits: a frame is at most `min(msgmax, msgmnb)` bytes ([`limit`]): `msgmax` caps one
//! message and a message larger than the queue's capacity (`msgmnb` at creation) could
//! never be queued.
//!
//! Lifecycle: the queue has no name and no reference count, and lives until someone removes
//! it (`IPC_RMID`), which destroys the messages in it. It must therefore be removed when the
//! second side is done with it, and a side must not remove it under a peer that still has
//! messages to read. The rules:
//! - A side that is done (its link drops) posts a "bye" (a zero-length message of its own
//!   bye type), then looks for the peer's bye, and for the end-of-file of the rendezvous
//!   socket (a peer killed with `SIGKILL` posts no bye, but its socket closes). If the peer
//!   is done too, it removes the queue. Of two sides finishing at once, at least the later
//!   sees the other's bye (both post before they look), so the queue is removed at least
//!   once; removing twice is harmless (the second removal fails and is ignored, and System V
//!   ids are not reused at once).
//! - A side that learns the peer is gone and has read everything it sent (see waits) removes
//!   the queue at once, without waiting for its own drop.
//! - During setup, the creating handle removes the queue on every early return.
//! - If both sides die (or one closes and the other dies before reading what is left), nobody
//!   is left to remove it. So the listener's side records the queue in the namespace
//!   directory (`.sysv-msg.<id>`: the queue's `ctime` and both sides' pids), every removal
//!   deletes that record, and [`crate::cleanup::clean`] removes a recorded queue whose
//!   processes are all gone (if its `ctime` still matches: ids are reused).
//!
//! Waits: `msgrcv` and `msgsnd` have no timeout and cannot watch the rendezvous socket, so
//! each link runs a watcher thread that blocks in `poll` on the rendezvous socket and on a
//! pipe the link closes when it drops. When the peer goes away (end-of-file), the watcher
//! takes the peer's bye, and then either removes the queue if it is empty (nothing left to
//! read in either direction), or posts a zero-length "peer gone" message of the type we
//! receive. Frames are never empty (they hold a 24-byte header), and messages of one type
//! are FIFO, so a receiver gets that marker exactly after the last frame the peer sent: a
//! blocking receive is one plain `msgrcv` (one system call on the fast path) that still ends
//! on the peer's death, with [`LinkError::PeerGone`] reported only once nothing is left to
//! read. A zero-length message always fits (the queue holds at most `msg_qbytes` messages,
//! and its frames are at least 24 bytes each). A removed queue (`EIDRM`/`EINVAL`) also reads
//! as `PeerGone`.
//!
//! Timed receives block in `msgrcv` too, and the watcher enforces the deadline: the receive
//! arms it (an atomic store; the watcher's pipe is written only when the watcher sleeps
//! toward a later instant), and the watcher posts a zero-length "wake-up" message of the
//! receiving type when it passes. So a zero-length message means "look again": the peer is
//! gone if the watcher says so (then what is left is read without blocking before
//! `PeerGone`), else the deadline has passed (`Timeout`) or the wake-up is stale (a receive
//! that got its frame first) and the receive blocks again. A timed receive thus costs what a
//! blocking one does; polling with `IPC_NOWAIT` and pauses, as the System V layer's timeout
//! form does, made it twice as slow as the floor. Sends try `IPC_NOWAIT` first (one system
//! call); a full queue is waited on with the timeout form in slices of
//! [`PEER_CHECK_INTERVAL`], checking the watcher's verdict between slices.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipcx_sys::pipe::{pipe, PipeReader, PipeWriter};
use ipcx_sys::sysv_msg::{MsgKey, MsgType, RecvError, SendError, SysvMsgQueue};
use ipcx_sys::uds::UdsStream;
use ipcx_sys::CreateMode;

use super::control::{self, recv_ready, recv_setup, send_ready, send_setup};
use super::posix_mq::proc_limit;
use super::{Link, Setup};
use crate::channel::error::ConnectError;
use crate::channel::link::{Deadline, LinkError, LinkOps, PEER_CHECK_INTERVAL};

/// Message type of frames from the listener's side to the connector.
pub(crate) const TO_CONNECTOR: i64 = 1;
/// Message type of frames from the connector to the listener's side.
pub(crate) const TO_LISTENER: i64 = 2;
/// Message type of the listener's side's bye.
const BYE_LISTENER: i64 = 3;
/// Message type of the connector's bye.
const BYE_CONNECTOR: i64 = 4;

/// The message types one side uses.
#[derive(Debug, Clone, Copy)]
struct Side {
    send: i64,
    recv: i64,
    bye: i64,
    peer_bye: i64,
}

const LISTENER: Side =
    Side { send: TO_CONNECTOR, recv: TO_LISTENER, bye: BYE_LISTENER, peer_bye: BYE_CONNECTOR };
const CONNECTOR: Side =
    Side { send: TO_LISTENER, recv: TO_CONNECTOR, bye: BYE_CONNECTOR, peer_bye: BYE_LISTENER };

/// The largest frame on this machine: `min(msgmax, msgmnb)`.
pub(crate) fn limit() -> Result<usize, ConnectError> {
    let read =
        |path| proc_limit(path).map_err(|e| ConnectError::os("reading the sysv-msg limits", e));
    Ok(read("/proc/sys/kernel/msgmax")?.min(read("/proc/sys/kernel/msgmnb")?))
}

/// Listener side: creates the queue, sends its id, waits for the connector.
pub(crate) fn accept(ctl: UdsStream, setup: &Setup<'_>) -> Result<Link, ConnectError> {
    // Removed on drop (we create it) on every early return until the link owns it.
    let queue = SysvMsgQueue::builder(MsgKey::Private)
        .create_mode(CreateMode::CreateExclusive)
        .permissions(setup.permissions)
        .open()
        .map_err(|e| ConnectError::os("creating a System V message queue", e))?;
    let record = record_path(&setup.namespace.dir(), queue.id());
    let ctime = queue_ctime(queue.id());
    let me = std::process::id();
    write_record(&record, ctime, &[me])?;
    send_setup(&ctl, queue.id().to_string().as_bytes(), &[])?;
    if let Err(e) = recv_ready(&ctl, setup.deadline) {
        let _ = std::fs::remove_file(&record);
        return Err(e);
    }
    let peer = ctl.peer_cred().map(|c| c.pid).unwrap_or(0);
    write_record(&record, ctime, &[me, peer])?;
    SysvLink::new(queue, ctl, LISTENER, setup.max_frame, record).map(Link::SysvMsg)
}

/// Connector side: opens the queue named by the setup message and confirms.
pub(crate) fn connect(ctl: UdsStream, setup: &Setup<'_>) -> Result<Link, ConnectError> {
    let (payload, _) = recv_setup(&ctl, 0, setup.deadline)?;
    let id = std::str::from_utf8(&payload)
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|&id| id >= 0)
        .ok_or_else(|| ConnectError::Handshake("sysv-msg setup does not hold a queue id".into()))?;
    let queue = SysvMsgQueue::open_id(id)
        .map_err(|e| ConnectError::os("opening the System V message queue", e))?;
    // We remove this queue when we are done: it must be the listener's, not any queue of
    // ours a hostile listener names.
    let owner = queue.status().map_err(|e| ConnectError::os("reading the queue's owner", e))?.uid;
    let listener = ctl.peer_cred().map_err(|e| ConnectError::os("reading SO_PEERCRED", e))?.uid;
    if owner != listener {
        let why = format!(
            "sysv-msg setup names queue {id} of uid {owner}, not the listener's ({listener})"
        );
        return Err(ConnectError::Handshake(why.into()));
    }
    let record = record_path(&setup.namespace.dir(), id);
    let link = SysvLink::new(queue, ctl, CONNECTOR, setup.max_frame, record)?;
    send_ready(&link.ctl)?;
    Ok(Link::SysvMsg(link))
}

/// Removes queue `id` if it still exists (errors mean it is already gone, or not ours to
/// remove, and change nothing for us), and its record.
fn remove_queue(id: i32, record: &Path) {
    if let Ok(q) = SysvMsgQueue::open_id(id) {
        let _ = q.remove();
    }
    let _ = std::fs::remove_file(record);
}

/// Where the listener's side records queue `id` in namespace directory `dir`.
fn record_path(dir: &Path, id: i32) -> PathBuf {
    dir.join(format!("{RECORD_PREFIX}{id}"))
}

/// Name prefix of queue records.
const RECORD_PREFIX: &str = ".sysv-msg.";

/// Writes the record of a queue: its `ctime` and the pids of the processes using it.
fn write_record(path: &Path, ctime: Option<u64>, pids: &[u32]) -> Result<(), ConnectError> {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let text = format!("{} {}\n", ctime.unwrap_or(0), pids.join(" "));
    crate::node::write_atomic(path, text.as_bytes(), 0o600)
        .map_err(|e| ConnectError::os("recording the System V queue", e))
}

/// The `ctime` of queue `id`, if it exists.
fn queue_ctime(id: i32) -> Option<u64> {
    let status = SysvMsgQueue::open_id(id).ok()?.status().ok()?;
    u64::try_from(status.ctime).ok()
}

/// Removes the recorded queues in namespace directory `dir` whose processes are all gone
/// (in a dry run, only lists them), and records of queues that no longer exist. Returns the
/// ids of the queues removed.
pub(crate) fn sweep_orphan_queues(dir: &Path, dry_run: bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_prefix(RECORD_PREFIX)?.parse().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        let mut fields = text.split_whitespace();
        let Some(Ok(ctime)) = fields.next().map(str::parse::<u64>) else { continue };
        // An unreadable pid counts as alive: leave the queue alone.
        if fields.any(|pid| pid.parse().map_or(true, crate::node::pid_alive)) {
            continue;
        }
        let ours = queue_ctime(id) == Some(ctime);
        if ours {
            removed.push(id);
        }
        if !dry_run {
            if ours {
                remove_queue(id, &entry.path());
            } else {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    removed
}

/// The data path of one `sysv-msg` connection.
pub(crate) struct SysvLink {
    queue: Arc<SysvMsgQueue>,
    /// The rendezvous socket, shared with the watcher.
    ctl: Arc<UdsStream>,
    side: Side,
    max_frame: usize,
    /// Receive buffer of `max_frame` bytes.
    rbuf: Vec<u8>,
    /// Send buffer for frames given in several parts.
    sbuf: Vec<u8>,
    /// Set by the watcher once the peer is gone.
    // SYNC: peer gone (Release in the watcher, Acquire here).
    peer_gone: Arc<AtomicBool>,
    /// We reported `PeerGone` and removed the queue.
    ended: bool,
    /// The queue's record in the namespace directory (removed with the queue).
    record: Arc<PathBuf>,
    /// Closing it stops the watcher.
    stop: Option<PipeWriter>,
    watcher: Option<JoinHandle<()>>,
    /// The deadline the watcher enforces for our receive, shared with it.
    alarm: Arc<Alarm>,
    /// Written to when the watcher must look at a deadline earlier than it sleeps toward.
    nudge: PipeWriter,
}

/// A receive's deadline, as nanoseconds since `base` (`NONE`: no receive waits with one),
/// and the instant the watcher sleeps toward, in the same units.
#[derive(Debug)]
struct Alarm {
    base: Instant,
    // SYNC: sysv alarm (SeqCst, both: the receive stores `at` then loads `planned`, the
    // watcher stores `planned` then loads `at`, so one of them sees the other's store).
    at: AtomicU64,
    planned: AtomicU64,
}

impl Alarm {
    const NONE: u64 = u64::MAX;

    fn new() -> Alarm {
        let none = || AtomicU64::new(Alarm::NONE);
        Alarm { base: Instant::now(), at: none(), planned: none() }
    }

    /// `t` in the alarm's units (at least 0, below `NONE`).
    fn ticks(&self, t: Instant) -> u64 {
        let ns = t.saturating_duration_since(self.base).as_nanos();
        u64::try_from(ns).unwrap_or(Alarm::NONE - 1).min(Alarm::NONE - 1)
    }

    /// The time from now until `ticks`.
    fn until(&self, ticks: u64) -> Duration {
        let now = self.ticks(Instant::now());
        Duration::from_nanos(ticks.saturating_sub(now))
    }
}

impl SysvLink {
    /// Takes over `queue` (removing it if this fails and we created it) and starts the
    /// watcher.
    fn new(
        mut queue: SysvMsgQueue,
        ctl: UdsStream,
        side: Side,
        max_frame: usize,
        record: PathBuf,
    ) -> Result<SysvLink, ConnectError> {
        let (stop_r, stop_w) =
            pipe().map_err(|e| ConnectError::os("creating the watcher's pipe", e))?;
        let (nudge_r, nudge_w) =
            pipe().map_err(|e| ConnectError::os("creating the watcher's pipe", e))?;
        let alarm = Arc::new(Alarm::new());
        let id = queue.id();
        let creator = side.send == LISTENER.send;
        queue.set_remove_on_drop(false);
        let (queue, ctl) = (Arc::new(queue), Arc::new(ctl));
        let peer_gone = Arc::new(AtomicBool::new(false));
        let record = Arc::new(record);
        let w = Watcher {
            queue: queue.clone(),
            ctl: ctl.clone(),
            stop: stop_r,
            nudge: nudge_r,
            alarm: alarm.clone(),
            side,
            record: record.clone(),
        };
        let flag = peer_gone.clone();
        let spawned = std::thread::Builder::new()
            .name("ipcx-sysv-watch".into())
            .spawn(move || w.run(&flag))
            .map_err(|e| {
                if creator {
                    remove_queue(id, &record);
                }
                ConnectError::os("starting the sysv-msg watcher thread", e)
            })?;
        Ok(SysvLink {
            queue,
            ctl,
            side,
            max_frame,
            rbuf: vec![0; max_frame],
            sbuf: Vec::with_capacity(max_frame),
            peer_gone,
            ended: false,
            record,
            stop: Some(stop_w),
            watcher: Some(spawned),
            alarm,
            nudge: nudge_w,
        })
    }

    /// Has the watcher wake our receive at `deadline`.
    fn arm(&self, deadline: Instant) {
        let at = self.alarm.ticks(deadline);
        // SYNC: sysv alarm
        self.alarm.at.store(at, Ordering::SeqCst);
        if self.alarm.planned.load(Ordering::SeqCst) > at {
            // A full pipe already holds a nudge; any other failure leaves the deadline to
            // the watcher's next look (at the latest its own planned instant).
            let _ = self.nudge.try_write(&[1]);
        }
    }

    /// Our receive no longer waits with a deadline (a wake-up already posted is stale).
    fn disarm(&self) {
        // SYNC: sysv alarm
        self.alarm.at.store(Alarm::NONE, Ordering::SeqCst);
    }

    /// The peer is gone and we have read all it sent: nothing will use the queue again.
    fn end(&mut self) -> LinkError {
        if !self.ended {
            self.ended = true;
            remove_queue(self.queue.id(), &self.record);
        }
        LinkError::PeerGone
    }
}

impl LinkOps for SysvLink {
    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn send(&mut self, parts: &[&[u8]], deadline: Deadline) -> Result<(), LinkError> {
        if self.ended || self.peer_gone.load(Ordering::Acquire) {
            return Err(self.end());
        }
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        if len > self.max_frame {
            return Err(LinkError::TooLarge { len, max: self.max_frame });
        }
        self.sbuf.clear();
        parts.iter().for_each(|p| self.sbuf.extend_from_slice(p));
        let mut r = self.queue.try_send(self.side.send, &self.sbuf);
        loop {
            match r {
                Ok(()) => return Ok(()),
                Err(SendError::Full | SendError::Timeout) => {
                    if self.peer_gone.load(Ordering::Acquire) {
                        return Err(self.end());
                    }
                    let Some(t) = deadline.slice(PEER_CHECK_INTERVAL) else {
                        return Err(LinkError::Timeout);
                    };
                    r = self.queue.send_timeout(self.side.send, &self.sbuf, t);
                }
                Err(SendError::Removed(_)) => return Err(self.end()),
                Err(
                    SendError::TooLarge { limit, .. } | SendError::TooLargeForQueue { limit, .. },
                ) => return Err(LinkError::TooLarge { len, max: limit }),
                Err(e) => return Err(LinkError::os("msgsnd on the sysv-msg queue", e)),
            }
        }
    }

    fn recv<R>(&mut self, deadline: Deadline, f: impl FnOnce(&[u8]) -> R) -> Result<R, LinkError> {
        if self.ended {
            return Err(LinkError::PeerGone);
        }
        let want = MsgType::Exactly(self.side.recv);
        // Once the watcher says the peer is gone, what is left is read without blocking.
        let mut draining = false;
        loop {
            let r = match deadline {
                _ if draining => self.queue.try_recv(want, &mut self.rbuf),
                Deadline::Now => self.queue.try_recv(want, &mut self.rbuf),
                Deadline::At(t) if t <= Instant::now() => self.queue.try_recv(want, &mut self.rbuf),
                Deadline::At(t) => {
                    self.arm(t);
                    let r = self.queue.recv(want, &mut self.rbuf);
                    self.disarm();
                    r
                }
                Deadline::Never => self.queue.recv(want, &mut self.rbuf),
            };
            match r {
                Ok((_, 0)) => {
                    // The watcher's marker: the peer is gone (it is posted after everything
                    // the peer sent, but a wake-up may come before some of that), or a
                    // wake-up for a deadline.
                    // SYNC: peer gone
                    if self.peer_gone.load(Ordering::Acquire) {
                        draining = true;
                    } else if deadline.expired() {
                        return Err(LinkError::Timeout);
                    }
                }
                Ok((_, n)) => return Ok(f(&self.rbuf[..n])),
                Err(RecvError::Empty | RecvError::Timeout) if draining => return Err(self.end()),
                Err(RecvError::Empty | RecvError::Timeout) => return Err(LinkError::Timeout),
                Err(RecvError::Removed(_)) => return Err(self.end()),
                Err(e) => return Err(LinkError::os("msgrcv on the sysv-msg queue", e)),
            }
        }
    }
}

impl Drop for SysvLink {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        if self.ended {
            return;
        }
        // Announce that we are done before looking at the peer: see the module docs.
        let _ = self.queue.try_send(self.side.bye, &[]);
        let peer_done = self.peer_gone.load(Ordering::Acquire)
            || self.queue.try_recv(MsgType::Exactly(self.side.peer_bye), &mut []).is_ok()
            || control::peer_gone(&self.ctl).unwrap_or(true);
        if peer_done {
            remove_queue(self.queue.id(), &self.record);
        }
    }
}

/// What the watcher thread holds.
struct Watcher {
    queue: Arc<SysvMsgQueue>,
    ctl: Arc<UdsStream>,
    stop: PipeReader,
    nudge: PipeReader,
    alarm: Arc<Alarm>,
    side: Side,
    record: Arc<PathBuf>,
}

impl Watcher {
    /// Waits for the peer to go away (or the link to drop), waking the link's receive at
    /// its deadline meanwhile; then wakes the link's waits for good.
    fn run(self, peer_gone: &AtomicBool) {
        let fds = [self.ctl.as_fd(), self.stop.as_fd(), self.nudge.as_fd()];
        loop {
            let at = self.alarm.at.load(Ordering::SeqCst);
            // SYNC: sysv alarm — announce the instant we sleep toward, then look again: a
            // receive that armed an earlier one meanwhile either sees it and nudges us, or
            // is seen here.
            self.alarm.planned.store(at, Ordering::SeqCst);
            if self.alarm.at.load(Ordering::SeqCst) != at {
                continue;
            }
            let timeout = (at != Alarm::NONE).then(|| self.alarm.until(at));
            // A poll error is taken as the peer's loss: better an ended channel than a hang.
            match ipcx_sys::poll::wait_readable(&fds, timeout) {
                Ok(Some(1)) => return,
                Ok(Some(2)) => {
                    let _ = self.nudge.try_read(&mut [0; 64]);
                }
                Ok(None) => {
                    // Still the receive's deadline (not disarmed or re-armed): wake it. A
                    // full queue needs no wake-up message: the receive is not blocked.
                    if self.alarm.at.load(Ordering::SeqCst) == at {
                        let _ = self.queue.try_send(self.side.recv, &[]);
                        let _ = self.alarm.at.compare_exchange(
                            at,
                            Alarm::NONE,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                    }
                }
                Ok(Some(_)) | Err(_) => break,
            }
        }
        // SYNC: peer gone
        peer_gone.store(true, Ordering::Release);
        // The peer's bye is no message for anyone.
        let _ = self.queue.try_recv(MsgType::Exactly(self.side.peer_bye), &mut []);
        let empty = self.queue.status().is_ok_and(|s| s.messages == 0);
        if empty || self.queue.try_send(self.side.recv, &[]).is_err() {
            // Nothing left to read either way: the queue can go now (waking any wait).
            remove_queue(self.queue.id(), &self.record);
        }
    }
}
