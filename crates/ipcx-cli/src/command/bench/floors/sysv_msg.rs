//! `floor.sysv-msg`: one private System V message queue whose id is the rendezvous; type
//! [`TO_PEER`] carries bench → peer messages, type [`TO_BENCH`] the other way. Sizes above
//! `kernel.msgmax` (or the queue's byte limit `kernel.msgmnb`) are skipped.
//!
//! System V has no timed send or receive (ipcx-sys emulates them by polling with pauses of
//! up to 2 ms, which would swamp the measurement), so both sides block in the kernel. A
//! queue also outlives its processes and a killed peer wakes nobody, so each side watches
//! the other process (a pidfd, on a thread that sleeps until it exits) and removes the queue
//! when it is gone: blocked calls then fail with "removed", and nothing is left behind.
//! The bench, which created the queue, also removes it when its handle drops.

use anyhow::{bail, Context, Result};
use ipcx_sys::limits::SystemLimits;
use ipcx_sys::liveness::Pidfd;
use ipcx_sys::sysv_msg::{MsgKey, MsgType, SysvMsgQueue};
use ipcx_sys::CreateMode;

use super::{bench_process, Channel, Endpoint, ExitWatch, Floor, PeerIo};

/// Message type of bench → peer messages.
const TO_PEER: i64 = 1;
/// Message type of peer → bench messages.
const TO_BENCH: i64 = 2;

/// System V message queues (`msgget`).
#[derive(Debug)]
pub struct SysvMsg;

impl Floor for SysvMsg {
    fn name(&self) -> &'static str {
        "floor.sysv-msg"
    }

    fn cannot_carry(&self, size: usize) -> Option<String> {
        let limits = SystemLimits::read().sysv;
        let (msgmax, msgmnb) = (limits.msgmax.ok(), limits.msgmnb.ok());
        let over = |limit: Option<u64>| limit.filter(|&l| size as u64 > l);
        let (name, limit) = match (over(msgmax), over(msgmnb)) {
            (Some(l), _) => ("kernel.msgmax", l),
            (None, Some(l)) => ("kernel.msgmnb", l),
            (None, None) => return None,
        };
        Some(format!(
            "a message of {size} bytes exceeds {name} ({limit}), the System V queue limit; \
             raise /proc/sys/{} to measure it",
            name.replace('.', "/")
        ))
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let queue = SysvMsgQueue::builder(MsgKey::Private)
            .create_mode(CreateMode::CreateExclusive)
            .open()
            .context("cannot create a System V message queue")?;
        let id = queue.id();
        let channel = Channel::connect_with(move |peer| {
            let peer = Pidfd::open(peer.id()).context("cannot watch the peer process")?;
            let watch = ExitWatch::start(peer, move || remove(id))?;
            Ok(Box::new(QueueEnd { _watch: watch, queue, tx: TO_PEER, rx: TO_BENCH }))
        });
        Ok(channel.rendezvous(id.to_string()))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        let id: i32 = io.rendezvous()?.parse().context("the rendezvous is not a queue id")?;
        let queue = SysvMsgQueue::open_id(id).context("cannot open the bench's message queue")?;
        let watch = ExitWatch::start(bench_process()?, move || remove(id))?;
        Ok(Box::new(QueueEnd { _watch: watch, queue, tx: TO_BENCH, rx: TO_PEER }))
    }
}

/// Removes queue `id`; already gone is fine (its creator removed it).
fn remove(id: i32) {
    let _ = SysvMsgQueue::open_id(id).map(SysvMsgQueue::remove);
}

/// Sends with type `tx`, receives type `rx`.
#[derive(Debug)]
struct QueueEnd {
    /// Dropped first, so it cannot act after the queue handle removed the queue.
    _watch: ExitWatch,
    queue: SysvMsgQueue,
    tx: i64,
    rx: i64,
}

impl Endpoint for QueueEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.queue.send(self.tx, msg).context("msgsnd failed")
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        let (_, n) = self.queue.recv(MsgType::Exactly(self.rx), buf).context("msgrcv failed")?;
        if n != buf.len() {
            bail!("received a message of {n} bytes, expected {}", buf.len());
        }
        Ok(1)
    }
}
