//! Incremental frame decoding for byte streams.

use super::{FrameError, FrameHeader, HEADER_LEN};

/// Splits a byte stream into frames.
///
/// Feed it whatever the transport read with [`push`](Self::push), then take frames with
/// [`next_frame_ref`](Self::next_frame_ref) (borrowed, no allocation) or
/// [`next_frame`](Self::next_frame) (owned) until they return `Ok(None)`. Consumed bytes are
/// dropped from the front of the buffer only when they make up at least half of it, so the
/// total work is linear in the bytes pushed however the stream is chunked. A header is
/// validated as soon as its 24 bytes are present, so an oversized length is refused before its
/// payload arrives. After an error the decoder keeps returning it: close the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Buffered bytes; `buf[start..]` is not consumed yet.
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    start: usize,
    /// Largest payload accepted.
    max_len: u32,
    /// The first error, repeated forever.
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder refusing payloads longer than `max_len` bytes.
    pub fn new(max_len: u32) -> Self {
        Self { buf: Vec::new(), start: 0, max_len, failed: None }
    }

    /// The largest payload accepted.
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// Changes the payload limit (e.g. to the `max_message` agreed by the handshake).
    pub fn set_max_len(&mut self, max_len: u32) {
        self.max_len = max_len;
    }

    /// Bytes pushed but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, borrowed from the buffer: `Ok(None)` means push more bytes.
    /// The crc is verified when the frame's CRC flag is set.
    pub fn next_frame_ref(&mut self) -> Result<Option<(FrameHeader, &[u8])>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let rest = &self.buf[self.start..];
        if rest.len() < HEADER_LEN {
            return Ok(None);
        }
        let parsed = FrameHeader::decode(rest, self.max_len).and_then(|header| {
            let end = HEADER_LEN
                .checked_add(header.len as usize)
                .ok_or(FrameError::TooLong { len: header.len.into(), max: self.max_len })?;
            match rest.get(HEADER_LEN..end) {
                None => Ok(None),
                Some(payload) => header.check_payload(payload).map(|()| Some((header, end))),
            }
        });
        match parsed {
            Ok(None) => Ok(None),
            Ok(Some((header, end))) => {
                let from = self.start + HEADER_LEN;
                self.start += end;
                Ok(Some((header, &self.buf[from..self.start])))
            }
            Err(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// The next complete frame with its payload copied out: `Ok(None)` means push more bytes.
    pub fn next_frame(&mut self) -> Result<Option<(FrameHeader, Vec<u8>)>, FrameError> {
        Ok(self.next_frame_ref()?.map(|(header, payload)| (header, payload.to_vec())))
    }
}
