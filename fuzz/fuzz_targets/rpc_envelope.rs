//! Arbitrary bytes as an RPC envelope: decoding never panics, a decoded envelope re-encodes to
//! the same bytes, and feeding it to a client and a server session never panics.
#![no_main]
#![forbid(unsafe_code)]

use std::time::Instant;

use ipcx::rpc::envelope;
use ipcx::rpc::session::{ClientSession, ServerSession};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(env) = envelope::decode(data) else { return };
    let mut out = Vec::new();
    envelope::encode(&env, &mut out);
    assert_eq!(out, data, "decoding is canonical");
    let now = Instant::now();
    let mut client = ClientSession::new();
    let id = client.start(None, now, &mut Vec::new());
    let _ = client.handle(env);
    let _ = client.take(id);
    let mut server = ServerSession::new();
    let _ = server.handle(env, now);
    let _ = server.next(now);
});
