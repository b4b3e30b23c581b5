//! The peer processes' side of every case. Each role gets `[namespace, transport, extra...]`,
//! panics on anything unexpected (the parent's `wait_success` then fails with its stderr) and
//! reports through markers.

use std::time::Duration;

use ipcx::channel::{Channel, ConnectError, RecvError, SendError};
use ipcx::contract::{ContractId, Version};
use ipcx::Namespace;
use ipcx_testkit::{read_command, signal};

use super::raw;
use super::support::{self, check_ordered, ordered_message, LONG};

/// The peer dispatch function named in `peer_entry!`.
pub fn main(role: &str, args: &[String]) {
    support::init();
    let ns = Namespace::new(&args[0]).expect("namespace");
    let t = support::transport(&args[1]);
    let extra = &args[2..];
    let builder = || Channel::builder("svc", t).namespace(ns.clone());
    let connect = || builder().connect_timeout(LONG).expect("peer connect");
    match role {
        // Connects, then obeys commands: "recv" receives one message and reports it; "exit"
        // (or end of input) drops the channel and exits.
        "commanded" => {
            let mut c = connect();
            signal("connected", &c.max_message().to_string());
            serve_commands(&mut c);
        }
        // Listens, accepts one peer, stops listening, then obeys commands.
        "listen" => {
            let mut l = builder().listen().expect("peer listen");
            signal("listening", "");
            let mut c = l.accept_timeout(LONG).expect("peer accept");
            drop(l);
            signal("accepted", "");
            serve_commands(&mut c);
        }
        // Sends `count` ordered messages, then receives and checks `count` from the parent.
        "ordering" => {
            let (seed, count) = (extra[0].parse().unwrap(), extra[1].parse::<u64>().unwrap());
            let mut c = connect();
            let max = c.max_message();
            for seq in 0..count {
                c.send_timeout(&ordered_message(seed, seq, max), LONG).expect("peer send");
            }
            for seq in 0..count {
                let got = c.recv_timeout(LONG).expect("peer recv");
                check_ordered(seed ^ 1, seq, max, &got);
            }
            signal("verified", &count.to_string());
        }
        // Sends an empty and a maximum-size message, fails to send one byte more, sends
        // "after"; then checks the same from the parent.
        "limits" => {
            let mut c = connect();
            let max = c.max_message();
            c.send(b"").unwrap();
            c.send(&vec![0xa5; max]).unwrap();
            let e = c.send(&vec![0; max + 1]).unwrap_err();
            assert!(matches!(e, SendError::TooLarge { .. }), "{e:?}");
            assert!(e.to_string().contains(&max.to_string()), "{e}");
            c.send(b"after").unwrap();
            assert_eq!(c.recv_timeout(LONG).unwrap(), b"");
            assert_eq!(c.recv_timeout(LONG).unwrap(), vec![0x5a; max]);
            assert_eq!(c.recv_timeout(LONG).unwrap(), b"after2");
            signal("done", "");
        }
        // Sends `n` messages, closes its end, then exits.
        "send-close" => {
            let n: usize = extra[0].parse().unwrap();
            let mut c = connect();
            for i in 0..n {
                c.send(format!("m{i}").as_bytes()).unwrap();
            }
            drop(c);
            signal("closed", "");
        }
        // Connects with another contract (`name`, `major` or `fingerprint`) and reports the
        // refusal's message.
        "contract" => {
            let ours = other_contract(&extra[0]);
            match builder().contract(ours).connect_timeout(LONG) {
                Err(ConnectError::Refused(msg)) => signal("refused", &msg),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
        // Connects (as some uid the listener does not admit) and reports the refusal.
        "refused" => match builder().connect_timeout(LONG) {
            Err(ConnectError::Refused(msg)) => signal("refused", &msg),
            other => panic!("expected a refusal, got {other:?}"),
        },
        // Raw socket: garbage instead of a hello, or a good handshake then a bad frame.
        "raw" => {
            let conn = raw::Conn::connect(&ns, t, "svc");
            raw::misbehave(conn, &extra[0]);
            signal("sent", "");
            let _ = read_command();
        }
        other => panic!("unknown peer role {other}"),
    }
}

/// Obeys "recv" and "exit" commands on `c`.
fn serve_commands(c: &mut Channel) {
    while let Some(cmd) = read_command() {
        match cmd.as_str() {
            "recv" => {
                let msg = c.recv_timeout(LONG).expect("peer recv");
                signal("got", &String::from_utf8_lossy(&msg));
            }
            "recv-closed" => match c.recv_timeout(LONG) {
                Err(RecvError::Closed) => signal("closed", ""),
                other => panic!("expected Closed, got {other:?}"),
            },
            "exit" => return,
            other => panic!("unknown command {other}"),
        }
    }
}

/// The untyped-bytes contract with one thing changed.
pub fn other_contract(what: &str) -> ContractId {
    let mut c = ipcx::channel::raw_contract();
    match what {
        "name" => c.name = "conformance.other".into(),
        "major" => c.version = Version::new(c.version.major + 1, 0),
        "fingerprint" => c.fingerprint ^= 0x5555,
        other => panic!("unknown contract change {other}"),
    }
    c
}

/// How long the timeout cases wait.
pub const SHORT: Duration = Duration::from_millis(300);
