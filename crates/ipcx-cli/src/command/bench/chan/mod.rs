//! The `chan.*` entries: the public [`ipcx::channel::Channel`] API between two processes, one
//! entry per transport, measured by the same harness and in the same run as the floors of
//! the primitives underneath (`floor.<transport>`, and `shm.block` for `shm`).
//!
//! | entry | transport | held to (64 B p50, see [`targets`](super::targets)) |
//! |---|---|---|
//! | `chan.shm` | `shm`, receive parks at once (`.spin(Duration::ZERO)`) | `shm.block` |
//! | `chan.shm.spin` | `shm`, receive busy-polls ([`LONG_SPIN`]); latency only | (`shm.spin`) |
//! | `chan.<t>` for the other seven | `<t>` | `floor.<t>` |
//!
//! What a round trip costs here is what an application pays: a [`SendMode::Buffered`] send
//! from a reused buffer (frame header, sequence number, the transport's send) and a
//! `recv_in_place` that only checks the length (zero copy on `shm`; the other transports
//! hand over the bytes they read). Latency at [`SIZES`] (or `--sizes`), and one-direction
//! throughput at [`THROUGHPUT_SIZE`] only.
//!
//! Before measuring a size, [`Chan::cannot_carry`] connects once within this process: a
//! transport that cannot connect (not built yet, or refused by the system) or whose channel
//! carries less than the size is skipped with the reason, and the run goes on.
//!
//! [`SendMode::Buffered`]: ipcx::channel::SendMode::Buffered

mod end;

use std::time::Duration;

use anyhow::Result;
use ipcx::channel::Transport;

use self::end::Config;
use super::floors::{Channel, Endpoint, Entry, Floor, PeerIo};

/// Sizes of the `chan.*` entries when `--sizes` is not given.
pub const SIZES: &[usize] = &[64, 4096];
/// The only size at which the throughput is measured.
pub const THROUGHPUT_SIZE: usize = 64;
/// Spin of `chan.shm.spin`: far longer than any round trip, so a receive never parks.
pub const LONG_SPIN: Duration = Duration::from_secs(1);

/// Every chan entry, in table order.
pub static ALL: &[Entry] = &[
    Entry::Ready(&SHM),
    Entry::Ready(&SHM_SPIN),
    Entry::Ready(&UDS_STREAM),
    Entry::Ready(&UDS_SEQPACKET),
    Entry::Ready(&PIPE),
    Entry::Ready(&FIFO),
    Entry::Ready(&POSIX_MQ),
    Entry::Ready(&SYSV_MSG),
    Entry::Ready(&TCP),
];

static SHM: Chan = Chan::new("chan.shm", Transport::Shm);
static SHM_SPIN: Chan = Chan {
    name: "chan.shm.spin",
    config: Config { transport: Transport::Shm, spin: LONG_SPIN },
    throughput: false,
};
static UDS_STREAM: Chan = Chan::new("chan.uds-stream", Transport::UdsStream);
static UDS_SEQPACKET: Chan = Chan::new("chan.uds-seqpacket", Transport::UdsSeqpacket);
static PIPE: Chan = Chan::new("chan.pipe", Transport::Pipe);
static FIFO: Chan = Chan::new("chan.fifo", Transport::Fifo);
static POSIX_MQ: Chan = Chan::new("chan.posix-mq", Transport::PosixMq);
static SYSV_MSG: Chan = Chan::new("chan.sysv-msg", Transport::SysvMsg);
static TCP: Chan = Chan::new("chan.tcp", Transport::Tcp);

/// The transport an entry measures: `<t>` for `chan.<t>…`, `rpc.<t>…` and `floor.<t>`, `shm`
/// for the `shm.*` and `pubsub.shm*` entries; `None` for floors of primitives that are no
/// transport (futex, spin, …).
pub fn transport_of(entry: &str) -> Option<Transport> {
    if entry.starts_with("shm.") || entry.starts_with("pubsub.shm") {
        return Some(Transport::Shm);
    }
    let rest = ["chan.", "rpc.", "floor."].iter().find_map(|p| entry.strip_prefix(p))?;
    rest.split('.').next()?.parse().ok()
}

/// One chan entry: a name, how its channel is built, and whether it has a throughput row.
#[derive(Debug)]
struct Chan {
    name: &'static str,
    config: Config,
    throughput: bool,
}

impl Chan {
    /// The plain entry of `transport`: blocking receives (no spin), throughput measured.
    const fn new(name: &'static str, transport: Transport) -> Chan {
        Chan { name, config: Config { transport, spin: Duration::ZERO }, throughput: true }
    }
}

impl Floor for Chan {
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

    fn cannot_carry(&self, size: usize) -> Option<String> {
        end::probe(self.config, size).err().map(|e| format!("{e:#}"))
    }

    fn create(&self, size: usize) -> Result<Channel> {
        end::create(self.config, size)
    }

    fn open(&self, size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        end::open(self.config, size, io)
    }
}

#[cfg(test)]
mod tests {
    use super::super::floors;
    use super::*;

    #[test]
    fn one_entry_per_transport_named_chan_dot_transport_and_found_by_the_peer() {
        let names: Vec<&str> = ALL.iter().map(Entry::name).collect();
        for t in Transport::ALL {
            assert!(names.contains(&format!("chan.{t}").as_str()), "{t}");
        }
        for (i, n) in names.iter().enumerate() {
            assert!(n.starts_with("chan."), "{n}");
            assert!(!names[..i].contains(n), "{n} twice");
            assert!(floors::find(n).is_some_and(|f| f.name() == *n), "{n}");
        }
    }

    #[test]
    fn entries_map_to_their_transport() {
        assert_eq!(transport_of("chan.shm.spin"), Some(Transport::Shm));
        assert_eq!(transport_of("rpc.shm.spin"), Some(Transport::Shm));
        assert_eq!(transport_of("chan.posix-mq"), Some(Transport::PosixMq));
        assert_eq!(transport_of("floor.uds-seqpacket"), Some(Transport::UdsSeqpacket));
        assert_eq!(transport_of("shm.block"), Some(Transport::Shm));
        assert_eq!(transport_of("floor.uds-dgram"), None);
        assert_eq!(transport_of("floor.futex"), None);
        assert_eq!(transport_of("floor.posix-sem"), None);
    }
}
