//! Liveness tokens and pidfds across real processes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ipcx_sys::liveness::{
    claim_dead, probe, AcquireError, Liveness, LivenessToken, Pidfd, PidfdWaitError, ProbeError,
};
use ipcx_sys::Permissions;
use ipcx_testkit::{peer, read_command, signal, unique_name, NOBODY_UID};

ipcx_testkit::peer_entry!(peer_main);

fn peer_main(role: &str, args: &[String]) {
    match role {
        // args: path, mode (octal), umask (octal)
        "holder" => {
            let mode = u32::from_str_radix(&args[1], 8).unwrap();
            let mask = u32::from_str_radix(&args[2], 8).unwrap();
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
            let token =
                LivenessToken::acquire(&args[0], Permissions::from_mode(mode).unwrap()).unwrap();
            signal("held", &std::process::id().to_string());
            while let Some(cmd) = read_command() {
                if cmd == "release" {
                    token.remove().unwrap();
                    signal("released", "");
                    break;
                }
            }
        }
        "holder-many" => {
            let tokens: Vec<_> = args
                .iter()
                .map(|p| LivenessToken::acquire(p, Permissions::OWNER_ONLY).unwrap())
                .collect();
            signal("held", &tokens.len().to_string());
            while read_command().is_some() {}
        }
        // Holds a token and starts a child that execs while the token is held.
        #[allow(
            clippy::zombie_processes,
            reason = "the peer is SIGKILLed; the test kills the child"
        )]
        "holder-with-child" => {
            let _token = LivenessToken::acquire(&args[0], Permissions::OWNER_ONLY).unwrap();
            let child = Command::new("sleep")
                .arg("30")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            signal("held", &child.id().to_string());
            while read_command().is_some() {}
        }
        // args: dir, count. Claims t0..t<count> in order once told "go"; reports the winners.
        "claimer" => {
            let dir = Path::new(&args[0]);
            let count: usize = args[1].parse().unwrap();
            signal("ready", "");
            assert_eq!(read_command().as_deref(), Some("go"));
            let mut won = Vec::new();
            for i in 0..count {
                if let Some(dead) = claim_dead(dir.join(format!("t{i}.lock"))).unwrap() {
                    let pid = dead.recorded_pid().unwrap_or(0);
                    match dead.remove() {
                        Ok(()) => won.push(format!("{i}:{pid}")),
                        Err(e) => won.push(format!("{i}:remove-failed-{e}")),
                    }
                }
            }
            signal("won", &won.join(","));
        }
        "prober" => signal("probe", &probe_kind(probe(&args[0]))),
        "acquirer" => {
            let kind = match LivenessToken::acquire(&args[0], Permissions::OWNER_ONLY) {
                Ok(_) => "ok".to_owned(),
                Err(AcquireError::AlreadyHeld { .. }) => "already-held".to_owned(),
                Err(AcquireError::PermissionDenied { .. }) => "permission-denied".to_owned(),
                Err(e) => format!("other {e}"),
            };
            signal("acquire", &kind);
        }
        "waiter" => {
            signal("ready", "");
            while let Some(cmd) = read_command() {
                if cmd == "exit" {
                    std::process::exit(0);
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn probe_kind(r: Result<Liveness, ProbeError>) -> String {
    match r {
        Ok(Liveness::Alive) => "alive".into(),
        Ok(Liveness::Dead) => "dead".into(),
        Ok(Liveness::Missing) => "missing".into(),
        Err(ProbeError::PermissionDenied { .. }) => "permission-denied".into(),
        Err(e) => format!("other {e}"),
    }
}

/// A fresh directory under the temp dir, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(mode: u32) -> TempDir {
        let dir = std::env::temp_dir().join(unique_name("live"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn holder(path: &Path, mode: u32, umask: u32) -> ipcx_testkit::Peer {
    peer("holder").arg(path.display()).arg(format!("{mode:o}")).arg(format!("{umask:o}")).spawn()
}

fn probe_from_peer(path: &Path, uid: Option<u32>) -> String {
    let mut b = peer("prober").arg(path.display());
    if let Some(uid) = uid {
        b = b.uid(uid);
    }
    let mut p = b.spawn();
    let kind = p.expect("probe");
    p.wait_success();
    kind
}

#[test]
fn alive_while_held_dead_after_sigkill_then_cleaned() {
    let dir = TempDir::new(0o700);
    let path = dir.path("node.lock");
    let mut h = holder(&path, 0o600, 0o022);
    let pid: u32 = h.expect("held").parse().unwrap();

    assert_eq!(probe(&path).unwrap(), Liveness::Alive);
    assert!(claim_dead(&path).unwrap().is_none());
    assert!(matches!(
        LivenessToken::acquire(&path, Permissions::OWNER_ONLY),
        Err(AcquireError::AlreadyHeld { .. })
    ));

    h.kill();
    assert_eq!(probe(&path).unwrap(), Liveness::Dead);
    assert_eq!(probe_from_peer(&path, None), "dead");
    let dead = claim_dead(&path).unwrap().expect("dead token claimed");
    assert_eq!(dead.recorded_pid(), Some(pid));
    dead.remove().unwrap();
    assert_eq!(probe(&path).unwrap(), Liveness::Missing);
    assert!(dir.entries().is_empty());
}

#[test]
fn clean_release_and_exit_remove_the_file() {
    let dir = TempDir::new(0o700);
    let path = dir.path("a.lock");
    let mut h = holder(&path, 0o600, 0o022);
    h.expect("held");
    h.send("release");
    h.expect("released");
    assert_eq!(probe(&path).unwrap(), Liveness::Missing);
    h.wait_success();

    let mut h = holder(&path, 0o600, 0o022);
    h.expect("held");
    h.close_stdin(); // the peer returns and drops its token
    h.wait_success();
    assert!(dir.entries().is_empty());
}

#[test]
fn acquire_takes_over_a_dead_token() {
    let dir = TempDir::new(0o700);
    let path = dir.path("b.lock");
    let mut h = holder(&path, 0o600, 0o022);
    h.expect("held");
    h.kill();

    let token = LivenessToken::acquire(&path, Permissions::OWNER_ONLY).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim(), std::process::id().to_string());
    assert_eq!(probe_from_peer(&path, None), "alive");
    drop(token);
    assert_eq!(probe_from_peer(&path, None), "missing");
    assert!(dir.entries().is_empty());
}

#[test]
fn racing_cleaners_exactly_one_wins_each_dead_token() {
    const COUNT: usize = 300;
    let dir = TempDir::new(0o700);
    let mut b = peer("holder-many");
    for i in 0..COUNT {
        b = b.arg(dir.path(&format!("t{i}.lock")).display());
    }
    let mut h = b.spawn();
    assert_eq!(h.expect("held"), COUNT.to_string());
    let owner = h.pid();
    h.kill();

    // Both cleaners walk the same dead tokens in the same order at the same time.
    let claimer = || peer("claimer").arg(dir.0.display()).arg(COUNT).spawn();
    let (mut c1, mut c2) = (claimer(), claimer());
    c1.expect("ready");
    c2.expect("ready");
    c1.send("go");
    c2.send("go");
    let (w1, w2) = (c1.expect("won"), c2.expect("won"));
    c1.wait_success();
    c2.wait_success();
    let mut all: Vec<&str> = w1.split(',').chain(w2.split(',')).filter(|s| !s.is_empty()).collect();
    all.sort_by_key(|s| s.split(':').next().unwrap().parse::<usize>().unwrap());
    let expected: Vec<String> = (0..COUNT).map(|i| format!("{i}:{owner}")).collect();
    assert_eq!(all, expected, "each dead token must be won exactly once");
    assert!(dir.entries().is_empty());
}

#[test]
fn mode_is_exact_whatever_the_umask() {
    let dir = TempDir::new(0o700);
    for (mode, umask) in [(0o640, 0o000), (0o660, 0o077), (0o600, 0o000)] {
        let path = dir.path(&format!("m{mode:o}.lock"));
        let mut h = holder(&path, mode, umask);
        h.expect("held");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "umask {umask:o}");
        h.send("release");
        h.expect("released");
        h.wait_success();
    }
    assert!(dir.entries().is_empty());
}

#[test]
fn nobody_cannot_probe_or_create_owner_only_tokens() {
    // A 0600 token in a directory others may search: the file itself refuses nobody.
    let open_dir = TempDir::new(0o755);
    let path = open_dir.path("root.lock");
    let _token = LivenessToken::acquire(&path, Permissions::OWNER_ONLY).unwrap();
    assert_eq!(probe_from_peer(&path, Some(NOBODY_UID)), "permission-denied");

    // A 0700 directory: uid 65534 can neither reach tokens in it nor create one.
    let closed = TempDir::new(0o700);
    let inner = closed.path("inner.lock");
    let _inner = LivenessToken::acquire(&inner, Permissions::from_mode(0o644).unwrap()).unwrap();
    assert_eq!(probe_from_peer(&inner, Some(NOBODY_UID)), "permission-denied");
    let mut a = peer("acquirer").arg(closed.path("mine.lock").display()).uid(NOBODY_UID).spawn();
    assert_eq!(a.expect("acquire"), "permission-denied");
    a.wait_success();
    assert!(!closed.path("mine.lock").exists());
}

#[test]
fn exec_children_do_not_inherit_the_lock() {
    let dir = TempDir::new(0o700);
    let path = dir.path("c.lock");
    let mut h = peer("holder-with-child").arg(path.display()).spawn();
    let child_pid: u32 = h.expect("held").parse().unwrap();
    // The grandchild is alive (it is our peer's unreaped child), so its pidfd is reliable.
    let child = Pidfd::open(child_pid).unwrap();
    h.kill();
    let state = probe(&path).unwrap();
    let _ = rustix::process::pidfd_send_signal(&child, rustix::process::Signal::KILL);
    assert_eq!(state, Liveness::Dead, "a child that exec'd kept the token locked");
    claim_dead(&path).unwrap().unwrap().remove().unwrap();
}

#[test]
fn bad_paths_are_typed() {
    let dir = TempDir::new(0o700);
    assert!(matches!(probe(&dir.0), Err(ProbeError::NotAToken { .. })));
    let link = dir.path("link.lock");
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
    assert!(matches!(probe(&link), Err(ProbeError::NotAToken { .. })));
    assert!(matches!(
        LivenessToken::acquire(&link, Permissions::OWNER_ONLY),
        Err(AcquireError::NotAToken { .. })
    ));
    let sub = dir.path("sub");
    std::fs::create_dir(&sub).unwrap();
    assert!(matches!(
        LivenessToken::acquire(&sub, Permissions::OWNER_ONLY),
        Err(AcquireError::NotAToken { .. })
    ));
    assert_eq!(probe(dir.path("none.lock")).unwrap(), Liveness::Missing);
    assert!(claim_dead(dir.path("none.lock")).unwrap().is_none());
}

#[test]
fn pidfd_sees_a_peer_alive_then_exited() {
    let mut p = peer("waiter").spawn();
    p.expect("ready");
    let fd = Pidfd::open(p.pid()).unwrap();
    assert!(fd.is_alive().unwrap());
    assert!(matches!(fd.wait_exit(Duration::from_millis(20)), Err(PidfdWaitError::Timeout)));
    // Exit on its own: the pidfd turns readable before the parent reaps the zombie.
    p.send("exit");
    fd.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(!fd.is_alive().unwrap());
    p.wait_success();

    let mut p = peer("waiter").spawn();
    p.expect("ready");
    let fd = Pidfd::open(p.pid()).unwrap();
    assert!(fd.is_alive().unwrap());
    p.kill();
    fd.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(!fd.is_alive().unwrap());
}
