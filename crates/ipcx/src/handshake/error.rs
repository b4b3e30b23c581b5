//! Handshake errors and refusal reasons.

use std::fmt;

use crate::contract::{check_compatible, Mismatch};
use crate::frame::{FrameError, FrameKind};

use super::{Hello, PayloadError, PROTOCOL_VERSION};

/// Why a listener refused a connection (the Refuse payload's `reason` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// 1: the hello's protocol version is not supported.
    ProtocolVersion,
    /// 2: the listener serves another contract.
    ContractName,
    /// 3: same contract, different major version.
    ContractMajor,
    /// 4: same contract and major, different type shape.
    Fingerprint,
    /// 5: the listener serves another transport.
    Transport,
    /// 6: the listener's policy (e.g. a uid allow-list) does not admit the connector.
    NotAllowed,
    /// Any other code: codes from 0x8000 are application-defined, the rest reserved.
    Other(u16),
}

impl RefuseReason {
    /// The wire code.
    pub const fn code(self) -> u16 {
        match self {
            Self::ProtocolVersion => 1,
            Self::ContractName => 2,
            Self::ContractMajor => 3,
            Self::Fingerprint => 4,
            Self::Transport => 5,
            Self::NotAllowed => 6,
            Self::Other(code) => code,
        }
    }

    /// The reason for a wire code.
    pub const fn from_code(code: u16) -> Self {
        match code {
            1 => Self::ProtocolVersion,
            2 => Self::ContractName,
            3 => Self::ContractMajor,
            4 => Self::Fingerprint,
            5 => Self::Transport,
            6 => Self::NotAllowed,
            other => Self::Other(other),
        }
    }

    /// The refusal that matches a contract mismatch.
    pub fn for_mismatch(mismatch: &Mismatch) -> Self {
        match mismatch {
            Mismatch::Name(_) => Self::ContractName,
            Mismatch::Major(_) => Self::ContractMajor,
            Mismatch::Fingerprint(_) => Self::Fingerprint,
        }
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProtocolVersion => f.write_str("protocol version"),
            Self::ContractName => f.write_str("contract name"),
            Self::ContractMajor => f.write_str("contract major version"),
            Self::Fingerprint => f.write_str("contract fingerprint"),
            Self::Transport => f.write_str("transport"),
            Self::NotAllowed => f.write_str("not allowed"),
            Self::Other(code) => write!(f, "reason {code}"),
        }
    }
}

/// The handshake failed; every variant means: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Our own hello cannot be sent.
    #[error("invalid local hello: {0}; fix the channel's configuration")]
    InvalidLocal(#[source] PayloadError),
    /// The frame around the handshake payload is bad.
    #[error("bad handshake frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer sent a frame of the wrong kind.
    #[error("expected a {expected} frame during the handshake, got {got:?}; the peer is not an ipcx {expected} side: close the connection")]
    UnexpectedFrame {
        /// The kind received.
        got: FrameKind,
        /// What was expected.
        expected: &'static str,
    },
    /// The peer's payload does not parse.
    #[error("malformed {frame:?} payload from the peer: {source}; the peer is broken or not ipcx: close the connection")]
    Malformed {
        /// The frame kind that carried it.
        frame: FrameKind,
        /// What is wrong.
        source: PayloadError,
    },
    /// The peer speaks another handshake protocol version.
    #[error("protocol mismatch: we speak ipcx protocol {PROTOCOL_VERSION}, the peer speaks {theirs}; upgrade the older side")]
    ProtocolVersion {
        /// The peer's version.
        theirs: u16,
    },
    /// The two sides use different transports.
    #[error("transport mismatch: we speak {ours}, the peer speaks {theirs}; connect with the transport the service was created with")]
    Transport {
        /// Our transport.
        ours: String,
        /// The peer's.
        theirs: String,
    },
    /// The two sides' contracts are incompatible.
    #[error(transparent)]
    Contract(#[from] Mismatch),
    /// The listener refused us.
    #[error("{}", describe_refusal(*.reason, .text, .ours, .theirs))]
    Refused {
        /// Its reason code.
        reason: RefuseReason,
        /// Its explanation (from the peer: shown escaped).
        text: String,
        /// Our hello.
        ours: Box<Hello>,
        /// The listener's hello, from the Refuse payload.
        theirs: Box<Hello>,
    },
}

/// The message of [`HandshakeError::Refused`], built from both hellos (the peer's text is
/// shown only where our own facts cannot explain the refusal).
fn describe_refusal(reason: RefuseReason, text: &str, ours: &Hello, theirs: &Hello) -> String {
    let head = format!("the listener refused the connection ({reason})");
    match reason {
        RefuseReason::ContractName | RefuseReason::ContractMajor | RefuseReason::Fingerprint => {
            if let Err(mismatch) = check_compatible(&ours.contract, &theirs.contract) {
                return format!("{head}: {mismatch}");
            }
        }
        RefuseReason::Transport => {
            return format!(
                "{head}: we speak {}, the listener serves {}; connect with the transport the \
                 service was created with",
                ours.transport, theirs.transport
            );
        }
        RefuseReason::NotAllowed => {
            return format!(
                "{head}: uid {} may not use this service (listener says \"{}\"); ask the \
                 service's owner to allow it",
                ours.uid,
                text.escape_debug()
            );
        }
        RefuseReason::ProtocolVersion | RefuseReason::Other(_) => {}
    }
    format!("{head}: \"{}\"", text.escape_debug())
}

/// The listener's verdict on a bad hello: the error, and the Refuse frame to send before
/// closing (`None` when the hello was too broken to answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Send these bytes (a whole Refuse frame), then close.
    pub reply: Option<Vec<u8>>,
    /// What went wrong.
    pub error: HandshakeError,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}
