//! File descriptors over unix socket channels (`SCM_RIGHTS`), between real processes.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use ipcx::channel::{Channel, SendError, SendMode, Transport};
use ipcx::Namespace;
use ipcx_testkit::{peer, unique_name};

ipcx_testkit::peer_entry!(peer_main);

const WAIT: Duration = Duration::from_secs(10);

/// The peer connects, then for each message with an fd writes the message's text into the
/// fd (a pipe's writing end) and closes it; messages without fds are echoed back.
fn peer_main(role: &str, args: &[String]) {
    assert_eq!(role, "writer");
    let ns = Namespace::new(&args[0]).unwrap();
    let t: Transport = args[1].parse().unwrap();
    let mut c = Channel::builder("fds", t).namespace(ns).connect_timeout(WAIT).unwrap();
    loop {
        let (msg, fds) = match c.recv_fds(Some(WAIT)) {
            Ok(got) => got,
            Err(_) => return,
        };
        if fds.is_empty() {
            c.send(&msg).unwrap();
            continue;
        }
        for fd in fds {
            let mut f = std::fs::File::from(fd);
            f.write_all(&msg).unwrap();
        }
    }
}

/// Everything written to a pipe until its last writer closes.
fn read_to_end(r: &ipcx_sys::pipe::PipeReader) -> Vec<u8> {
    let (mut got, mut buf) = (Vec::new(), [0u8; 256]);
    loop {
        match r.read_timeout(&mut buf, WAIT) {
            Ok(0) | Err(ipcx_sys::pipe::ReadError::PeerGone) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the pipe: {e}"),
        }
    }
}

fn pass_fds(t: Transport) {
    let ns = Namespace::new(&unique_name("fds")).unwrap();
    let mut l = Channel::builder("fds", t).namespace(ns.clone()).listen().unwrap();
    let mut p = peer("writer").arg(ns.name()).arg(t.name()).spawn();
    let mut c = l.accept_timeout(WAIT).unwrap();
    for round in 0..20 {
        // A plain message between fd messages: fds pair with their own frames only.
        c.send(format!("plain {round}").as_bytes()).unwrap();
        let (r1, w1) = ipcx_sys::pipe::pipe().unwrap();
        let (r2, w2) = ipcx_sys::pipe::pipe().unwrap();
        let text = format!("round {round}");
        let mode = if round % 2 == 0 { SendMode::Buffered } else { SendMode::Acknowledged };
        c.set_send_mode(mode);
        c.send_fds(text.as_bytes(), &[w1.as_fd(), w2.as_fd()], Some(WAIT)).unwrap();
        drop((w1, w2));
        for r in [r1, r2] {
            assert_eq!(read_to_end(&r), text.as_bytes(), "the peer wrote into the pipe we passed");
        }
        assert_eq!(c.recv_timeout(WAIT).unwrap(), format!("plain {round}").as_bytes());
    }
    drop(c);
    p.wait_success();
    drop(l);
    std::fs::remove_dir(ns.dir()).unwrap();
}

#[test]
fn fds_travel_over_uds_stream() {
    pass_fds(Transport::UdsStream);
}

#[test]
fn fds_travel_over_uds_seqpacket() {
    pass_fds(Transport::UdsSeqpacket);
}

#[test]
fn other_transports_refuse_fds_with_a_clear_error() {
    let ns = Namespace::new(&unique_name("fdsno")).unwrap();
    let b = Channel::builder("nofds", Transport::Pipe).namespace(ns.clone());
    let mut l = b.clone().listen().unwrap();
    let client = std::thread::spawn(move || b.connect().unwrap());
    let mut c = l.accept_timeout(WAIT).unwrap();
    let _peer = client.join().unwrap();
    let (_r, w) = ipcx_sys::pipe::pipe().unwrap();
    let err = c.send_fds(b"x", &[w.as_fd()], Some(WAIT)).unwrap_err();
    assert!(matches!(err, SendError::FdsUnsupported { .. }), "{err}");
    assert!(err.to_string().contains("uds-stream"), "says what to use: {err}");
    c.send(b"still works").unwrap();
    drop((c, l));
    std::fs::remove_dir(ns.dir()).unwrap();
}
