//! Nodes, services and dead-node cleanup across real processes: SIGKILLed nodes are cleaned
//! (resources, services, record, token) while live ones are untouched; concurrent cleaners
//! clean each dead node exactly once; a cleaner killed midway is finished by the next;
//! namespaces never see each other.

use std::collections::HashMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipcx::cleanup::{clean, clean_with, CleanReport};
use ipcx::discovery::{list_nodes, list_services, wait_for_service, Liveness, WaitError};
use ipcx::node::{Node, Resource};
use ipcx::service::{CreateError, Incompatibility, OpenError, Pattern, Service};
use ipcx::{Namespace, Transport};
use ipcx_sys::posix_shm::PosixShm;
use ipcx_sys::sysv_msg::{MsgKey, SysvMsgQueue};
use ipcx_testkit::{
    leftovers, peer, read_command, signal, sysv_id_exists, unique_name, Peer, SysvKind,
};

ipcx_testkit::peer_entry!(peer_main);

fn peer_main(role: &str, args: &[String]) {
    let ns = Namespace::new(&args[0]).unwrap();
    match role {
        "owner" => owner(&ns, &args[1]),
        "cleaner" => {
            signal("ready", "");
            assert_eq!(read_command().as_deref(), Some("go"));
            signal("report", &encode(&clean(&ns, false).unwrap()));
        }
        "slow-cleaner" => {
            let mut first = true;
            let _ = clean_with(&ns, false, &mut |_, item| {
                if first {
                    first = false;
                    signal("removed", &item.to_string());
                    // Wait here until the test kills us mid-cleanup.
                    while read_command().is_some() {}
                }
            });
            panic!("the slow cleaner should have been killed");
        }
        "dead-listener" => {
            // Binds and exits: the socket file outlives its only listener. (Bound in the
            // test process instead, a peer spawned meanwhile by another test could hold the
            // socket open between its fork and exec, and the probe would find it alive.)
            drop(UnixListener::bind(ns.dir().join(&args[1])).unwrap());
        }
        "restart" => {
            signal("ready", "");
            assert_eq!(read_command().as_deref(), Some("go"));
            let report = clean(&ns, false).unwrap();
            signal("report", &encode(&report));
            owner(&ns, &args[1]);
        }
        _ => panic!("unknown role {role}"),
    }
}

/// A node labelled `label` owning a socket file, a POSIX shm object and a System V queue,
/// and serving `svc-<label>`; reports them, then lives until stdin closes.
fn owner(ns: &Namespace, label: &str) {
    let node = Node::builder().namespace(ns.clone()).name(label).create().unwrap();
    // The service first: creating it waits until a dead previous owner's resources are
    // gone, so the name-based resources below never collide with a cleaner.
    let svc = Service::builder(format!("svc-{label}"), Pattern::Channel)
        .transport(Transport::UdsStream)
        .create(&node)
        .unwrap();
    let sock = ns.dir().join(format!("{label}.sock"));
    let _listener = UnixListener::bind(&sock).unwrap();
    node.register_resource(Resource::Path { path: sock.clone() }).unwrap();
    let shm_name = ns.object_name(label);
    let _shm = PosixShm::builder(&shm_name).size(4096).open().unwrap();
    node.register_resource(Resource::PosixShm { name: shm_name.clone() }).unwrap();
    let queue = SysvMsgQueue::builder(MsgKey::Private).open().unwrap();
    node.register_resource(Resource::SysvMsg { id: queue.id() }).unwrap();
    let payload = format!("{} {} {} {}", node.id(), sock.display(), shm_name, queue.id());
    signal("ready", &payload);
    while read_command().is_some() {}
    drop((svc, queue, node));
}

/// One line: `id=item|id=item|...`.
fn encode(report: &CleanReport) -> String {
    let mut items = Vec::new();
    for node in &report.nodes {
        assert!(node.failures.is_empty(), "cleanup failures: {:?}", node.failures);
        items.extend(node.removed.iter().map(|r| format!("{}={r}", node.id)));
    }
    items.join("|")
}

fn decode(line: &str) -> Vec<(String, String)> {
    line.split('|')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (id, item) = s.split_once('=').unwrap();
            (id.to_owned(), item.to_owned())
        })
        .collect()
}

/// What an owner peer reported.
#[derive(Debug)]
struct Owned {
    id: String,
    sock: PathBuf,
    shm: String,
    msq: i32,
}

