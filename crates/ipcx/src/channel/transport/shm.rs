//! `shm`: two SPSC rings and futex doorbells in a memfd.
//!
//! Not implemented yet: connecting over `shm` fails with an error saying so.

use ipcx_sys::uds::UdsStream;

use super::{Link, Setup};
use crate::channel::error::ConnectError;
use crate::channel::link::{Deadline, LinkError, LinkOps};

/// The data path of one `shm` connection.
pub(crate) struct ShmLink {
    _private: (),
}

impl LinkOps for ShmLink {
    fn max_frame(&self) -> usize {
        0
    }

    fn send(&mut self, _parts: &[&[u8]], _deadline: Deadline) -> Result<(), LinkError> {
        Err(LinkError::os("shm", std::io::Error::from(std::io::ErrorKind::Unsupported)))
    }

    fn recv<R>(
        &mut self,
        _deadline: Deadline,
        _f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, LinkError> {
        Err(LinkError::os("shm", std::io::Error::from(std::io::ErrorKind::Unsupported)))
    }
}

/// The error of every setup until `shm` exists.
fn unsupported() -> ConnectError {
    ConnectError::os(
        "the shm transport (not implemented yet)",
        std::io::Error::from(std::io::ErrorKind::Unsupported),
    )
}

/// Largest frame on this machine.
pub(crate) fn limit() -> usize {
    1 << 24
}

/// Listener side.
pub(crate) fn accept(_ctl: UdsStream, _setup: &Setup<'_>) -> Result<Link, ConnectError> {
    Err(unsupported())
}

/// Connector side.
pub(crate) fn connect(_ctl: UdsStream, _setup: &Setup<'_>) -> Result<Link, ConnectError> {
    Err(unsupported())
}
