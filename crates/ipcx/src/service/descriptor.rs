//! The service descriptor: the small versioned JSON record at
//! `<nsdir>/services/<name>.json` that lets other processes find, check and inspect a
//! service.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::contract::{check_compatible, ContractId, Mismatch, Version};
use crate::node::NodeId;

/// Format version of service descriptors. Readers refuse a higher one; fields added
/// within a format version have defaults, so older readers skip them.
pub const SERVICE_FORMAT: u32 = 1;

/// The messaging pattern a service offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Publish/subscribe.
    PubSub,
    /// Request/response.
    Rpc,
    /// An ordered byte stream.
    Stream,
    /// Notify/listen events.
    Event,
    /// A plain bidirectional channel.
    Channel,
}

impl Pattern {
    /// The pattern's name as descriptors and the CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::PubSub => "pubsub",
            Pattern::Rpc => "rpc",
            Pattern::Stream => "stream",
            Pattern::Event => "event",
            Pattern::Channel => "channel",
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A contract as a descriptor stores it (see [`ContractId`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractRecord {
    /// The contract name.
    pub name: String,
    /// The version, `"major.minor"`.
    pub version: String,
    /// The structural fingerprint, 16 lowercase hex digits.
    pub fingerprint: String,
}

impl From<&ContractId> for ContractRecord {
    fn from(c: &ContractId) -> ContractRecord {
        ContractRecord {
            name: c.name.clone(),
            version: c.version.to_string(),
            fingerprint: format!("{:016x}", c.fingerprint),
        }
    }
}

impl ContractRecord {
    /// The contract identity, if the version and fingerprint parse.
    pub fn to_contract(&self) -> Option<ContractId> {
        let (major, minor) = self.version.split_once('.')?;
        let version = Version::new(major.parse().ok()?, minor.parse().ok()?);
        let fingerprint = u64::from_str_radix(&self.fingerprint, 16).ok()?;
        Some(ContractId { name: self.name.clone(), version, fingerprint })
    }
}

/// A service's descriptor, as written by its owner and read by everyone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDescriptor {
    /// Format version ([`SERVICE_FORMAT`]).
    pub format: u32,
    /// The service name (unique in its namespace).
    pub name: String,
    /// The pattern.
    pub pattern: Pattern,
    /// The transport's name (e.g. `"shm"`, `"uds-stream"`).
    pub transport: String,
    /// The message contract.
    pub contract: ContractRecord,
    /// Queue capacity in messages (0: the pattern's default).
    #[serde(default)]
    pub capacity: u64,
    /// Largest message in bytes (0: the transport's default).
    #[serde(default)]
    pub max_message: u64,
    /// What a full queue does to a sender (e.g. `"block"`, `"drop-oldest"`).
    #[serde(default)]
    pub back_pressure: String,
    /// File mode of the service's objects, as octal text (`"0600"`).
    pub permissions: String,
    /// Other uids allowed to connect (checked with `SO_PEERCRED` where a socket is involved).
    #[serde(default)]
    pub allow_uids: Vec<u32>,
    /// Groups allowed to connect.
    #[serde(default)]
    pub allow_gids: Vec<u32>,
    /// The node that created the service; the service lives as long as it does.
    pub owner: NodeId,
    /// Where to connect: a path in the namespace directory or an object name.
    pub endpoint: String,
    /// When the service was created, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Pattern-specific settings (e.g. history depth), as text.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl ServiceDescriptor {
    /// The mode bits of [`permissions`](Self::permissions), if they parse.
    pub fn mode(&self) -> Option<u32> {
        u32::from_str_radix(&self.permissions, 8).ok().filter(|m| *m <= 0o777)
    }

    /// Whether a peer with `uid` and `gid` may use the service: the owner's uid, a listed
    /// uid or gid, or a mode that grants others access.
    pub fn allows(&self, owner_uid: u32, uid: u32, gid: u32) -> bool {
        let mode = self.mode().unwrap_or(0o600);
        uid == owner_uid
            || self.allow_uids.contains(&uid)
            || self.allow_gids.contains(&gid)
            || mode & 0o006 != 0
    }
}

/// Why an existing service does not match what the opener expects; each variant names
/// what we expect and what the service offers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Incompatibility {
    /// Another pattern.
    #[error("we expect pattern {ours}, the service offers {theirs}; open it with its pattern")]
    Pattern {
        /// What we expect.
        ours: Pattern,
        /// What the service offers.
        theirs: Pattern,
    },
    /// Another transport.
    #[error(
        "we expect transport {ours}, the service uses {theirs}; open it with transport {theirs}"
    )]
    Transport {
        /// What we expect.
        ours: String,
        /// What the service uses.
        theirs: String,
    },
    /// The contracts cannot talk.
    #[error(transparent)]
    Contract(Mismatch),
    /// The descriptor's contract does not parse.
    #[error("the service's contract record {theirs:?} is malformed; recreate the service")]
    BadContract {
        /// The record.
        theirs: ContractRecord,
    },
}

/// Checks `found` against what an opener expects (`None`: anything goes).
pub(crate) fn check(
    found: &ServiceDescriptor,
    pattern: Pattern,
    transport: Option<&str>,
    contract: Option<&ContractId>,
) -> Result<(), Incompatibility> {
    if found.pattern != pattern {
        return Err(Incompatibility::Pattern { ours: pattern, theirs: found.pattern });
    }
    if let Some(ours) = transport.filter(|t| *t != found.transport) {
        return Err(Incompatibility::Transport {
            ours: ours.to_owned(),
            theirs: found.transport.clone(),
        });
    }
    if let Some(ours) = contract {
        let Some(theirs) = found.contract.to_contract() else {
            return Err(Incompatibility::BadContract { theirs: found.contract.clone() });
        };
        check_compatible(ours, &theirs).map_err(Incompatibility::Contract)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_records_round_trip() {
        let c = ContractId::string();
        let r = ContractRecord::from(&c);
        assert_eq!(r.version, "1.0");
        assert_eq!(r.to_contract(), Some(c));
    }

    #[test]
    fn patterns_are_lowercase_json() {
        assert_eq!(serde_json::to_string(&Pattern::PubSub).unwrap(), "\"pubsub\"");
        assert_eq!(serde_json::from_str::<Pattern>("\"rpc\"").unwrap(), Pattern::Rpc);
    }
}
