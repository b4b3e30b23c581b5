//! The participants of the crash storm: publishers, subscribers, RPC servers and RPC
//! clients, each a real process that the parent SIGKILLs at random moments.
//!
//! A participant writes what it observes to its own event file (one line per event, each in
//! one `write` to an `O_APPEND` file, so a SIGKILL loses at most the line being written):
//!
//! - `I <victim>`: what survivors will call this incarnation when it dies (publishers
//!   and servers);
//! - `N <count>`: messages (or calls) delivered and verified so far (the last one counts);
//! - `D <victim> <unix µs>`: a publisher (`pub:<node id>`) or server (`srv:<incarnation>`)
//!   was noticed gone;
//! - `C <what>`: a corrupt, duplicated or out-of-order message was delivered;
//! - `G <what>`: a message was lost (a gap) where none may be;
//! - `V <op> <elapsed ms> <bound ms> at <unix µs>`: an operation overran its timeout by
//!   more than 1 s;
//! - `T <op>`: an operation timed out (allowed; counted);
//! - `E <what>`: an unexpected error.
//!
//! It answers `ping` on stdin with a `pong` marker from a thread of its own, so a
//! participant whose process is stuck is noticed by the parent.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipcx::node::Node;
use ipcx::pubsub::{Policy, PubSubConfig, Publisher, RecvError, SendError, Subscriber};
use ipcx::rpc::{CallError, RpcClient, RpcServer};
use ipcx::{Channel, Namespace, Transport};
use ipcx_testkit::{read_command, signal};
use serde::{Deserialize, Serialize};

/// The pub/sub service every publisher and subscriber uses.
pub const PUBSUB: &str = "ticks";
/// RPC services, one server each; client `i` calls `rpc<i % RPC_SERVICES>`.
pub const RPC_SERVICES: u64 = 2;
/// How far past its own timeout an operation may return before it counts as a deadlock.
pub const SLACK: Duration = Duration::from_secs(1);

const SEND_TIMEOUT: Duration = Duration::from_millis(500);
const RECV_TIMEOUT: Duration = Duration::from_millis(200);
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECT_WAIT: Duration = Duration::from_millis(1000);
/// Bound of the calls that take no timeout (node creation, service open/create, bind).
const SETUP_BOUND: Duration = Duration::from_secs(3);
/// A participant that cannot set up within this gives up (a test failure).
const SETUP_GIVE_UP: Duration = Duration::from_secs(10);
const COUNT_EVERY: Duration = Duration::from_millis(100);

/// A checksummed, sequenced message (pub/sub ticks, RPC requests and echoed responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// Who made it: a publisher's or client's incarnation id.
    pub origin: u64,
    /// Sequence number, per origin, from 0.
    pub seq: u64,
    /// `data.len()`, as the sender meant it.
    pub len: u32,
    /// Bytes derived from (origin, seq).
    pub data: Vec<u8>,
    /// CRC-32 of origin, seq, len and data.
    pub crc: u32,
}
ipcx::message!(Packet, "test.storm.packet", 1, 0);

/// A server's answer: the request as it arrived, and who answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The server's incarnation id.
    pub server: u64,
    /// The request.
    pub echo: Packet,
}
ipcx::message!(Reply, "test.storm.reply", 1, 0);

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn crc(origin: u64, seq: u64, len: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&origin.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(data);
    h.finalize()
}

impl Packet {
    /// Message `seq` of `origin`: 8 to 263 bytes of derived data.
    pub fn new(origin: u64, seq: u64) -> Packet {
        let mut x = splitmix(origin ^ seq.rotate_left(32));
        let len = 8 + (x % 256) as u32;
        let data = (0..len)
            .map(|_| {
                x = splitmix(x);
                x as u8
            })
            .collect::<Vec<u8>>();
        Packet { origin, seq, len, crc: crc(origin, seq, len, &data), data }
    }

    /// Whether the packet is intact: its checksum, its length and its derived contents.
    pub fn verify(&self) -> Result<(), String> {
        if crc(self.origin, self.seq, self.len, &self.data) != self.crc {
            return Err(format!("crc mismatch origin {} seq {}", self.origin, self.seq));
        }
        if self.len as usize != self.data.len() || *self != Packet::new(self.origin, self.seq) {
            return Err(format!("contents differ origin {} seq {}", self.origin, self.seq));
        }
        Ok(())
    }
}

/// Microseconds since the Unix epoch: CLOCK_REALTIME, the same in every process.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The event file of one participant incarnation.
struct Events(Mutex<File>);

