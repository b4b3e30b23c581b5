//! `floor.futex`: the raw blocking wake-up, a futex wait and wake on a word in a POSIX shm
//! object. Signal only.
//!
//! Each direction has a `u32` sequence word on its own cache lines, written only by its
//! sender: a send increments it (`Release`) and always calls `futex_wake`; a receive sleeps
//! in `futex_wait` until the word differs from the value it last saw (no spinning first).
//! Signals coalesce, so a receive returns how far the word moved, like an eventfd read.

use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use ipcx_sys::futex::{futex_wait, futex_wake, WaitOutcome};
use ipcx_sys::mapping::{Access, MapOptions, Mapping};
use ipcx_sys::posix_shm::PosixShm;
use ipcx_sys::CreateMode;

use super::{unique_name, Channel, Endpoint, Floor, PeerIo, OP_TIMEOUT};

/// Offset of the word bench → peer.
const TO_PEER: usize = 0;
/// Offset of the word peer → bench, two cache lines further.
const TO_BENCH: usize = 128;
/// Size of the shm object.
const LEN: usize = 256;

/// Futex wait/wake on shared memory.
#[derive(Debug)]
pub struct Futex;

impl Floor for Futex {
    fn name(&self) -> &'static str {
        "floor.futex"
    }

    fn signal_only(&self) -> bool {
        true
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let name = unique_name("futex");
        let shm = PosixShm::builder(&name)
            .size(LEN)
            .open()
            .context("cannot create the shm object in /dev/shm")?;
        let end = FutexEnd::new(map(&shm)?, TO_PEER, TO_BENCH);
        let channel = Channel::connect_with(move |_| {
            // The peer has mapped the object: the name is no longer needed.
            shm.remove().context("cannot unlink the shm object")?;
            Ok(Box::new(end))
        });
        Ok(channel.rendezvous(name))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        let shm = PosixShm::builder(io.rendezvous()?)
            .create_mode(CreateMode::Open)
            .size(LEN)
            .open()
            .context("cannot open the bench's shm object")?;
        Ok(Box::new(FutexEnd::new(map(&shm)?, TO_BENCH, TO_PEER)))
    }
}

fn map(shm: &PosixShm) -> Result<Mapping> {
    let options = MapOptions::new(Access::ReadWrite).populate(true);
    shm.map_with(options).context("cannot map the shm object")
}

/// Wakes on the word at `tx`, sleeps on the word at `rx`.
#[derive(Debug)]
struct FutexEnd {
    map: Mapping,
    tx: usize,
    rx: usize,
    /// The value of the `rx` word after the last receive.
    seen: u32,
}

impl FutexEnd {
    fn new(map: Mapping, tx: usize, rx: usize) -> FutexEnd {
        FutexEnd { map, tx, rx, seen: 0 }
    }
}

impl Endpoint for FutexEnd {
    fn send(&mut self, _msg: &[u8]) -> Result<()> {
        let word = self.map.atomic_u32_at(self.tx)?;
        // SYNC: signal published.
        word.fetch_add(1, Ordering::Release);
        futex_wake(word, 1)?;
        Ok(())
    }

    fn recv(&mut self, _buf: &mut [u8]) -> Result<u64> {
        let word = self.map.atomic_u32_at(self.rx)?;
        loop {
            // SYNC: signal published.
            let now = word.load(Ordering::Acquire);
            if now != self.seen {
                let signals = now.wrapping_sub(self.seen);
                self.seen = now;
                return Ok(u64::from(signals));
            }
            let outcome = futex_wait(word, now, Some(OP_TIMEOUT))?;
            if outcome == WaitOutcome::TimedOut && word.load(Ordering::Acquire) == now {
                bail!("no wake-up within {OP_TIMEOUT:?} (peer gone?)");
            }
        }
    }
}
