//! The peer process: the same `ipcx` binary re-executed as `ipcx __bench-peer`, pinned to
//! its own CPU. [`PeerProcess`] is the bench's handle on it; [`serve`] is the peer's main.
//!
//! Every wait on the peer is bounded: control lines have deadlines, and while the bench is
//! busy on the channel a watchdog thread kills a peer that overruns its phase (which ends
//! the bench's blocked reads with end-of-file or an error).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::control::{Command, Link, DONE, READY};
use super::floors::{self, PeerIo};
use crate::cli::BenchPeerArgs;

/// How long a peer may take to start and open its end of the channel.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// How long a peer may take to exit once told to.
const EXIT_WITHIN: Duration = Duration::from_secs(5);
/// Test hook: `IPCX_BENCH_PEER_FAULT=<entry>=hang|exit` makes that entry's peer misbehave
/// at its first command, to exercise the bench's timeouts and failure reporting.
const FAULT_ENV: &str = "IPCX_BENCH_PEER_FAULT";

/// The bench's handle on a running peer. Dropping it kills and reaps the peer.
#[derive(Debug)]
pub struct PeerProcess {
    child: Child,
    link: Link,
    exited: bool,
}

/// What the peer is started with.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// Entry name.
    pub name: &'a str,
    /// Message size.
    pub size: usize,
    /// The peer's stdin.
    pub stdin: Stdio,
    /// The peer's stdout.
    pub stdout: Stdio,
    /// The rendezvous argument.
    pub rendezvous: Option<String>,
    /// The CPU the peer pins itself to.
    pub cpu: Option<usize>,
}

impl PeerProcess {
    /// Starts the peer and waits until it reports its end of the channel open.
    pub fn start(spawn: Spawn<'_>) -> Result<PeerProcess> {
        let exe = std::env::current_exe().context("cannot find the ipcx executable")?;
        let (ours, theirs) = UnixStream::pair().context("cannot make the control socket")?;
        let mut cmd = Process::new(exe);
        cmd.arg("__bench-peer").arg(spawn.name).arg(spawn.size.to_string());
        if let Some(r) = &spawn.rendezvous {
            cmd.arg("--rendezvous").arg(r);
        }
        if let Some(cpu) = spawn.cpu {
            cmd.arg("--cpu").arg(cpu.to_string());
        }
        cmd.stdin(spawn.stdin).stdout(spawn.stdout).stderr(OwnedFd::from(theirs));
        let child = cmd.spawn().context("cannot start the bench peer")?;
        // `cmd` holds the peer's ends; closing them here lets the peer's exit show as EOF.
        drop(cmd);
        let mut peer = PeerProcess { child, link: Link::new(ours), exited: false };
        peer.link.expect(READY, READY_WITHIN)?;
        Ok(peer)
    }

    /// The child process (for floors whose channel is its stdio pipes).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Tells the peer to run `cmd` while the bench runs its own half, `local`. A watchdog
    /// kills the peer if the phase has not ended after `limit`. Then waits for `done`.
    pub fn phase<T>(
        &mut self,
        cmd: Command,
        limit: Duration,
        local: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let start = Instant::now();
        self.link.send(&cmd.to_string())?;
        let (stop, stopped) = mpsc::channel::<()>();
        let fired = AtomicBool::new(false);
        let (child, fired_ref) = (&mut self.child, &fired);
        let result = std::thread::scope(|s| {
            s.spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(limit) {
                    fired_ref.store(true, Ordering::Relaxed);
                    let _ = child.kill();
                }
            });
            let result = local();
            drop(stop);
            result
        });
        if fired.load(Ordering::Relaxed) {
            bail!("the peer did not finish `{cmd}` within {limit:?}; killed it");
        }
        let value = match result {
            Ok(value) => value,
            Err(e) => {
                // The peer's own report, or else how it ended, says more than our read did.
                let e = match self.link.drain() {
                    Some(said) => e.context(format!("peer: {said}")),
                    None => e,
                };
                return Err(match self.child.try_wait() {
                    Ok(Some(status)) => e.context(format!("the peer exited with {status}")),
                    _ => e,
                });
            }
        };
        let left = limit.saturating_sub(start.elapsed()).max(Duration::from_secs(2));
        self.link.expect(DONE, left)?;
        Ok(value)
    }

    /// Tells the peer to exit and checks it did so cleanly.
    pub fn finish(mut self) -> Result<()> {
        self.link.send(&Command::Exit.to_string())?;
        match self.link.recv(Some(Instant::now() + EXIT_WITHIN)) {
            Ok(None) => {}
            Ok(Some(line)) => bail!("peer: {line}"),
            Err(_) => bail!("the peer did not exit within {EXIT_WITHIN:?}"),
        }
        let status = self.child.wait().context("cannot reap the peer")?;
        self.exited = true;
        if !status.success() {
            bail!("the peer exited with {status}");
        }
        Ok(())
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The peer's main: opens its end, says `ready`, then runs commands until `exit` or until
/// the bench goes away (end of the control stream).
pub fn serve(args: BenchPeerArgs) -> Result<()> {
    let mut link = Link::from_stderr()?;
    if let Some(cpu) = args.cpu {
        ipcx_sys::process::pin_current_thread(cpu)?;
    }
    let floor = floors::find(&args.name)
        .ok_or_else(|| anyhow!("no measurable bench entry is named {:?}", args.name))?;
    let mut end = floor
        .open(args.size, PeerIo::new(args.rendezvous))
        .context("cannot open the peer's end of the channel")?;
    let mut fault = std::env::var(FAULT_ENV).ok().and_then(|f| {
        let (name, what) = f.split_once('=')?;
        (name == args.name).then(|| what.to_owned())
    });
    link.send(READY)?;
    let mut buf = vec![0u8; args.size];
    while let Some(line) = link.recv(None)? {
        match fault.take().as_deref() {
            Some("hang") => loop {
                std::thread::park();
            },
            Some("exit") => std::process::exit(3),
            _ => {}
        }
        match Command::parse(&line) {
            Some(Command::PingPong(n)) => {
                for i in 0..n {
                    end.recv(&mut buf)
                        .and_then(|_| end.send(&buf))
                        .with_context(|| format!("echo {i} of {n}"))?;
                }
            }
            Some(Command::Send(n)) => {
                for i in 0..n {
                    end.send(&buf).with_context(|| format!("message {i} of {n}"))?;
                }
            }
            Some(Command::Exit) => return Ok(()),
            None => bail!("unknown control command {line:?}"),
        }
        link.send(DONE)?;
    }
    Ok(())
}
