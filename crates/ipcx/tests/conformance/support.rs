//! What every conformance test shares: the runtime root, the per-test namespace scope (which
//! checks for leftovers and removes the namespace directory on drop), peer spawning, and the
//! deterministic messages of the ordering case.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ipcx::channel::{Channel, Listener, Transport};
use ipcx::Namespace;
use ipcx_testkit::{leftovers, peer, unique_name, Peer};

/// The runtime root (`XDG_RUNTIME_DIR`) of every test of this file and of their peers. It is
/// world-traversable (0755, `ipcx/` 0711) so a peer running as `nobody` can reach a socket
/// in a namespace directory that a test opened to it; everything else stays 0700.
const RUNTIME_ROOT: &str = "/tmp/ipcxt-conformance";

/// Generous bound on anything that should happen "at once" (connects, accepts, markers).
pub const LONG: Duration = Duration::from_secs(10);

/// Points `XDG_RUNTIME_DIR` at [`RUNTIME_ROOT`], once per process. Peers inherit it.
pub fn init() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let root = Path::new(RUNTIME_ROOT);
        if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|v| Path::new(&v) == root) {
            return; // a peer: the parent prepared it
        }
        for (dir, mode) in [(root.to_owned(), 0o755), (root.join("ipcx"), 0o711)] {
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create {}: {e}", dir.display()),
            }
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod root");
        }
        // Set once, before any test of this process reads the environment (every test calls
        // `init` first and `OnceLock` makes the others wait).
        std::env::set_var("XDG_RUNTIME_DIR", root);
    });
}

/// A transport by name (as peers receive it).
pub fn transport(name: &str) -> Transport {
    name.parse().expect("transport name")
}

/// One test's namespace. On drop: fails the test if the namespace directory is not empty or
/// anything named after the namespace is left in `/dev/shm` or `/dev/mqueue`, or a System V
/// queue last used by one of its peers is left; then removes the directory, whatever
/// happened. Declare it first in a test, so it drops last.
pub struct Scope {
    pub ns: Namespace,
    pub t: Transport,
    pids: Mutex<Vec<u32>>,
}

impl Scope {
    /// A fresh random namespace for a test of transport `t`.
    pub fn new(t: Transport) -> Scope {
        init();
        let ns = Namespace::new(&unique_name("conf")).expect("namespace name");
        Scope { ns, t, pids: Mutex::new(Vec::new()) }
    }

    /// The namespace directory.
    pub fn dir(&self) -> PathBuf {
        self.ns.dir()
    }

    /// A builder for endpoint `name` in this scope.
    pub fn builder(&self, name: &str) -> ipcx::ChannelBuilder {
        Channel::builder(name, self.t).namespace(self.ns.clone())
    }

    /// Listens on endpoint "svc".
    pub fn listen(&self) -> Listener {
        self.builder("svc").listen().expect("listen")
    }

    /// Spawns a peer running `role` with arguments `[namespace, transport, extra...]`.
    pub fn peer(&self, role: &str, extra: &[&str]) -> Peer {
        self.spawn(peer(role), extra)
    }

    /// Like [`peer`](Self::peer), running as `uid`.
    pub fn peer_as(&self, uid: u32, role: &str, extra: &[&str]) -> Peer {
        self.spawn(peer(role).uid(uid), extra)
    }

    fn spawn(&self, b: ipcx_testkit::PeerBuilder, extra: &[&str]) -> Peer {
        let b = extra.iter().fold(b.arg(self.ns.name()).arg(self.t.name()), |b, a| b.arg(a));
        let p = b.spawn();
        self.pids.lock().unwrap().push(p.pid());
        p
    }

