//! Arbitrary bytes fed to a `FrameDecoder` in arbitrary chunks: it must never panic, every
//! frame it returns must match its header, and after an error it must keep failing.
#![no_main]
#![forbid(unsafe_code)]

use ipcx::frame::FrameDecoder;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the chunk size, bytes 1..3 the payload limit; the rest is the stream.
    let [chunk, max_lo, max_hi, stream @ ..] = data else { return };
    let chunk = usize::from(*chunk).max(1);
    let mut dec = FrameDecoder::new(u32::from(u16::from_le_bytes([*max_lo, *max_hi])));
    let mut failed = false;
    for piece in stream.chunks(chunk) {
        dec.push(piece);
        loop {
            match dec.next_frame_ref() {
                Ok(Some((header, payload))) => {
                    assert!(!failed, "a frame after an error");
                    assert_eq!(payload.len() as u64, u64::from(header.len));
                    assert!(header.len <= dec.max_len());
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
});
