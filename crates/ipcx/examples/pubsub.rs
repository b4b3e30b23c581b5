//! Publish/subscribe: a publisher sends typed sensor readings, a subscriber prints them.
//!
//! ```sh
//! cargo run -p ipcx --example pubsub                    # both sides (spawns itself)
//! cargo run -p ipcx --example pubsub -- subscriber      # terminal 1
//! cargo run -p ipcx --example pubsub -- publisher       # terminal 2 (either order)
//! ```
//!
//! With no argument the program runs the publisher and starts a copy of itself as the
//! subscriber, in a namespace of its own that it removes at the end. With a role it runs
//! only that side, in the namespace `examples` (or the one given after the role).

use std::process::{Child, Command};
use std::time::Duration;

use ipcx::discovery::wait_for_service;
use ipcx::pubsub::{PubSubConfig, Publisher, Subscriber};
use ipcx::{Namespace, Node};
use serde::{Deserialize, Serialize};

/// The message: any serde type. `ipcx::message!` gives it a contract (name and version);
/// ipcx adds a structural fingerprint, so a subscriber of another shape is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reading {
    seq: u32,
    sensor: String,
    celsius: f64,
}
ipcx::message!(Reading, "example.reading", 1, 0);

const SERVICE: &str = "temperatures";
const COUNT: u32 = 5;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ns = |default: &str| Namespace::new(args.get(1).map_or(default, String::as_str));
    match args.first().map(String::as_str) {
        None => both(),
        Some("publisher") => publisher(&ns("examples")?, || {
            println!("[publisher] waiting for a subscriber: run the `subscriber` role");
            Ok(None)
        })
        .map(drop),
        Some("subscriber") => subscriber(&ns("examples")?),
        Some(other) => Err(format!("unknown role {other:?}: use publisher or subscriber").into()),
    }
}

/// Runs the publisher here and the subscriber in a child process.
fn both() -> Result {
    let ns = Namespace::new(&format!("example-pubsub-{}", std::process::id()))?;
    let child = publisher(&ns, || {
        // Start a second process: this very program, as the subscriber.
        let exe = std::env::current_exe()?;
        Ok(Some(Command::new(exe).args(["subscriber", ns.name()]).spawn()?))
    })?;
    let status = child.expect("spawned above").wait()?;
    // Remove the namespace's runtime directory (every object in it is gone already).
    let _ = std::fs::remove_dir_all(ns.dir());
    if !status.success() {
        return Err(format!("the subscriber failed: {status}").into());
    }
    println!("done");
    Ok(())
}

/// Creates the service, waits for a subscriber, sends COUNT readings.
fn publisher(
    ns: &Namespace,
    ready: impl FnOnce() -> Result<Option<Child>>,
) -> Result<Option<Child>> {
    // A node per process: it owns the process's services and objects, and holds a liveness
    // token so that others notice (and clean up) if this process dies.
    let node = Node::builder().namespace(ns.clone()).name("pubsub-example").create()?;
    // The first publisher creates the service (a descriptor plus shared memory).
    let mut publisher = Publisher::<Reading>::create(&node, SERVICE, PubSubConfig::default())?;
    println!("[publisher] service {SERVICE:?} created in namespace {:?}", ns.name());
    let child = ready()?;
    // A subscriber sees only what is sent after it attached: wait for one.
    if !publisher.wait_for_subscribers(1, Duration::from_secs(30)) {
        return Err("no subscriber attached within 30 s".into());
    }
    for seq in 0..COUNT {
        let reading =
            Reading { seq, sensor: "kitchen".into(), celsius: 20.0 + f64::from(seq) / 2.0 };
        println!("[publisher] send {reading:?}");
        // Block policy (the default): waits if the slowest subscriber's ring is full.
        publisher.send(reading)?;
    }
    // Dropping the publisher (and its node) removes its shared memory; the subscriber
    // still reads what is left in the ring, then sees `PublisherGone`.
    Ok(child)
}

/// Waits for the service, then prints COUNT readings.
fn subscriber(ns: &Namespace) -> Result {
    // The service may not exist yet (started first): wait for it.
    wait_for_service(ns, SERVICE, Duration::from_secs(30))?;
    let mut subscriber = Subscriber::<Reading>::open(ns, SERVICE)?;
    println!("[subscriber] attached to {SERVICE:?}");
    for _ in 0..COUNT {
        // Samples deref to the message; every wait has a timeout form.
        let reading = subscriber.recv_timeout(Duration::from_secs(10))?;
        println!(
            "[subscriber] got seq {} from {}: {:.1} °C",
            reading.seq, reading.sensor, reading.celsius
        );
    }
    Ok(())
}
