//! Test support shared by the ipcx crates (not published).
//!
//! - [`unique_name`]: a random name per test, so tests run in parallel without clashing.
//! - [`peer`]: spawn a *real* peer process (the test binary itself, re-executed into an
//!   ignored entry test declared with [`peer_entry!`]), optionally as another uid, and
//!   synchronise with it through marker lines instead of sleeps.
//! - [`leftovers`]: what a test left in `/dev/shm` or `/proc/sysvipc`.
//!
//! ```ignore
//! ipcx_testkit::peer_entry!(peer_main);
//!
//! fn peer_main(role: &str, args: &[String]) {
//!     match role {
//!         "echo" => ipcx_testkit::signal("ready", &args[0]),
//!         other => panic!("unknown role {other}"),
//!     }
//! }
//!
//! #[test]
//! fn child_says_ready() {
//!     let mut p = ipcx_testkit::peer("echo").arg("hi").spawn();
//!     assert_eq!(p.expect("ready"), "hi");
//!     p.wait_success();
//! }
//! ```
#![forbid(unsafe_code)]

mod leftovers;
mod names;
mod peer;

pub use leftovers::{leftovers, sysv_id_exists, SysvKind};
pub use names::unique_name;
pub use peer::{
    peer, peer_args, read_command, run_peer, signal, Peer, PeerBuilder, DEFAULT_TIMEOUT, NOBODY_UID,
};
