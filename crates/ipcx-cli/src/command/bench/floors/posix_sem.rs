//! `floor.posix-sem`: two POSIX named semaphores, one per direction, named from the
//! rendezvous. A send posts, a receive waits (`sem_timedwait`); each wait takes one post, so
//! throughput counts every signal. Signal only. The bench creates both and unlinks their
//! names once the peer has opened them.

use anyhow::{Context, Result};
use ipcx_sys::posix_sem::PosixSem as Sem;
use ipcx_sys::CreateMode;

use super::{unique_name, Channel, Endpoint, Floor, PeerIo, OP_TIMEOUT};

/// Suffix of the semaphore bench → peer.
const TO_PEER: &str = "to-peer";
/// Suffix of the semaphore peer → bench.
const TO_BENCH: &str = "to-bench";

/// POSIX named semaphores (`sem_open`).
#[derive(Debug)]
pub struct PosixSem;

impl Floor for PosixSem {
    fn name(&self) -> &'static str {
        "floor.posix-sem"
    }

    fn signal_only(&self) -> bool {
        true
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let base = unique_name("sem");
        let create = |dir| {
            let name = sem_name(&base, dir);
            let sem = Sem::builder(&name).create_mode(CreateMode::CreateExclusive).open();
            sem.with_context(|| format!("cannot create the semaphore /dev/shm/sem.{name}"))
        };
        let (mut to_peer, mut to_bench) = (create(TO_PEER)?, create(TO_BENCH)?);
        let channel = Channel::connect_with(move |_| {
            // The peer has opened both semaphores: the names are no longer needed.
            to_peer.remove().context("cannot unlink the semaphore")?;
            to_bench.remove().context("cannot unlink the semaphore")?;
            Ok(Box::new(SemEnd { tx: to_peer, rx: to_bench }))
        });
        Ok(channel.rendezvous(base))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        let base = io.rendezvous()?;
        let open = |dir| {
            let name = sem_name(base, dir);
            let sem = Sem::builder(&name).create_mode(CreateMode::Open).open();
            sem.with_context(|| format!("cannot open the semaphore /dev/shm/sem.{name}"))
        };
        Ok(Box::new(SemEnd { tx: open(TO_BENCH)?, rx: open(TO_PEER)? }))
    }
}

fn sem_name(base: &str, direction: &str) -> String {
    format!("{base}.{direction}")
}

/// Posts `tx`, waits on `rx`.
#[derive(Debug)]
struct SemEnd {
    tx: Sem,
    rx: Sem,
}

impl Endpoint for SemEnd {
    fn send(&mut self, _msg: &[u8]) -> Result<()> {
        self.tx.post().context("sem_post failed")
    }

    fn recv(&mut self, _buf: &mut [u8]) -> Result<u64> {
        self.rx.wait_timeout(OP_TIMEOUT).context("sem_timedwait failed (peer gone?)")?;
        Ok(1)
    }
}
