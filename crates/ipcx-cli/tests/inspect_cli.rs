//! `ipcx inspect --json` shows the live state of a pub/sub service (publishers, counters,
//! subscribers and their lag) and whether an RPC endpoint listens.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ipcx::discovery::wait_for_service;
use ipcx::node::Node;
use ipcx::pubsub::{PubSubConfig, Publisher, Subscriber};
use ipcx::Namespace;
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name};
use serde_json::Value;

ipcx_testkit::peer_entry!(peer_main);

/// `publisher NS`: creates service "feed", then on each "send N" sends N messages.
/// `subscriber NS`: attaches to "feed", then on each "read N" reads N messages.
fn peer_main(role: &str, args: &[String]) {
    let ns = Namespace::new(&args[0]).unwrap();
    let count = |cmd: String| cmd.split(' ').nth(1).unwrap().parse::<u32>().unwrap();
    match role {
        "publisher" => {
            let node = Node::builder().namespace(ns).name("inspect-pub").create().unwrap();
            let mut p =
                Publisher::<String>::create(&node, "feed", PubSubConfig::default()).unwrap();
            signal("ready", "");
            while let Some(cmd) = read_command() {
                for i in 0..count(cmd) {
                    p.send(format!("message {i}")).unwrap();
                }
                signal("sent", "");
            }
        }
        "subscriber" => {
            wait_for_service(&ns, "feed", Duration::from_secs(10)).unwrap();
            let mut s = Subscriber::<String>::open(&ns, "feed").unwrap();
            signal("attached", "");
            while let Some(cmd) = read_command() {
                for _ in 0..count(cmd) {
                    s.recv_timeout(Duration::from_secs(10)).unwrap();
                }
                signal("read", "");
            }
        }
        _ => panic!("unknown role {role}"),
    }
}

/// A fresh namespace, cleaned and removed at the end.
struct TestNs(Namespace);

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = ipcx::cleanup::clean(&self.0, false);
        let _ = std::fs::remove_dir_all(self.0.dir());
    }
}

/// `ipcx inspect SERVICE --json`, parsed.
fn inspect(ns: &Namespace, service: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcx"))
        .args(["--namespace", ns.name(), "inspect", service, "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "inspect: {:?}: {err}", out.status);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn inspect_shows_publishers_counters_and_subscriber_lag() {
    let t = TestNs(Namespace::new(&unique_name("cli-insp")).unwrap());
    let ns = &t.0;
    let mut publ = peer("publisher").arg(ns.name()).spawn();
    publ.expect("ready");
    let mut sub = peer("subscriber").arg(ns.name()).spawn();
    sub.expect("attached");

    // Five messages sent, none read: the subscriber lags behind.
    publ.send("send 5");
    publ.expect("sent");
    let v = inspect(ns, "feed");
    assert_eq!(v["descriptor"]["pattern"], "pubsub");
    assert_eq!(v["subscribers"], 1, "{v:#}");
    let pubs = v["publishers"].as_array().unwrap();
    assert_eq!(pubs.len(), 1, "{v:#}");
    assert_eq!(pubs[0]["alive"], true);
    assert_eq!(pubs[0]["pid"], publ.pid());
    let ring = &pubs[0]["ring"];
    assert_eq!(ring["policy"], "block");
    assert_eq!(ring["published"], 5, "{v:#}");
    assert_eq!(ring["dropped"], 0);
    let subs = ring["subscribers"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{v:#}");
    assert_eq!(subs[0]["pid"], sub.pid());
    assert_eq!(subs[0]["consumed"], 0);
    assert!(subs[0]["lag_bytes"].as_u64().unwrap() > 0, "{v:#}");

    // Read them: caught up.
    sub.send("read 5");
    sub.expect("read");
    let v = inspect(ns, "feed");
    let s = &v["publishers"][0]["ring"]["subscribers"][0];
    assert_eq!(s["consumed"], 5, "{v:#}");
    assert_eq!(s["lag_bytes"], 0, "{v:#}");

    // The subscriber leaves: its slot is free again.
    sub.close_stdin();
    sub.wait_success();
    let v = inspect(ns, "feed");
    assert_eq!(v["subscribers"], 0, "{v:#}");
    assert_eq!(v["publishers"][0]["ring"]["published"], 5);

    // The publisher dies: shown as dead until cleaned.
    publ.kill();
    let v = inspect(ns, "feed");
    assert_eq!(v["owner_liveness"], "dead", "{v:#}");
    assert_eq!(v["publishers"][0]["alive"], false, "{v:#}");
    ipcx::cleanup::clean(ns, false).unwrap();
    assert!(leftovers(ns.name()).is_empty(), "{:?}", leftovers(ns.name()));
}

#[test]
fn inspect_shows_whether_an_rpc_endpoint_listens() {
    let t = TestNs(Namespace::new(&unique_name("cli-insp")).unwrap());
    let ns = &t.0;
    let mut serve = Command::new(env!("CARGO_BIN_EXE_ipcx"))
        .args(["--namespace", ns.name(), "serve", "echo", "--echo", "--until-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("serving echo"), "{line}");
    let v = inspect(ns, "echo");
    assert_eq!(v["descriptor"]["pattern"], "rpc", "{v:#}");
    assert_eq!(v["listening"], true, "{v:#}");

    // A descriptor whose owner's endpoint is gone: not listening.
    drop(serve.stdin.take());
    assert!(serve.wait().unwrap().success());
    let node = Node::builder().namespace(ns.clone()).create().unwrap();
    let _svc =
        ipcx::service::Service::builder("idle", ipcx::service::Pattern::Rpc).create(&node).unwrap();
    let v = inspect(ns, "idle");
    assert_eq!(v["listening"], false, "{v:#}");
}
