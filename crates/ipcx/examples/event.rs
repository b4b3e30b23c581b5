//! Events: a listener process waits on two event sources at once with a `WaitSet`
//! (epoll); a notifier process sends event ids to each.
//!
//! ```sh
//! cargo run -p ipcx --example event                   # both sides (spawns itself)
//! cargo run -p ipcx --example event -- listener       # terminal 1 (first)
//! cargo run -p ipcx --example event -- notifier       # terminal 2
//! ```
//!
//! With no argument the program runs the listener and starts a copy of itself as the
//! notifier, in a namespace of its own that it removes at the end. With a role it runs only
//! that side, in the namespace `examples` (or the one given after the role). An event is a
//! 64-bit id, not a message: use it to say "something changed, go look".

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ipcx::event::{EventListener, EventNotifier, WaitSet};
use ipcx::{Namespace, Node};

/// Event ids the notifier sends: (event name, id).
const NOTIFICATIONS: [(&str, u64); 4] = [("door", 1), ("window", 7), ("door", 2), ("window", 8)];

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ns = |default: &str| Namespace::new(args.get(1).map_or(default, String::as_str));
    match args.first().map(String::as_str) {
        None => both(),
        Some("listener") => listener(&ns("examples")?, || {
            println!("[listener] now run the `notifier` role");
            Ok(None)
        })
        .map(drop),
        Some("notifier") => notifier(&ns("examples")?),
        Some(other) => Err(format!("unknown role {other:?}: use listener or notifier").into()),
    }
}

/// Runs the listener here and the notifier in a child process.
fn both() -> Result {
    let ns = Namespace::new(&format!("example-event-{}", std::process::id()))?;
    let child = listener(&ns, || {
        let exe = std::env::current_exe()?;
        Ok(Some(Command::new(exe).args(["notifier", ns.name()]).spawn()?))
    })?;
    let status = child.expect("spawned above").wait()?;
    let _ = std::fs::remove_dir_all(ns.dir());
    if !status.success() {
        return Err(format!("the notifier failed: {status}").into());
    }
    println!("done");
    Ok(())
}

/// Creates the "door" and "window" events, then waits on both until every id arrived.
fn listener(
    ns: &Namespace,
    ready: impl FnOnce() -> Result<Option<Child>>,
) -> Result<Option<Child>> {
    // Created with a node, each listener is also a discoverable service (`ipcx ls`), and
    // its socket is cleaned up if this process dies.
    let node = Node::builder().namespace(ns.clone()).name("event-example").create()?;
    let door = EventListener::create(&node, "door")?;
    let window = EventListener::create(&node, "window")?;
    // One wait for both: each listener is registered under a key of our choosing.
    let mut set = WaitSet::new()?;
    set.add(0, &door)?;
    set.add(1, &window)?;
    println!("[listener] waiting on \"door\" and \"window\"");
    let child = ready()?;
    let mut seen: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.values().map(Vec::len).sum::<usize>() < NOTIFICATIONS.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("not every event arrived within 30 s".into());
        }
        // Returns the listeners that have something, with their pending ids.
        for (key, ids) in set.wait(Some(left))? {
            let name = if key == 0 { "door" } else { "window" };
            println!("[listener] {name}: {ids:?}");
            seen.entry(key).or_default().extend(ids);
        }
    }
    Ok(child)
}

/// Sends each notification to its event.
fn notifier(ns: &Namespace) -> Result {
    for (name, id) in NOTIFICATIONS {
        // Fails with `NoListener` at once if nobody listens: no hang.
        EventNotifier::open(ns, name)?.notify(id)?;
        println!("[notifier] {name} <- {id}");
    }
    Ok(())
}
