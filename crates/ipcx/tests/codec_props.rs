//! Property tests for every decoder of bytes from another process: frames, the stream
//! decoder, the handshake payloads and the postcard codec. Round trips are exact, every strict
//! truncation of an encoding is an error, and arbitrary bytes never panic.

use std::collections::BTreeMap;

use ipcx::contract::{ContractId, Version};
use ipcx::frame::{encode_frame, FrameDecoder, FrameFlags, FrameHeader, FrameKind, HEADER_LEN};
use ipcx::handshake::{
    Acceptor, Connector, Hello, HelloFlags, Refusal, RefuseReason, HANDSHAKE_MAX_LEN,
    MAX_REFUSAL_TEXT,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

fn kind() -> impl Strategy<Value = FrameKind> {
    (1u8..=6).prop_map(|k| FrameKind::from_u8(k).expect("1..=6 are kinds"))
}

fn flags() -> impl Strategy<Value = FrameFlags> {
    (0u8..8).prop_map(|b| FrameFlags::from_bits(b).expect("bits 0 to 2 are flags"))
}

fn header() -> impl Strategy<Value = FrameHeader> {
    (kind(), flags(), any::<u32>(), any::<u32>(), any::<u64>()).prop_map(
        |(kind, flags, len, crc, seq)| {
            let crc = if flags.contains(FrameFlags::CRC) { crc } else { 0 };
            FrameHeader { kind, flags, len, crc, seq }
        },
    )
}

fn name() -> impl Strategy<Value = String> {
    "[!-~]{1,255}"
}

fn hello() -> impl Strategy<Value = Hello> {
    let contract =
        (name(), any::<u16>(), any::<u16>(), any::<u64>()).prop_map(|(n, major, minor, fp)| {
            ContractId::new(n, Version::new(major, minor), fp).unwrap()
        });
    (contract, name(), 1..=u32::MAX, any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
        |(contract, transport, max_message, flags, pid, uid)| Hello {
            contract,
            transport,
            max_message,
            flags: HelloFlags::from_bits_retain(flags),
            pid,
            uid,
        },
    )
}

fn refusal() -> impl Strategy<Value = Refusal> {
    (any::<u16>(), "\\PC{0,300}", hello())
        .prop_filter("text fits", |(_, text, _)| text.len() <= MAX_REFUSAL_TEXT)
        .prop_map(|(code, text, listener)| Refusal {
            reason: RefuseReason::from_code(code),
            text,
            listener,
        })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Inner {
    Empty,
    Num(i64),
    Pair(u8, f64),
    Named { x: u16, s: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Outer {
    id: u64,
    name: String,
    tags: Vec<Inner>,
    opt: Option<i32>,
    map: BTreeMap<u8, String>,
    unit: (),
    arr: [u16; 3],
}

fn inner() -> impl Strategy<Value = Inner> {
    prop_oneof![
        Just(Inner::Empty),
        any::<i64>().prop_map(Inner::Num),
        (any::<u8>(), -1e12f64..1e12).prop_map(|(a, b)| Inner::Pair(a, b)),
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(x, s)| Inner::Named { x, s }),
    ]
}

fn outer() -> impl Strategy<Value = Outer> {
    (
        any::<u64>(),
        "\\PC{0,40}",
        proptest::collection::vec(inner(), 0..6),
        any::<Option<i32>>(),
        proptest::collection::btree_map(any::<u8>(), "\\PC{0,10}", 0..5),
        any::<[u16; 3]>(),
    )
        .prop_map(|(id, name, tags, opt, map, arr)| Outer {
            id,
            name,
            tags,
            opt,
            map,
            unit: (),
            arr,
        })
}

/// Frames to send: kind, flags, seq, payload.
fn frames() -> impl Strategy<Value = Vec<(FrameKind, FrameFlags, u64, Vec<u8>)>> {
    proptest::collection::vec(
        (kind(), flags(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..200)),
        0..20,
    )
}

proptest! {
    #[test]
    fn frame_header_round_trips(h in header()) {
        let bytes = h.encode();
        prop_assert_eq!(FrameHeader::decode(&bytes, u32::MAX), Ok(h));
        for cut in 0..HEADER_LEN {
            prop_assert!(FrameHeader::decode(&bytes[..cut], u32::MAX).is_err());
        }
    }

    #[test]
    fn frame_header_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), max in any::<u32>()) {
        if let Ok(h) = FrameHeader::decode(&bytes, max) {
            prop_assert!(h.len <= max);
            prop_assert_eq!(&h.encode()[..], &bytes[..HEADER_LEN]);
        }
    }

    #[test]
    fn decoder_returns_frames_whatever_the_chunking(
        frames in frames(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let mut stream = Vec::new();
        for (kind, flags, seq, payload) in &frames {
            encode_frame(*kind, *flags, *seq, payload, &mut stream).unwrap();
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut dec = FrameDecoder::new(200);
        let (mut got, mut from) = (Vec::new(), 0);
        for cut in cuts {
            dec.push(&stream[from..cut]);
            from = cut;
            while let Some((h, p)) = dec.next_frame().unwrap() {
                got.push((h.kind, h.flags, h.seq, p));
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn decoder_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..64,
        max in 0u32..300,
    ) {
        let mut dec = FrameDecoder::new(max);
        'feed: for piece in bytes.chunks(chunk) {
            dec.push(piece);
            loop {
                match dec.next_frame_ref() {
                    Ok(Some((h, p))) => prop_assert_eq!(p.len() as u64, u64::from(h.len)),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }

    #[test]
    fn hello_round_trips_and_truncations_fail(h in hello()) {
        let mut bytes = Vec::new();
        h.encode_payload(&mut bytes).unwrap();
        prop_assert_eq!(Hello::decode_payload(&bytes), Ok(h));
        for cut in 0..bytes.len() {
            prop_assert!(Hello::decode_payload(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn refusal_round_trips_and_truncations_fail(r in refusal()) {
        let mut bytes = Vec::new();
        r.encode(&mut bytes).unwrap();
        prop_assert_eq!(Refusal::decode(&bytes), Ok(r));
        for cut in 0..bytes.len() {
            prop_assert!(Refusal::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn handshake_decoders_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        kind in kind(),
        local in hello(),
    ) {
        let _ = Hello::decode_payload(&bytes);
        let _ = Refusal::decode(&bytes);
        if let Ok(header) = FrameHeader::for_payload(kind, FrameFlags::NONE, 0, &bytes) {
            let _ = Connector::new(local.clone()).unwrap().on_reply(&header, &bytes);
            let _ = Acceptor::new(local).unwrap().on_hello(&header, &bytes);
        }
    }

    #[test]
    fn mutated_hellos_never_panic(h in hello(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = Vec::new();
        h.encode_payload(&mut bytes).unwrap();
        let at = at.index(bytes.len());
        bytes[at] = byte;
        if let Ok(decoded) = Hello::decode_payload(&bytes) {
            let mut again = Vec::new();
            decoded.encode_payload(&mut again).unwrap();
            prop_assert_eq!(Hello::decode_payload(&again), Ok(decoded));
        }
    }

    #[test]
    fn handshake_agrees_on_the_smaller_limit(a in hello(), max in 1..=u32::MAX) {
        let b = Hello { max_message: max, ..a.clone() };
        let connector = Connector::new(a.clone()).unwrap();
        let hello = connector.hello_frame();
        let h = FrameHeader::decode(&hello, HANDSHAKE_MAX_LEN).unwrap();
        let (reply, at_listener) =
            Acceptor::new(b).unwrap().on_hello(&h, &hello[HEADER_LEN..]).unwrap().accept();
        let h = FrameHeader::decode(&reply, HANDSHAKE_MAX_LEN).unwrap();
        let at_connector = connector.on_reply(&h, &reply[HEADER_LEN..]).unwrap();
        prop_assert_eq!(at_listener.max_message, a.max_message.min(max));
        prop_assert_eq!(at_connector.max_message, a.max_message.min(max));
        prop_assert_eq!(at_listener.peer, a);
    }

    #[test]
    fn postcard_round_trips_and_truncations_fail(v in outer()) {
        let mut bytes = Vec::new();
        ipcx::codec::encode(&v, &mut bytes).unwrap();
        prop_assert_eq!(ipcx::codec::decode::<Outer>(&bytes).unwrap(), v);
        for cut in 0..bytes.len() {
            prop_assert!(ipcx::codec::decode::<Outer>(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn postcard_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = ipcx::codec::decode::<Outer>(&bytes);
    }
}
