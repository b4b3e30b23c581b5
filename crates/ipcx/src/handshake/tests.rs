use super::*;
use crate::contract::Version;
use crate::frame::{FrameError, HEADER_LEN};

fn contract(name: &str, major: u16, minor: u16, fingerprint: u64) -> ContractId {
    ContractId::new(name, Version::new(major, minor), fingerprint).unwrap()
}

fn hello(contract: ContractId, max: u32, pid: u32) -> Hello {
    Hello { pid, uid: 1000 + pid, ..Hello::new(contract, "uds-stream", max) }
}

/// Splits a whole frame into its decoded header and payload.
fn split(bytes: &[u8]) -> (FrameHeader, &[u8]) {
    (FrameHeader::decode(bytes, HANDSHAKE_MAX_LEN).unwrap(), &bytes[HEADER_LEN..])
}

/// Runs a handshake; returns the listener's verdict and, if it replied, the connector's.
fn run(
    conn: Hello,
    list: Hello,
) -> (Result<Agreed, HandshakeError>, Result<Agreed, HandshakeError>) {
    let connector = Connector::new(conn).unwrap();
    let acceptor = Acceptor::new(list).unwrap();
    let hello = connector.hello_frame();
    let (h, p) = split(&hello);
    let (reply, at_listener) = match acceptor.on_hello(&h, p) {
        Ok(pending) => {
            let (reply, agreed) = pending.accept();
            (reply, Ok(agreed))
        }
        Err(rejection) => (rejection.reply.expect("a refusal to send"), Err(rejection.error)),
    };
    let (h, p) = split(&reply);
    (at_listener, connector.on_reply(&h, p))
}

#[test]
fn compatible_sides_agree_on_the_smaller_limit() {
    let (l, c) =
        run(hello(contract("s.r", 2, 1, 7), 1000, 1), hello(contract("s.r", 2, 5, 7), 500, 2));
    let (l, c) = (l.unwrap(), c.unwrap());
    assert_eq!((l.max_message, c.max_message), (500, 500));
    assert_eq!((l.peer.pid, l.peer.uid, l.peer.contract.version), (1, 1001, Version::new(2, 1)));
    assert_eq!((c.peer.pid, c.peer.uid, c.peer.contract.version), (2, 1002, Version::new(2, 5)));
}

#[test]
fn major_mismatch_names_both_sides_on_both_ends() {
    let (l, c) =
        run(hello(contract("s.r", 1, 3, 0xb), 9, 1), hello(contract("s.r", 2, 0, 0xa), 9, 2));
    let l = l.unwrap_err().to_string();
    assert!(l.contains("we speak s.r 2.0 (fingerprint 0x000000000000000a)"), "{l}");
    assert!(l.contains("the peer speaks s.r 1.3 (fingerprint 0x000000000000000b)"), "{l}");
    let c = c.unwrap_err();
    assert!(
        matches!(c, HandshakeError::Refused { reason: RefuseReason::ContractMajor, .. }),
        "{c}"
    );
    let c = c.to_string();
    assert!(c.starts_with("the listener refused the connection (contract major version)"), "{c}");
    assert!(c.contains("we speak s.r 1.3") && c.contains("the peer speaks s.r 2.0"), "{c}");
    assert!(c.contains("upgrade the older side"), "{c}");
}

#[test]
fn each_mismatch_has_its_refusal_code() {
    let base = || hello(contract("a", 1, 0, 1), 9, 1);
    let cases = [
        (hello(contract("b", 1, 0, 1), 9, 1), RefuseReason::ContractName),
        (hello(contract("a", 1, 0, 2), 9, 1), RefuseReason::Fingerprint),
        (Hello { transport: "pipe".into(), ..base() }, RefuseReason::Transport),
    ];
    for (conn, want) in cases {
        let (_, c) = run(conn, base());
        match c {
            Err(HandshakeError::Refused { reason, .. }) => assert_eq!(reason, want),
            other => panic!("expected {want:?}, got {other:?}"),
        }
    }
}

#[test]
fn listener_may_refuse_a_compatible_hello() {
    let connector = Connector::new(hello(ContractId::bytes(), 9, 4)).unwrap();
    let acceptor = Acceptor::new(hello(ContractId::bytes(), 9, 5)).unwrap();
    let bytes = connector.hello_frame();
    let (h, p) = split(&bytes);
    let pending = acceptor.on_hello(&h, p).unwrap();
    assert_eq!(pending.peer().uid, 1004);
    let reply = pending.refuse(RefuseReason::NotAllowed);
    let (h, p) = split(&reply);
    let err = connector.on_reply(&h, p).unwrap_err().to_string();
    assert!(err.contains("uid 1004 may not use this service"), "{err}");
    assert!(err.contains("uid 1004 is not allowed to connect"), "{err}");
}