impl Owned {
    fn parse(payload: &str) -> Owned {
        let f: Vec<&str> = payload.split(' ').collect();
        Owned { id: f[0].into(), sock: f[1].into(), shm: f[2].into(), msq: f[3].parse().unwrap() }
    }

    fn present(&self) -> [bool; 3] {
        [
            self.sock.exists(),
            !leftovers(&self.shm).is_empty(),
            sysv_id_exists(SysvKind::Msg, self.msq),
        ]
    }

    /// The items a cleaner removes for this node, as `Removed` displays them.
    fn items(&self, label: &str) -> Vec<String> {
        vec![
            format!("file {}", self.sock.display()),
            format!("posix shm /{}", self.shm),
            format!("sysv msg queue {}", self.msq),
            format!("service svc-{label}"),
            "resource list".into(),
            "node record".into(),
            "liveness token".into(),
        ]
    }
}

/// A fresh namespace whose directory is removed at the end, pass or fail.
struct TestNs(Namespace);

impl TestNs {
    fn new(tag: &str) -> TestNs {
        TestNs(Namespace::new(&unique_name(tag)).unwrap())
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.dir());
    }
}

fn spawn_owner(ns: &Namespace, label: &str) -> (Peer, Owned) {
    let mut p = peer("owner").arg(ns.name()).arg(label).spawn();
    let owned = Owned::parse(&p.expect("ready"));
    (p, owned)
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(true)
}

#[test]
fn sigkilled_node_is_cleaned_and_live_node_untouched() {
    let t = TestNs::new("nodekill");
    let ns = &t.0;
    let (mut victim, dead) = spawn_owner(ns, "victim");
    let (mut live_peer, live) = spawn_owner(ns, "live");
    assert_eq!(dead.present(), [true; 3]);
    let nodes = list_nodes(ns).unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n.liveness == Liveness::Alive));
    victim.kill();

    let nodes = list_nodes(ns).unwrap();
    let victim_info = nodes.iter().find(|n| n.id.as_str() == dead.id).unwrap();
    assert_eq!(victim_info.liveness, Liveness::Dead);
    assert_eq!(victim_info.record.as_ref().unwrap().label.as_deref(), Some("victim"));

    let dry = clean(ns, true).unwrap();
    assert_eq!(dry.nodes.len(), 1);
    assert_eq!(dead.present(), [true; 3], "a dry run removes nothing");

    let report = clean(ns, false).unwrap();
    assert_eq!(report.nodes.len(), 1);
    let cleaned = &report.nodes[0];
    assert_eq!(cleaned.id.as_str(), dead.id);
    assert!(cleaned.finished());
    let got: Vec<String> = cleaned.removed.iter().map(|r| r.to_string()).collect();
    assert_eq!(got, dead.items("victim"));
    assert_eq!(dead.present(), [false; 3]);
    assert_eq!(live.present(), [true; 3], "a live node's resources are untouched");
    let services = list_services(ns).unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].descriptor.name, "svc-live");
    assert_eq!(services[0].owner, Liveness::Alive);
    assert!(clean(ns, false).unwrap().nodes.is_empty(), "nothing left to clean");

    // A clean exit removes everything the node had.
    live_peer.close_stdin();
    live_peer.wait_success();
    assert_eq!(live.present(), [false; 3]);
    assert!(is_empty_dir(&ns.dir().join("nodes")));
    assert!(is_empty_dir(&ns.dir().join("services")));
}

#[test]
fn service_of_a_dead_owner_is_absent() {
    let t = TestNs::new("nodeabsent");
    let ns = &t.0;
    let (mut victim, dead) = spawn_owner(ns, "gone");
    let svc = Service::open(ns, "svc-gone").unwrap();
    assert_eq!(svc.descriptor().owner.as_str(), dead.id);
    assert!(svc.owner_alive());
    drop(svc);
    victim.kill();
    let err = Service::open(ns, "svc-gone").unwrap_err();
    assert!(matches!(err, OpenError::NotFound { .. }), "{err}");
    // Opening cleaned the dead owner up.
    assert_eq!(dead.present(), [false; 3]);
    assert!(list_nodes(ns).unwrap().is_empty());
    assert!(list_services(ns).unwrap().is_empty());
}

