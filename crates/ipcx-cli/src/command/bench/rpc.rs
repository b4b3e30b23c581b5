//! The `rpc.*` entries: request/response round trips through [`ipcx::rpc`] between two
//! processes, in the same run as the `shm.*` rows they are held to.
//!
//! | entry | receive | payload | held to (see [`targets`](super::targets)) |
//! |---|---|---|---|
//! | `rpc.shm` | parks at once (`.spin(Duration::ZERO)`) | in place | — |
//! | `rpc.shm.spin` | busy-polls ([`LONG_SPIN`](super::chan::LONG_SPIN)) | in place | round trip ≤ 2.2 × `shm.spin` one-way p50 |
//! | `rpc.shm.spin.copy` | busy-polls | copied in and out | — |
//!
//! The bench process is the client ([`RawRpcClient`]: `start`, then `wait_in_place`, or
//! `wait` for `.copy`, for a request and a response of the row's size); the peer process
//! binds an [`RpcServer`] in a fresh namespace the bench names (the `--rendezvous`), so a
//! round trip crosses the server's accept-and-connection-thread design exactly as an
//! application's does. In place is the rpc form of `shm.spin`'s zero copy: the server's
//! handler ([`RpcServer::serve_in_place`]) gets the request where it lies in the ring and
//! answers a response of the same size without reading it, and the client looks at the
//! response's length only; the ring records (headers, envelope) cross between the processes,
//! the payload bytes are not read by the other side. `.copy` is the everyday form: the server
//! echoes the request (`serve`, which takes the request as an owned `Vec`) and the client
//! takes the response as a `Vec`. Like every entry, a row shows half the round trip; the
//! target doubles it back.
//! The peer's harness loop only counts the requests the server handled (it polls a counter
//! every [`POLL`], off the measured path). Latency only, no throughput row.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipcx::channel::{Channel as IpcxChannel, ChannelBuilder, Transport, DEFAULT_MAX_MESSAGE};
use ipcx::rpc::{CallId, Raw, RawRpcClient, RpcServer, ServerHandle};
use ipcx::Namespace;

use super::chan::LONG_SPIN;
use super::floors::{Channel, Endpoint, Entry, Floor, PeerIo, Scratch, OP_TIMEOUT};

/// The service name inside the namespace.
const NAME: &str = "bench-rpc";
/// Sizes of the `rpc.*` entries when `--sizes` is not given.
const SIZES: &[usize] = &[64];
/// How long the bench's connect waits for the peer's server.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// How long a measured call may take before the entry fails.
const CALL_WITHIN: Duration = Duration::from_secs(10);
/// How often the peer's harness loop looks at the count of handled requests.
const POLL: Duration = Duration::from_millis(2);
/// Bytes of the rpc envelope header in front of each message.
const ENVELOPE: usize = ipcx::rpc::envelope::HEADER_LEN;

/// Every rpc entry.
pub static ALL: &[Entry] =
    &[Entry::Ready(&SHM), Entry::Ready(&SHM_SPIN), Entry::Ready(&SHM_SPIN_COPY)];

static SHM: Rpc = Rpc { name: "rpc.shm", spin: Duration::ZERO, copy: false };
static SHM_SPIN: Rpc = Rpc { name: "rpc.shm.spin", spin: LONG_SPIN, copy: false };
static SHM_SPIN_COPY: Rpc = Rpc { name: "rpc.shm.spin.copy", spin: LONG_SPIN, copy: true };

/// One rpc entry: a name, the receive spin of both sides, and whether the payload is copied
/// (an echo through `Vec`s) or handled in place.
#[derive(Debug)]
struct Rpc {
    name: &'static str,
    spin: Duration,
    copy: bool,
}

impl Rpc {
    /// Either side's channel builder for `size`-byte messages.
    fn builder(&self, ns: &Namespace, size: usize) -> ChannelBuilder {
        let b = IpcxChannel::builder(NAME, Transport::Shm).namespace(ns.clone()).spin(self.spin);
        if size + ENVELOPE > DEFAULT_MAX_MESSAGE {
            b.max_message(size + ENVELOPE)
        } else {
            b
        }
    }
}

impl Floor for Rpc {
    fn name(&self) -> &'static str {
        self.name
    }

    fn measures_throughput(&self) -> bool {
        false
    }

    fn default_sizes(&self) -> &'static [usize] {
        SIZES
    }

    fn create(&self, size: usize) -> Result<Channel> {
        let scratch = Scratch::new()?;
        let rendezvous = scratch.ns.name().to_owned();
        let builder = self.builder(&scratch.ns, size);
        let copy = self.copy;
        let channel = Channel::connect_with(move |_peer| {
            let client = RawRpcClient::connect_with(builder, CONNECT_WITHIN)
                .context("cannot connect to the peer's rpc server")?;
            Ok(Box::new(ClientEnd { client, copy, call: None, _scratch: scratch }))
        });
        Ok(channel.rendezvous(rendezvous))
    }

    fn open(&self, size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        let ns = Namespace::new(io.rendezvous()?).context("the bench's namespace is invalid")?;
        let handled = Arc::new(AtomicU64::new(0));
        let count = handled.clone();
        let server = RpcServer::<Raw, Raw>::bind_with(self.builder(&ns, size))
            .context("cannot bind the rpc server")?;
        // SYNC (both handlers): none needed; the harness loop only needs the count eventually.
        // The bench is the server's only client, so one connection thread runs the handler:
        // a load and a store count exactly, and cost the measured path less than an atomic
        // read-modify-write (a locked instruction, which also drains the store buffer).
        let bump = move || count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let server = if self.copy {
            server.serve(move |req| {
                bump();
                Ok(req)
            })
        } else {
            server.serve_in_place(move |req, out| {
                bump();
                out.resize(req.len(), 0);
                Ok(())
            })
        };
        Ok(Box::new(ServerEnd { _server: server, handled, seen: 0 }))
    }
}

/// The bench's side: one call per round trip (declared before the scratch namespace, so
/// dropped before it).
#[derive(Debug)]
struct ClientEnd {
    client: RawRpcClient,
    copy: bool,
    call: Option<CallId>,
    _scratch: Scratch,
}

impl Endpoint for ClientEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.call = Some(self.client.start(msg, Some(CALL_WITHIN)).context("call failed")?);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        let Some(id) = self.call.take() else { bail!("a response awaited without a call") };
        let len = if self.copy {
            self.client.wait(id, None).context("call failed")?.len()
        } else {
            self.client.wait_in_place(id, None, <[u8]>::len).context("call failed")?
        };
        if len != buf.len() {
            bail!("a response of {len} bytes to a {}-byte request", buf.len());
        }
        Ok(1)
    }
}

/// The peer's side: the server answers on its own threads; the harness loop counts.
#[derive(Debug)]
struct ServerEnd {
    _server: ServerHandle,
    handled: Arc<AtomicU64>,
    seen: u64,
}

impl Endpoint for ServerEnd {
    fn send(&mut self, _msg: &[u8]) -> Result<()> {
        // The server thread has answered already.
        Ok(())
    }

    fn recv(&mut self, _buf: &mut [u8]) -> Result<u64> {
        let end = Instant::now() + OP_TIMEOUT;
        while self.handled.load(Ordering::Relaxed) <= self.seen {
            if Instant::now() >= end {
                bail!("the server handled no call within {OP_TIMEOUT:?}");
            }
            std::thread::sleep(POLL);
        }
        self.seen += 1;
        Ok(1)
    }
}
