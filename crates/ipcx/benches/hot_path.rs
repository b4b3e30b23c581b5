//! Single-thread costs of the shm channel and the rpc client: both ends of a connection in
//! one thread, so no cache line ever crosses cores. What is left is instructions (and the
//! store-forwarding stalls of results moved through memory): the software the
//! cross-process rows (`ipcx bench --filter shm.spin,chan.shm.spin,rpc.shm.spin`) pay on top
//! of the ring's floor (`cargo bench -p ipcx-shm --bench ring`, `spsc/zero_copy`).
//!
//! - `channel/shm_send_recv/64`: `send` of 64 bytes, then `recv_in_place` on the other end.
//! - `rpc/shm_round/64`: a `RawRpcClient` call (`start` with a deadline, then
//!   `wait_in_place`) of 64 bytes, answered in between by a responder on the server's
//!   channel that decodes the envelope and sends a 64-byte response: the client's and the
//!   channel's cost per call; the server's own handler path shows in `rpc.shm.spin`.
//!
//! `cargo bench -p ipcx --bench hot_path -- --quick` for a fast pass.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ipcx::rpc::envelope::{self, Body, Kind};
use ipcx::rpc::{rpc_contract, Raw, RawRpcClient};
use ipcx::{Channel, ChannelBuilder, Namespace, Transport};

/// Bytes of each message.
const SIZE: usize = 64;
/// How long connecting may take.
const CONNECT: Duration = Duration::from_secs(5);

/// A namespace of its own, removed on drop.
struct Scratch(Namespace);

impl Scratch {
    fn new() -> Scratch {
        let name = format!("ipcx-hotpath-{}", std::process::id());
        Scratch(Namespace::new(&name).expect("a valid namespace name"))
    }

    fn builder(&self, name: &str) -> ChannelBuilder {
        Channel::builder(name, Transport::Shm).namespace(self.0.clone()).spin(CONNECT)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.dir());
    }
}

/// Both ends of a connection made with `listen` and `connect`.
fn pair<T: Send + 'static>(
    listen: ChannelBuilder,
    connect: impl FnOnce() -> T + Send + 'static,
) -> (Channel, T) {
    let mut listener = listen.listen().expect("listen");
    let other = std::thread::spawn(connect);
    let accepted = listener.accept_timeout(CONNECT).expect("accept");
    (accepted, other.join().expect("connect thread"))
}

fn channel(c: &mut Criterion) {
    let scratch = Scratch::new();
    let builder = scratch.builder("chan");
    let b2 = builder.clone();
    let (mut a, mut b) = pair(builder, move || b2.connect_timeout(CONNECT).expect("connect"));
    let msg = [0xA5u8; SIZE];
    c.bench_function("channel/shm_send_recv/64", |bench| {
        bench.iter(|| {
            a.send(black_box(&msg)).expect("room in the ring");
            b.recv_in_place(None, |m| black_box(m.len())).expect("a message")
        })
    });
}

fn rpc(c: &mut Criterion) {
    let scratch = Scratch::new();
    let builder = scratch.builder("rpc");
    let contract = rpc_contract::<Raw, Raw>().expect("raw contract");
    let b2 = builder.clone();
    let (mut server, mut client) = pair(builder.contract(contract), move || {
        RawRpcClient::connect_with(b2, CONNECT).expect("connect")
    });
    let msg = [0xA5u8; SIZE];
    let mut resp = Vec::new();
    c.bench_function("rpc/shm_round/64", |bench| {
        bench.iter(|| {
            let id = client.start(black_box(&msg), Some(CONNECT)).expect("room in the ring");
            server
                .recv_in_place(None, |bytes| {
                    let env = envelope::decode(bytes).expect("a valid request");
                    if let Body::Request { payload, .. } = env.body {
                        resp.clear();
                        envelope::write_header(&mut resp, Kind::Response, env.id, None);
                        resp.resize(envelope::HEADER_LEN + payload.len(), 0);
                    }
                })
                .expect("the request");
            server.send(&resp).expect("room in the ring");
            client.wait_in_place(id, None, |r| black_box(r.len())).expect("the response")
        })
    });
}

criterion_group!(benches, channel, rpc);
criterion_main!(benches);
