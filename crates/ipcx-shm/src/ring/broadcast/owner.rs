//! Who owns a reader slot, and whether that process is still alive.
//!
//! A slot records its owner as (pid, start time, pid namespace): the start time is field 22
//! of `/proc/<pid>/stat` (clock ticks after boot), which a later process reusing the pid
//! cannot share, and the namespace (`/proc/self/ns/pid`) tells whether the pid even means
//! the same thing to the judge. The judge answers `Dead` only when it is sure:
//!
//! - the pid has no process (`/proc/<pid>` absent *and* `pidfd_open` says `ESRCH`, so a
//!   `hidepid` mount is not mistaken for death), or
//! - the pid's process is a zombie, or started at another time (the pid was reused),
//!
//! and only for owners in the judge's own pid namespace. Anything it cannot read makes the
//! answer `Unknown`, which never frees a slot: a wrong "dead" would let the writer overwrite
//! records a live reader is reading, a wrong "alive" only delays reclaiming.
//!
//! Why not a liveness token (`ipcx_sys::liveness`)? A token is a file whose path a slot
//! would have to name, tying this L1 structure to the node layer's directory layout; pid +
//! start time fits in the slot itself and needs nothing but `/proc`.

use std::sync::Mutex;

use ipcx_sys::liveness::{Pidfd, PidfdOpenError};

/// The identity of one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Identity {
    /// Process id (thread-group id).
    pub(super) pid: u32,
    /// Start time in clock ticks after boot; 0 if unknown.
    pub(super) start_time: u64,
    /// Inode of the pid namespace; 0 if unknown.
    pub(super) pid_ns: u64,
}

/// What the judge can tell about a slot's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The owner still runs.
    Alive,
    /// The owner is gone for sure; its slot may be freed.
    Dead,
    /// Cannot tell (no `/proc`, another pid namespace, identity not written yet).
    Unknown,
}

static CURRENT: Mutex<Option<Identity>> = Mutex::new(None);

impl Identity {
    /// This process's identity (cached; recomputed after a fork changes the pid).
    pub(super) fn current() -> Identity {
        #[cfg(loom)]
        if let Some(id) = model::current() {
            return id;
        }
        if cfg!(miri) {
            // Miri's isolation forbids /proc; an identity nobody can judge.
            return Identity { pid: 1, start_time: 0, pid_ns: 0 };
        }
        let pid = std::process::id();
        let mut cached = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        match *cached {
            Some(id) if id.pid == pid => id,
            _ => {
                let id = Identity {
                    pid,
                    start_time: read_stat(pid).map_or(0, |s| s.start_time),
                    pid_ns: own_pid_ns().unwrap_or(0),
                };
                *cached = Some(id);
                id
            }
        }
    }
}

/// Judges the owner recorded as (`pid`, `start_time`, `pid_ns`) from this process.
pub(super) fn judge(pid: u32, start_time: u64, pid_ns: u64) -> Verdict {
    #[cfg(loom)]
    if let Some(verdict) = model::judge(pid, start_time, pid_ns) {
        return verdict;
    }
    let me = Identity::current();
    if pid == 0 || pid_ns == 0 || me.pid_ns == 0 || pid_ns != me.pid_ns {
        return Verdict::Unknown;
    }
    match read_stat(pid) {
        Ok(stat) if stat.state == b'Z' || stat.state == b'X' => Verdict::Dead,
        Ok(stat) if start_time != 0 && stat.start_time != start_time => Verdict::Dead,
        Ok(_) => Verdict::Alive,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match Pidfd::open(pid) {
            Err(PidfdOpenError::NoSuchProcess { .. }) => Verdict::Dead,
            _ => Verdict::Unknown,
        },
        Err(_) => Verdict::Unknown,
    }
}

/// The fields of `/proc/<pid>/stat` the judge needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    /// Field 3: R, S, D, Z, X, ...
    state: u8,
    /// Field 22: start time in clock ticks after boot.
    start_time: u64,
}

fn read_stat(pid: u32) -> std::io::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| std::io::Error::other("unparsable /proc/<pid>/stat"))
}

/// Parses a stat line; the command name (field 2) may hold spaces and parentheses, so the
/// fields are counted after its *last* closing parenthesis.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // Field 3 was just taken; field 22 is 19 further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// The inode number of this process's pid namespace (`pid:[4026531836]`).
fn own_pid_ns() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_str()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// Under loom every model thread is the same process and `/proc` says nothing about the
/// model: a model declares which process each of its threads is and which processes are
/// alive, and the judge rules by the same logic from that table. Without a declaration the
/// real `/proc` answers, as outside loom.
#[cfg(loom)]
pub mod model {
    use std::cell::{Cell, RefCell};

    use super::{Identity, Verdict};

    /// The pid namespace every model process is in.
    const NS: u64 = 1;

    loom::thread_local! {
        static ME: Cell<Option<Identity>> = Cell::new(None);
    }

    std::thread_local! {
        // One table per test thread (loom runs a model's threads on its test's OS thread).
        static LIVING: RefCell<Option<Vec<(u32, u64)>>> = const { RefCell::new(None) };
    }

    /// Declares the live processes, as (pid, start time); every other pid has no process.
    /// Call at the start of each model run.
    pub fn set_living(processes: &[(u32, u64)]) {
        LIVING.with(|l| *l.borrow_mut() = Some(processes.to_vec()));
    }

    /// Makes the calling model thread act as process `pid`, started at `start_time`.
    pub fn become_process(pid: u32, start_time: u64) {
        ME.with(|me| me.set(Some(Identity { pid, start_time, pid_ns: NS })));
    }

    pub(super) fn current() -> Option<Identity> {
        ME.with(Cell::get)
    }

    /// [`super::judge`] against the declared table, if one was declared.
    pub(super) fn judge(pid: u32, start_time: u64, pid_ns: u64) -> Option<Verdict> {
        let living = LIVING.with(|l| l.borrow().clone())?;
        if pid == 0 || pid_ns != NS {
            return Some(Verdict::Unknown);
        }
        Some(match living.iter().find(|&&(p, _)| p == pid) {
            None => Verdict::Dead,
            Some(&(_, started)) if start_time != 0 && started != start_time => Verdict::Dead,
            Some(_) => Verdict::Alive,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_hostile_command_names() {
        let line = "42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some(Stat { state: b'S', start_time: 987654 }));
        assert_eq!(parse_stat("42 (x) Z 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn judges_self_alive_and_impostors_dead() {
        let me = Identity::current();
        assert_ne!(me.start_time, 0);
        assert_ne!(me.pid_ns, 0);
        assert_eq!(judge(me.pid, me.start_time, me.pid_ns), Verdict::Alive);
        // Same pid, other start time: the recorded process is gone, the pid was reused.
        assert_eq!(judge(me.pid, me.start_time + 1, me.pid_ns), Verdict::Dead);
        // Another namespace: cannot tell.
        assert_eq!(judge(me.pid, me.start_time + 1, me.pid_ns + 1), Verdict::Unknown);
        assert_eq!(judge(0, 1, me.pid_ns), Verdict::Unknown);
        // A reaped child's pid (not reused this fast).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(judge(pid, 0, me.pid_ns), Verdict::Dead);
    }
}
