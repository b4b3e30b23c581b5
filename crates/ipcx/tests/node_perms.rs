//! Permissions of node and service files: exact modes under umask 000, and a foreign uid
//! refused a 0600 descriptor while it may read one shared 0644.
//!
//! This file runs with its own `XDG_RUNTIME_DIR` (set once, before any namespace is used,
//! and inherited by the peers) so the test can open the runtime directories to other users
//! for the foreign-uid test without touching the shared `/tmp/ipcx-<uid>`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ipcx::node::Node;
use ipcx::service::{OpenError, Pattern, Service};
use ipcx::Namespace;
use ipcx_sys::Permissions;
use ipcx_testkit::{peer, read_command, signal, unique_name, NOBODY_UID};

ipcx_testkit::peer_entry!(peer_main);

fn peer_main(role: &str, args: &[String]) {
    let ns = Namespace::new(&args[0]).unwrap();
    match role {
        "umask-owner" => {
            rustix::process::umask(rustix::fs::Mode::empty());
            let node = Node::builder().namespace(ns).create().unwrap();
            let perms = Permissions::from_mode(0o640).unwrap();
            let _svc = Service::builder("grouped", Pattern::PubSub)
                .permissions(perms)
                .create(&node)
                .unwrap();
            let _private = Service::builder("private", Pattern::PubSub).create(&node).unwrap();
            signal("ready", node.id().as_str());
            while read_command().is_some() {}
        }
        "foreign" => {
            let err = Service::open(&ns, "private").unwrap_err();
            assert!(matches!(err, OpenError::PermissionDenied { .. }), "{err}");
            signal("refused", &err.to_string());
            let svc = Service::open(&ns, "shared").unwrap();
            signal("shared", svc.descriptor().owner.as_str());
        }
        _ => panic!("unknown role {role}"),
    }
}

/// This binary's runtime root (mode 0711), set as `XDG_RUNTIME_DIR` once.
fn runtime_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(unique_name("xdg"));
        std::env::set_var("XDG_RUNTIME_DIR", &root);
        root
    })
}

/// How many tests use the runtime root; the last one out removes it.
static USERS: Mutex<usize> = Mutex::new(0);

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A fresh namespace under this binary's runtime root, removed at the end.
struct TestNs(Namespace);

impl TestNs {
    fn new(tag: &str) -> TestNs {
        let mut users = USERS.lock().unwrap();
        let root = runtime_root();
        if *users == 0 {
            std::fs::create_dir_all(root).unwrap();
            set_mode(root, 0o711);
        }
        *users += 1;
        TestNs(Namespace::new(&unique_name(tag)).unwrap())
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.dir());
        let mut users = USERS.lock().unwrap_or_else(|p| p.into_inner());
        *users -= 1;
        if *users == 0 {
            let _ = std::fs::remove_dir_all(runtime_root());
        }
    }
}

#[test]
fn modes_are_exact_under_umask_000() {
    let t = TestNs::new("permumask");
    let ns = &t.0;
    let mut p = peer("umask-owner").arg(ns.name()).spawn();
    let id = p.expect("ready");
    let dir = ns.dir();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("nodes")), 0o700);
    assert_eq!(mode(&dir.join("services")), 0o700);
    assert_eq!(mode(&dir.join(format!("nodes/{id}.token"))), 0o600);
    assert_eq!(mode(&dir.join(format!("nodes/{id}.json"))), 0o600);
    assert_eq!(mode(&dir.join(format!("nodes/{id}.resources"))), 0o600);
    assert_eq!(mode(&dir.join("services/grouped.json")), 0o640);
    assert_eq!(mode(&dir.join("services/private.json")), 0o600);
    let svc = Service::open(ns, "grouped").unwrap();
    assert_eq!(svc.descriptor().permissions, "0640");
    assert_eq!(svc.descriptor().mode(), Some(0o640));
    p.close_stdin();
    p.wait_success();
}

#[test]
fn a_foreign_uid_cannot_read_an_owner_only_descriptor() {
    let t = TestNs::new("permforeign");
    let ns = &t.0;
    let node = Node::builder().namespace(ns.clone()).create().unwrap();
    let _private = Service::builder("private", Pattern::Rpc).create(&node).unwrap();
    let shared = Service::builder("shared", Pattern::Rpc)
        .permissions(Permissions::from_mode(0o644).unwrap())
        .create(&node)
        .unwrap();
    // Let others reach the files (the default 0700 directories would refuse them anyway).
    for dir in [runtime_root().join("ipcx"), ns.dir(), ns.dir().join("services")] {
        set_mode(&dir, 0o711);
    }
    let mut p = peer("foreign").arg(ns.name()).uid(NOBODY_UID).spawn();
    let refused = p.expect("refused");
    assert!(refused.contains("permission denied"), "{refused}");
    assert_eq!(p.expect("shared"), node.id().as_str());
    p.wait_success();
    drop((shared, node));
}
