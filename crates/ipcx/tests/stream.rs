//! Byte streams across processes: 10 MiB copied through with `std::io::copy` over shm,
//! uds-stream and posix-mq (checksums equal), small writes coalescing into one chunk, a
//! SIGKILLed peer giving an error instead of a hang, read timeouts and the end of stream;
//! plus the buffering rules in one process.

use std::io::{self, BufRead, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use ipcx::stream::ByteStream;
use ipcx::{Namespace, Transport};
use ipcx_testkit::{peer, read_command, signal};

mod common;

use common::Ns;

ipcx_testkit::peer_entry!(peer_main);

const NAME: &str = "bytes";
const LONG: Duration = Duration::from_secs(10);
const TEN_MIB: usize = 10 << 20;

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A writer that only checksums and counts.
#[derive(Default)]
struct Sum {
    crc: crc32fast::Hasher,
    len: u64,
}

impl Write for Sum {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn peer_main(role: &str, args: &[String]) {
    let ns = Namespace::new(&args[0]).unwrap();
    let transport: Transport = args[1].parse().unwrap();
    match role {
        // Accepts one stream and checksums everything until the end of the stream.
        "sink" => {
            let mut listener = ByteStream::listen(&ns, NAME, transport).unwrap();
            signal("ready", "");
            let mut s = listener.accept().unwrap();
            let mut sum = Sum::default();
            io::copy(&mut s, &mut sum).unwrap();
            signal("sum", &format!("{:08x}:{}", sum.crc.finalize(), sum.len));
        }
        // 1000 writes of 10 bytes, one flush.
        "small-writer" => {
            let mut s = ByteStream::connect(&ns, NAME, transport, LONG).unwrap();
            for i in 0..1000u32 {
                s.write_all(format!("{:010}", i).as_bytes()).unwrap();
            }
            s.flush().unwrap();
            signal("sent", &s.chunks_sent().to_string());
            read_command();
        }
        // Writes and flushes 1000 bytes, then waits to be killed.
        "victim" => {
            let mut s = ByteStream::connect(&ns, NAME, transport, LONG).unwrap();
            s.write_all(&[7; 1000]).unwrap();
            s.flush().unwrap();
            signal("wrote", "");
            read_command();
            read_command();
        }
        // Connects, then closes cleanly on command.
        "idle" => {
            let s = ByteStream::connect(&ns, NAME, transport, LONG).unwrap();
            signal("connected", "");
            read_command();
            s.close().unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

fn copy_ten_mib(transport: Transport) {
    let ns = Ns::new("stream-copy");
    let mut sink = peer("sink").arg(ns.0.name()).arg(transport).spawn();
    sink.expect("ready");
    let data = random_bytes(TEN_MIB, 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut s = ByteStream::connect(&ns.0, NAME, transport, LONG).unwrap();
    let copied = io::copy(&mut &data[..], &mut s).unwrap();
    assert_eq!(copied, TEN_MIB as u64);
    s.close().unwrap();
    let expected = format!("{:08x}:{}", crc32fast::hash(&data), TEN_MIB);
    assert_eq!(sink.expect("sum"), expected, "{transport}: checksum and length");
    sink.wait_success();
}

#[test]
fn ten_mib_over_shm() {
    copy_ten_mib(Transport::Shm);
}

#[test]
fn ten_mib_over_uds_stream() {
    copy_ten_mib(Transport::UdsStream);
}

#[test]
fn ten_mib_over_posix_mq() {
    copy_ten_mib(Transport::PosixMq);
}

#[test]
fn small_writes_coalesce_into_one_chunk() {
    let ns = Ns::new("stream-small");
    let mut listener = ByteStream::listen(&ns.0, NAME, Transport::Shm).unwrap();
    let mut w = peer("small-writer").arg(ns.0.name()).arg(Transport::Shm).spawn();
    let mut s = listener.accept().unwrap();
    assert_eq!(w.expect("sent"), "1", "1000 small writes, one chunk");
    let mut buf = vec![0; 64 << 10];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(n, 10_000, "one read gets every small write");
    assert_eq!(&buf[..20], b"00000000000000000001");
    assert_eq!(s.chunks_received(), 1);
    w.send("stop");
    w.wait_success();
    assert_eq!(s.read(&mut buf).unwrap(), 0, "end of stream after a clean close");
}

#[test]
fn killed_peer_is_an_error_not_a_hang() {
    for transport in [Transport::Shm, Transport::UdsStream] {
        let ns = Ns::new("stream-kill");
        let mut listener = ByteStream::listen(&ns.0, NAME, transport).unwrap();
        let mut v = peer("victim").arg(ns.0.name()).arg(transport).spawn();
        let mut s = listener.accept().unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        v.expect("wrote");
        let mut got = [0; 1000];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, [7; 1000]);
        v.kill();
        let start = Instant::now();
        let err = s.read(&mut got).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{transport}: {err}");
        assert!(start.elapsed() < Duration::from_secs(2), "{transport}: detected promptly");
        let big = vec![1; 4 * s.chunk_size()];
        let err = s.write_all(&big).and_then(|()| s.flush()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{transport}: {err}");
    }
}

#[test]
fn read_timeout_then_end_of_stream() {
    let ns = Ns::new("stream-timeout");
    let mut listener = ByteStream::listen(&ns.0, NAME, Transport::UdsStream).unwrap();
    let mut p = peer("idle").arg(ns.0.name()).arg(Transport::UdsStream).spawn();
    let mut s = listener.accept().unwrap();
    p.expect("connected");
    assert_eq!(
        s.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let start = Instant::now();
    let err = s.read(&mut [0; 16]).unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2), "{took:?}");
    s.set_nonblocking(true);
    assert_eq!(s.read(&mut [0; 16]).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    s.set_nonblocking(false);
    s.set_read_timeout(Some(LONG)).unwrap();
    p.send("close");
    assert_eq!(s.read(&mut [0; 16]).unwrap(), 0, "end of stream");
    assert_eq!(s.read(&mut [0; 16]).unwrap(), 0, "and it stays ended");
    p.wait_success();
}

#[test]
fn writes_wait_for_flush_and_full_chunks_go_at_once() {
    let ns = Ns::new("stream-buf");
    let builder = ipcx::Channel::builder(NAME, Transport::Shm).namespace(ns.0.clone());
    let mut listener = ByteStream::listen_with(builder.clone().max_message(1024)).unwrap();
    let writer = thread::spawn(move || {
        let w = ByteStream::connect_with(builder, LONG).unwrap();
        assert_eq!(w.chunk_size(), 1024, "the smaller max_message of both ends");
        w
    });
    let mut r = listener.accept().unwrap();
    let mut w = writer.join().unwrap();
    r.set_nonblocking(true);
    w.write_all(b"hello").unwrap();
    assert_eq!(r.read(&mut [0; 8]).unwrap_err().kind(), io::ErrorKind::WouldBlock, "buffered");
    w.flush().unwrap();
    r.set_nonblocking(false);
    assert_eq!(r.fill_buf().unwrap(), b"hello");
    r.consume(5);
    // 2.5 chunks: two go out when full, the half waits for the flush.
    w.write_all(&[9; 2560]).unwrap();
    assert_eq!(w.chunks_sent(), 3);
    let mut got = vec![0; 2048];
    r.read_exact(&mut got).unwrap();
    drop(w); // flushes the rest, then closes
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), 512);
    assert!(got.iter().chain(&rest).all(|&b| b == 9));
}
