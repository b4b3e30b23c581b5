//! The default message codec: serde with postcard.
//!
//! Postcard writes integers as LEB128 varints (signed ones zigzag-encoded first), floats as
//! little-endian IEEE 754, sequences, strings and maps with a varint length prefix, enums as a
//! varint variant index followed by the variant's fields, structs as their fields in
//! declaration order, and no field names. The encoding carries no type information, which is
//! why both ends agree on a [contract](crate::contract) first. One frame's payload holds
//! exactly one encoded message: [`decode`] refuses trailing bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Appends the postcard encoding of `value` to `out`.
///
/// On error `out` is truncated back to its length on entry.
pub fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    postcard::serialize_with_flavor(value, Append(out)).map_err(|source| {
        out.truncate(start);
        EncodeError { source }
    })
}

/// A postcard output flavor that appends to a caller's vector (slices in one copy).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes one message that fills `bytes` exactly.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(DecodeError::TrailingBytes { extra: rest.len(), total: bytes.len() }),
        Err(source) => Err(DecodeError::Postcard { len: bytes.len(), source }),
    }
}

/// A value could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot encode the message with postcard: {source}; postcard supports neither \
     `#[serde(flatten)]`, untagged or internally tagged enums, nor sequences of unknown length"
)]
pub struct EncodeError {
    /// postcard's error.
    #[source]
    source: postcard::Error,
}

/// Bytes could not be decoded as the expected message type.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// postcard rejected the bytes.
    #[error(
        "cannot decode a {len}-byte message: {source}; the peer sent a different type than \
         the contract says, or corrupt data: close the connection"
    )]
    Postcard {
        /// Length of the message.
        len: usize,
        /// postcard's error.
        #[source]
        source: postcard::Error,
    },
    /// The message decoded but bytes were left over.
    #[error(
        "the message decoded from the first {} of {total} bytes, leaving {extra}; the peer's \
         type differs from ours although the contracts matched: close the connection",
        total - extra
    )]
    TrailingBytes {
        /// Bytes left after the message.
        extra: usize,
        /// Length of the whole payload.
        total: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Dot,
        Line { len: u32 },
    }

    #[test]
    fn round_trip_appends() {
        let mut out = vec![0xee];
        encode(&(7u16, Shape::Line { len: 300 }, "hi"), &mut out).unwrap();
        assert_eq!(out[0], 0xee, "appends after existing bytes");
        let back: (u16, Shape, String) = decode(&out[1..]).unwrap();
        assert_eq!(back, (7, Shape::Line { len: 300 }, "hi".to_string()));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut out = Vec::new();
        encode(&Shape::Dot, &mut out).unwrap();
        out.push(0);
        let err = decode::<Shape>(&out).unwrap_err();
        assert!(matches!(err, DecodeError::TrailingBytes { extra: 1, total: 2 }), "{err}");
    }

    #[test]
    fn bad_bytes_are_an_error() {
        let err = decode::<Shape>(&[9]).unwrap_err();
        assert!(matches!(err, DecodeError::Postcard { len: 1, .. }), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        assert!(decode::<String>(&[5, b'a']).is_err(), "truncated string");
    }

    #[test]
    fn unsupported_shape_is_an_encode_error() {
        struct Unknown;
        impl Serialize for Unknown {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        let mut out = vec![1, 2];
        assert!(encode(&(3u8, Unknown), &mut out).is_err());
        assert_eq!(out, [1, 2], "the caller's bytes survive a failed encode");
    }
}
