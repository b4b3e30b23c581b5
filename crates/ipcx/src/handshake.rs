//! The connect handshake, sans IO: [`Connector`] and [`Acceptor`] turn frames into bytes to
//! send and a verdict, and never touch a socket, so tests drive them in memory.
//!
//! ```text
//! connector                                   listener
//!   Hello  (frame kind 3, payload: its Hello)   -->
//!                                              <--  Accept (kind 4, payload: its Hello)
//!                                               or  Refuse (kind 5: reason, text, its Hello)
//! ```
//!
//! A Hello payload (docs/PROTOCOL.md section 7.2 has the byte layout) carries the protocol
//! version, flags, the largest message the sender can receive, its pid and uid
//! (informational), its [`ContractId`] and its transport name. The listener refuses a
//! different protocol version, transport, contract name, contract major or fingerprint, and
//! whatever its caller's policy rejects ([`Pending::refuse`] with
//! [`RefuseReason::NotAllowed`]). Both sides then use [`Agreed::max_message`], the smaller
//! of the two limits. Handshake frames have sequence number 0 and payloads of at most
//! [`HANDSHAKE_MAX_LEN`] bytes.
//!
//! ```
//! use ipcx::contract::ContractId;
//! use ipcx::frame::{FrameHeader, HEADER_LEN};
//! use ipcx::handshake::{Acceptor, Connector, Hello, HANDSHAKE_MAX_LEN};
//!
//! let hello = |pid| Hello { pid, ..Hello::new(ContractId::bytes(), "uds-stream", 65536) };
//! let connector = Connector::new(hello(10)).unwrap();
//! let acceptor = Acceptor::new(hello(20)).unwrap();
//!
//! let bytes = connector.hello_frame();
//! let header = FrameHeader::decode(&bytes, HANDSHAKE_MAX_LEN).unwrap();
//! let (reply, at_listener) = acceptor.on_hello(&header, &bytes[HEADER_LEN..]).unwrap().accept();
//! let header = FrameHeader::decode(&reply, HANDSHAKE_MAX_LEN).unwrap();
//! let at_connector = connector.on_reply(&header, &reply[HEADER_LEN..]).unwrap();
//! assert_eq!((at_listener.peer.pid, at_connector.peer.pid), (10, 20));
//! ```

mod error;
mod wire;

pub use error::{HandshakeError, RefuseReason, Rejection};
pub use wire::PayloadError;

use crate::contract::{check_compatible, ContractId};
use crate::frame::{encode_frame, FrameFlags, FrameHeader, FrameKind};

/// The handshake protocol version this build speaks (first field of every Hello payload).
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest handshake payload: pass it as `max_len` when decoding handshake frames.
pub const HANDSHAKE_MAX_LEN: u32 = 4096;
/// Longest refusal text in bytes.
pub const MAX_REFUSAL_TEXT: usize = 1024;

/// Flags of a Hello (informational: receivers ignore bits they do not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HelloFlags(u16);

impl HelloFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// The sender intends to request acknowledgements.
    pub const WANTS_ACK: Self = Self(1);

    /// Flags with these bits, unknown ones kept.
    pub const fn from_bits_retain(bits: u16) -> Self {
        Self(bits)
    }

    /// The wire value.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What one side announces about itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hello {
    /// The contract it speaks.
    pub contract: ContractId,
    /// Its transport, e.g. `"uds-stream"` (same rules as a contract name).
    pub transport: String,
    /// The largest message payload it can receive, in bytes (≥ 1).
    pub max_message: u32,
    /// Informational flags.
    pub flags: HelloFlags,
    /// Its process id (informational; trust `SO_PEERCRED` instead where the transport has it).
    pub pid: u32,
    /// Its user id (informational; trust `SO_PEERCRED` instead where the transport has it).
    pub uid: u32,
}

impl Hello {
    /// A hello with no flags and pid and uid 0 (set them before connecting).
    pub fn new(contract: ContractId, transport: impl Into<String>, max_message: u32) -> Self {
        Self {
            contract,
            transport: transport.into(),
            max_message,
            flags: HelloFlags::NONE,
            pid: 0,
            uid: 0,
        }
    }
}

