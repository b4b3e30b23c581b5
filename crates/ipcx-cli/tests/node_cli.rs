//! `ipcx ls`, `inspect` and `clean` against nodes created by peer processes.

use std::process::{Command, Output};

use ipcx::node::{Node, Resource};
use ipcx::service::{Pattern, Service};
use ipcx::Namespace;
use ipcx_testkit::{peer, read_command, signal, unique_name};
use serde_json::Value;

ipcx_testkit::peer_entry!(peer_main);

fn peer_main(role: &str, args: &[String]) {
    assert_eq!(role, "node");
    let ns = Namespace::new(&args[0]).unwrap();
    let node = Node::builder().namespace(ns.clone()).name("cli-peer").create().unwrap();
    let file = ns.dir().join("peer.data");
    std::fs::write(&file, b"x").unwrap();
    node.register_resource(Resource::Path { path: file }).unwrap();
    let _svc = Service::builder("greeter", Pattern::Rpc).create(&node).unwrap();
    signal("ready", node.id().as_str());
    while read_command().is_some() {}
}

/// A fresh namespace whose directory is removed at the end.
struct TestNs(Namespace);

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.dir());
    }
}

fn ipcx(ns: &Namespace, args: &[&str]) -> (String, Output) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcx"))
        .arg("--namespace")
        .arg(ns.name())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ipcx {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), out)
}

#[test]
fn ls_inspect_and_clean_a_dead_node() {
    let t = TestNs(Namespace::new(&unique_name("cli-node")).unwrap());
    let ns = &t.0;
    let mut p = peer("node").arg(ns.name()).spawn();
    let id = p.expect("ready");

    let (out, _) = ipcx(ns, &["ls", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["namespace"], ns.name());
    assert_eq!(v["nodes"][0]["id"], id.as_str());
    assert_eq!(v["nodes"][0]["liveness"], "alive");
    assert_eq!(v["nodes"][0]["label"], "cli-peer");
    assert_eq!(v["services"][0]["name"], "greeter");
    assert_eq!(v["services"][0]["owner_liveness"], "alive");

    let (out, _) = ipcx(ns, &["inspect", "greeter", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["descriptor"]["pattern"], "rpc");
    assert_eq!(v["descriptor"]["owner"], id.as_str());
    assert_eq!(v["descriptor"]["permissions"], "0600");
    let (out, _) = ipcx(ns, &["inspect", "greeter"]);
    assert!(out.contains("owner") && out.contains("(alive)"), "{out}");

    p.kill();
    let (out, _) = ipcx(ns, &["ls"]);
    assert!(out.contains("dead"), "{out}");
    let data = ns.dir().join("peer.data");
    let (out, _) = ipcx(ns, &["clean", "--dry-run"]);
    assert!(out.contains(&format!("dead node {id}")), "{out}");
    assert!(out.contains("would remove file") && out.contains("would remove service greeter"));
    assert!(data.exists(), "a dry run removes nothing");

    let (out, _) = ipcx(ns, &["clean"]);
    assert!(out.contains(&format!("dead node {id}")), "{out}");
    assert!(out.contains("removed liveness token"), "{out}");
    assert!(!data.exists());
    let (out, _) = ipcx(ns, &["ls", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 0);
    assert_eq!(v["services"].as_array().unwrap().len(), 0);
    let (out, _) = ipcx(ns, &["clean"]);
    assert!(out.contains("nothing to clean"), "{out}");
}

#[test]
fn errors_are_one_clear_line() {
    let t = TestNs(Namespace::new(&unique_name("cli-node")).unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_ipcx"))
        .args(["--namespace", t.0.name(), "inspect", "missing"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no service \"missing\""), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_ipcx")).args(["--namespace", "a/b", "ls"]).output();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(2));
}
