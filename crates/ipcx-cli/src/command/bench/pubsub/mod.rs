//! The `pubsub.*` entries: [`ipcx::pubsub`] between two processes, one service each way
//! (`ping`: bench → peer, `pong`: peer → bench), measured by the same harness and in the
//! same run as the `shm.*` entries they are held to.
//!
//! | entry | subscriber | held to (64 B p50, see [`targets`](super::targets)) |
//! |---|---|---|
//! | `pubsub.shm` | parks at once (`set_spin(ZERO)`) | 1.2 × `shm.block` |
//! | `pubsub.shm.spin` | busy-polls ([`LONG_SPIN`]); latency only | 1.2 × `shm.spin` |
//!
//! Messages are sent with `send_bytes` (one copy into the ring, Block policy) and read with
//! `recv_in_place`, which only checks the length: zero copy on the receiving side. Latency at
//! [`SIZES`] (or `--sizes`), one-direction throughput at [`THROUGHPUT_SIZE`] only.

mod end;

use std::time::Duration;

use anyhow::Result;

use self::end::Config;
use super::chan::LONG_SPIN;
use super::floors::{Channel, Endpoint, Entry, Floor, PeerIo};

/// Sizes of the `pubsub.*` entries when `--sizes` is not given.
pub const SIZES: &[usize] = &[8, 64, 4096, 65536, 1 << 20];
/// The only size at which the throughput is measured.
pub const THROUGHPUT_SIZE: usize = 64;

/// Every pubsub entry, in table order.
pub static ALL: &[Entry] = &[Entry::Ready(&BLOCK), Entry::Ready(&SPIN)];

static BLOCK: PubSub =
    PubSub { name: "pubsub.shm", config: Config { spin: Duration::ZERO }, throughput: true };
static SPIN: PubSub =
    PubSub { name: "pubsub.shm.spin", config: Config { spin: LONG_SPIN }, throughput: false };

/// One pubsub entry.
#[derive(Debug)]
struct PubSub {
    name: &'static str,
    config: Config,
    throughput: bool,
}

impl Floor for PubSub {
    fn name(&self) -> &'static str {
        self.name
    }

    fn measures_throughput(&self) -> bool {
        self.throughput
    }

    fn throughput_at(&self, size: usize) -> bool {
        self.throughput && size == THROUGHPUT_SIZE
    }

    fn default_sizes(&self) -> &'static [usize] {
        SIZES
    }

    fn create(&self, size: usize) -> Result<Channel> {
        end::create(self.config, size)
    }

    fn open(&self, size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        end::open(self.config, size, io)
    }
}