/// The listener's refusal, as carried by a Refuse frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refusal {
    /// Why.
    pub reason: RefuseReason,
    /// A human-readable explanation (UTF-8, at most [`MAX_REFUSAL_TEXT`] bytes).
    pub text: String,
    /// The listener's own hello, so the connector can name both sides.
    pub listener: Hello,
}

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    /// The peer's hello: its contract, transport, limit, flags, pid and uid.
    pub peer: Hello,
    /// The largest message either side sends: the smaller of the two limits.
    pub max_message: u32,
}

/// Checks the peer's transport and contract against ours (both sides run it).
fn check_peer(local: &Hello, peer: &Hello) -> Result<(), HandshakeError> {
    if peer.transport != local.transport {
        return Err(HandshakeError::Transport {
            ours: local.transport.clone(),
            theirs: peer.transport.clone(),
        });
    }
    Ok(check_compatible(&local.contract, &peer.contract)?)
}

/// The agreement: the peer's hello and the smaller of the two limits.
fn agreed(local: &Hello, peer: Hello) -> Agreed {
    let max_message = local.max_message.min(peer.max_message);
    Agreed { peer, max_message }
}

/// A whole handshake frame around `payload` (at most 1.6 KiB, so framing cannot fail).
fn whole_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // Handshake payloads are bounded far below u32::MAX; the error arm is unreachable.
    let _ = encode_frame(kind, FrameFlags::NONE, 0, payload, &mut out);
    out
}

/// Checks the frame around a handshake payload: its kind, length, crc and size limit.
fn check_frame(
    header: &FrameHeader,
    payload: &[u8],
    expected: &'static str,
    kinds: &[FrameKind],
) -> Result<(), HandshakeError> {
    if !kinds.contains(&header.kind) {
        return Err(HandshakeError::UnexpectedFrame { got: header.kind, expected });
    }
    if header.len > HANDSHAKE_MAX_LEN {
        let (len, max) = (header.len.into(), HANDSHAKE_MAX_LEN);
        return Err(crate::frame::FrameError::TooLong { len, max }.into());
    }
    Ok(header.check_payload(payload)?)
}

/// The connecting side: sends a Hello, then judges the reply.
#[derive(Debug, Clone)]
pub struct Connector {
    local: Hello,
}

impl Connector {
    /// A connector announcing `local` (validated here, so sending cannot fail later).
    pub fn new(local: Hello) -> Result<Self, HandshakeError> {
        local.validate().map_err(HandshakeError::InvalidLocal)?;
        Ok(Self { local })
    }

    /// Our hello.
    pub fn local(&self) -> &Hello {
        &self.local
    }

    /// The Hello frame to send first (header and payload).
    pub fn hello_frame(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        self.local.encode_valid(&mut payload);
        whole_frame(FrameKind::Hello, &payload)
    }

    /// Judges the listener's reply frame: Accept gives the agreement (after checking the
    /// listener's hello ourselves), Refuse gives [`HandshakeError::Refused`].
    pub fn on_reply(&self, header: &FrameHeader, payload: &[u8]) -> Result<Agreed, HandshakeError> {
        check_frame(header, payload, "Accept or Refuse", &[FrameKind::Accept, FrameKind::Refuse])?;
        let malformed = |source| match source {
            PayloadError::UnsupportedProtocol { got } => {
                HandshakeError::ProtocolVersion { theirs: got }
            }
            source => HandshakeError::Malformed { frame: header.kind, source },
        };
        if header.kind == FrameKind::Refuse {
            let refusal = Refusal::decode(payload).map_err(malformed)?;
            return Err(HandshakeError::Refused {
                reason: refusal.reason,
                text: refusal.text,
                ours: Box::new(self.local.clone()),
                theirs: Box::new(refusal.listener),
            });
        }
        let peer = Hello::decode_payload(payload).map_err(malformed)?;
        check_peer(&self.local, &peer)?;
        Ok(agreed(&self.local, peer))
    }
}

