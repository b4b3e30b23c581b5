//! `posix-mq`: two POSIX message queues, one per direction.
//!
//! Not implemented yet: connecting over `posix-mq` fails with an error saying so.

use ipcx_sys::uds::UdsStream;

use super::{Link, Setup};
use crate::channel::error::ConnectError;
use crate::channel::link::{Deadline, LinkError, LinkOps};

/// The data path of one `posix-mq` connection.
pub(crate) struct MqLink {
    _private: (),
}

impl LinkOps for MqLink {
    fn max_frame(&self) -> usize {
        0
    }

    fn send(&mut self, _parts: &[&[u8]], _deadline: Deadline) -> Result<(), LinkError> {
        Err(LinkError::os("posix-mq", std::io::Error::from(std::io::ErrorKind::Unsupported)))
    }

    fn recv<R>(
        &mut self,
        _deadline: Deadline,
        _f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, LinkError> {
        Err(LinkError::os("posix-mq", std::io::Error::from(std::io::ErrorKind::Unsupported)))
    }
}

/// The error of every setup until `posix-mq` exists.
fn unsupported() -> ConnectError {
    ConnectError::os(
        "the posix-mq transport (not implemented yet)",
        std::io::Error::from(std::io::ErrorKind::Unsupported),
    )
}

/// Largest frame on this machine.
pub(crate) fn limit() -> Result<usize, ConnectError> {
    Ok(8192)
}

/// Listener side.
pub(crate) fn accept(_ctl: UdsStream, _setup: &Setup<'_>) -> Result<Link, ConnectError> {
    Err(unsupported())
}

/// Connector side.
pub(crate) fn connect(_ctl: UdsStream, _setup: &Setup<'_>) -> Result<Link, ConnectError> {
    Err(unsupported())
}
