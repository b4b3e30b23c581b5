//! Request/response across processes: typed round trips, many clients with several calls
//! in flight, deadlines, streamed responses, a SIGKILLed server failing pending calls, and
//! reconnecting after the server restarts; unary handlers answering in place (the request
//! read where it lies, errors, panics, oversized responses, requests queued behind a slow
//! one); plus one call and one stream over every transport.

use std::thread;
use std::time::{Duration, Instant};

use ipcx::rpc::session::MAX_UNREAD_CHUNKS;
use ipcx::rpc::{CallError, ErrorCode, Raw, RawRpcClient, RpcClient, RpcServer};
use ipcx::{Channel, Namespace, Transport};
use ipcx_testkit::{peer, read_command, signal};
use serde::{Deserialize, Serialize};

mod common;

use common::Ns;

ipcx_testkit::peer_entry!(peer_main);

const SERVICE: &str = "svc";
const LONG: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Req {
    client: u32,
    seq: u32,
    text: String,
}
ipcx::message!(Req, "test.rpc.req", 1, 0);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Resp {
    client: u32,
    seq: u32,
    echo: String,
}
ipcx::message!(Resp, "test.rpc.resp", 1, 0);

fn req(client: u32, seq: u32, text: &str) -> Req {
    Req { client, seq, text: text.to_owned() }
}

/// The test service: `slow:MS` answers after MS ms, `hang` never answers (and signals
/// `handling` when running in a peer), `stream:N` streams N chunks, `drip:N` streams N
/// chunks 1 ms apart, anything else echoes.
fn handler(r: Req, out: &mut ipcx::rpc::Responder<'_, Resp>) -> Result<(), String> {
    let resp = |seq: u32, echo: &str| Resp { client: r.client, seq, echo: echo.to_owned() };
    if let Some(ms) = r.text.strip_prefix("slow:") {
        thread::sleep(Duration::from_millis(ms.parse().map_err(|_| "bad ms")?));
    } else if r.text == "hang" {
        signal("handling", &r.seq.to_string());
        loop {
            thread::sleep(Duration::from_secs(1));
        }
    } else if let Some(n) = r.text.strip_prefix("drip:") {
        for i in 0..n.parse::<u32>().map_err(|_| "bad count")? {
            thread::sleep(Duration::from_millis(1));
            out.send(&resp(i, "drop")).map_err(|e| e.to_string())?;
        }
        return Ok(());
    } else if let Some(n) = r.text.strip_prefix("stream:") {
        for i in 0..n.parse::<u32>().map_err(|_| "bad count")? {
            out.send(&resp(i, "chunk")).map_err(|e| e.to_string())?;
        }
        return Ok(());
    } else if r.text == "fail" {
        return Err("asked to fail".to_owned());
    }
    out.reply(&resp(r.seq, &r.text)).map_err(|e| e.to_string())
}

fn serve(ns: &Namespace, transport: Transport) -> ipcx::rpc::ServerHandle {
    RpcServer::<Req, Resp>::bind(ns, SERVICE, transport).unwrap().serve_stream(handler)
}

fn connect(ns: &Namespace) -> RpcClient<Req, Resp> {
    RpcClient::connect(ns, SERVICE, Transport::Shm, LONG).unwrap()
}

fn peer_main(role: &str, args: &[String]) {
    let ns = Namespace::new(&args[0]).unwrap();
    match role {
        "server" => {
            let server = serve(&ns, Transport::Shm);
            signal("ready", "");
            read_command();
            assert!(server.shutdown(Duration::from_secs(2)), "server threads end");
        }
        "in-place" => {
            let server = in_place_server(&ns);
            signal("ready", "");
            read_command();
            assert!(server.shutdown(Duration::from_secs(2)), "server threads end");
        }
        "client" => {
            let me: u32 = args[1].parse().unwrap();
            let calls: u32 = args[2].parse().unwrap();
            let mut c = connect(&ns);
            let mut seq = 0;
            while seq < calls {
                let batch: Vec<_> = (seq..calls.min(seq + 8))
                    .map(|s| (s, c.start(&req(me, s, &format!("{me}/{s}")), Some(LONG)).unwrap()))
                    .collect();
                // Collect in reverse order: correlation, not arrival order, pairs them.
                for (s, id) in batch.into_iter().rev() {
                    let r = c.wait(id, None).unwrap();
                    assert_eq!((r.client, r.seq, r.echo.as_str()), (me, s, &*format!("{me}/{s}")));
                    seq += 1;
                }
            }
            signal("done", &seq.to_string());
        }
        other => panic!("unknown role {other}"),
    }
}

