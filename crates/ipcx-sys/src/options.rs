//! Options shared by every named IPC object: how to create it and who may use it.

use std::fmt;

/// How a builder treats an object that may or may not exist yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CreateMode {
    /// Create a new object; fail with an "already exists" error if one is there.
    CreateExclusive,
    /// Open an existing object; fail with a "not found" error if there is none.
    Open,
    /// Open the object if it exists, create it otherwise.
    OpenOrCreate,
}

impl CreateMode {
    /// Whether this mode may create the object.
    pub fn may_create(self) -> bool {
        !matches!(self, CreateMode::Open)
    }
}

/// Permission bits of a named IPC object (`0o000..=0o777`).
///
/// Builders apply them exactly, whatever the process umask is. The default is
/// [`Permissions::OWNER_ONLY`] (`0o600`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permissions(u32);

impl Permissions {
    /// Read and write for the owner only (`0o600`), the default.
    pub const OWNER_ONLY: Permissions = Permissions(0o600);
    /// Read and write for the owner and the group (`0o660`).
    pub const OWNER_AND_GROUP: Permissions = Permissions(0o660);

    /// Permission bits from a mode such as `0o640`.
    ///
    /// Returns `None` if `mode` has bits outside `0o777` (setuid, sticky, file type).
    pub const fn from_mode(mode: u32) -> Option<Permissions> {
        if mode & !0o777 == 0 {
            Some(Permissions(mode))
        } else {
            None
        }
    }

    /// The permission bits, always within `0o777`.
    pub const fn mode(self) -> u32 {
        self.0
    }
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions::OWNER_ONLY
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({:#o})", self.0)
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#o}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_mode_rejects_special_bits() {
        assert_eq!(Permissions::from_mode(0o640).map(Permissions::mode), Some(0o640));
        assert!(Permissions::from_mode(0o4755).is_none());
        assert!(Permissions::from_mode(0o1777).is_none());
        assert_eq!(Permissions::default().mode(), 0o600);
    }

    #[test]
    fn only_open_cannot_create() {
        assert!(!CreateMode::Open.may_create());
        assert!(CreateMode::OpenOrCreate.may_create());
        assert!(CreateMode::CreateExclusive.may_create());
    }
}
