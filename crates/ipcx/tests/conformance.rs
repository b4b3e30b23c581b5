//! The Channel conformance suite: one set of cross-process cases, written once
//! (`conformance/cases.rs`) and instantiated for every transport by [`conformance!`].
//!
//! The test process is one end of a channel, a real peer process (this binary re-executed,
//! `conformance/peers.rs`) the other; raw-socket peers (`conformance/raw.rs`) misbehave on
//! purpose. Every test runs in its own random namespace and checks on exit that it left
//! nothing behind (`conformance/support.rs`, `Scope`).
//!
//! | case | test |
//! |---|---|
//! | 1 ordering and boundaries, both ways | `ordering` (`ordering_long`: ignored, longer) |
//! | 2 empty, maximum and oversized messages | `limits` |
//! | 3 timeouts, empty, full | `timeouts`, `full_channel` |
//! | 4 buffered vs acknowledged sends | `acknowledged` |
//! | 5 peer SIGKILLed during recv / send | `peer_killed_during_recv`, `peer_killed_during_send` |
//! | 6 clean close | `clean_close` |
//! | 7 garbage hello; corrupt frame (socket transports) | `garbage_hello`, `corrupt_frame` |
//! | 8 contract mismatch | `contract_mismatch` |
//! | 9 uid allow-list | `allow_list` |
//! | 10 no leftovers | every test (`Scope`) |

#[path = "conformance/cases.rs"]
mod cases;
#[path = "conformance/peers.rs"]
mod peers;
#[path = "conformance/raw.rs"]
mod raw;
#[path = "conformance/support.rs"]
mod support;

ipcx_testkit::peer_entry!(peers::main);

/// Messages each way in `ordering`.
const ORDERING_COUNT: u64 = 1_000;
/// Messages each way in `ordering_long`.
const ORDERING_LONG_COUNT: u64 = 50_000;

/// Instantiates every case for one transport.
/// - `conformance!(T)`; `conformance!(T, #[attr]...)`: `#[attr]`s on every test;
/// - `conformance!(T, sockets ...)`: adds the cases of transports whose data path is the
///   listening socket itself;
/// - `conformance!(T, full_channel: #[attr])`: `#[attr]` on the cases that fill a channel.
macro_rules! conformance {
    ($t:expr, sockets $($rest:tt)*) => {
        #[test] fn corrupt_frame() { crate::cases::corrupt_frame($t) }
        conformance!($t $($rest)*);
    };
    ($t:expr, full_channel: #[$full:meta] $(, #[$attr:meta])*) => {
        conformance!(@tests $t, [$(#[$attr])*], [#[$full] $(#[$attr])*]);
    };
    ($t:expr $(, #[$attr:meta])*) => {
        conformance!(@tests $t, [$(#[$attr])*], [$(#[$attr])*]);
    };
    (@tests $t:expr, [$(#[$attr:meta])*], [$(#[$full:meta])*]) => {
        #[allow(unused_imports)]
        use ipcx::channel::Transport;
        #[test] $(#[$attr])* fn ordering() { crate::cases::ordering($t, crate::ORDERING_COUNT) }
        #[test]
        #[ignore = "long variant"]
        fn ordering_long() { crate::cases::ordering($t, crate::ORDERING_LONG_COUNT) }
        #[test] $(#[$attr])* fn limits() { crate::cases::limits($t) }
        #[test] $(#[$attr])* fn timeouts() { crate::cases::timeouts($t) }
        #[test] $(#[$full])* fn full_channel() { crate::cases::full_channel($t) }
        #[test] $(#[$attr])* fn acknowledged() { crate::cases::acknowledged($t) }
        #[test] $(#[$attr])* fn peer_killed_during_recv() { crate::cases::peer_killed_during_recv($t) }
        #[test] $(#[$full])* fn peer_killed_during_send() { crate::cases::peer_killed_during_send($t) }
        #[test] $(#[$attr])* fn clean_close() { crate::cases::clean_close($t) }
        #[test] $(#[$attr])* fn garbage_hello() { crate::cases::garbage_hello($t) }
        #[test] $(#[$attr])* fn contract_mismatch() { crate::cases::contract_mismatch($t) }
        #[test] $(#[$attr])* fn allow_list() { crate::cases::allow_list($t) }
    };
}

mod shm {
    conformance!(Transport::Shm);
}
mod uds_stream {
    conformance!(Transport::UdsStream, sockets);
}
mod uds_seqpacket {
    conformance!(Transport::UdsSeqpacket, sockets);
}
mod pipe {
    conformance!(Transport::Pipe);
}
mod fifo {
    conformance!(Transport::Fifo);
}
mod posix_mq {
    conformance!(Transport::PosixMq);
}
mod sysv_msg {
    conformance!(Transport::SysvMsg);
}
mod tcp {
    conformance!(Transport::Tcp, sockets);
}