#[test]
fn create_open_and_compatibility_checks() {
    let t = TestNs::new("nodesvc");
    let ns = &t.0;
    let node = Node::builder().namespace(ns.clone()).name("a").create().unwrap();
    let other = Node::builder().namespace(ns.clone()).name("b").create().unwrap();
    let builder = Service::builder("calc", Pattern::Rpc)
        .transport(Transport::UdsSeqpacket)
        .contract(ipcx::ContractId::string())
        .capacity(16)
        .max_message(4096);
    let svc = node.create_service(&builder).unwrap();
    assert!(svc.is_owner());
    let err = other.create_service(&builder).unwrap_err();
    assert!(matches!(err, CreateError::Exists { ref owner, .. } if owner == node.id()), "{err}");

    let opened = other.open_or_create_service(&builder).unwrap();
    assert!(!opened.is_owner());
    assert_eq!(opened.descriptor().capacity, 16);
    assert!(opened.descriptor().endpoint.ends_with("calc.uds-seqpacket"));

    let err = Service::builder("calc", Pattern::PubSub).open(ns).unwrap_err();
    let OpenError::Incompatible { reason: Incompatibility::Pattern { .. }, .. } = &err else {
        panic!("{err}")
    };
    assert!(err.to_string().contains("pubsub") && err.to_string().contains("rpc"), "{err}");
    let err = Service::builder("calc", Pattern::Rpc).transport(Transport::Shm).open(ns);
    let err = err.unwrap_err().to_string();
    assert!(err.contains("shm") && err.contains("uds-seqpacket"), "{err}");
    let bytes = Service::builder("calc", Pattern::Rpc).contract(ipcx::ContractId::bytes());
    let err = bytes.open(ns).unwrap_err().to_string();
    assert!(err.contains("ipcx.bytes") && err.contains("ipcx.string"), "{err}");
    assert!(matches!(Service::open(ns, "nope").unwrap_err(), OpenError::NotFound { .. }));
    assert!(matches!(Service::open(ns, "a/b").unwrap_err(), OpenError::BadName(_)));

    // Wait: times out on an absent service, returns at once for a present one.
    let err = wait_for_service(ns, "later", Duration::from_millis(30)).unwrap_err();
    assert!(matches!(err, WaitError::Timeout { .. }), "{err}");
    assert!(wait_for_service(ns, "calc", Duration::from_millis(30)).is_ok());

    drop(svc);
    assert!(matches!(Service::open(ns, "calc").unwrap_err(), OpenError::NotFound { .. }));
    drop((opened, other, node));
    assert!(is_empty_dir(&ns.dir().join("services")));
    assert!(is_empty_dir(&ns.dir().join("nodes")));
}

#[test]
fn wait_for_service_sees_a_late_service() {
    let t = TestNs::new("nodewait");
    let ns = &t.0;
    let mut p = peer("owner").arg(ns.name()).arg("late").spawn();
    let svc = wait_for_service(ns, "svc-late", Duration::from_secs(20)).unwrap();
    assert_eq!(svc.descriptor().pattern, Pattern::Channel);
    p.expect("ready");
    p.close_stdin();
    p.wait_success();
}

#[test]
fn namespaces_never_see_each_other() {
    let (a, b) = (TestNs::new("nodeiso"), TestNs::new("nodeiso"));
    let (mut pa, _) = spawn_owner(&a.0, "one");
    assert_eq!(list_nodes(&a.0).unwrap().len(), 1);
    assert_eq!(list_services(&a.0).unwrap().len(), 1);
    assert!(list_nodes(&b.0).unwrap().is_empty());
    assert!(list_services(&b.0).unwrap().is_empty());
    assert!(matches!(Service::open(&b.0, "svc-one").unwrap_err(), OpenError::NotFound { .. }));
    assert!(clean(&b.0, false).unwrap().nodes.is_empty());
    assert!(Service::open(&a.0, "svc-one").is_ok());
    pa.close_stdin();
    pa.wait_success();
}

