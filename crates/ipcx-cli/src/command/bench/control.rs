//! The control channel between the bench and its peer: one line per message over a Unix
//! stream socket that is the peer's stderr (so the peer's own error output and panics reach
//! the bench too).
//!
//! Peer → bench: `ready` once its end of the channel is open, `done` after each command.
//! Bench → peer: `pingpong N` (receive and echo N messages), `send N` (send N messages),
//! `exit`. Anything else the peer writes is an error report.

use std::fmt;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The peer's line once its end of the channel is open.
pub const READY: &str = "ready";
/// The peer's line once it finished a command.
pub const DONE: &str = "done";

/// A command from the bench to its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Receive a message and send it back, this many times.
    PingPong(u64),
    /// Send this many messages.
    Send(u64),
    /// Close the channel and exit.
    Exit,
}

impl Command {
    /// Parses one line; `None` if it is not a command.
    pub fn parse(line: &str) -> Option<Command> {
        let mut words = line.split_whitespace();
        let cmd = match (words.next()?, words.next()) {
            ("pingpong", Some(n)) => Command::PingPong(n.parse().ok()?),
            ("send", Some(n)) => Command::Send(n.parse().ok()?),
            ("exit", None) => Command::Exit,
            _ => return None,
        };
        words.next().is_none().then_some(cmd)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::PingPong(n) => write!(f, "pingpong {n}"),
            Command::Send(n) => write!(f, "send {n}"),
            Command::Exit => f.write_str("exit"),
        }
    }
}

/// One end of the control socket.
#[derive(Debug)]
pub struct Link {
    reader: BufReader<UnixStream>,
}

impl Link {
    /// The bench's end.
    pub fn new(sock: UnixStream) -> Link {
        Link { reader: BufReader::new(sock) }
    }

    /// The peer's end: its stderr, which must be the socket `ipcx bench` made.
    pub fn from_stderr() -> Result<Link> {
        let fd = std::io::stderr().as_fd().try_clone_to_owned().context("cannot dup stderr")?;
        let sock = UnixStream::from(fd);
        if sock.local_addr().is_err() {
            bail!("`ipcx __bench-peer` is internal: `ipcx bench` starts it with a control socket");
        }
        Ok(Link::new(sock))
    }

    /// Writes one line.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let sock = self.reader.get_mut();
        sock.write_all(format!("{line}\n").as_bytes()).context("control socket closed")
    }

    /// Reads one line (without its newline) before `deadline`, or waits forever if `None`.
    /// `Ok(None)` at end of stream: the other side exited.
    pub fn recv(&mut self, deadline: Option<Instant>) -> Result<Option<String>> {
        let timeout = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => bail!("timed out"),
            },
        };
        self.reader.get_mut().set_read_timeout(timeout)?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(line.trim_end_matches('\n').to_owned())),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!("timed out")
            }
            Err(e) => Err(e).context("control socket read failed"),
        }
    }

    /// Waits up to `within` for the peer to say `want`. Anything else it says is its error
    /// report, returned as the error with the lines that follow it.
    pub fn expect(&mut self, want: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        match self.recv(Some(deadline)) {
            Ok(Some(line)) if line == want => Ok(()),
            Ok(Some(line)) => bail!("peer: {}", self.rest_of_report(line)),
            Ok(None) => bail!("peer exited before saying '{want}'"),
            Err(_) => bail!("peer did not say '{want}' within {within:?}"),
        }
    }

    /// Whatever the peer still says within a second, joined on one line; for error context.
    pub fn drain(&mut self) -> Option<String> {
        let first = self.recv(Some(Instant::now() + Duration::from_secs(1))).ok()??;
        Some(self.rest_of_report(first))
    }

    fn rest_of_report(&mut self, first: String) -> String {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut report = clean(&first).to_owned();
        while let Ok(Some(line)) = self.recv(Some(deadline)) {
            report.push_str(": ");
            report.push_str(clean(&line));
        }
        report
    }
}

/// Strips the peer's `ipcx: error:` / `caused by:` prefixes.
fn clean(line: &str) -> &str {
    let line = line.trim();
    line.strip_prefix("ipcx: error: ").or_else(|| line.strip_prefix("caused by: ")).unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_text() {
        for cmd in [Command::PingPong(12), Command::Send(0), Command::Exit] {
            assert_eq!(Command::parse(&cmd.to_string()), Some(cmd));
        }
        for bad in ["", "pingpong", "pingpong x", "send 1 2", "exit now", "ready"] {
            assert_eq!(Command::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn expect_reports_what_the_peer_said_instead() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut bench, mut peer) = (Link::new(a), Link::new(b));
        peer.send(READY).unwrap();
        bench.expect(READY, Duration::from_secs(5)).unwrap();
        peer.send("ipcx: error: cannot open the channel").unwrap();
        peer.send("  caused by: No such file").unwrap();
        drop(peer);
        let err = bench.expect(DONE, Duration::from_secs(5)).unwrap_err().to_string();
        assert_eq!(err, "peer: cannot open the channel: No such file");
    }

    #[test]
    fn expect_times_out_and_sees_exits() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut bench = Link::new(a);
        let err = bench.expect(DONE, Duration::from_millis(20)).unwrap_err().to_string();
        assert!(err.contains("within"), "{err}");
        drop(b);
        let err = bench.expect(DONE, Duration::from_secs(5)).unwrap_err().to_string();
        assert!(err.contains("exited"), "{err}");
    }
}