/// The listening side: judges a Hello and answers it.
#[derive(Debug, Clone)]
pub struct Acceptor {
    local: Hello,
}

impl Acceptor {
    /// An acceptor announcing `local` (validated here, so replying cannot fail later).
    pub fn new(local: Hello) -> Result<Self, HandshakeError> {
        local.validate().map_err(HandshakeError::InvalidLocal)?;
        Ok(Self { local })
    }

    /// Our hello.
    pub fn local(&self) -> &Hello {
        &self.local
    }

    /// Judges the connector's Hello frame. A compatible hello gives a [`Pending`] for the
    /// caller's own checks (uid allow-list); an incompatible one gives the error and the
    /// Refuse frame to send; an unreadable one gives the error only.
    pub fn on_hello(&self, header: &FrameHeader, payload: &[u8]) -> Result<Pending, Rejection> {
        let close = |error| Rejection { reply: None, error };
        check_frame(header, payload, "Hello", &[FrameKind::Hello]).map_err(close)?;
        let peer = match Hello::decode_payload(payload) {
            Ok(peer) => peer,
            Err(PayloadError::UnsupportedProtocol { got }) => {
                let error = HandshakeError::ProtocolVersion { theirs: got };
                let reply = self.refusal(RefuseReason::ProtocolVersion, &error.to_string());
                return Err(Rejection { reply: Some(reply), error });
            }
            Err(source) => {
                return Err(close(HandshakeError::Malformed { frame: header.kind, source }))
            }
        };
        if let Err(error) = check_peer(&self.local, &peer) {
            let reason = match &error {
                HandshakeError::Contract(mismatch) => RefuseReason::for_mismatch(mismatch),
                _ => RefuseReason::Transport,
            };
            let reply = self.refusal(reason, &error.to_string());
            return Err(Rejection { reply: Some(reply), error });
        }
        Ok(Pending { local: self.local.clone(), peer })
    }

    /// A whole Refuse frame with `text` cut to [`MAX_REFUSAL_TEXT`] bytes.
    fn refusal(&self, reason: RefuseReason, text: &str) -> Vec<u8> {
        let mut cut = text.len().min(MAX_REFUSAL_TEXT);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let refusal =
            Refusal { reason, text: text[..cut].to_string(), listener: self.local.clone() };
        let mut payload = Vec::new();
        // The local hello was validated by `new` and the text is cut to the limit.
        let _ = refusal.encode(&mut payload);
        whole_frame(FrameKind::Refuse, &payload)
    }
}

/// A compatible Hello awaiting the listener's decision.
#[derive(Debug, Clone)]
pub struct Pending {
    local: Hello,
    peer: Hello,
}

impl Pending {
    /// The connector's hello (its uid and pid are informational: check `SO_PEERCRED`).
    pub fn peer(&self) -> &Hello {
        &self.peer
    }

    /// Accepts: the Accept frame to send, and the agreement.
    pub fn accept(self) -> (Vec<u8>, Agreed) {
        let mut payload = Vec::new();
        self.local.encode_valid(&mut payload);
        (whole_frame(FrameKind::Accept, &payload), agreed(&self.local, self.peer))
    }

    /// Refuses with a standard text: the Refuse frame to send before closing.
    pub fn refuse(self, reason: RefuseReason) -> Vec<u8> {
        let text = match reason {
            RefuseReason::NotAllowed => format!("uid {} is not allowed to connect", self.peer.uid),
            other => format!("refused: {other}"),
        };
        self.refuse_with(reason, &text)
    }

    /// Refuses with `text` (cut to [`MAX_REFUSAL_TEXT`] bytes): the Refuse frame to send.
    pub fn refuse_with(self, reason: RefuseReason, text: &str) -> Vec<u8> {
        Acceptor { local: self.local }.refusal(reason, text)
    }
}

#[cfg(test)]
mod tests;