#[test]
fn concurrent_cleaners_clean_each_dead_node_exactly_once() {
    const N: usize = 5;
    let t = TestNs::new("nodeconc");
    let ns = &t.0;
    let (mut live_peer, live) = spawn_owner(ns, "live");
    // All alive first: creating a node cleans up after dead ones.
    let mut victims = Vec::new();
    let mut peers = Vec::new();
    for i in 0..N {
        let label = format!("victim{i}");
        let (p, owned) = spawn_owner(ns, &label);
        peers.push(p);
        victims.push((label, owned));
    }
    for p in &mut peers {
        p.kill();
    }
    let mut cleaners: Vec<Peer> = (0..4).map(|_| peer("cleaner").arg(ns.name()).spawn()).collect();
    let mut restart = peer("restart").arg(ns.name()).arg("victim0").spawn();
    for c in cleaners.iter_mut().chain(std::iter::once(&mut restart)) {
        c.expect("ready");
    }
    for c in cleaners.iter_mut().chain(std::iter::once(&mut restart)) {
        c.send("go");
    }
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    for c in cleaners.iter_mut().chain(std::iter::once(&mut restart)) {
        for item in decode(&c.expect("report")) {
            *counts.entry(item).or_default() += 1;
        }
    }
    let reborn = Owned::parse(&restart.expect("ready"));
    for (label, owned) in &victims {
        for item in owned.items(label) {
            let n = counts.remove(&(owned.id.clone(), item.clone())).unwrap_or(0);
            assert_eq!(n, 1, "{item} of {label} removed {n} times");
        }
        // The restarted victim0 reuses its socket path and shm name.
        let expected = if label == "victim0" { [true, true, false] } else { [false; 3] };
        assert_eq!(owned.present(), expected);
    }
    assert!(counts.is_empty(), "unexpected removals: {counts:?}");
    assert_eq!(live.present(), [true; 3]);
    assert_eq!(reborn.present(), [true; 3]);
    let svc = Service::open(ns, "svc-victim0").unwrap();
    assert_eq!(svc.descriptor().owner.as_str(), reborn.id);
    let alive: Vec<_> = list_nodes(ns).unwrap().into_iter().map(|n| n.liveness).collect();
    assert_eq!(alive, [Liveness::Alive; 2]);
    for c in &mut cleaners {
        c.wait_success();
    }
    // Clean exits remove the survivors' resources (a kill would leave them to `clean`).
    for p in [&mut live_peer, &mut restart] {
        p.close_stdin();
        p.wait_success();
    }
    assert_eq!(live.present(), [false; 3]);
    assert_eq!(reborn.present(), [false; 3]);
}

#[test]
fn cleaner_killed_midway_is_finished_by_the_next() {
    let t = TestNs::new("nodemid");
    let ns = &t.0;
    let (mut victim, dead) = spawn_owner(ns, "v");
    victim.kill();
    let mut slow = peer("slow-cleaner").arg(ns.name()).spawn();
    let first = slow.expect("removed");
    slow.kill();
    let items = dead.items("v");
    assert_eq!(first, items[0]);
    assert_eq!(dead.present(), [false, true, true], "only the first item went");
    let nodes = list_nodes(ns).unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].liveness, Liveness::Dead, "the token outlives a dead cleaner");

    let report = clean(ns, false).unwrap();
    assert_eq!(report.nodes.len(), 1);
    let got: Vec<String> = report.nodes[0].removed.iter().map(|r| r.to_string()).collect();
    assert_eq!(got, items[1..]);
    assert_eq!(dead.present(), [false; 3]);
    assert!(list_nodes(ns).unwrap().is_empty());
}

#[test]
fn clean_removes_endpoints_of_dead_listeners_only() {
    let ns = TestNs::new("nc-ep");
    let dir = ns.0.ensure_dir().unwrap();
    // A listener that died without removing its socket file (std does not unlink on drop),
    // one of each socket kind that is still alive, and a file that is no endpoint.
    peer("dead-listener").arg(ns.0.name()).arg("dead.shm").spawn().wait_success();
    assert!(dir.join("dead.shm").exists());
    let live = ipcx::Channel::builder("live", Transport::Shm).namespace(ns.0.clone()).listen();
    let seq = ipcx::Channel::builder("seq", Transport::UdsSeqpacket).namespace(ns.0.clone());
    let (live, seq) = (live.unwrap(), seq.listen().unwrap());
    std::fs::write(dir.join("notes.txt"), "x").unwrap();

    let dry = clean(&ns.0, true).unwrap();
    assert_eq!(dry.endpoints, vec![dir.join("dead.shm")]);
    assert!(dir.join("dead.shm").exists(), "a dry run removes nothing");
    let report = clean(&ns.0, false).unwrap();
    assert_eq!(report.endpoints, vec![dir.join("dead.shm")]);
    assert!(!dir.join("dead.shm").exists());
    assert!(dir.join("live.shm").exists() && dir.join("seq.uds-seqpacket").exists());
    assert!(dir.join("notes.txt").exists(), "not an endpoint: left alone");
    drop((live, seq));
}
