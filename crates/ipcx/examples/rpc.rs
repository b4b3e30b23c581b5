//! Request/response (RPC): a server adds numbers, a client calls it several times, with
//! two calls in flight at once.
//!
//! ```sh
//! cargo run -p ipcx --example rpc                   # both sides (spawns itself)
//! cargo run -p ipcx --example rpc -- server         # terminal 1
//! cargo run -p ipcx --example rpc -- client         # terminal 2 (either order)
//! ```
//!
//! With no argument the program runs the server and starts a copy of itself as the client,
//! in a namespace of its own that it removes at the end. With a role it runs only that
//! side, in the namespace `examples` (or the one given after the role).

use std::process::Command;
use std::time::Duration;

use ipcx::rpc::{RpcClient, RpcServer};
use ipcx::{Channel, Namespace, Node, Transport};
use serde::{Deserialize, Serialize};

/// The request type. `ipcx::message!` names the contract; client and server must agree on
/// both types, or the connection is refused at the handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}
ipcx::message!(Add, "example.add", 1, 0);

/// The response type.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sum {
    value: i64,
}
ipcx::message!(Sum, "example.sum", 1, 0);

const SERVICE: &str = "adder";

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ns = |default: &str| Namespace::new(args.get(1).map_or(default, String::as_str));
    match args.first().map(String::as_str) {
        None => both(),
        Some("server") => server(&ns("examples")?),
        Some("client") => client(&ns("examples")?),
        Some(other) => Err(format!("unknown role {other:?}: use server or client").into()),
    }
}

/// Runs the server here and the client in a child process; stops the server when the
/// client is done.
fn both() -> Result {
    let ns = Namespace::new(&format!("example-rpc-{}", std::process::id()))?;
    let server = RpcServer::<Add, Sum>::bind(&ns, SERVICE, Transport::Shm)?;
    // `serve` runs the handler on background threads (one per connected client).
    let handle = server.serve(|req: Add| Ok(Sum { value: req.a + req.b }));
    println!("[server] serving {SERVICE:?} over shm");
    let exe = std::env::current_exe()?;
    let status = Command::new(exe).args(["client", ns.name()]).status()?;
    // Stop accepting, wait (a little) for running calls, remove the endpoint.
    handle.shutdown(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(ns.dir());
    if !status.success() {
        return Err(format!("the client failed: {status}").into());
    }
    println!("done");
    Ok(())
}

/// Serves until interrupted (Ctrl-C). The service belongs to a node, so `ipcx ls` lists it
/// and, if this process is killed, the next cleanup removes what it left.
fn server(ns: &Namespace) -> Result {
    let node = Node::builder().namespace(ns.clone()).name("rpc-example").create()?;
    let server = RpcServer::<Add, Sum>::create(&node, SERVICE, Transport::Shm)?;
    let _handle = server.serve(|req: Add| {
        println!("[server] {} + {}", req.a, req.b);
        Ok(Sum { value: req.a + req.b })
    });
    println!("[server] serving {SERVICE:?} in namespace {:?}; Ctrl-C to stop", ns.name());
    loop {
        std::thread::park();
    }
}

/// Connects (waiting for the server if needed) and makes a few calls.
fn client(ns: &Namespace) -> Result {
    // Retries with backoff while nobody serves the name yet, or the server restarts.
    let builder = Channel::builder(SERVICE, Transport::Shm).namespace(ns.clone());
    let mut client = RpcClient::<Add, Sum>::connect_with_backoff(builder, Duration::from_secs(30))?;
    println!("[client] connected");
    // One call: send, wait for the matching reply, at most one second.
    let sum = client.call(&Add { a: 2, b: 3 }, Duration::from_secs(1))?;
    println!("[client] 2 + 3 = {}", sum.value);
    // Two calls in flight: start both, then wait for each by its id.
    let first = client.start(&Add { a: 10, b: 20 }, Some(Duration::from_secs(1)))?;
    let second = client.start(&Add { a: 100, b: 200 }, Some(Duration::from_secs(1)))?;
    let (x, y) = (client.wait(first, None)?, client.wait(second, None)?);
    println!("[client] 10 + 20 = {}, 100 + 200 = {}", x.value, y.value);
    Ok(())
}
