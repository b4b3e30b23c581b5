//! `floor.sysv-sem`: one System V set of two semaphores, [`TO_PEER`] for bench → peer and
//! [`TO_BENCH`] for the other way. A send adds one (`semop`), a receive takes one
//! (`semtimedop`, bounded by [`OP_TIMEOUT`]); throughput counts every signal. Signal only.
//!
//! ipcx-sys cannot open a set by id, so the set has a random key, which is the rendezvous.
//! A value cannot exceed `SEMVMX` (32767): a sender that gets that far ahead of its receiver
//! yields until there is room again.
//!
//! A set outlives its processes, so as in `floor.sysv-msg` each side watches the other
//! process and removes the set when it exits: a killed peer fails the entry at once (waits
//! end with "removed") and a killed bench leaves no set behind. The bench, which created
//! the set, also removes it when its handle drops.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use ipcx_sys::liveness::Pidfd;
use ipcx_sys::sysv_sem::{OpError, OpenError, SemKey, SysvSemSet};
use ipcx_sys::CreateMode;

use super::{bench_process, random_u64, Channel, Endpoint, ExitWatch, Floor, PeerIo, OP_TIMEOUT};

/// Index of the semaphore bench → peer.
const TO_PEER: usize = 0;
/// Index of the semaphore peer → bench.
const TO_BENCH: usize = 1;
/// Random keys tried before giving up (a clash with an existing set is very unlikely).
const KEY_TRIES: usize = 16;

/// System V semaphore sets (`semget`).
#[derive(Debug)]
pub struct SysvSem;

impl Floor for SysvSem {
    fn name(&self) -> &'static str {
        "floor.sysv-sem"
    }

    fn signal_only(&self) -> bool {
        true
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let (set, key) = create_set()?;
        let channel = Channel::connect_with(move |peer| {
            let peer = Pidfd::open(peer.id()).context("cannot watch the peer process")?;
            let watch = ExitWatch::start(peer, move || remove(key))?;
            Ok(Box::new(SemEnd { _watch: watch, set, tx: TO_PEER, rx: TO_BENCH }))
        });
        Ok(channel.rendezvous(key.to_string()))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        let key: i32 = io.rendezvous()?.parse().context("the rendezvous is not a key")?;
        let set = SysvSemSet::builder(SemKey::Key(key), 2)
            .create_mode(CreateMode::Open)
            .open()
            .context("cannot open the bench's semaphore set")?;
        let watch = ExitWatch::start(bench_process()?, move || remove(key))?;
        Ok(Box::new(SemEnd { _watch: watch, set, tx: TO_BENCH, rx: TO_PEER }))
    }
}

/// A new set of two semaphores (both 0) under a random key that no set has yet.
fn create_set() -> Result<(SysvSemSet, i32)> {
    for _ in 0..KEY_TRIES {
        // Any non-zero key will do (0 is IPC_PRIVATE); keep the low 31 bits.
        let key = (random_u64() & 0x7fff_ffff) as i32;
        if key == 0 {
            continue;
        }
        let set = SysvSemSet::builder(SemKey::Key(key), 2)
            .create_mode(CreateMode::CreateExclusive)
            .open();
        match set {
            Ok(set) => return Ok((set, key)),
            Err(OpenError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e).context("cannot create a System V semaphore set"),
        }
    }
    bail!(
        "{KEY_TRIES} random keys all named existing semaphore sets; remove stale ones (`ipcs -s`)"
    )
}

/// Removes the set with `key`; already gone is fine (its creator removed it).
fn remove(key: i32) {
    let set = SysvSemSet::builder(SemKey::Key(key), 0).create_mode(CreateMode::Open).open();
    let _ = set.map(|mut set| set.remove());
}

/// Posts semaphore `tx`, waits on `rx`.
#[derive(Debug)]
struct SemEnd {
    /// Dropped first, so it cannot act after the set handle removed the set.
    _watch: ExitWatch,
    set: SysvSemSet,
    tx: usize,
    rx: usize,
}

impl Endpoint for SemEnd {
    fn send(&mut self, _msg: &[u8]) -> Result<()> {
        let mut deadline = None;
        loop {
            match self.set.post(self.tx) {
                Ok(()) => return Ok(()),
                // At SEMVMX: the receiver is far behind; let it catch up.
                Err(OpError::OutOfRange(_)) => {
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + OP_TIMEOUT);
                    if Instant::now() >= deadline {
                        bail!("the semaphore stayed at SEMVMX for {OP_TIMEOUT:?} (peer stuck?)");
                    }
                    std::thread::yield_now();
                }
                Err(e) => return Err(e).context("semop failed"),
            }
        }
    }

    fn recv(&mut self, _buf: &mut [u8]) -> Result<u64> {
        self.set.wait_timeout(self.rx, OP_TIMEOUT).context("semtimedop failed (peer gone?)")?;
        Ok(1)
    }
}