impl Events {
    fn open(path: &str) -> Events {
        let f = OpenOptions::new().create(true).append(true).open(path).expect("event file");
        Events(Mutex::new(f))
    }

    fn event(&self, line: &str) {
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(format!("{line}\n").as_bytes()).expect("write event");
    }

    /// Runs `f`, recording a violation if it returned more than [`SLACK`] after `bound`.
    fn timed<R>(&self, op: &str, bound: Duration, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        let took = t.elapsed();
        if took > bound + SLACK {
            self.event(&format!(
                "V {op} {} {} at {}",
                took.as_millis(),
                bound.as_millis(),
                now_us()
            ));
        }
        r
    }

    /// Retries `f` (each attempt bounded by [`SETUP_BOUND`]) until it succeeds; panics
    /// after [`SETUP_GIVE_UP`].
    fn setup<T, E: std::fmt::Display>(&self, op: &str, mut f: impl FnMut() -> Result<T, E>) -> T {
        let start = Instant::now();
        loop {
            match self.timed(op, SETUP_BOUND, &mut f) {
                Ok(v) => return v,
                Err(e) if start.elapsed() > SETUP_GIVE_UP => {
                    self.event(&format!("E {op}: {e}"));
                    panic!("{op} failed for {SETUP_GIVE_UP:?}: {e}");
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// What every participant is started with: namespace, event file, index, incarnation.
struct Ctx {
    ns: Namespace,
    events: Arc<Events>,
    idx: u64,
    /// Unique per incarnation of every participant of the storm.
    id: u64,
    delivered: Arc<AtomicU64>,
    last_count: Instant,
}

impl Ctx {
    fn new(args: &[String]) -> Ctx {
        let idx: u64 = args[2].parse().unwrap();
        let inc: u64 = args[3].parse().unwrap();
        Ctx {
            ns: Namespace::new(&args[0]).unwrap(),
            events: Arc::new(Events::open(&args[1])),
            idx,
            id: idx * 1_000_000 + inc,
            delivered: Arc::new(AtomicU64::new(0)),
            last_count: Instant::now(),
        }
    }

    /// Tells the parent we are ready, then answers its pings until stdin closes.
    fn ready(&self, payload: &str) {
        signal("ready", payload);
        let delivered = Arc::clone(&self.delivered);
        thread::spawn(move || {
            while let Some(cmd) = read_command() {
                if cmd == "ping" {
                    signal("pong", &delivered.load(Ordering::Relaxed).to_string());
                }
            }
            std::process::exit(0);
        });
    }

    fn delivered(&mut self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.count();
    }

    /// Writes the delivered count at most every [`COUNT_EVERY`].
    fn count(&mut self) {
        if self.last_count.elapsed() >= COUNT_EVERY {
            self.last_count = Instant::now();
            self.events.event(&format!("N {}", self.delivered.load(Ordering::Relaxed)));
        }
    }
}

/// Runs participant `role`.
pub fn run(role: &str, args: &[String]) {
    let ctx = Ctx::new(args);
    match role {
        "pub" => publisher(ctx),
        "sub" => subscriber(ctx),
        "server" => server(ctx),
        "client" => client(ctx),
        other => panic!("unknown role {other}"),
    }
}

fn pubsub_config() -> PubSubConfig {
    PubSubConfig { capacity: 64, max_message: 512, policy: Policy::Block, ..Default::default() }
}

/// Publishes sequenced packets for ever, pausing 1 ms every 4 messages.
fn publisher(mut ctx: Ctx) {
    let ev = Arc::clone(&ctx.events);
    let label = format!("pub{}", ctx.id);
    let node = ev.setup("node", || Node::builder().namespace(ctx.ns.clone()).name(&label).create());
    ev.event(&format!("I pub:{}", node.id()));
    let mut p =
        ev.setup("publisher", || Publisher::<Packet>::create(&node, PUBSUB, pubsub_config()));
    ctx.ready("");
    let mut seq = 0;
    let mut pending = Packet::new(ctx.id, seq);
    loop {
        match ev.timed("send", SEND_TIMEOUT, || p.send_timeout(pending, SEND_TIMEOUT)) {
            Ok(()) => {
                ctx.delivered();
                seq += 1;
                pending = Packet::new(ctx.id, seq);
                if seq % 4 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            Err(SendError::Full(m)) => {
                ev.event("T send");
                pending = m;
            }
            Err(e) => {
                ev.event(&format!("E send: {e}"));
                pending = e.into_inner();
                thread::sleep(Duration::from_millis(1));
            }
        }
        ctx.count();
    }
}

/// Receives from every publisher, checking each packet and each publisher's sequence.
fn subscriber(mut ctx: Ctx) {
    let ev = Arc::clone(&ctx.events);
    let mut sub = ev.setup("open", || Subscriber::<Packet>::open(&ctx.ns, PUBSUB));
    ctx.ready("");
    let mut last: HashMap<u64, u64> = HashMap::new();
    loop {
        match ev.timed("recv", RECV_TIMEOUT, || sub.recv_timeout(RECV_TIMEOUT)) {
            Ok(t) => {
                if let Err(why) = t.verify() {
                    ev.event(&format!("C {why}"));
                    continue;
                }
                match last.insert(t.origin, t.seq) {
                    Some(prev) if t.seq <= prev => {
                        ev.event(&format!("C origin {} seq {} after {prev}", t.origin, t.seq));
                    }
                    Some(prev) if t.seq != prev + 1 => {
                        ev.event(&format!("G origin {} seq {} after {prev}", t.origin, t.seq));
                    }
                    _ => {}
                }
                ctx.delivered();
            }
            Err(RecvError::PublisherGone { publisher }) => {
                ev.event(&format!("D pub:{publisher} {}", now_us()));
            }
            Err(RecvError::Timeout) => {}
            Err(RecvError::Lagged { missed, publisher }) => {
                ev.event(&format!("G lagged {missed} from {publisher} under Block"));
            }
            Err(e @ (RecvError::Decode { .. } | RecvError::Corrupt { .. })) => {
                ev.event(&format!("C {e}"));
            }
            Err(e) => ev.event(&format!("E recv: {e}")),
        }
        ctx.count();
    }
}

fn rpc_service(idx: u64) -> String {
    format!("rpc{}", idx % RPC_SERVICES)
}

/// Echoes every request it can verify, tagged with its incarnation id.
fn server(mut ctx: Ctx) {
    let ev = Arc::clone(&ctx.events);
    let name = rpc_service(ctx.idx);
    ev.event(&format!("I srv:{}", ctx.id));
    let server =
        ev.setup("bind", || RpcServer::<Packet, Reply>::bind(&ctx.ns, &name, Transport::Shm));
    let (sid, served, hev) = (ctx.id, Arc::clone(&ctx.delivered), Arc::clone(&ev));
    let _handle = server.serve(move |req: Packet| {
        if let Err(why) = req.verify() {
            hev.event(&format!("C request {why}"));
            return Err(why);
        }
        served.fetch_add(1, Ordering::Relaxed);
        Ok(Reply { server: sid, echo: req })
    });
    ctx.ready("");
    loop {
        thread::sleep(COUNT_EVERY);
        ctx.count();
    }
}

/// Calls its service for ever, reconnecting (with backoff) after the server dies.
fn client(mut ctx: Ctx) {
    let ev = Arc::clone(&ctx.events);
    let builder = Channel::builder(&rpc_service(ctx.idx), Transport::Shm).namespace(ctx.ns.clone());
    let mut seq = 0;
    let mut ready = false;
    let mut down_since = Instant::now();
    loop {
        let connect =
            || RpcClient::<Packet, Reply>::connect_with_backoff(builder.clone(), CONNECT_WAIT);
        let mut c = match ev.timed("connect", CONNECT_WAIT, connect) {
            Ok(c) => c,
            Err(e) => {
                if down_since.elapsed() > SETUP_GIVE_UP {
                    ev.event(&format!("E no server for {SETUP_GIVE_UP:?}: {e}"));
                    down_since = Instant::now();
                }
                continue;
            }
        };
        if !ready {
            ctx.ready("");
            ready = true;
        }
        // The server incarnation we are connected to, once a reply named it.
        let mut server = None;
        loop {
            let req = Packet::new(ctx.id, seq);
            match ev.timed("call", CALL_TIMEOUT, || c.call(&req, CALL_TIMEOUT)) {
                Ok(r) => {
                    if let Err(why) = r.echo.verify() {
                        ev.event(&format!("C reply {why}"));
                    } else if r.echo != req {
                        ev.event(&format!(
                            "C reply to {}/{} for {}/{seq}",
                            r.echo.origin, r.echo.seq, ctx.id
                        ));
                    } else {
                        ctx.delivered();
                    }
                    server = Some(r.server);
                    seq += 1;
                    if seq % 2 == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                Err(CallError::ServerGone) => {
                    let t = now_us();
                    if let Some(s) = server {
                        ev.event(&format!("D srv:{s} {t}"));
                    }
                    break;
                }
                Err(CallError::Timeout) => ev.event("T call"),
                Err(e) => ev.event(&format!("E call: {e}")),
            }
            ctx.count();
        }
        down_since = Instant::now();
    }
}
