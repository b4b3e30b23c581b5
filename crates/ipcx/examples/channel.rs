//! Channels: a point-to-point link carrying typed messages, the same code over any of eight
//! transports. The server answers each command of the client; change `TRANSPORT` (or pass
//! one after the role) to run the same program over sockets, pipes or message queues.
//!
//! ```sh
//! cargo run -p ipcx --example channel                          # both sides (spawns itself)
//! cargo run -p ipcx --example channel -- server                # terminal 1 (first)
//! cargo run -p ipcx --example channel -- client                # terminal 2
//! cargo run -p ipcx --example channel -- server examples uds-stream   # another transport
//! ```
//!
//! With no argument the program runs the server and starts a copy of itself as the client,
//! in a namespace of its own that it removes at the end. With a role it runs only that
//! side, in the namespace `examples` (or the one given after the role).

use std::process::Command;
use std::time::Duration;

use ipcx::channel::{Listener, RecvError, TypedChannel};
use ipcx::{Channel, Namespace, Transport};
use serde::{Deserialize, Serialize};

/// The message both ends exchange. An enum works like any serde type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    /// Client → server: set a value.
    Set { key: String, value: u32 },
    /// Client → server: ask for a value.
    Get { key: String },
    /// Server → client: the answer.
    Value(Option<u32>),
}
ipcx::message!(Msg, "example.kv", 1, 0);

const NAME: &str = "kv";
const TRANSPORT: Transport = Transport::Shm;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ns = || Namespace::new(args.get(1).map_or("examples", String::as_str));
    let transport = match args.get(2) {
        Some(name) => name.parse()?,
        None => TRANSPORT,
    };
    match args.first().map(String::as_str) {
        None => both(),
        Some("server") => {
            let listener = listen(&ns()?, transport)?;
            println!("[server] listening as {NAME:?} over {transport}; now run the `client` role");
            serve_one(listener)
        }
        Some("client") => client(&ns()?, transport),
        Some(other) => Err(format!("unknown role {other:?}: use server or client").into()),
    }
}

/// Listens here, starts the client as a child process, serves it.
fn both() -> Result {
    let ns = Namespace::new(&format!("example-channel-{}", std::process::id()))?;
    let listener = listen(&ns, TRANSPORT)?;
    println!("[server] listening as {NAME:?} over {TRANSPORT}");
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe).args(["client", ns.name(), TRANSPORT.name()]).spawn()?;
    let served = serve_one(listener);
    let status = child.wait()?;
    let _ = std::fs::remove_dir_all(ns.dir());
    served?;
    if !status.success() {
        return Err(format!("the client failed: {status}").into());
    }
    println!("done");
    Ok(())
}

/// A listening endpoint for `Msg` (the contract is checked at each connection).
fn listen(ns: &Namespace, transport: Transport) -> Result<Listener> {
    Ok(Channel::builder(NAME, transport).namespace(ns.clone()).typed::<Msg>()?.listen()?)
}

/// Accepts one client and answers its commands until it leaves.
fn serve_one(mut listener: Listener) -> Result {
    let mut ch = TypedChannel::<Msg>::new(listener.accept_timeout(Duration::from_secs(30))?)?;
    let mut store = std::collections::BTreeMap::new();
    loop {
        match ch.recv_timeout(Duration::from_secs(30)) {
            Ok(Msg::Set { key, value }) => {
                println!("[server] set {key} = {value}");
                store.insert(key, value);
            }
            Ok(Msg::Get { key }) => {
                println!("[server] get {key}");
                ch.send(&Msg::Value(store.get(&key).copied()))?;
            }
            Ok(other) => println!("[server] ignoring {other:?}"),
            // The client closed its end (or died): a dead peer is reported, never a hang.
            Err(RecvError::Closed | RecvError::PeerGone) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("[server] the client left");
    Ok(())
}

/// Connects and sends a few commands.
fn client(ns: &Namespace, transport: Transport) -> Result {
    let builder = Channel::builder(NAME, transport).namespace(ns.clone()).typed::<Msg>()?;
    let mut ch = TypedChannel::<Msg>::new(builder.connect_timeout(Duration::from_secs(5))?)?;
    ch.send(&Msg::Set { key: "apples".into(), value: 3 })?;
    ch.send(&Msg::Get { key: "apples".into() })?;
    println!("[client] apples -> {:?}", ch.recv_timeout(Duration::from_secs(5))?);
    ch.send(&Msg::Get { key: "pears".into() })?;
    println!("[client] pears -> {:?}", ch.recv_timeout(Duration::from_secs(5))?);
    Ok(())
}
