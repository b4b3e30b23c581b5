//! Crash storm: while checksummed, sequenced traffic flows through a pub/sub service and two
//! RPC services, SIGKILL a random participant (publisher, subscriber, RPC client or RPC
//! server) at random moments and restart it; sometimes kill the new one again while it is
//! still starting. Then SIGKILL everyone, run `clean`, and check that nothing is left.
//!
//! Asserted: no deadlock (every operation returns within its timeout + 1 s, every
//! participant answers a ping within 2 s), no corrupt, duplicated, out-of-order or lost
//! message delivered (a publisher restarts under a new id, so sequences start over), every
//! survivor notices a killed publisher or server within 100 ms, and after the final
//! `clean` nothing of the namespace is left in /dev/shm, /proc/sysvipc or its directory.
//!
//! The seed is printed; `IPCX_STORM_SEED=<n>` replays a run's choices (not its timing).
//! The default run makes at least 200 kills; `cargo test --test crash_storm -- --ignored
//! storm_10000` makes 10,000.

#[path = "crash_storm/roles.rs"]
mod roles;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use ipcx::cleanup::clean;
use ipcx::Namespace;
use ipcx_testkit::{leftovers, peer, unique_name, Peer};

use roles::now_us;

ipcx_testkit::peer_entry!(roles::run);

/// Longest allowed time between a kill and a survivor noticing it.
const DETECT_BOUND_US: u64 = 100_000;
/// How long a participant may take to answer a ping.
const PING_BOUND: Duration = Duration::from_secs(2);
/// How long a (re)started participant may take to say it is ready.
const READY_BOUND: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Pub,
    Sub,
    Server,
    Client,
}

impl Role {
    const ALL: [Role; 4] = [Role::Pub, Role::Sub, Role::Client, Role::Server];

    fn name(self) -> &'static str {
        match self {
            Role::Pub => "pub",
            Role::Sub => "sub",
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

/// SplitMix64: small, seeded, good enough to pick victims and pauses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// One participant position; each restart is a new incarnation.
struct Slot {
    role: Role,
    idx: u64,
    inc: u64,
    peer: Option<Peer>,
}

impl Slot {
    /// The event file (and name) of the current incarnation.
    fn incarnation(&self) -> String {
        format!("{}{}.{}.log", self.role.name(), self.idx, self.inc)
    }
}

/// The storm's state in the parent.
struct Storm {
    ns: Namespace,
    logs: PathBuf,
    slots: Vec<Slot>,
    /// Kill instant (unix µs) of every incarnation killed, by event file name.
    killed_at: HashMap<String, u64>,
    kills: HashMap<Role, u64>,
    startup_kills: u64,
    pids: Vec<u32>,
}

impl Storm {
    fn spawn(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.inc += 1;
        let log = self.logs.join(slot.incarnation());
        let p = peer(slot.role.name())
            .arg(self.ns.name())
            .arg(log.display())
            .arg(slot.idx)
            .arg(slot.inc)
            .spawn();
        self.pids.push(p.pid());
        slot.peer = Some(p);
    }

    fn wait_ready(&mut self, i: usize) {
        self.slots[i].peer.as_mut().unwrap().expect_within("ready", READY_BOUND);
    }

    fn kill(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let t = now_us();
        if let Some(mut p) = slot.peer.take() {
            p.kill();
        }
        self.killed_at.insert(slot.incarnation(), t);
    }

    fn ping_all(&mut self) {
        for slot in &mut self.slots {
            let p = slot.peer.as_mut().unwrap();
            p.send("ping");
            p.expect_within("pong", PING_BOUND);
        }
    }
}

/// What the participants' event files say.
#[derive(Debug, Default)]
struct Tally {
    delivered: HashMap<Role, u64>,
    /// Detection latencies in µs.
    latencies: Vec<u64>,
    /// Kills that at least one survivor reported.
    detected_kills: usize,
    /// Deaths reported of incarnations nobody killed.
    false_deaths: Vec<String>,
    corrupt: Vec<String>,
    gaps: Vec<String>,
    deadlocks: Vec<String>,
    errors: Vec<String>,
    timeouts: u64,
}

fn tally(logs: &Path, killed_at: &HashMap<String, u64>) -> Tally {
    let mut t = Tally::default();
    // A SIGKILL may cut the last line short: only whole lines count.
    let files: Vec<(String, Vec<String>)> = std::fs::read_dir(logs)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let lines = text
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .map(|l| l.trim_end().to_owned())
                .collect();
            (path.file_name().unwrap().to_string_lossy().into_owned(), lines)
        })
        .collect();
    // Which incarnation each victim name belongs to.
    let mut whose: HashMap<&str, &str> = HashMap::new();
    for (name, lines) in &files {
        for line in lines {
            if let Some(victim) = line.strip_prefix("I ") {
                whose.insert(victim, name);
            }
        }
    }
    let mut detected: HashMap<&str, ()> = HashMap::new();
    for (name, lines) in &files {
        let role = Role::ALL.into_iter().find(|r| name.starts_with(r.name())).unwrap();
        let mut count = 0;
        for line in lines {
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            let what = || format!("{name}: {rest}");
            match kind {
                "I" => {}
                "N" => count = rest.parse().unwrap(),
                "D" => {
                    let (victim, at) = rest.split_once(' ').unwrap();
                    let at: u64 = at.parse().unwrap();
                    let killed = whose.get(victim).and_then(|inc| killed_at.get_key_value(*inc));
                    match killed {
                        Some((inc, &killed)) => {
                            t.latencies.push(at.saturating_sub(killed));
                            detected.insert(inc.as_str(), ());
                        }
                        None => t.false_deaths.push(what()),
                    }
                }
                "C" => t.corrupt.push(what()),
                "G" => t.gaps.push(what()),
                "V" => t.deadlocks.push(what()),
                "T" => t.timeouts += 1,
                "E" => t.errors.push(what()),
                _ => t.errors.push(format!("{name}: unreadable line {line:?}")),
            }
        }
        *t.delivered.entry(role).or_default() += count;
    }
    t.detected_kills = detected.len();
    t.latencies.sort_unstable();
    t
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// System V objects whose creator or last user is one of `pids`.
fn sysv_of(pids: &[u32]) -> Vec<String> {
    // (table, pid columns): shm has cpid and lpid; msg has lspid and lrpid; sem keeps no
    // pid, and nothing in the stack under test creates System V semaphores.
    let tables = [("shm", [4, 5]), ("msg", [5, 6])];
    let mut found = Vec::new();
    for (table, cols) in tables {
        let text = std::fs::read_to_string(format!("/proc/sysvipc/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let ours = cols.iter().any(|&c| {
                f.get(c).and_then(|s| s.parse::<u32>().ok()).is_some_and(|p| pids.contains(&p))
            });
            if ours {
                found.push(format!("{table} {}", f[1]));
            }
        }
    }
    found
}

