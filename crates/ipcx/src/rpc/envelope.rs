//! The RPC envelope: the 16-byte header in front of every request and response.
//!
//! ```text
//! offset size field
//!  0     1    version   1
//!  1     1    kind      1 Request, 2 Response, 3 ResponseChunk, 4 ResponseEnd, 5 Error, 6 Cancel
//!  2     1    flags     bit 0 DEADLINE (Request only); other bits zero
//!  3     1    reserved  zero
//!  4     4    deadline  ms the client still waits, when DEADLINE is set; else zero
//!  8     8    id        correlation id (per client connection, increasing from 1)
//! 16     ..   body      Request/Response/ResponseChunk: the encoded message;
//!                       Error: code (u16) then UTF-8 text; ResponseEnd, Cancel: empty
//! ```
//!
//! All integers are little-endian. One channel message carries exactly one envelope, so the
//! body runs to the end of the message. [`decode`] checks every field and never panics: any
//! error means the peer is broken or hostile. docs/PROTOCOL.md section 10 is the normative
//! text.

use std::time::Duration;

/// Size of the envelope header in bytes.
pub const HEADER_LEN: usize = 16;
/// The envelope format version at offset 0.
pub const VERSION: u8 = 1;
/// Flag: the `deadline` field is set.
const FLAG_DEADLINE: u8 = 1;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Client → server: a request.
    Request = 1,
    /// Server → client: the one response to a request.
    Response = 2,
    /// Server → client: one part of a streamed response; more follow.
    ResponseChunk = 3,
    /// Server → client: the streamed response is complete.
    ResponseEnd = 4,
    /// Server → client: the request failed; ends the call.
    Error = 5,
    /// Client → server: the client gave up on the call.
    Cancel = 6,
}

impl Kind {
    /// The kind with wire value `value`, if there is one.
    pub const fn from_u8(value: u8) -> Option<Kind> {
        Some(match value {
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::ResponseChunk,
            4 => Kind::ResponseEnd,
            5 => Kind::Error,
            6 => Kind::Cancel,
            _ => return None,
        })
    }
}

/// Why a request failed, as an Error envelope says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The handler returned an error (the text is its message).
    Handler,
    /// The request's body did not decode as the server's request type.
    BadRequest,
    /// The request's deadline passed before the server got to it.
    DeadlineExceeded,
    /// The server is shutting down.
    ShuttingDown,
    /// The handler panicked.
    Internal,
    /// A code this version does not know (kept as is).
    Other(u16),
}

impl ErrorCode {
    /// The wire value.
    pub const fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Handler => 1,
            ErrorCode::BadRequest => 2,
            ErrorCode::DeadlineExceeded => 3,
            ErrorCode::ShuttingDown => 4,
            ErrorCode::Internal => 5,
            ErrorCode::Other(c) => c,
        }
    }

    /// The code with wire value `value`.
    pub const fn from_u16(value: u16) -> ErrorCode {
        match value {
            1 => ErrorCode::Handler,
            2 => ErrorCode::BadRequest,
            3 => ErrorCode::DeadlineExceeded,
            4 => ErrorCode::ShuttingDown,
            5 => ErrorCode::Internal,
            c => ErrorCode::Other(c),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorCode::Handler => f.write_str("handler error"),
            ErrorCode::BadRequest => f.write_str("bad request"),
            ErrorCode::DeadlineExceeded => f.write_str("deadline exceeded"),
            ErrorCode::ShuttingDown => f.write_str("server shutting down"),
            ErrorCode::Internal => f.write_str("internal server error"),
            ErrorCode::Other(c) => write!(f, "error code {c}"),
        }
    }
}

/// A decoded envelope, borrowing its body from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The correlation id.
    pub id: u64,
    /// What it carries.
    pub body: Body<'a>,
}