#[test]
fn newer_protocol_gets_a_refusal_in_ours() {
    let acceptor = Acceptor::new(hello(ContractId::bytes(), 9, 5)).unwrap();
    let mut payload = Vec::new();
    hello(ContractId::bytes(), 9, 4).encode_payload(&mut payload).unwrap();
    payload[0] = 2;
    let header = FrameHeader::for_payload(FrameKind::Hello, FrameFlags::NONE, 0, &payload).unwrap();
    let rejection = acceptor.on_hello(&header, &payload).unwrap_err();
    assert_eq!(rejection.error, HandshakeError::ProtocolVersion { theirs: 2 });
    let (h, p) = split(rejection.reply.as_deref().unwrap());
    let refusal = Refusal::decode(p).unwrap();
    assert_eq!((h.kind, refusal.reason), (FrameKind::Refuse, RefuseReason::ProtocolVersion));
    assert!(
        refusal.text.contains("we speak ipcx protocol 1, the peer speaks 2"),
        "{}",
        refusal.text
    );
}

#[test]
fn broken_frames_are_closed_without_reply() {
    let acceptor = Acceptor::new(hello(ContractId::bytes(), 9, 5)).unwrap();
    let data = FrameHeader::for_payload(FrameKind::Data, FrameFlags::NONE, 0, b"").unwrap();
    let r = acceptor.on_hello(&data, b"").unwrap_err();
    assert!(r.reply.is_none());
    assert!(matches!(r.error, HandshakeError::UnexpectedFrame { got: FrameKind::Data, .. }));

    let bytes = Connector::new(hello(ContractId::bytes(), 9, 4)).unwrap().hello_frame();
    let (h, p) = split(&bytes);
    let r = acceptor.on_hello(&h, &p[..p.len() - 1]).unwrap_err();
    assert!(matches!(r.error, HandshakeError::Frame(FrameError::LengthMismatch { .. })), "{r}");

    let short = FrameHeader { len: 5, ..h };
    let r = acceptor.on_hello(&short, &p[..5]).unwrap_err();
    assert!(matches!(r.error, HandshakeError::Malformed { .. }) && r.reply.is_none(), "{r}");
}

#[test]
fn hello_layout_is_as_documented() {
    let h = Hello {
        flags: HelloFlags::WANTS_ACK,
        ..hello(contract("ab", 0x0102, 0x0304, 0x1122_3344_5566_7788), 0x10_0000, 7)
    };
    let mut p = Vec::new();
    h.encode_payload(&mut p).unwrap();
    let mut want = vec![1, 0, 1, 0, 0, 0, 0x10, 0, 7, 0, 0, 0, 0xef, 3, 0, 0];
    want.extend(0x1122_3344_5566_7788u64.to_le_bytes());
    want.extend([2, 1, 4, 3, 2, b'a', b'b', 10]);
    want.extend(b"uds-stream");
    assert_eq!(p, want);
    assert_eq!(Hello::decode_payload(&p), Ok(h.clone()));
    p.extend([0xff; 3]);
    assert_eq!(Hello::decode_payload(&p), Ok(h), "the extension area is ignored");
}

#[test]
fn invalid_local_hellos_are_refused_up_front() {
    let mut bad = hello(ContractId::bytes(), 0, 1);
    assert!(matches!(
        Connector::new(bad.clone()),
        Err(HandshakeError::InvalidLocal(PayloadError::ZeroMaxMessage))
    ));
    bad.max_message = 1;
    bad.contract.name = "x".repeat(256);
    assert!(Acceptor::new(bad).is_err());
    let long = Refusal {
        reason: RefuseReason::Other(0x8000),
        text: "é".repeat(600),
        listener: hello(ContractId::bytes(), 1, 1),
    };
    assert_eq!(long.encode(&mut Vec::new()), Err(PayloadError::TextTooLong { len: 1200 }));
}

#[test]
fn long_refusal_texts_are_cut_on_a_char_boundary() {
    let acceptor = Acceptor::new(hello(ContractId::bytes(), 9, 5)).unwrap();
    let bytes = Connector::new(hello(ContractId::bytes(), 9, 4)).unwrap().hello_frame();
    let (h, p) = split(&bytes);
    let reply = acceptor
        .on_hello(&h, p)
        .unwrap()
        .refuse_with(RefuseReason::Other(0x8001), &"é".repeat(600));
    let refusal = Refusal::decode(&reply[HEADER_LEN..]).unwrap();
    assert_eq!((refusal.reason.code(), refusal.text.len()), (0x8001, 1024));
}

#[test]
fn errors_cross_threads() {
    fn check<T: std::error::Error + Send + Sync + 'static>() {}
    check::<HandshakeError>();
    check::<Rejection>();
    check::<crate::contract::ContractError>();
    check::<crate::codec::DecodeError>();
    check::<crate::codec::EncodeError>();
    check::<FrameError>();
}