/// Every file (not directory) under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Removes the namespace's objects and the event files, even when the test fails.
struct Guard {
    ns: Namespace,
    logs: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = clean(&self.ns, false);
        for name in leftovers(self.ns.name()) {
            let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        }
        let _ = std::fs::remove_dir_all(self.ns.dir());
        let _ = std::fs::remove_dir_all(&self.logs);
    }
}

fn storm(target_kills: u64) {
    let seed = std::env::var("IPCX_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_us() ^ u64::from(std::process::id()).rotate_left(40));
    println!("crash storm seed: {seed} (replay with IPCX_STORM_SEED={seed})");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let ns = Namespace::new(&unique_name("storm")).unwrap();
    let logs = std::env::temp_dir().join(unique_name("storm-events"));
    std::fs::create_dir_all(&logs).unwrap();
    let guard = Guard { ns: ns.clone(), logs: logs.clone() };

    // Publishers first (the first creates the service), servers before their clients.
    let layout =
        [(Role::Pub, 3), (Role::Server, roles::RPC_SERVICES), (Role::Sub, 3), (Role::Client, 4)];
    let slots = layout
        .iter()
        .flat_map(|&(role, n)| (0..n).map(move |idx| Slot { role, idx, inc: 0, peer: None }))
        .collect();
    let mut s = Storm {
        ns: ns.clone(),
        logs: logs.clone(),
        slots,
        killed_at: HashMap::new(),
        kills: HashMap::new(),
        startup_kills: 0,
        pids: Vec::new(),
    };
    for i in 0..s.slots.len() {
        s.spawn(i);
        s.wait_ready(i);
    }

    let mut total = 0;
    while total < target_kills {
        thread::sleep(rng.millis(5, 60));
        let i = rng.below(s.slots.len() as u64) as usize;
        let role = s.slots[i].role;
        s.kill(i);
        s.spawn(i);
        *s.kills.entry(role).or_default() += 1;
        total += 1;
        // Now and then, kill the new incarnation while it is still starting.
        if rng.below(8) == 0 {
            thread::sleep(rng.millis(0, 15));
            s.kill(i);
            s.spawn(i);
            *s.kills.entry(role).or_default() += 1;
            s.startup_kills += 1;
            total += 1;
        }
        s.wait_ready(i);
        if total % 25 == 0 {
            s.ping_all();
        }
    }
    s.ping_all();
    let storm_time = started.elapsed();

    // The end: everyone dies, then one cleaner reclaims what they left.
    for i in 0..s.slots.len() {
        s.kill(i);
    }
    let t = tally(&logs, &s.killed_at);
    let report = clean(&ns, false).expect("final clean");
    let failures: Vec<String> = report
        .nodes
        .iter()
        .flat_map(|n| n.failures.iter().map(|f| format!("{}: {}", f.item, f.error)))
        .collect();

    let shm_left = leftovers(ns.name());
    let sysv_left = sysv_of(&s.pids);
    let files_left = files_under(&ns.dir());
    let leftover_count = shm_left.len() + sysv_left.len() + files_left.len();

    let k = |r: Role| s.kills.get(&r).copied().unwrap_or(0);
    let d = |r: Role| t.delivered.get(&r).copied().unwrap_or(0);
    let victims =
        s.killed_at.keys().filter(|k| k.starts_with("pub") || k.starts_with("server")).count();
    println!(
        "crash storm summary: kills={total} (pub {}, sub {}, client {}, server {}; {} during startup) \
         in {:.1} s; delivered: pubsub {} sent / {} received, rpc {} calls ({} served); \
         corrupt={} gaps={} deadlocks={} errors={} timeouts={}; detection of {} of {victims} \
         killed publishers/servers, {} reports: p50={:.1} ms p99={:.1} ms max={:.1} ms; \
         leftovers={leftover_count}; seed={seed}",
        k(Role::Pub),
        k(Role::Sub),
        k(Role::Client),
        k(Role::Server),
        s.startup_kills,
        storm_time.as_secs_f64(),
        d(Role::Pub),
        d(Role::Sub),
        d(Role::Client),
        d(Role::Server),
        t.corrupt.len(),
        t.gaps.len(),
        t.deadlocks.len(),
        t.errors.len(),
        t.timeouts,
        t.detected_kills,
        t.latencies.len(),
        percentile(&t.latencies, 0.5),
        percentile(&t.latencies, 0.99),
        percentile(&t.latencies, 1.0),
    );
    if leftover_count > 0 {
        println!("crash storm leftovers: {shm_left:?} {sysv_left:?} {files_left:?}");
    }
    let slow: Vec<_> = t.latencies.iter().filter(|&&l| l > DETECT_BOUND_US).collect();

    assert!(total >= target_kills);
    assert!(t.corrupt.is_empty(), "corrupt messages delivered: {:?}", t.corrupt);
    assert!(t.gaps.is_empty(), "messages lost under Block: {:?}", t.gaps);
    assert!(t.deadlocks.is_empty(), "operations overran their timeout: {:?}", t.deadlocks);
    assert!(t.errors.is_empty(), "unexpected errors: {:?}", t.errors);
    assert!(t.false_deaths.is_empty(), "live peers reported dead: {:?}", t.false_deaths);
    assert!(d(Role::Sub) > 0 && d(Role::Client) > 0, "traffic flowed");
    assert!(t.detected_kills > 0, "some kill was detected");
    assert!(slow.is_empty(), "deaths noticed later than 100 ms (µs): {slow:?}");
    assert!(failures.is_empty(), "final clean failed: {failures:?}");
    assert!(shm_left.is_empty(), "left in /dev/shm: {shm_left:?}");
    assert!(sysv_left.is_empty(), "left in /proc/sysvipc: {sysv_left:?}");
    assert!(files_left.is_empty(), "left in {}: {files_left:?}", ns.dir().display());
    std::fs::remove_dir_all(ns.dir()).expect("remove the empty namespace directory");
    drop(guard);
}

#[test]
fn crash_storm_200_kills() {
    storm(200);
}

#[test]
#[ignore = "long: 10,000 kills (run with --ignored)"]
fn crash_storm_10000_kills() {
    storm(10_000);
}