/// The kind-specific part of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// A request; `deadline` is how long the client still waited when it sent it.
    Request {
        /// The deadline hint, if any.
        deadline: Option<Duration>,
        /// The encoded request.
        payload: &'a [u8],
    },
    /// The response.
    Response(&'a [u8]),
    /// One chunk of a streamed response.
    ResponseChunk(&'a [u8]),
    /// End of a streamed response.
    ResponseEnd,
    /// The call failed.
    Error {
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        text: &'a str,
    },
    /// The client gave up.
    Cancel,
}

impl Body<'_> {
    /// The kind of this body.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Request { .. } => Kind::Request,
            Body::Response(_) => Kind::Response,
            Body::ResponseChunk(_) => Kind::ResponseChunk,
            Body::ResponseEnd => Kind::ResponseEnd,
            Body::Error { .. } => Kind::Error,
            Body::Cancel => Kind::Cancel,
        }
    }
}

/// Appends the header of an envelope of `kind` to `out`; the caller appends the body.
/// `deadline` is written for [`Kind::Request`] only (clamped to `u32::MAX` ms).
#[inline]
pub fn write_header(out: &mut Vec<u8>, kind: Kind, id: u64, deadline: Option<Duration>) {
    out.extend_from_slice(&header(kind, id, deadline));
}

/// The header of an envelope of `kind` (see [`write_header`]).
#[inline]
pub fn header(kind: Kind, id: u64, deadline: Option<Duration>) -> [u8; HEADER_LEN] {
    let deadline = deadline.filter(|_| kind == Kind::Request);
    let flags = if deadline.is_some() { FLAG_DEADLINE } else { 0 };
    let ms = deadline.map_or(0, hint_ms);
    let mut h = [0; HEADER_LEN];
    h[..4].copy_from_slice(&[VERSION, kind as u8, flags, 0]);
    h[4..8].copy_from_slice(&ms.to_le_bytes());
    h[8..].copy_from_slice(&id.to_le_bytes());
    h
}

