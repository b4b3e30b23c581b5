//! A peer that talks to a listener's socket directly, without the channel layer, to send it
//! what a well-behaved peer never would. Endpoint files (see `channel/builder.rs`):
//! `<ns dir>/<name>.<transport>` is the listening unix socket (the data socket of
//! `uds-stream` and `uds-seqpacket`, the rendezvous of the others); `tcp` writes the
//! listener's `ip:port` to `<ns dir>/<name>.tcp`.

use std::io::{Read, Write};
use std::net::TcpStream;

use ipcx::channel::Transport;
use ipcx::frame::{FrameFlags, FrameHeader, FrameKind, HEADER_LEN};
use ipcx::handshake::{Connector, Hello, HANDSHAKE_MAX_LEN};
use ipcx::sys::uds::{UdsAddr, UdsSeqpacket, UdsStream};
use ipcx::Namespace;

use super::support::{random_seed, Rng, LONG};

/// A raw connection to a listener.
pub enum Conn {
    /// The unix stream socket of `uds-stream` or of a rendezvous transport.
    Stream(UdsStream),
    /// `uds-seqpacket`.
    Seqpacket(UdsSeqpacket),
    /// `tcp`.
    Tcp(TcpStream),
}

impl Conn {
    /// Connects to endpoint `name` of transport `t` in `ns`.
    pub fn connect(ns: &Namespace, t: Transport, name: &str) -> Conn {
        let path = ns.dir().join(format!("{name}.{}", t.name()));
        match t {
            Transport::Tcp => {
                let addr = std::fs::read_to_string(&path).expect("tcp address file");
                let addr: std::net::SocketAddr = addr.trim().parse().expect("tcp address");
                Conn::Tcp(TcpStream::connect_timeout(&addr, LONG).expect("tcp connect"))
            }
            Transport::UdsSeqpacket => {
                let addr = UdsAddr::path(&path).unwrap();
                Conn::Seqpacket(UdsSeqpacket::connect_timeout(&addr, LONG).expect("connect"))
            }
            _ => {
                let addr = UdsAddr::path(&path).unwrap();
                Conn::Stream(UdsStream::connect_timeout(&addr, LONG).expect("connect"))
            }
        }
    }

    /// Sends `bytes` (one message on seqpacket).
    pub fn send(&mut self, bytes: &[u8]) {
        match self {
            Conn::Stream(s) => s.send_all(bytes, LONG).expect("raw send"),
            Conn::Seqpacket(s) => s.send_timeout(bytes, LONG).expect("raw send"),
            Conn::Tcp(s) => s.write_all(bytes).expect("raw send"),
        }
    }

    /// Receives one frame.
    pub fn recv_frame(&mut self) -> (FrameHeader, Vec<u8>) {
        let mut head = [0u8; HEADER_LEN];
        let whole = match self {
            Conn::Seqpacket(s) => {
                let mut buf = vec![0u8; HEADER_LEN + HANDSHAKE_MAX_LEN as usize];
                let n = s.recv_timeout(&mut buf, LONG).expect("raw recv");
                buf.truncate(n);
                Some(buf)
            }
            Conn::Stream(s) => {
                s.recv_exact(&mut head, LONG).expect("raw recv");
                None
            }
            Conn::Tcp(s) => {
                s.set_read_timeout(Some(LONG)).unwrap();
                s.read_exact(&mut head).expect("raw recv");
                None
            }
        };
        if let Some(buf) = whole {
            let header = FrameHeader::decode(&buf, HANDSHAKE_MAX_LEN).expect("reply header");
            return (header, buf[HEADER_LEN..].to_vec());
        }
        let header = FrameHeader::decode(&head, HANDSHAKE_MAX_LEN).expect("reply header");
        let mut payload = vec![0u8; header.len as usize];
        match self {
            Conn::Stream(s) => s.recv_exact(&mut payload, LONG).expect("raw recv"),
            Conn::Tcp(s) => s.read_exact(&mut payload).expect("raw recv"),
            Conn::Seqpacket(_) => unreachable!(),
        }
        (header, payload)
    }

    /// Runs a correct connector handshake for transport `t`.
    pub fn handshake(&mut self, t: Transport) {
        let mut hello = Hello::new(ipcx::channel::raw_contract(), t.name(), 64 << 10);
        hello.pid = std::process::id();
        hello.uid = ipcx::sys::process::current_uid();
        let connector = Connector::new(hello).expect("hello");
        self.send(&connector.hello_frame());
        let (header, payload) = self.recv_frame();
        connector.on_reply(&header, &payload).expect("the listener accepts a good hello");
    }
}

/// Misbehaves on `conn` as `how` says:
/// - `garbage`: random bytes instead of a hello (never a valid header: bad magic);
/// - `magic`: a good handshake, then a data frame whose header has a bad magic;
/// - `seq`: a good handshake, then a well-formed data frame out of sequence.
pub fn misbehave(mut conn: Conn, how: &str) {
    match how {
        "garbage" => {
            let mut bytes = [0u8; 64];
            Rng::new(random_seed()).fill(&mut bytes);
            bytes[0] = !ipcx::frame::MAGIC.to_le_bytes()[0];
            conn.send(&bytes);
        }
        "magic" | "seq" => {
            let t = match &conn {
                Conn::Tcp(_) => Transport::Tcp,
                Conn::Seqpacket(_) => Transport::UdsSeqpacket,
                Conn::Stream(_) => Transport::UdsStream,
            };
            conn.handshake(t);
            let payload = b"evil";
            let seq = if how == "seq" { 7 } else { 1 };
            let header =
                FrameHeader::for_payload(FrameKind::Data, FrameFlags::NONE, seq, payload).unwrap();
            let mut bytes = header.encode().to_vec();
            if how == "magic" {
                bytes[0] ^= 0xff;
            }
            bytes.extend_from_slice(payload);
            conn.send(&bytes);
        }
        other => panic!("unknown misbehaviour {other}"),
    }
    // Keep the connection open until the parent is done: the listener must judge the bytes,
    // not the end of the connection.
    std::mem::forget(conn);
}
