//! `ipcx::tokio::AsyncChannel` on every transport (feature `tokio`).
#![cfg(feature = "tokio")]

use std::time::Duration;

use ipcx::channel::{Channel, RecvError, Transport};
use ipcx::tokio::AsyncChannel;
use ipcx::Namespace;

const WAIT: Duration = Duration::from_secs(10);

/// An echo server on a thread: answers `n` messages, then closes.
fn echo_server(ns: &Namespace, t: Transport, n: usize) -> std::thread::JoinHandle<()> {
    let mut l = Channel::builder("echo", t).namespace(ns.clone()).listen().unwrap();
    std::thread::spawn(move || {
        let mut c = l.accept_timeout(WAIT).unwrap();
        for _ in 0..n {
            let m = c.recv_timeout(WAIT).unwrap();
            c.send(&m).unwrap();
        }
    })
}

async fn round_trips(t: Transport) {
    const N: usize = 300;
    let ns = Namespace::new(&ipcx_testkit::unique_name("async")).unwrap();
    let server = echo_server(&ns, t, N);
    let ns2 = ns.clone();
    let ch = tokio::task::spawn_blocking(move || {
        Channel::builder("echo", t).namespace(ns2).connect_timeout(WAIT).unwrap()
    })
    .await
    .unwrap();
    let mut ch = AsyncChannel::new(ch).unwrap();
    for i in 0..N {
        let msg = format!("message {i}").repeat(i % 7 + 1);
        ch.send(msg.as_bytes()).await.unwrap();
        let back = tokio::time::timeout(WAIT, ch.recv()).await.expect("no hang").unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    // The server closes after N: the pending receive ends with Closed, not a hang.
    let end = tokio::time::timeout(WAIT, ch.recv()).await.expect("no hang");
    assert!(matches!(end, Err(RecvError::Closed | RecvError::PeerGone)), "{end:?}");
    server.join().unwrap();
    drop(ch);
    std::fs::remove_dir(ns.dir()).unwrap();
}

macro_rules! per_transport {
    ($($name:ident: $t:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            round_trips($t).await;
        }
    )*};
}

per_transport! {
    shm: Transport::Shm;
    uds_stream: Transport::UdsStream;
    uds_seqpacket: Transport::UdsSeqpacket;
    pipe: Transport::Pipe;
    fifo: Transport::Fifo;
    posix_mq: Transport::PosixMq;
    sysv_msg: Transport::SysvMsg;
    tcp: Transport::Tcp;
}

/// On reactor transports a receive dropped by a timeout loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_receive_loses_no_message() {
    let ns = Namespace::new(&ipcx_testkit::unique_name("async-cancel")).unwrap();
    let mut l = Channel::builder("c", Transport::UdsStream).namespace(ns.clone()).listen().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let mut c = l.accept_timeout(WAIT).unwrap();
        rx.recv().unwrap();
        c.send(b"late").unwrap();
        c
    });
    let ns2 = ns.clone();
    let ch = tokio::task::spawn_blocking(move || {
        Channel::builder("c", Transport::UdsStream).namespace(ns2).connect_timeout(WAIT).unwrap()
    })
    .await
    .unwrap();
    let mut ch = AsyncChannel::new(ch).unwrap();
    let early = tokio::time::timeout(Duration::from_millis(20), ch.recv()).await;
    assert!(early.is_err(), "nothing was sent yet");
    tx.send(()).unwrap();
    let got = tokio::time::timeout(WAIT, ch.recv()).await.expect("no hang").unwrap();
    assert_eq!(got, b"late");
    drop(server.join().unwrap());
    drop(ch);
    std::fs::remove_dir(ns.dir()).unwrap();
}