/// Bytes service for the in-place tests: `slow:MS` answers `slow` after MS ms, `fail` fails,
/// `panic` panics, `big` answers more than the channel carries; anything else comes back
/// reversed.
fn in_place_server(ns: &Namespace) -> ipcx::rpc::ServerHandle {
    let builder = Channel::builder(SERVICE, Transport::Shm).namespace(ns.clone()).max_message(4096);
    RpcServer::<Raw, Raw>::bind_with(builder).unwrap().serve_in_place(|req, out| {
        assert!(out.is_empty(), "the response starts empty");
        if let Some(ms) = req.strip_prefix(b"slow:") {
            let ms = std::str::from_utf8(ms).ok().and_then(|m| m.parse().ok()).ok_or("bad ms")?;
            thread::sleep(Duration::from_millis(ms));
            out.extend_from_slice(b"slow");
        } else if req == b"fail" {
            return Err("asked to fail".to_owned());
        } else if req == b"panic" {
            panic!("asked to panic");
        } else if req == b"big" {
            out.resize(5000, 7);
        } else {
            out.extend(req.iter().rev());
        }
        Ok(())
    })
}

#[test]
fn typed_round_trip_across_processes() {
    let ns = Ns::new("rpc-rt");
    let mut server = peer("server").arg(ns.0.name()).spawn();
    server.expect("ready");
    let mut c = connect(&ns.0);
    for i in 0..50 {
        let r = c.call(&req(7, i, "hello"), LONG).unwrap();
        assert_eq!(r, Resp { client: 7, seq: i, echo: "hello".into() });
    }
    let err = c.call(&req(7, 0, "fail"), LONG).unwrap_err();
    assert!(
        matches!(&err, CallError::Remote { message, .. } if message == "asked to fail"),
        "{err}"
    );
    // A client with other types is refused at connect.
    let wrong = RpcClient::<String, String>::connect(&ns.0, SERVICE, Transport::Shm, LONG);
    assert!(wrong.is_err(), "contract mismatch refused");
    drop(c);
    server.send("stop");
    server.wait_success();
}

