//! Arbitrary handshake frames given to both `Connector::on_reply` and `Acceptor::on_hello`:
//! neither may panic. Byte 0 chooses between a parsed header (the first 24 bytes) and a valid
//! header of a chosen kind around the rest, so the payload parsers are reached often.
#![no_main]
#![forbid(unsafe_code)]

use ipcx::contract::ContractId;
use ipcx::frame::{FrameFlags, FrameHeader, FrameKind, HEADER_LEN};
use ipcx::handshake::{Acceptor, Connector, Hello, HANDSHAKE_MAX_LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    let (header, payload) = if mode & 1 == 0 {
        let Ok(header) = FrameHeader::decode(rest, HANDSHAKE_MAX_LEN) else { return };
        (header, rest.get(HEADER_LEN..).unwrap_or_default())
    } else {
        let kind = FrameKind::from_u8(mode >> 1 & 7).unwrap_or(FrameKind::Hello);
        let Ok(header) = FrameHeader::for_payload(kind, FrameFlags::NONE, 0, rest) else { return };
        (header, rest)
    };
    let local = Hello::new(ContractId::bytes(), "uds-stream", 65536);
    if let Ok(connector) = Connector::new(local.clone()) {
        if let Ok(agreed) = connector.on_reply(&header, payload) {
            assert!(agreed.max_message <= local.max_message);
        }
    }
    if let Ok(acceptor) = Acceptor::new(local) {
        match acceptor.on_hello(&header, payload) {
            Ok(pending) => drop(pending.accept()),
            Err(rejection) => drop(rejection.reply),
        }
    }
});
