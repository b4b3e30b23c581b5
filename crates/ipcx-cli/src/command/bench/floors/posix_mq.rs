//! `floor.posix-mq`: two POSIX message queues, one per direction, named from the
//! rendezvous. Each holds [`DEPTH`] messages (or `fs.mqueue.msg_max` if lower) of exactly
//! the message size; sizes above `fs.mqueue.msgsize_max` are skipped, since an unprivileged
//! process could not create such a queue. The bench creates both and unlinks their names
//! once the peer has opened them. Every send and receive is the kernel's timed form.

use anyhow::{bail, Context, Result};
use ipcx_sys::limits::SystemLimits;
use ipcx_sys::posix_mq::PosixMq as Queue;
use ipcx_sys::CreateMode;

use super::{unique_name, Channel, Endpoint, Floor, PeerIo, OP_TIMEOUT};

/// Messages a queue holds: the default `fs.mqueue.msg_max`.
const DEPTH: usize = 10;
/// Priority of every message.
const PRIO: u32 = 0;

/// Suffix of the queue bench → peer.
const TO_PEER: &str = "to-peer";
/// Suffix of the queue peer → bench.
const TO_BENCH: &str = "to-bench";

/// POSIX message queues (`mq_open`).
#[derive(Debug)]
pub struct PosixMq;

impl Floor for PosixMq {
    fn name(&self) -> &'static str {
        "floor.posix-mq"
    }

    fn cannot_carry(&self, size: usize) -> Option<String> {
        let max = SystemLimits::read().posix_mq.msgsize_max.ok()?;
        (size as u64 > max).then(|| {
            format!(
                "a message of {size} bytes exceeds fs.mqueue.msgsize_max ({max}), the largest \
                 POSIX queue message; raise /proc/sys/fs/mqueue/msgsize_max to measure it"
            )
        })
    }

    fn create(&self, size: usize) -> Result<Channel> {
        let depth = SystemLimits::read()
            .posix_mq
            .msg_max
            .map_or(DEPTH, |m| usize::try_from(m).unwrap_or(DEPTH).clamp(1, DEPTH));
        let base = unique_name("mq");
        let create = |dir| {
            let name = queue_name(&base, dir);
            Queue::builder(&name)
                .create_mode(CreateMode::CreateExclusive)
                .capacity(depth, size)
                .open()
                .with_context(|| format!("cannot create the message queue /{name}"))
        };
        let (mut to_peer, mut to_bench) = (create(TO_PEER)?, create(TO_BENCH)?);
        let channel = Channel::connect_with(move |_| {
            // The peer has opened both queues: the names are no longer needed.
            to_peer.remove().context("cannot unlink the message queue")?;
            to_bench.remove().context("cannot unlink the message queue")?;
            Ok(Box::new(QueueEnd { tx: to_peer, rx: to_bench }))
        });
        Ok(channel.rendezvous(base))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        let base = io.rendezvous()?;
        let open = |dir| {
            let name = queue_name(base, dir);
            let queue = Queue::builder(&name).create_mode(CreateMode::Open).open();
            queue.with_context(|| format!("cannot open the message queue /{name}"))
        };
        Ok(Box::new(QueueEnd { tx: open(TO_BENCH)?, rx: open(TO_PEER)? }))
    }
}

fn queue_name(base: &str, direction: &str) -> String {
    format!("{base}.{direction}")
}

/// Sends to `tx`, receives from `rx`.
#[derive(Debug)]
struct QueueEnd {
    tx: Queue,
    rx: Queue,
}

impl Endpoint for QueueEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send_timeout(msg, PRIO, OP_TIMEOUT).context("mq send failed")
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        let (n, _prio) = self.rx.recv_timeout(buf, OP_TIMEOUT).context("mq receive failed")?;
        if n != buf.len() {
            bail!("received a message of {n} bytes, expected {}", buf.len());
        }
        Ok(1)
    }
}
