//! Peer processes for cross-process tests.
//!
//! The parent re-executes the current test binary, asking libtest to run only the ignored
//! entry test that [`peer_entry!`](crate::peer_entry) declares. The entry reads its role
//! and arguments from the environment and calls the test file's dispatch function. Parent
//! and peer talk through lines: the peer writes `@@ipcx <marker> <payload>` on stdout with
//! [`signal`], the parent waits for a marker with [`Peer::expect`]; the parent writes
//! commands to the peer's stdin with [`Peer::send`], the peer reads them with
//! [`read_command`].

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Name of the ignored test function that peer processes run.
pub const ENTRY_TEST: &str = "ipcx_peer_entry";
/// The uid of `nobody`, used by permission tests.
pub const NOBODY_UID: u32 = 65534;
/// How long the parent waits for a marker or an exit before failing the test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const ROLE_ENV: &str = "IPCX_PEER_ROLE";
const ARGS_ENV: &str = "IPCX_PEER_ARGS";
const MARK: &str = "@@ipcx ";
const ARG_SEP: char = '\u{1f}';

/// Declares the ignored entry test that peer processes of this test binary run.
///
/// `$dispatch` is a `fn(&str, &[String])` called with the role and arguments given to
/// [`peer`](crate::peer). It must be declared at the crate root of the test file.
#[macro_export]
macro_rules! peer_entry {
    ($dispatch:path) => {
        #[test]
        #[ignore = "entry point of peer processes spawned by the tests of this file"]
        fn ipcx_peer_entry() {
            $crate::run_peer($dispatch)
        }
    };
}

/// Runs the peer role named in the environment, then exits the process with status 0.
/// Returns at once when the process was not started as a peer.
pub fn run_peer(dispatch: fn(&str, &[String])) {
    let Ok(role) = std::env::var(ROLE_ENV) else { return };
    dispatch(&role, &peer_args());
    std::io::stdout().flush().ok();
    std::process::exit(0);
}

/// The arguments this peer process was started with.
pub fn peer_args() -> Vec<String> {
    match std::env::var(ARGS_ENV) {
        Ok(s) if !s.is_empty() => s.split(ARG_SEP).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// From a peer: tells the parent `marker`, with a one-line `payload`.
pub fn signal(marker: &str, payload: &str) {
    assert!(!payload.contains('\n'), "peer payloads are single lines");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{marker} {payload}").expect("write to parent");
    out.flush().expect("flush to parent");
}

/// From a peer: the next command line the parent sent with [`Peer::send`]; `None` at EOF.
pub fn read_command() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches('\n').to_owned()),
    }
}

/// Starts describing a peer process that will run `role`.
pub fn peer(role: &str) -> PeerBuilder {
    PeerBuilder { role: role.to_owned(), args: Vec::new(), uid: None }
}

/// A peer process to be spawned; see [`peer`].
#[derive(Debug)]
pub struct PeerBuilder {
    role: String,
    args: Vec<String>,
    uid: Option<u32>,
}

impl PeerBuilder {
    /// Adds an argument (any text without the unit-separator character).
    pub fn arg(mut self, a: impl ToString) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Runs the peer as `uid` (with gid = uid and no supplementary groups).
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Spawns the peer. Panics if the test binary cannot be started.
    pub fn spawn(self) -> Peer {
        let exe = std::env::current_exe().expect("current test binary");
        let mut cmd = Command::new(exe);
        cmd.args([ENTRY_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE_ENV, &self.role)
            .env(ARGS_ENV, self.args.join(&ARG_SEP.to_string()))
            .env_remove("RUST_TEST_THREADS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(uid) = self.uid {
            cmd.uid(uid).gid(uid);
        }
        let mut child = cmd.spawn().expect("spawn peer process");
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("peer stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix(MARK) {
                    let (m, p) = rest.split_once(' ').unwrap_or((rest, ""));
                    if tx.send((m.to_owned(), p.to_owned())).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr_buf = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("peer stderr");
        let sink = Arc::clone(&stderr_buf);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Peer { role: self.role, child, stdin, markers: rx, stderr: stderr_buf, status: None }
    }
}

/// A running peer process. Dropping it kills the process (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Peer {
    role: String,
    child: Child,
    stdin: Option<ChildStdin>,
    markers: Receiver<(String, String)>,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Peer {
    /// The peer's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to [`DEFAULT_TIMEOUT`] for `marker` and returns its payload.
    pub fn expect(&mut self, marker: &str) -> String {
        self.expect_within(marker, DEFAULT_TIMEOUT)
    }

    /// Waits up to `timeout` for `marker` and returns its payload. Markers other than
    /// `marker` that arrive first are a test failure, as are the peer exiting or timing out.
    pub fn expect_within(&mut self, marker: &str, timeout: Duration) -> String {
        match self.markers.recv_timeout(timeout) {
            Ok((m, p)) if m == marker => p,
            Ok((m, p)) => self.fail(&format!("expected marker {marker:?}, got {m:?} {p:?}")),
            Err(RecvTimeoutError::Timeout) => {
                self.fail(&format!("no marker {marker:?} within {timeout:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let st = self.child.wait().ok();
                self.fail(&format!("peer exited ({st:?}) before marker {marker:?}"))
            }
        }
    }

    /// Sends one command line to the peer's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("peer stdin open");
        writeln!(stdin, "{line}").and_then(|_| stdin.flush()).expect("write to peer");
    }

    /// Closes the peer's stdin, so its [`read_command`] returns `None`.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Kills the peer with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Waits up to [`DEFAULT_TIMEOUT`] for the peer to exit and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait peer") {
                self.status = Some(st);
                return st;
            }
            if Instant::now() >= deadline {
                self.fail("peer did not exit in time");
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the peer to exit and fails the test unless it exited with status 0.
    pub fn wait_success(&mut self) {
        let st = self.wait();
        if !st.success() {
            self.fail(&format!("peer failed: {st:?} (signal {:?})", st.signal()));
        }
    }

    /// What the peer wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn fail(&mut self, why: &str) -> ! {
        self.kill();
        // Give the stderr reader a moment to drain what the dead peer wrote.
        thread::sleep(Duration::from_millis(50));
        panic!("peer {:?}: {why}\n--- peer stderr ---\n{}", self.role, self.stderr());
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}
