//! Byte layouts of the handshake payloads (docs/PROTOCOL.md section 7.2), written and read by
//! hand with explicit little-endian fields and checked arithmetic, so that a C or Python
//! implementation can follow the spec.

use crate::contract::{validate_name_bytes, ContractId, NameError, Version};

use super::{Hello, HelloFlags, Refusal, RefuseReason, MAX_REFUSAL_TEXT, PROTOCOL_VERSION};

impl Hello {
    /// Checks what the encoding needs: valid contract and transport names, `max_message` ≥ 1.
    pub fn validate(&self) -> Result<(), PayloadError> {
        let name = |field, s: &str| {
            validate_name_bytes(s.as_bytes())
                .map_err(|source| PayloadError::BadName { field, source })
        };
        name("contract name", &self.contract.name)?;
        name("transport name", &self.transport)?;
        if self.max_message == 0 {
            return Err(PayloadError::ZeroMaxMessage);
        }
        Ok(())
    }

    /// Appends the Hello payload (also the Accept payload) to `out`, after validating.
    pub fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), PayloadError> {
        self.validate()?;
        self.encode_valid(out);
        Ok(())
    }

    /// Appends the payload of a hello already validated.
    pub(super) fn encode_valid(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        out.extend_from_slice(&self.flags.bits().to_le_bytes());
        out.extend_from_slice(&self.max_message.to_le_bytes());
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.extend_from_slice(&self.contract.fingerprint.to_le_bytes());
        out.extend_from_slice(&self.contract.version.major.to_le_bytes());
        out.extend_from_slice(&self.contract.version.minor.to_le_bytes());
        for name in [&self.contract.name, &self.transport] {
            // validate() bounds both names to 1..=255 bytes.
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
        }
    }

    /// Decodes a Hello (or Accept) payload. Bytes after the transport name form the extension
    /// area, which protocol version 1 ignores.
    pub fn decode_payload(bytes: &[u8]) -> Result<Self, PayloadError> {
        let mut r = Reader { bytes, pos: 0 };
        let protocol = r.u16("protocol version")?;
        if protocol != PROTOCOL_VERSION {
            return Err(PayloadError::UnsupportedProtocol { got: protocol });
        }
        let flags = HelloFlags::from_bits_retain(r.u16("flags")?);
        let max_message = r.u32("max_message")?;
        let pid = r.u32("pid")?;
        let uid = r.u32("uid")?;
        let fingerprint = r.u64("fingerprint")?;
        let version = Version::new(r.u16("major")?, r.u16("minor")?);
        let name = r.name("contract name")?;
        let transport = r.name("transport name")?;
        if max_message == 0 {
            return Err(PayloadError::ZeroMaxMessage);
        }
        let contract = ContractId { name, version, fingerprint };
        Ok(Self { contract, transport, max_message, flags, pid, uid })
    }
}

impl Refusal {
    /// Appends the Refuse payload to `out`, after validating the listener's hello and the text.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), PayloadError> {
        self.listener.validate()?;
        let len = u16::try_from(self.text.len())
            .ok()
            .filter(|&n| usize::from(n) <= MAX_REFUSAL_TEXT)
            .ok_or(PayloadError::TextTooLong { len: self.text.len() })?;
        out.extend_from_slice(&self.reason.code().to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(self.text.as_bytes());
        self.listener.encode_valid(out);
        Ok(())
    }

    /// Decodes a Refuse payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        let mut r = Reader { bytes, pos: 0 };
        let reason = RefuseReason::from_code(r.u16("reason")?);
        let len = usize::from(r.u16("text length")?);
        if len > MAX_REFUSAL_TEXT {
            return Err(PayloadError::TextTooLong { len });
        }
        let text = String::from_utf8(r.take(len, "text")?.to_vec())
            .map_err(|_| PayloadError::BadUtf8 { field: "text" })?;
        let listener = Hello::decode_payload(r.rest())?;
        Ok(Self { reason, text, listener })
    }
}

/// A cursor over a payload; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PayloadError> {
        let truncated = || PayloadError::Truncated {
            field,
            need: self.pos.saturating_add(n),
            have: self.bytes.len(),
        };
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PayloadError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, PayloadError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, PayloadError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, PayloadError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// A name: one length byte, then that many bytes of printable ASCII.
    fn name(&mut self, field: &'static str) -> Result<String, PayloadError> {
        let [len] = self.array::<1>(field)?;
        let bytes = self.take(usize::from(len), field)?;
        validate_name_bytes(bytes).map_err(|source| PayloadError::BadName { field, source })?;
        String::from_utf8(bytes.to_vec()).map_err(|_| PayloadError::BadUtf8 { field })
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }
}

/// A handshake payload is malformed (from the peer) or invalid (our own).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The payload ends inside a field.
    #[error("truncated handshake payload: {field} needs {need} bytes, the payload has {have}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Payload length needed to hold it.
        need: usize,
        /// Payload length present.
        have: usize,
    },
    /// The hello speaks another handshake protocol version.
    #[error("handshake protocol version {got} is not supported (this build speaks {PROTOCOL_VERSION}); upgrade the older side")]
    UnsupportedProtocol {
        /// The version found.
        got: u16,
    },
    /// A contract or transport name is invalid.
    #[error("invalid {field}: {source}")]
    BadName {
        /// Which name.
        field: &'static str,
        /// What is wrong with it.
        source: NameError,
    },
    /// `max_message` is zero.
    #[error("max_message is 0; every side must accept messages of at least 1 byte")]
    ZeroMaxMessage,
    /// The refusal text is too long.
    #[error("refusal text of {len} bytes exceeds the limit of 1024 bytes; shorten it")]
    TextTooLong {
        /// Its length.
        len: usize,
    },
    /// A text field is not UTF-8.
    #[error("the {field} is not valid UTF-8")]
    BadUtf8 {
        /// Which field.
        field: &'static str,
    },
}
