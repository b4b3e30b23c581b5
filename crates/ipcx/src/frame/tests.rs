use super::*;

fn frame(kind: FrameKind, flags: FrameFlags, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(kind, flags, seq, payload, &mut out).unwrap();
    out
}

#[test]
fn layout_is_as_documented() {
    let h = FrameHeader::for_payload(FrameKind::Data, FrameFlags::ACK_REQUESTED, 0x0102, b"abc")
        .unwrap();
    let b = h.encode();
    assert_eq!(&b[..8], &[0x49, 0x58, 1, 1, 1, 0, 0, 0]);
    assert_eq!(&b[8..12], &3u32.to_le_bytes());
    assert_eq!(&b[12..16], &[0; 4]);
    assert_eq!(&b[16..24], &0x0102u64.to_le_bytes());
    assert_eq!(FrameHeader::decode(&b, 3), Ok(h));
}

#[test]
fn crc_is_stored_and_checked() {
    // crc32c("123456789") is the standard check value 0xe3069283.
    assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    let f = frame(FrameKind::Data, FrameFlags::CRC, 1, b"123456789");
    let h = FrameHeader::decode(&f, 100).unwrap();
    assert_eq!(h.crc, 0xe306_9283);
    assert_eq!(h.check_payload(&f[HEADER_LEN..]), Ok(()));
    assert_eq!(
        h.check_payload(b"123456780"),
        Err(FrameError::CrcMismatch { expected: 0xe306_9283, computed: crc32c(b"123456780") })
    );
    assert!(matches!(
        h.check_payload(b"12"),
        Err(FrameError::LengthMismatch { header: 9, actual: 2 })
    ));
}

#[test]
fn every_bad_field_has_its_error() {
    let good =
        FrameHeader::for_payload(FrameKind::Hello, FrameFlags::NONE, 0, &[0; 10]).unwrap().encode();
    let with = |at: usize, v: u8| {
        let mut b = good;
        b[at] = v;
        FrameHeader::decode(&b, 100)
    };
    assert_eq!(with(0, 0), Err(FrameError::BadMagic { got: 0x5800 }));
    assert_eq!(with(2, 2), Err(FrameError::UnsupportedVersion { got: 2 }));
    assert_eq!(with(3, 0), Err(FrameError::UnknownKind { got: 0 }));
    assert_eq!(with(3, 7), Err(FrameError::UnknownKind { got: 7 }));
    assert_eq!(with(4, 8), Err(FrameError::ReservedBits { field: ReservedField::Flags, value: 8 }));
    assert_eq!(
        with(6, 1),
        Err(FrameError::ReservedBits { field: ReservedField::Reserved, value: 0x100 })
    );
    assert_eq!(
        with(13, 1),
        Err(FrameError::ReservedBits { field: ReservedField::Crc, value: 0x100 })
    );
    assert_eq!(FrameHeader::decode(&good, 9), Err(FrameError::TooLong { len: 10, max: 9 }));
    assert_eq!(
        FrameHeader::decode(&good[..23], 100),
        Err(FrameError::Truncated { need: 24, have: 23 })
    );
    let msg = with(0, 0).unwrap_err().to_string();
    assert!(msg.starts_with("not an ipcx frame") && msg.contains("close the connection"), "{msg}");
}

#[test]
fn decoder_splits_a_stream_byte_by_byte() {
    let mut stream = frame(FrameKind::Data, FrameFlags::CRC, 1, b"one");
    stream.extend(frame(FrameKind::Ack, FrameFlags::NONE, 1, b""));
    stream.extend(frame(FrameKind::Data, FrameFlags::NONE, 2, &[7; 300]));
    let mut dec = FrameDecoder::new(1000);
    let mut got = Vec::new();
    for b in &stream {
        dec.push(std::slice::from_ref(b));
        while let Some((h, p)) = dec.next_frame().unwrap() {
            got.push((h.kind, h.seq, p));
        }
    }
    assert_eq!(
        got,
        [
            (FrameKind::Data, 1, b"one".to_vec()),
            (FrameKind::Ack, 1, vec![]),
            (FrameKind::Data, 2, vec![7; 300])
        ]
    );
    assert_eq!(dec.buffered(), 0);
}

#[test]
fn decoder_refuses_long_frames_before_their_payload() {
    let f = frame(FrameKind::Data, FrameFlags::NONE, 0, &[0; 64]);
    let mut dec = FrameDecoder::new(63);
    dec.push(&f[..HEADER_LEN]);
    assert_eq!(dec.next_frame(), Err(FrameError::TooLong { len: 64, max: 63 }));
    dec.push(&f[HEADER_LEN..]);
    assert!(dec.next_frame().is_err(), "errors are sticky");
}

#[test]
fn decoder_detects_corruption() {
    let mut f = frame(FrameKind::Data, FrameFlags::CRC, 0, b"payload");
    *f.last_mut().unwrap() ^= 1;
    let mut dec = FrameDecoder::new(100);
    dec.push(&f);
    assert!(matches!(dec.next_frame_ref(), Err(FrameError::CrcMismatch { .. })));
}

#[test]
fn many_small_frames_stay_linear() {
    let one = frame(FrameKind::Data, FrameFlags::NONE, 0, b"x");
    let mut dec = FrameDecoder::new(10);
    for _ in 0..100_000 {
        dec.push(&one);
        dec.push(&one[..5]);
        assert!(dec.next_frame_ref().unwrap().is_some());
        dec.push(&one[5..]);
        assert!(dec.next_frame_ref().unwrap().is_some());
        assert!(dec.next_frame_ref().unwrap().is_none());
    }
    assert_eq!(dec.buffered(), 0);
}

#[test]
fn plain_data_frames_are_recognised_and_nothing_else() {
    let plain = frame(FrameKind::Data, FrameFlags::NONE, 7, b"hello");
    assert_eq!(plain_data(&plain, 7, 5), Some(&b"hello"[..]));
    assert_eq!(plain_data(&frame(FrameKind::Data, FrameFlags::NONE, 1, b""), 1, 0), Some(&[][..]));
    // Another number, a payload over the limit, extra or missing bytes.
    assert_eq!(plain_data(&plain, 8, 5), None);
    assert_eq!(plain_data(&plain, 7, 4), None);
    let mut longer = plain.clone();
    longer.push(0);
    assert_eq!(plain_data(&longer, 7, 5), None);
    assert_eq!(plain_data(&plain[..plain.len() - 1], 7, 5), None);
    assert_eq!(plain_data(&plain[..HEADER_LEN - 1], 7, 5), None);
    // Flags (acknowledgement, crc, fds), other kinds, a bad magic or version.
    for flags in [FrameFlags::ACK_REQUESTED, FrameFlags::CRC, FrameFlags::FDS] {
        assert_eq!(plain_data(&frame(FrameKind::Data, flags, 7, b"hello"), 7, 5), None);
    }
    assert_eq!(plain_data(&frame(FrameKind::Ack, FrameFlags::NONE, 7, b""), 7, 5), None);
    assert_eq!(plain_data(&frame(FrameKind::Close, FrameFlags::NONE, 7, b""), 7, 5), None);
    for at in [0, 2, 5] {
        let mut bad = plain.clone();
        bad[at] ^= 1;
        assert_eq!(plain_data(&bad, 7, 5), None, "byte {at}");
    }
}
