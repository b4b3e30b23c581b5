//! Unix socket addresses: a filesystem path or a name in Linux's abstract namespace.
//!
//! `sun_path` holds 108 bytes. A path needs a terminating NUL, so it may be at most
//! [`MAX_PATH_LEN`] bytes; an abstract name starts with a NUL, so it may be at most
//! [`MAX_ABSTRACT_LEN`] bytes. Both limits are checked when the address is made, so every
//! [`UdsAddr`] can be bound or connected to.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::net::{SocketAddrAny, SocketAddrUnix};
use thiserror::Error;

/// Longest filesystem path a Unix socket can have, in bytes (108 minus the NUL).
pub const MAX_PATH_LEN: usize = 107;
/// Longest abstract name, in bytes (108 minus the leading NUL).
pub const MAX_ABSTRACT_LEN: usize = 107;

/// An address that cannot name a Unix socket.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AddrError {
    /// The path or name is empty.
    #[error("unix socket address is empty; pass a path such as /run/app/ctl.sock or a name")]
    Empty,
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error(
        "unix socket path is {len} bytes; the limit is {MAX_PATH_LEN}, use a shorter path \
         (e.g. under /run or /tmp) or an abstract name (UdsAddr::abstract_name)"
    )]
    PathTooLong {
        /// Length of the rejected path in bytes.
        len: usize,
    },
    /// The abstract name is longer than [`MAX_ABSTRACT_LEN`].
    #[error(
        "abstract socket name is {len} bytes; the limit is {MAX_ABSTRACT_LEN}, use a shorter name"
    )]
    NameTooLong {
        /// Length of the rejected name in bytes.
        len: usize,
    },
    /// The path holds a NUL byte, which would silently cut it short.
    #[error("unix socket path contains a NUL byte; remove it")]
    Nul,
}

/// Where a Unix socket lives.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Kind {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// A validated Unix socket address: a filesystem path or an abstract name.
///
/// A path socket is a file: it obeys directory and file permissions and stays on disk until
/// someone unlinks it. An abstract name has no file and no permission check (anyone in the
/// same network namespace can connect; check [`PeerCred`](super::PeerCred) instead) and
/// vanishes when the last socket bound to it closes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UdsAddr {
    kind: Kind,
}

impl UdsAddr {
    /// A filesystem path address, at most [`MAX_PATH_LEN`] bytes long.
    pub fn path(path: impl AsRef<Path>) -> Result<UdsAddr, AddrError> {
        let bytes = path.as_ref().as_os_str().as_bytes();
        if bytes.is_empty() {
            return Err(AddrError::Empty);
        }
        if bytes.contains(&0) {
            return Err(AddrError::Nul);
        }
        if bytes.len() > MAX_PATH_LEN {
            return Err(AddrError::PathTooLong { len: bytes.len() });
        }
        Ok(UdsAddr { kind: Kind::Path(path.as_ref().to_path_buf()) })
    }

    /// An abstract-namespace address (Linux), at most [`MAX_ABSTRACT_LEN`] bytes of any value.
    pub fn abstract_name(name: impl AsRef<[u8]>) -> Result<UdsAddr, AddrError> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(AddrError::Empty);
        }
        if name.len() > MAX_ABSTRACT_LEN {
            return Err(AddrError::NameTooLong { len: name.len() });
        }
        Ok(UdsAddr { kind: Kind::Abstract(name.to_vec()) })
    }

    /// The filesystem path, if this is a path address.
    pub fn as_path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Path(p) => Some(p),
            Kind::Abstract(_) => None,
        }
    }

    /// The abstract name (without the leading NUL), if this is an abstract address.
    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Path(_) => None,
            Kind::Abstract(n) => Some(n),
        }
    }

    /// The address in the form the socket calls take.
    pub(super) fn to_sockaddr(&self) -> SocketAddrUnix {
        let made = match &self.kind {
            Kind::Path(p) => SocketAddrUnix::new(p.as_path()),
            Kind::Abstract(n) => SocketAddrUnix::new_abstract_name(n),
        };
        // Both lengths were checked in the constructors, the only way to make a `UdsAddr`.
        made.expect("UdsAddr lengths are validated on construction")
    }

    /// The address a socket call reported; `None` for an unnamed (unbound) socket.
    pub(super) fn from_sockaddr(any: SocketAddrAny) -> Option<UdsAddr> {
        let unix = SocketAddrUnix::try_from(any).ok()?;
        if let Some(p) = unix.path_bytes() {
            return UdsAddr::path(OsStr::from_bytes(p)).ok();
        }
        unix.abstract_name().and_then(|n| UdsAddr::abstract_name(n).ok())
    }
}

impl fmt::Display for UdsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Path(p) => write!(f, "{}", p.display()),
            Kind::Abstract(n) => write!(f, "@{}", n.escape_ascii()),
        }
    }
}

impl fmt::Debug for UdsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UdsAddr({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_limits() {
        let ok = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert!(UdsAddr::path(&ok).is_ok());
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        let err = UdsAddr::path(&long).unwrap_err();
        assert_eq!(err, AddrError::PathTooLong { len: MAX_PATH_LEN + 1 });
        assert!(err.to_string().contains("abstract name"));
        assert_eq!(UdsAddr::path(""), Err(AddrError::Empty));
        assert_eq!(UdsAddr::path("/tmp/a\0b"), Err(AddrError::Nul));
    }

    #[test]
    fn abstract_limits_and_display() {
        let a = UdsAddr::abstract_name(b"x\0y").unwrap();
        assert_eq!(a.to_string(), "@x\\x00y");
        assert_eq!(a.as_abstract_name(), Some(&b"x\0y"[..]));
        assert!(UdsAddr::abstract_name([7u8; MAX_ABSTRACT_LEN]).is_ok());
        assert_eq!(
            UdsAddr::abstract_name([7u8; MAX_ABSTRACT_LEN + 1]),
            Err(AddrError::NameTooLong { len: MAX_ABSTRACT_LEN + 1 })
        );
        assert_eq!(UdsAddr::abstract_name(b""), Err(AddrError::Empty));
    }

    #[test]
    fn sockaddr_round_trip() {
        for addr in [UdsAddr::path("/tmp/x.sock").unwrap(), UdsAddr::abstract_name("n").unwrap()] {
            let back = UdsAddr::from_sockaddr(addr.to_sockaddr().into());
            assert_eq!(back, Some(addr));
        }
        assert_eq!(UdsAddr::from_sockaddr(SocketAddrUnix::new_unnamed().into()), None);
    }
}