/// A deadline hint in whole milliseconds, rounded up: a server that goes by it gives up a
/// little late, never early (a call with 0.5 ms left is not "0 ms, expired").
fn hint_ms(d: Duration) -> u32 {
    let sub = d.subsec_nanos().div_ceil(1_000_000);
    let ms = d.as_secs().saturating_mul(1000).saturating_add(u64::from(sub));
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// Appends the whole envelope to `out`. Error texts longer than the message allows are the
/// caller's concern (the channel refuses messages over its limit).
pub fn encode(env: &Envelope<'_>, out: &mut Vec<u8>) {
    let deadline = match env.body {
        Body::Request { deadline, .. } => deadline,
        _ => None,
    };
    write_header(out, env.body.kind(), env.id, deadline);
    match env.body {
        Body::Request { payload, .. } | Body::Response(payload) | Body::ResponseChunk(payload) => {
            out.extend_from_slice(payload)
        }
        Body::Error { code, text } => {
            out.extend_from_slice(&code.to_u16().to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        Body::ResponseEnd | Body::Cancel => {}
    }
}

/// Decodes one envelope that fills `bytes` exactly.
pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(EnvelopeError::Truncated { len: bytes.len() });
    };
    // Two words, not sixteen bytes: in a bare-channel experiment between processes, taking
    // the header apart byte by byte cost ~25 ns per message more, for the same checks.
    let (head, id) = header.split_at(8);
    let head = u64::from_le_bytes(head.try_into().unwrap_or_default());
    let id = u64::from_le_bytes(id.try_into().unwrap_or_default());
    let [version, kind, flags, reserved] = (head as u32).to_le_bytes();
    let ms = (head >> 32) as u32;
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    let kind = Kind::from_u8(kind).ok_or(EnvelopeError::Kind(kind))?;
    if flags & !FLAG_DEADLINE != 0 || (flags != 0 && kind != Kind::Request) {
        return Err(EnvelopeError::Flags { flags, kind });
    }
    if reserved != 0 || (flags == 0 && ms != 0) {
        return Err(EnvelopeError::Reserved);
    }
    let body = match kind {
        Kind::Request => {
            let deadline = (flags != 0).then(|| Duration::from_millis(u64::from(ms)));
            Body::Request { deadline, payload: body }
        }
        Kind::Response => Body::Response(body),
        Kind::ResponseChunk => Body::ResponseChunk(body),
        Kind::ResponseEnd | Kind::Cancel if !body.is_empty() => {
            return Err(EnvelopeError::Body { kind, len: body.len() })
        }
        Kind::ResponseEnd => Body::ResponseEnd,
        Kind::Cancel => Body::Cancel,
        Kind::Error => {
            let Some((code, text)) = body.split_first_chunk::<2>() else {
                return Err(EnvelopeError::Body { kind, len: body.len() });
            };
            let text = std::str::from_utf8(text).map_err(|_| EnvelopeError::Text)?;
            Body::Error { code: ErrorCode::from_u16(u16::from_le_bytes(*code)), text }
        }
    };
    Ok(Envelope { id, body })
}

/// The id and body of `bytes` if they are a valid Request (`kind` [`Kind::Request`], with
/// or without a deadline hint) or Response (`kind` [`Kind::Response`]); `None` for anything
/// else, valid or not, which [`decode`] then judges. The fast path of both ends of a call:
/// one or two comparisons of the first header word.
#[inline]
pub(crate) fn plain(bytes: &[u8], kind: Kind) -> Option<(u64, &[u8])> {
    let (header, body) = bytes.split_first_chunk::<HEADER_LEN>()?;
    let (head, id) = header.split_at(8);
    let head = u64::from_le_bytes(head.try_into().ok()?);
    let id = u64::from_le_bytes(id.try_into().ok()?);
    // version, kind, flags 0, reserved 0, deadline 0
    let bare = u64::from(VERSION) | u64::from(kind as u8) << 8;
    // A Request may carry a deadline hint: flag set, any number of ms.
    let hinted =
        kind == Kind::Request && head as u32 == bare as u32 | u32::from(FLAG_DEADLINE) << 16;
    (head == bare || hinted).then_some((id, body))
}

/// Bytes that are not a valid envelope: the peer is broken or hostile; close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than the header.
    #[error("rpc envelope of {len} bytes is shorter than its 16-byte header; the peer does not speak ipcx rpc: close the connection")]
    Truncated {
        /// Message length.
        len: usize,
    },
    /// Unknown envelope version.
    #[error("rpc envelope version {0} is not supported (this side speaks version 1); upgrade the older side")]
    Version(u8),
    /// Unknown kind.
    #[error("unknown rpc envelope kind {0}; the peer is broken or newer: close the connection")]
    Kind(u8),
    /// Undefined flag bits, or flags on a kind that has none.
    #[error("invalid flags {flags:#04x} on a {kind:?} envelope; the peer is broken: close the connection")]
    Flags {
        /// The flags byte.
        flags: u8,
        /// The kind.
        kind: Kind,
    },
    /// A reserved byte or an unused deadline field is not zero.
    #[error("reserved rpc envelope fields are not zero; the peer is broken: close the connection")]
    Reserved,
    /// A body of the wrong length for its kind.
    #[error("a {kind:?} envelope may not carry a {len}-byte body; the peer is broken: close the connection")]
    Body {
        /// The kind.
        kind: Kind,
        /// Body length.
        len: usize,
    },
    /// An error text that is not UTF-8.
    #[error(
        "the error text of an rpc envelope is not UTF-8; the peer is broken: close the connection"
    )]
    Text,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_as_documented() {
        let mut out = Vec::new();
        let env = Envelope {
            id: 0x0102_0304_0506_0708,
            body: Body::Request { deadline: Some(Duration::from_millis(300)), payload: b"hi" },
        };
        encode(&env, &mut out);
        assert_eq!(
            out,
            [1, 1, 1, 0, 0x2c, 1, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, b'h', b'i'],
            "version, kind, flags, reserved, deadline LE, id LE, body"
        );
        assert_eq!(decode(&out), Ok(env));
    }

    #[test]
    fn deadline_hints_round_up_to_the_millisecond() {
        let hint = |d: Duration| {
            let mut out = Vec::new();
            write_header(&mut out, Kind::Request, 1, Some(d));
            match decode(&out).unwrap().body {
                Body::Request { deadline, .. } => deadline,
                body => panic!("{body:?}"),
            }
        };
        assert_eq!(hint(Duration::from_micros(500)), Some(Duration::from_millis(1)));
        assert_eq!(hint(Duration::from_millis(3)), Some(Duration::from_millis(3)));
        assert_eq!(hint(Duration::from_nanos(3_000_001)), Some(Duration::from_millis(4)));
        assert_eq!(hint(Duration::ZERO), Some(Duration::ZERO));
        assert_eq!(
            hint(Duration::from_secs(u64::MAX)),
            Some(Duration::from_millis(u32::MAX.into()))
        );
    }

    #[test]
    fn error_body_carries_code_and_text() {
        let mut out = Vec::new();
        let env = Envelope { id: 9, body: Body::Error { code: ErrorCode::Handler, text: "no" } };
        encode(&env, &mut out);
        assert_eq!(&out[HEADER_LEN..], [1, 0, b'n', b'o']);
        assert_eq!(decode(&out), Ok(env));
        out.truncate(HEADER_LEN + 1);
        assert!(matches!(decode(&out), Err(EnvelopeError::Body { kind: Kind::Error, len: 1 })));
    }

    #[test]
    fn the_fast_check_takes_exactly_the_valid_requests_and_responses() {
        for (version, kind, flags, reserved, ms) in header_words() {
            let mut bytes = vec![version, kind, flags, reserved];
            bytes.extend_from_slice(&ms.to_le_bytes());
            bytes.extend_from_slice(&42u64.to_le_bytes());
            bytes.extend_from_slice(b"body");
            for want in [Kind::Request, Kind::Response] {
                let fast = plain(&bytes, want);
                let full = match decode(&bytes) {
                    Ok(Envelope { id, body: Body::Request { payload, .. } })
                        if want == Kind::Request =>
                    {
                        Some((id, payload))
                    }
                    Ok(Envelope { id, body: Body::Response(payload) })
                        if want == Kind::Response =>
                    {
                        Some((id, payload))
                    }
                    _ => None,
                };
                assert_eq!(fast, full, "{bytes:?} as {want:?}");
            }
        }
        assert_eq!(plain(&[1, 2, 0, 0], Kind::Response), None, "shorter than a header");
    }

    /// Header words around the valid ones: every version, kind and flags byte near the
    /// defined values, reserved and deadline bytes zero or not.
    fn header_words() -> impl Iterator<Item = (u8, u8, u8, u8, u32)> {
        (0..3u8).flat_map(|v| {
            (0..8u8).flat_map(move |k| {
                (0..4u8).flat_map(move |f| {
                    [0u8, 1].into_iter().flat_map(move |r| [0u32, 7].map(|ms| (v, k, f, r, ms)))
                })
            })
        })
    }

    #[test]
    fn hostile_headers_are_refused() {
        let mut good = Vec::new();
        write_header(&mut good, Kind::Cancel, 1, None);
        assert!(decode(&good).is_ok());
        let cases: [(usize, u8); 5] = [(0, 2), (1, 0), (1, 7), (2, 1), (3, 1)];
        for (at, value) in cases {
            let mut bad = good.clone();
            bad[at] = value;
            assert!(decode(&bad).is_err(), "byte {at} = {value}");
        }
        let mut bad = good.clone();
        bad[4] = 1;
        assert_eq!(decode(&bad), Err(EnvelopeError::Reserved), "deadline without the flag");
        bad = good.clone();
        bad.push(0);
        assert!(matches!(decode(&bad), Err(EnvelopeError::Body { kind: Kind::Cancel, .. })));
    }
}
