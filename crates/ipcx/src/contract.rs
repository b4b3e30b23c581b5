//! Contracts: what a channel carries, agreed by both ends at connect.
//!
//! A [`ContractId`] names a message type (`sensor.reading`), its [`Version`] (`major.minor`) and
//! a 64-bit structural fingerprint of its serde shape. The handshake carries it both ways and
//! [`check_compatible`] decides: same name, same major and same fingerprint connect; the minor
//! may differ. The fingerprint changes whenever the encoded shape changes (a field added,
//! removed, renamed, reordered or retyped, an enum variant added or renamed) and never
//! otherwise; docs/PROTOCOL.md section 7 states how it is computed.
//!
//! Implement [`Message`] for a serde type in one line with [`message!`](crate::message):
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Reading { sensor: u16, celsius: f32 }
//! ipcx::message!(Reading, "sensor.reading", 1, 2);
//!
//! use ipcx::contract::Message;
//! let id = Reading::contract().unwrap();
//! assert_eq!(id.to_string().split(' ').take(2).collect::<Vec<_>>(), ["sensor.reading", "1.2"]);
//! ```

mod fingerprint;

pub(crate) use fingerprint::fnv1a;

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Longest contract or transport name, in bytes (the handshake stores its length in one byte).
pub const MAX_NAME_LEN: usize = 255;

/// A contract version: a major bump breaks compatibility, a minor bump does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Incompatible changes bump it; peers with different majors never connect.
    pub major: u16,
    /// Compatible changes bump it; peers with different minors connect.
    pub minor: u16,
}

impl Version {
    /// The version `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The identity of a contract, as the handshake carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContractId {
    /// The contract's name: 1 to 255 bytes of printable ASCII without spaces
    /// (see [`validate_name`]); checked by [`ContractId::new`] and before every handshake.
    pub name: String,
    /// The contract's version.
    pub version: Version,
    /// The structural fingerprint of the message type (or a fixed value for built-in types).
    pub fingerprint: u64,
}

impl ContractId {
    /// A contract identity, with its name validated.
    pub fn new(
        name: impl Into<String>,
        version: Version,
        fingerprint: u64,
    ) -> Result<Self, ContractError> {
        let id = Self { name: name.into(), version, fingerprint };
        id.validate()?;
        Ok(id)
    }

    /// The contract of untyped byte channels: `ipcx.bytes` 1.0, the fingerprint of `Vec<u8>`.
    pub fn bytes() -> Self {
        Self {
            name: "ipcx.bytes".into(),
            version: Version::new(1, 0),
            fingerprint: BYTES_FINGERPRINT,
        }
    }

    /// The contract of UTF-8 text channels: `ipcx.string` 1.0, the fingerprint of `String`.
    pub fn string() -> Self {
        Self {
            name: "ipcx.string".into(),
            version: Version::new(1, 0),
            fingerprint: STRING_FINGERPRINT,
        }
    }

    /// Checks the name (the fields are public, so a caller may have changed it).
    pub fn validate(&self) -> Result<(), ContractError> {
        validate_name(&self.name).map_err(|source| ContractError::InvalidName {
            name: self.name.escape_debug().to_string(),
            source,
        })
    }
}

impl fmt::Display for ContractId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (fingerprint {:#018x})", self.name, self.version, self.fingerprint)
    }
}

/// Structural fingerprint of `Vec<u8>` (a sequence of `u8`); a unit test recomputes it.
const BYTES_FINGERPRINT: u64 = 0xe4f3_41e0_c746_0744;
/// Structural fingerprint of `String`; a unit test recomputes it.
const STRING_FINGERPRINT: u64 = 0x676b_7346_c4a6_3c66;

/// A message type a channel can carry: a serde type with a contract name and version.
///
/// Use [`message!`](crate::message) rather than writing the impl by hand. Override
/// [`fingerprint`](Message::fingerprint) only for types serde-reflection cannot trace (custom
/// `Deserialize` impls that validate, `#[serde(flatten)]`, untagged enums): then bump the
/// major version yourself whenever the encoding changes.
pub trait Message: Serialize + DeserializeOwned + 'static {
    /// The contract name, e.g. `"sensor.reading"`: 1 to 255 bytes of printable ASCII.
    const NAME: &'static str;
    /// The contract version.
    const VERSION: Version;

    /// The structural fingerprint of the type's serde shape, computed once per process and
    /// type; an error if serde-reflection cannot trace the type.
    fn fingerprint() -> Result<u64, ContractError> {
        fingerprint::structural::<Self>()
    }

    /// The identity the handshake sends for this type.
    fn contract() -> Result<ContractId, ContractError> {
        ContractId::new(Self::NAME, Self::VERSION, Self::fingerprint()?)
    }
}

