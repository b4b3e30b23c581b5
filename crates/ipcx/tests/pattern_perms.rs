//! A foreign uid against the patterns: refused with a clear error, every time.
//!
//! This machine runs tests as root, so the foreign peer runs as uid 65534 (`NOBODY_UID`).
//! Namespaces are per user (each uid has its own runtime root), so to let the foreign peer
//! even find our services this file uses its own runtime root (mode 0711) and opens each
//! namespace directory to 0711: what is then left to stop the peer is what ipcx enforces —
//! the rpc listener's uid allow-list (`SO_PEERCRED`) and the 0600 modes of the pub/sub
//! descriptor and shared memory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ipcx::node::Node;
use ipcx::pubsub::{PubSubConfig, Publisher, Subscriber};
use ipcx::rpc::{RpcClient, RpcServer};
use ipcx::{Channel, Namespace, Transport};
use ipcx_sys::Permissions;
use ipcx_testkit::{peer, signal, unique_name, NOBODY_UID};

ipcx_testkit::peer_entry!(peer_main);

const WAIT: Duration = Duration::from_secs(10);

/// Peers: `call <ns>` tries one echo call; `subscribe <ns>` tries to open the pub/sub service.
fn peer_main(role: &str, args: &[String]) {
    runtime_root();
    let ns = Namespace::new(&args[0]).unwrap();
    match role {
        "call" => {
            let r = RpcClient::<String, String>::connect(&ns, "echo", Transport::Shm, WAIT)
                .map_err(|e| e.to_string())
                .and_then(|mut c| c.call(&"hi".to_owned(), WAIT).map_err(|e| e.to_string()));
            match r {
                Ok(reply) => signal("ok", &reply),
                Err(e) => signal("refused", &e.replace('\n', " ")),
            }
        }
        "subscribe" => match Subscriber::<String>::open(&ns, "news") {
            Ok(_) => signal("ok", ""),
            Err(e) => signal("refused", &format!("{e}: {}", source_chain(&e)).replace('\n', " ")),
        },
        _ => panic!("unknown role {role}"),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// This binary's runtime root (0711), set as `XDG_RUNTIME_DIR` once, in tests and peers.
fn runtime_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Some(root) = std::env::var_os("IPCXT_PERMS_ROOT") {
            // A peer: the test made the root; it only points there.
            std::env::set_var("XDG_RUNTIME_DIR", &root);
            return PathBuf::from(root);
        }
        let root = std::env::temp_dir().join(unique_name("perms-root"));
        std::env::set_var("IPCXT_PERMS_ROOT", &root);
        std::env::set_var("XDG_RUNTIME_DIR", &root);
        for dir in [root.clone(), root.join("ipcx")] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        root
    })
}

/// Tests using the runtime root; the last one out removes it.
static USERS: Mutex<usize> = Mutex::new(0);

/// A namespace under the runtime root, reachable (0711) by other uids; removed on drop.
struct OpenNs(Namespace);

impl OpenNs {
    fn new(tag: &str) -> OpenNs {
        *USERS.lock().unwrap() += 1;
        runtime_root();
        let ns = Namespace::new(&unique_name(tag)).unwrap();
        let dir = ns.ensure_dir().unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        OpenNs(ns)
    }
}

impl Drop for OpenNs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.dir());
        let mut users = USERS.lock().unwrap();
        *users -= 1;
        if *users == 0 {
            let _ = std::fs::remove_dir_all(runtime_root());
        }
    }
}

#[test]
fn a_foreign_uid_is_refused_by_an_rpc_allow_list() {
    let ns = OpenNs::new("perm-rpc");
    let me = ipcx_sys::process::current_uid();
    let builder = Channel::builder("echo", Transport::Shm)
        .namespace(ns.0.clone())
        .allow_uid(me)
        .permissions(Permissions::from_mode(0o666).unwrap());
    let handle = RpcServer::<String, String>::bind_with(builder).unwrap().serve(Ok);
    for _ in 0..3 {
        let mut p = peer("call").arg(ns.0.name()).uid(NOBODY_UID).spawn();
        let why = p.expect("refused");
        assert!(why.contains("allow-list") || why.contains("not allowed"), "clear error: {why}");
        p.wait_success();
    }
    // Our own uid is admitted.
    let mut p = peer("call").arg(ns.0.name()).spawn();
    assert_eq!(p.expect("ok"), "hi");
    p.wait_success();
    handle.shutdown(WAIT);
}

#[test]
fn a_foreign_uid_cannot_subscribe_to_a_0600_service() {
    let ns = OpenNs::new("perm-pub");
    let node = Node::builder().namespace(ns.0.clone()).create().unwrap();
    let _publisher = Publisher::<String>::create(&node, "news", PubSubConfig::default()).unwrap();
    for _ in 0..3 {
        let mut p = peer("subscribe").arg(ns.0.name()).uid(NOBODY_UID).spawn();
        let why = p.expect("refused");
        assert!(why.to_lowercase().contains("permission"), "clear error: {why}");
        p.wait_success();
    }
    let mut p = peer("subscribe").arg(ns.0.name()).spawn();
    p.expect("ok");
    p.wait_success();
}

#[test]
fn a_service_opened_to_others_admits_a_foreign_uid() {
    let ns = OpenNs::new("perm-pub-open");
    let node = Node::builder().namespace(ns.0.clone()).create().unwrap();
    let config =
        PubSubConfig { permissions: Permissions::from_mode(0o666).unwrap(), ..Default::default() };
    let _publisher = Publisher::<String>::create(&node, "news", config).unwrap();
    let mut p = peer("subscribe").arg(ns.0.name()).uid(NOBODY_UID).spawn();
    p.expect("ok");
    p.wait_success();
}