    /// Everything this test left behind.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let name = self.ns.name();
        match fs::read_dir(self.dir()) {
            Ok(rd) => {
                let left: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
                if !left.is_empty() {
                    out.push(format!("namespace directory not empty: {left:?}"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => out.push(format!("cannot list the namespace directory: {e}")),
        }
        let shm = leftovers(name);
        if !shm.is_empty() {
            out.push(format!("left in /dev/shm: {shm:?}"));
        }
        if let Ok(rd) = fs::read_dir("/dev/mqueue") {
            let left: Vec<_> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(name))
                .collect();
            if !left.is_empty() {
                out.push(format!("left in /dev/mqueue: {left:?}"));
            }
        }
        let pids = self.pids.lock().unwrap();
        let queues = sysv_queues_used_by(&pids);
        if !queues.is_empty() {
            out.push(format!("System V queues last used by our peers left: {queues:?}"));
        }
        out
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let problems = self.problems();
        let _ = fs::remove_dir_all(self.dir());
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("{} test left things behind:\n{}", self.t, problems.join("\n"));
        }
    }
}

/// Ids of System V message queues whose last sender or receiver is one of `pids`
/// (`/proc/sysvipc/msg` columns: key msqid perms cbytes qnum lspid lrpid ...).
fn sysv_queues_used_by(pids: &[u32]) -> Vec<i32> {
    let Ok(text) = fs::read_to_string("/proc/sysvipc/msg") else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let pid = |i: usize| cols.get(i).and_then(|s| s.parse::<u32>().ok());
            let ours = [pid(5), pid(6)].into_iter().flatten().any(|p| p != 0 && pids.contains(&p));
            ours.then(|| cols.get(1).and_then(|s| s.parse().ok())).flatten()
        })
        .filter(|&id| ipcx_testkit::sysv_id_exists(ipcx_testkit::SysvKind::Msg, id))
        .collect()
}

/// Opens the namespace directory (and so the socket in it) to other users: for the uid
/// allow-list case, where a `nobody` peer must reach the socket to be refused by policy
/// rather than by the file system.
pub fn open_dir_to_others(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).expect("chmod namespace dir");
}

/// Asserts that `elapsed` lies in `[timeout, timeout + 1 s]`.
pub fn assert_waited(what: &str, started: Instant, timeout: Duration) {
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout && elapsed <= timeout + Duration::from_secs(1),
        "{what} took {elapsed:?}, expected {timeout:?} to {:?}",
        timeout + Duration::from_secs(1)
    );
}

/// splitmix64: the deterministic generator both sides of the ordering case use.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A random seed (not secret).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// Size of the self-description at the start of ordering messages: seq u64, len u32, crc32
/// of the rest u32.
const DESC: usize = 16;

/// Message `seq` of the stream seeded with `seed`, at most `max` bytes: random length (the
/// first two are 0 and `max`), random body; from [`DESC`] bytes on it starts with
/// `(seq, len, crc32 of the body)`.
pub fn ordered_message(seed: u64, seq: u64, max: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ seq.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let len = match seq {
        0 => 0,
        1 => max,
        _ => (rng.next_u64() % (max as u64 + 1)) as usize,
    };
    let mut msg = vec![0u8; len];
    rng.fill(&mut msg);
    if len >= DESC {
        let crc = crc32fast::hash(&msg[DESC..]);
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        msg[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        msg[12..16].copy_from_slice(&crc.to_le_bytes());
    }
    msg
}

/// Checks that `got` is message `seq` of the stream (intact: self-description and bytes).
pub fn check_ordered(seed: u64, seq: u64, max: usize, got: &[u8]) {
    if got.len() >= DESC {
        let field = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b[..r.len()].copy_from_slice(&got[r]);
            u64::from_le_bytes(b)
        };
        assert_eq!(field(0..8), seq, "message out of order, lost or duplicated");
        assert_eq!(field(8..12), got.len() as u64, "message {seq}: length changed");
        let crc = crc32fast::hash(&got[DESC..]);
        assert_eq!(field(12..16), u64::from(crc), "message {seq}: body corrupted");
    }
    let want = ordered_message(seed, seq, max);
    assert!(got == want.as_slice(), "message {seq}: {} bytes, want {}", got.len(), want.len());
}
