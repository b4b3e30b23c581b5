//! Property tests of the RPC envelope (docs/PROTOCOL.md section 10): exact round trips,
//! truncated headers refused, arbitrary bytes never panic and decode only canonically, and
//! the client session matches any interleaving of responses to its calls.

use std::time::{Duration, Instant};

use ipcx::rpc::envelope::{self, Body, Envelope, EnvelopeError, ErrorCode, HEADER_LEN};
use ipcx::rpc::session::{ClientSession, Event};
use proptest::prelude::*;

fn body() -> impl Strategy<Value = (u8, Option<u32>, u16, Vec<u8>, String)> {
    (
        1u8..=6,
        proptest::option::of(any::<u32>()),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        ".{0,16}",
    )
}

/// Builds the envelope that `body()` describes, borrowing from its parts.
fn envelope<'a>(id: u64, parts: &'a (u8, Option<u32>, u16, Vec<u8>, String)) -> Envelope<'a> {
    let (kind, deadline, code, payload, text) = parts;
    let body = match kind {
        1 => Body::Request {
            deadline: deadline.map(|ms| Duration::from_millis(u64::from(ms))),
            payload,
        },
        2 => Body::Response(payload),
        3 => Body::ResponseChunk(payload),
        4 => Body::ResponseEnd,
        5 => Body::Error { code: ErrorCode::from_u16(*code), text },
        _ => Body::Cancel,
    };
    Envelope { id, body }
}

proptest! {
    #[test]
    fn round_trip_is_exact(id in any::<u64>(), parts in body()) {
        let env = envelope(id, &parts);
        let mut out = Vec::new();
        envelope::encode(&env, &mut out);
        prop_assert_eq!(envelope::decode(&out), Ok(env));
    }

    #[test]
    fn truncated_headers_are_refused(id in any::<u64>(), parts in body(), cut in 0usize..HEADER_LEN) {
        let mut out = Vec::new();
        envelope::encode(&envelope(id, &parts), &mut out);
        prop_assert_eq!(envelope::decode(&out[..cut]), Err(EnvelopeError::Truncated { len: cut }));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_canonically(
        bytes in proptest::collection::vec(any::<u8>(), 0..48),
    ) {
        if let Ok(env) = envelope::decode(&bytes) {
            let mut out = Vec::new();
            envelope::encode(&env, &mut out);
            prop_assert_eq!(out, bytes, "a decoded envelope re-encodes to the same bytes");
        }
    }

    #[test]
    fn every_response_reaches_its_call(order in Just((0u64..16).collect::<Vec<_>>()).prop_shuffle()) {
        let now = Instant::now();
        let mut session = ClientSession::new();
        let ids: Vec<_> = (0..16).map(|_| session.start(None, now, &mut Vec::new())).collect();
        for i in &order {
            let id = ids[*i as usize];
            let mut out = Vec::new();
            envelope::encode(&Envelope { id: id.0, body: Body::Response(&i.to_le_bytes()) }, &mut out);
            session.handle(envelope::decode(&out).unwrap()).unwrap();
        }
        for (i, id) in ids.iter().enumerate() {
            prop_assert_eq!(session.take(*id), Some(Event::Response((i as u64).to_le_bytes().to_vec())));
        }
        prop_assert_eq!(session.in_flight(), 0);
    }
}