/// Implements [`Message`](crate::contract::Message) for a serde type:
/// `ipcx::message!(MyType, "my.contract", 1, 2);` gives contract `my.contract` version 1.2.
#[macro_export]
macro_rules! message {
    ($ty:ty, $name:expr, $major:expr, $minor:expr $(,)?) => {
        impl $crate::contract::Message for $ty {
            const NAME: &'static str = $name;
            const VERSION: $crate::contract::Version =
                $crate::contract::Version::new($major, $minor);
        }
    };
}

impl Message for String {
    const NAME: &'static str = "ipcx.string";
    const VERSION: Version = Version::new(1, 0);
    fn fingerprint() -> Result<u64, ContractError> {
        Ok(STRING_FINGERPRINT)
    }
}

impl Message for Vec<u8> {
    const NAME: &'static str = "ipcx.bytes";
    const VERSION: Version = Version::new(1, 0);
    fn fingerprint() -> Result<u64, ContractError> {
        Ok(BYTES_FINGERPRINT)
    }
}

/// Checks that two ends can talk: same name, same major, same fingerprint (minors may differ).
pub fn check_compatible(local: &ContractId, remote: &ContractId) -> Result<(), Mismatch> {
    let pair = || Box::new((local.clone(), remote.clone()));
    if local.name != remote.name {
        Err(Mismatch::Name(pair()))
    } else if local.version.major != remote.version.major {
        Err(Mismatch::Major(pair()))
    } else if local.fingerprint != remote.fingerprint {
        Err(Mismatch::Fingerprint(pair()))
    } else {
        Ok(())
    }
}

/// Why two contracts cannot connect; each variant holds `(ours, the peer's)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The peer serves another contract.
    #[error(
        "contract mismatch: we speak {}, the peer speaks {}; connect to the service that \
         serves {} or use the peer's message type",
        .0.0, .0.1, .0.0.name
    )]
    Name(Box<(ContractId, ContractId)>),
    /// Same contract, different major version.
    #[error(
        "contract mismatch: we speak {}, the peer speaks {}; upgrade the older side",
        .0.0, .0.1
    )]
    Major(Box<(ContractId, ContractId)>),
    /// Same name and major, but the types' shapes differ.
    #[error(
        "contract mismatch: we speak {}, the peer speaks {}: the message types differ in shape; \
         build both sides from the same type definition, and bump the major version whenever \
         the type changes",
        .0.0, .0.1
    )]
    Fingerprint(Box<(ContractId, ContractId)>),
}

impl Mismatch {
    /// Our contract and the peer's.
    pub fn sides(&self) -> (&ContractId, &ContractId) {
        let (Self::Name(p) | Self::Major(p) | Self::Fingerprint(p)) = self;
        (&p.0, &p.1)
    }
}

/// Checks a contract or transport name: 1 to 255 bytes, each printable ASCII other than space
/// (`0x21..=0x7e`), so names from another process are safe to print.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    validate_name_bytes(name.as_bytes())
}

/// [`validate_name`] over raw bytes (a valid name is ASCII, hence UTF-8).
pub(crate) fn validate_name_bytes(name: &[u8]) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    match name.iter().position(|b| !(0x21..=0x7e).contains(b)) {
        Some(index) => Err(NameError::BadByte { byte: name[index], index }),
        None => Ok(()),
    }
}

/// Why a name is not a valid contract or transport name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty; give the contract a name such as \"sensor.reading\"")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("the name is {len} bytes long; use at most 255 bytes")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// The name holds a byte outside printable ASCII, or a space.
    #[error("byte {index} of the name is {byte:#04x}; use printable ASCII without spaces")]
    BadByte {
        /// The offending byte.
        byte: u8,
        /// Its position in the name.
        index: usize,
    },
}

/// Why a contract identity could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The contract name is invalid.
    #[error("invalid contract name \"{name}\": {source}")]
    InvalidName {
        /// The name, escaped for printing.
        name: String,
        /// What is wrong with it.
        source: NameError,
    },
    /// serde-reflection could not trace the type's shape.
    #[error(
        "cannot compute the structural fingerprint of {type_name}: {detail}; implement \
         Message::fingerprint by hand for this type (and bump the major version whenever its \
         encoding changes)"
    )]
    Untraceable {
        /// The Rust type.
        type_name: &'static str,
        /// serde-reflection's explanation (its error type is not `Send`, so it is kept as text).
        detail: String,
    },
}

#[cfg(test)]
mod tests;