#[test]
fn a_stream_left_unread_is_ended_and_cancelled_while_other_calls_go_on() {
    let ns = Ns::new("rpc-overrun");
    let server = serve(&ns.0, Transport::Shm);
    let mut c = connect(&ns.0);
    // More chunks than the response ring holds (8192 records), so the server is still
    // streaming when the Cancel comes.
    let n = 16 * MAX_UNREAD_CHUNKS;
    let stream = c.start(&req(0, 1, &format!("stream:{n}")), Some(LONG)).unwrap();
    // Waiting on the echo, the client takes in the stream's chunks and keeps them for the
    // stream, up to the limit; past it the stream is ended and cancelled, so the server,
    // which answers one call at a time, gets to the echo long before its last chunk.
    let echo = c.start(&req(0, 2, "hi"), Some(LONG)).unwrap();
    assert_eq!(c.wait(echo, None).unwrap().echo, "hi");
    match c.wait(stream, None) {
        Err(CallError::Overrun { limit }) => assert_eq!(limit, MAX_UNREAD_CHUNKS),
        other => panic!("not an overrun: {other:?}"),
    }
    assert!(c.dropped() < u64::from(n), "the server stopped streaming: {}", c.dropped());
    assert_eq!(c.call(&req(0, 3, "after"), LONG).unwrap().echo, "after");
    drop(c);
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn calls_started_during_a_long_stream_wait_their_turn_and_are_not_a_flood() {
    let ns = Ns::new("rpc-drip");
    let server = serve(&ns.0, Transport::Shm);
    let mut c = connect(&ns.0);
    // The server answers one call at a time: while the stream drips (~100 ms), the calls
    // started behind it pile up, more than a server queues (1024); the streaming handler's
    // cancel checks take in up to that and leave the rest in the channel.
    let drip = c.start(&req(0, 0, "drip:100"), Some(LONG)).unwrap();
    let calls: Vec<_> = (1..=3000u32)
        .map(|i| (i, c.start(&req(0, i, &i.to_string()), Some(LONG)).unwrap()))
        .collect();
    // A plain wait takes the stream's first chunk and cancels the rest.
    assert_eq!(c.wait(drip, None).unwrap().seq, 0);
    for (i, id) in calls {
        let resp = c.wait(id, None).unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!((resp.seq, resp.echo), (i, i.to_string()));
    }
    drop(c);
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn four_clients_with_calls_in_flight() {
    let ns = Ns::new("rpc-many");
    let server = serve(&ns.0, Transport::Shm);
    let mut clients: Vec<_> =
        (0..4).map(|i| peer("client").arg(ns.0.name()).arg(i).arg(200).spawn()).collect();
    for c in &mut clients {
        assert_eq!(c.expect("done"), "200");
    }
    for c in &mut clients {
        c.wait_success();
    }
    assert!(server.shutdown(Duration::from_secs(2)));
}

#[test]
fn deadlines_expire_and_late_responses_are_dropped() {
    let ns = Ns::new("rpc-dl");
    let _server = serve(&ns.0, Transport::Shm);
    let mut c = connect(&ns.0);
    let t = Instant::now();
    let err = c.call(&req(1, 1, "slow:300"), Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, CallError::Timeout), "{err}");
    assert!(t.elapsed() < Duration::from_millis(250), "timed out at the deadline");
    // The late response of the expired call is dropped; the next call gets its own.
    let r = c.call(&req(1, 2, "after"), LONG).unwrap();
    assert_eq!((r.seq, r.echo.as_str()), (2, "after"));
    // wait() with a short timeout leaves the call in flight.
    let id = c.start(&req(1, 3, "slow:100"), Some(LONG)).unwrap();
    assert!(matches!(c.wait(id, Some(Duration::from_millis(1))), Err(CallError::Pending)));
    assert_eq!(c.wait(id, None).unwrap().seq, 3);
    assert!(matches!(c.wait(id, None), Err(CallError::UnknownCall(_))));
}

#[test]
fn streamed_response_of_100_chunks() {
    let ns = Ns::new("rpc-stream");
    let mut server = peer("server").arg(ns.0.name()).spawn();
    server.expect("ready");
    let mut c = connect(&ns.0);
    let chunks: Vec<_> = c.call_stream(&req(2, 0, "stream:100"), LONG).unwrap().collect();
    assert_eq!(chunks.len(), 100);
    for (i, chunk) in chunks.into_iter().enumerate() {
        assert_eq!(chunk.unwrap().seq, i as u32);
    }
    // A stream dropped early is cancelled; the connection stays usable.
    let mut s = c.call_stream(&req(2, 0, "stream:1000"), LONG).unwrap();
    assert_eq!(s.next().unwrap().unwrap().seq, 0);
    drop(s);
    assert_eq!(c.call(&req(2, 9, "x"), LONG).unwrap().seq, 9);
    drop(c);
    server.send("stop");
    server.wait_success();
}

#[test]
fn killed_server_fails_pending_calls_promptly() {
    let ns = Ns::new("rpc-kill");
    let mut server = peer("server").arg(ns.0.name()).spawn();
    server.expect("ready");
    let mut c = connect(&ns.0);
    let hang = c.start(&req(3, 0, "hang"), None).unwrap();
    let others: Vec<_> =
        (1..5).map(|i| c.start(&req(3, i, "queued"), Some(LONG)).unwrap()).collect();
    server.expect("handling");
    let t = Instant::now();
    server.kill();
    for id in std::iter::once(hang).chain(others) {
        let err = c.wait(id, None).unwrap_err();
        assert!(matches!(err, CallError::ServerGone), "{err}");
    }
    assert!(t.elapsed() < Duration::from_secs(2), "pending calls failed after {:?}", t.elapsed());
    assert!(matches!(c.start(&req(3, 9, "x"), None), Err(CallError::ServerGone)));
}

#[test]
fn client_reconnects_after_server_restart() {
    let ns = Ns::new("rpc-re");
    let mut first = peer("server").arg(ns.0.name()).spawn();
    first.expect("ready");
    let builder = || Channel::builder(SERVICE, Transport::Shm).namespace(ns.0.clone());
    let mut c = RpcClient::<Req, Resp>::connect_with_backoff(builder(), LONG).unwrap();
    assert_eq!(c.call(&req(4, 1, "a"), LONG).unwrap().seq, 1);
    first.kill();
    assert!(matches!(c.call(&req(4, 2, "b"), LONG), Err(CallError::ServerGone)));
    // Reconnect while the server is down; it comes back under the same name.
    let reconnect = {
        let b = builder();
        thread::spawn(move || RpcClient::<Req, Resp>::connect_with_backoff(b, LONG))
    };
    let mut second = peer("server").arg(ns.0.name()).spawn();
    second.expect("ready");
    let mut c = reconnect.join().unwrap().unwrap();
    assert_eq!(c.call(&req(4, 3, "c"), LONG).unwrap().seq, 3);
    drop(c);
    second.send("stop");
    second.wait_success();
    // Nobody serving: the backoff gives up after max_wait.
    second.kill();
    let t = Instant::now();
    let gone = RawRpcClient::connect_with_backoff(builder(), Duration::from_millis(200));
    assert!(gone.is_err());
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn every_transport_carries_calls_and_streams() {
    let ns = Ns::new("rpc-all");
    for t in Transport::ALL {
        let server = serve(&ns.0, t);
        let mut c = RpcClient::<Req, Resp>::connect(&ns.0, SERVICE, t, LONG).unwrap();
        assert_eq!(c.call(&req(5, 1, "x"), LONG).unwrap().echo, "x", "{t}");
        let n = c.call_stream(&req(5, 2, "stream:20"), LONG).unwrap().count();
        assert_eq!(n, 20, "{t}");
        drop(c);
        assert!(server.shutdown(Duration::from_secs(2)), "{t}");
    }
}

#[test]
fn unary_handlers_answer_in_place() {
    let ns = Ns::new("rpc-inplace");
    let mut server = peer("in-place").arg(ns.0.name()).spawn();
    server.expect("ready");
    let builder =
        Channel::builder(SERVICE, Transport::Shm).namespace(ns.0.clone()).max_message(4096);
    let mut c = RawRpcClient::connect_with(builder, LONG).unwrap();
    // The response is handed over where it lies; what the closure returns comes back.
    let got = c.call_in_place(b"abc", LONG, |resp| resp.to_vec()).unwrap();
    assert_eq!(got, b"cba");
    assert_eq!(c.call(b"hello", LONG).unwrap(), b"olleh");
    // Failures become Error envelopes with their code, and the connection stays usable.
    let remote = |e: CallError| match e {
        CallError::Remote { code, message } => (code, message),
        e => panic!("not a remote error: {e}"),
    };
    let (code, text) = remote(c.call(b"fail", LONG).unwrap_err());
    assert_eq!((code, text.as_str()), (ErrorCode::Handler, "asked to fail"));
    let (code, text) = remote(c.call(b"panic", LONG).unwrap_err());
    assert_eq!((code, text.as_str()), (ErrorCode::Internal, "the handler panicked"));
    let (code, text) = remote(c.call(b"big", LONG).unwrap_err());
    assert_eq!(code, ErrorCode::Internal);
    assert!(text.contains("5000 bytes") && text.contains("max_message"), "{text}");
    // Requests behind a slow one are queued, then answered in order; collected in reverse.
    let slow = c.start(b"slow:100", Some(LONG)).unwrap();
    let queued: Vec<_> = (0..8u8).map(|i| (i, c.start(&[b'q', i], Some(LONG)).unwrap())).collect();
    for (i, id) in queued.into_iter().rev() {
        assert_eq!(c.wait_in_place(id, None, |r| r.to_vec()).unwrap(), [i, b'q']);
    }
    assert_eq!(c.wait(slow, None).unwrap(), b"slow");
    // A call whose timeout is under a millisecond is still answered (its deadline hint is
    // rounded up, not down to an expired 0 ms).
    let id = c.start(b"xy", Some(Duration::from_micros(900))).unwrap();
    match c.wait(id, None) {
        Ok(r) => assert_eq!(r, b"yx"),
        Err(e) => assert!(matches!(e, CallError::Timeout), "{e}"),
    }
    assert_eq!(c.call(b"after", LONG).unwrap(), b"retfa");
    // More calls started than both rings hold (1024 records of 128 bytes each way): the
    // server's in-place answers meet a full response ring and wait for room while the
    // client, its request ring full, takes responses in; every call still gets its own.
    let many: Vec<_> =
        (0..5000u32).map(|i| (i, c.start(&i.to_le_bytes(), Some(LONG)).unwrap())).collect();
    for (i, id) in many {
        let mut want = i.to_le_bytes();
        want.reverse();
        assert_eq!(c.wait_in_place(id, None, |r| r.to_vec()).unwrap(), want, "call {i}");
    }
    drop(c);
    server.send("stop");
    server.wait_success();
}
