//! The `shm.*` entries: ipcx-shm's SPSC rings and doorbells between two processes, measured
//! by the same harness and in the same run as the floors they are held against.
//!
//! | entry | receive waits | payload |
//! |---|---|---|
//! | `shm.spin` | busy-poll ([`WaitPolicy::spin_only`]) | zero copy |
//! | `shm.block` | parks at once ([`WaitPolicy::park_only`]): every receive sleeps | zero copy |
//! | `shm.adaptive` | the default bounded spin, then park | zero copy |
//! | `shm.spin.copy`, `shm.block.copy` | as above | copied in and out |
//! | `shm.throughput` | busy-poll, a receive takes up to 32 ready records | copied in and out |
//!
//! Zero copy means the payload is written in place and read in place, and here neither is
//! done: `claim(len)` + `commit` on one side, `peek` + `release` on the other, so only the
//! record header word and the ring positions move between the processes, whatever the size.
//! The latency entries are measured for latency only (no `msgs/s`: a zero-copy rate in MB/s
//! would count bytes never moved). `shm.throughput` is the one-direction copying rate (its
//! `msgs/s` column); its latency columns are those of the copying busy-poll path it shares
//! with `shm.spin.copy`.
//!
//! Sizes: without `--sizes`, the latency entries run at [`LATENCY_SIZES`] (the floors' sizes
//! plus 8 B, where the record header dominates) and `shm.throughput` at
//! [`THROUGHPUT_SIZES`]; `--sizes` applies to every entry. The channel is in [`channel`].

mod channel;

use anyhow::Result;
use ipcx_shm::WaitPolicy;

use self::channel::Mode;
use super::floors::{Channel, Endpoint, Entry, Floor, PeerIo};

/// Sizes of the latency entries when `--sizes` is not given.
pub const LATENCY_SIZES: &[usize] = &[8, 64, 4096, 65536, 1 << 20];
/// Sizes of `shm.throughput` when `--sizes` is not given.
pub const THROUGHPUT_SIZES: &[usize] = &[64, 4096];

/// Most records one receive of `shm.throughput` takes: enough to amortise the wait and the
/// harness's call, few enough that a short burst still has a measured part after its warm-up.
const THROUGHPUT_BATCH: u64 = 32;

/// Every shm entry, in table order.
pub static ALL: &[Entry] = &[
    Entry::Ready(&SPIN),
    Entry::Ready(&BLOCK),
    Entry::Ready(&ADAPTIVE),
    Entry::Ready(&SPIN_COPY),
    Entry::Ready(&BLOCK_COPY),
    Entry::Ready(&THROUGHPUT),
];

const SPIN_ONLY: WaitPolicy = WaitPolicy::spin_only();
const PARK_ONLY: WaitPolicy = WaitPolicy::park_only();
const ADAPTIVE_WAIT: WaitPolicy = WaitPolicy::spin_then_park(WaitPolicy::DEFAULT_SPIN);

static SPIN: Shm = Shm::latency("shm.spin", SPIN_ONLY, false);
static BLOCK: Shm = Shm::latency("shm.block", PARK_ONLY, false);
static ADAPTIVE: Shm = Shm::latency("shm.adaptive", ADAPTIVE_WAIT, false);
static SPIN_COPY: Shm = Shm::latency("shm.spin.copy", SPIN_ONLY, true);
static BLOCK_COPY: Shm = Shm::latency("shm.block.copy", PARK_ONLY, true);
static THROUGHPUT: Shm = Shm {
    name: "shm.throughput",
    mode: Mode { policy: SPIN_ONLY, copy: true, batch: THROUGHPUT_BATCH },
    sizes: THROUGHPUT_SIZES,
    throughput: true,
};

/// One shm entry: a name, how its endpoints wait and copy, its default sizes and whether it
/// is measured for throughput (otherwise for latency only).
#[derive(Debug)]
struct Shm {
    name: &'static str,
    mode: Mode,
    sizes: &'static [usize],
    throughput: bool,
}

impl Shm {
    const fn latency(name: &'static str, policy: WaitPolicy, copy: bool) -> Shm {
        let mode = Mode { policy, copy, batch: 1 };
        Shm { name, mode, sizes: LATENCY_SIZES, throughput: false }
    }
}

impl Floor for Shm {
    fn name(&self) -> &'static str {
        self.name
    }

    fn default_sizes(&self) -> &'static [usize] {
        self.sizes
    }

    fn measures_throughput(&self) -> bool {
        self.throughput
    }

    fn create(&self, size: usize) -> Result<Channel> {
        channel::create(size, self.mode)
    }

    fn open(&self, size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        channel::open(size, self.mode, io)
    }
}

#[cfg(test)]
mod tests {
    use super::super::floors;
    use super::*;

    #[test]
    fn entries_are_named_shm_dot_something_once_and_found_by_the_peer() {
        let names: Vec<&str> = ALL.iter().map(Entry::name).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(n.starts_with("shm."), "{n}");
            assert!(!names[..i].contains(n), "{n} twice");
            assert!(floors::find(n).is_some_and(|f| f.name() == *n), "{n}");
        }
        assert!(!floors::ALL.iter().any(|e| e.name().starts_with("shm.")));
    }
}
