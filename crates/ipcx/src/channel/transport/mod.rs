//! The transports: one file per family, each a [`LinkOps`] implementation plus, for the
//! transports whose data path is not the rendezvous socket itself, the setup that builds
//! the data path after the handshake.
//!
//! Transports reached through a rendezvous unix socket (`shm`, `pipe`, `fifo`, `posix-mq`,
//! `sysv-msg`) share one shape: the listener's side creates the connection's resources and
//! describes them to the connector in one setup message on the rendezvous socket (with fds
//! attached where there are fds); the connector opens them and confirms. Both sides keep the
//! rendezvous socket open for the channel's life: its end-of-file is how a side learns that
//! the other died when the data path itself cannot tell.

mod control;
mod pipe;
mod posix_mq;
mod seqpacket;
pub(crate) mod shm;
pub(crate) mod stream;
mod sysv_msg;

use std::time::Duration;

use ipcx_sys::uds::{RecvError, RecvFdsError, UdsStream};
use ipcx_sys::Permissions;

use super::error::ConnectError;
use super::link::{Deadline, LinkError, LinkOps};
use super::Transport;
use crate::namespace::Namespace;
pub(crate) use seqpacket::{
    accept as seqpacket_accept, connect as seqpacket_connect, listen as seqpacket_listen,
    BindFailure, SeqpacketLink,
};
use stream::{PipeIo, StreamLink, TcpIo};
pub(crate) use sysv_msg::sweep_orphan_queues;

/// One established data path, whatever the transport.
pub(crate) enum Link {
    /// `uds-stream`.
    UdsStream(StreamLink<UdsStream>),
    /// `tcp`.
    Tcp(StreamLink<TcpIo>),
    /// `pipe` and `fifo`.
    Pipe(StreamLink<PipeIo>),
    /// `uds-seqpacket`.
    Seqpacket(SeqpacketLink),
    /// `shm`.
    Shm(shm::ShmLink),
    /// `posix-mq`.
    PosixMq(posix_mq::MqLink),
    /// `sysv-msg`.
    SysvMsg(sysv_msg::SysvLink),
}

/// Runs `$body` with `$l` bound to the link inside whichever variant `$link` is.
macro_rules! dispatch {
    ($link:expr, $l:ident => $body:expr) => {
        match $link {
            Link::UdsStream($l) => $body,
            Link::Tcp($l) => $body,
            Link::Pipe($l) => $body,
            Link::Seqpacket($l) => $body,
            Link::Shm($l) => $body,
            Link::PosixMq($l) => $body,
            Link::SysvMsg($l) => $body,
        }
    };
}

impl LinkOps for Link {
    fn max_frame(&self) -> usize {
        dispatch!(self, l => l.max_frame())
    }

    #[inline]
    fn send(&mut self, parts: &[&[u8]], deadline: Deadline) -> Result<(), LinkError> {
        dispatch!(self, l => l.send(parts, deadline))
    }

    #[inline]
    fn recv<R>(&mut self, deadline: Deadline, f: impl FnOnce(&[u8]) -> R) -> Result<R, LinkError> {
        dispatch!(self, l => l.recv(deadline, f))
    }

    fn send_fds(
        &mut self,
        parts: &[&[u8]],
        fds: &[std::os::fd::BorrowedFd<'_>],
        deadline: Deadline,
    ) -> Result<(), LinkError> {
        dispatch!(self, l => l.send_fds(parts, fds, deadline))
    }

    fn take_fds(&mut self) -> Option<Vec<std::os::fd::OwnedFd>> {
        dispatch!(self, l => l.take_fds())
    }

    fn readiness(&self) -> Option<super::link::Readiness<'_>> {
        dispatch!(self, l => l.readiness())
    }
}

/// What a transport needs to build one connection's data path after the handshake.
pub(crate) struct Setup<'a> {
    /// The namespace of the endpoint.
    pub namespace: &'a Namespace,
    /// The endpoint name.
    pub name: &'a str,
    /// The largest frame either side will send (header included).
    pub max_frame: usize,
    /// Mode of any named object created for the connection.
    pub permissions: Permissions,
    /// How long setting up may take.
    pub deadline: Deadline,
    /// Shared memory: how long a receive spins before parking.
    pub spin: std::time::Duration,
}

/// The largest frame `transport` carries on this machine, header included.
pub(crate) fn limit(transport: Transport) -> Result<usize, ConnectError> {
    match transport {
        Transport::UdsStream | Transport::Tcp | Transport::Pipe | Transport::Fifo => {
            Ok(STREAM_LIMIT)
        }
        Transport::UdsSeqpacket => seqpacket::limit(),
        Transport::Shm => Ok(shm::limit()),
        Transport::PosixMq => posix_mq::limit(),
        Transport::SysvMsg => sysv_msg::limit(),
    }
}

/// The largest frame on byte streams (1 GiB): a bound on what a receiver buffers.
pub const STREAM_LIMIT: usize = 1 << 30;

/// Listener side of a rendezvous transport: builds the data path over `ctl`.
pub(crate) fn accept(
    transport: Transport,
    ctl: UdsStream,
    setup: &Setup<'_>,
) -> Result<Link, ConnectError> {
    match transport {
        Transport::Shm => shm::accept(ctl, setup),
        Transport::Pipe => pipe::accept_pipe(ctl, setup),
        Transport::Fifo => pipe::accept_fifo(ctl, setup),
        Transport::PosixMq => posix_mq::accept(ctl, setup),
        Transport::SysvMsg => sysv_msg::accept(ctl, setup),
        t => unreachable!("{t} has no rendezvous socket"),
    }
}

/// Connector side of a rendezvous transport: opens the data path described over `ctl`.
pub(crate) fn connect(
    transport: Transport,
    ctl: UdsStream,
    setup: &Setup<'_>,
) -> Result<Link, ConnectError> {
    match transport {
        Transport::Shm => shm::connect(ctl, setup),
        Transport::Pipe => pipe::connect_pipe(ctl, setup),
        Transport::Fifo => pipe::connect_fifo(ctl, setup),
        Transport::PosixMq => posix_mq::connect(ctl, setup),
        Transport::SysvMsg => sysv_msg::connect(ctl, setup),
        t => unreachable!("{t} has no rendezvous socket"),
    }
}

/// The receive timeout (`SO_RCVTIMEO`) of the unix socket links (`uds-stream`,
/// `uds-seqpacket`): a blocking receive wakes up at least this often.
pub(crate) const RECV_SLICE: Duration = Duration::from_millis(50);

/// A timed receive with at least this much time left blocks in one `recvmsg` (the socket's
/// [`RECV_SLICE`] ends it in time, even rounded up to a clock tick) instead of trying,
/// polling and trying again (three system calls, ~9% of a 30 µs wake-up here); shorter
/// ones take that way to end exactly.
pub(crate) const BLOCKING_FROM: Duration = Duration::from_millis(100);

/// How a receive on a unix socket link waits.
pub(crate) enum UdsWait {
    /// Not at all.
    Now,
    /// Blocking, in [`RECV_SLICE`]s.
    Block,
    /// At most this long.
    For(Duration),
}

impl UdsWait {
    /// The wait for `deadline`; `Timeout` if it has passed.
    pub(crate) fn of(deadline: Deadline) -> Result<UdsWait, LinkError> {
        Ok(match deadline {
            Deadline::Now => UdsWait::Now,
            Deadline::Never => UdsWait::Block,
            d => match d.remaining() {
                Some(t) if t >= BLOCKING_FROM => UdsWait::Block,
                Some(t) if !t.is_zero() => UdsWait::For(t),
                _ => return Err(LinkError::Timeout),
            },
        })
    }
}

/// The receive loop of the unix socket links: `recv` waits as told, and a blocking wait
/// that a [`RECV_SLICE`] ended (`sliced` says which error that is) is tried again until the
/// deadline makes the wait a shorter one or a timeout.
pub(crate) fn recv_in_slices<T, E>(
    deadline: Deadline,
    mut recv: impl FnMut(UdsWait) -> Result<T, E>,
    sliced: impl Fn(&E) -> bool,
) -> Result<Result<T, E>, LinkError> {
    loop {
        let wait = UdsWait::of(deadline)?;
        let blocking = matches!(wait, UdsWait::Block);
        match recv(wait) {
            Err(e) if blocking && sliced(&e) => {}
            r => return Ok(r),
        }
    }
}

/// [`recv_in_slices`] for a receive that brings fds: `recv(None)` blocks (in the socket's
/// receive-timeout slices), `recv(Some(t))` waits at most `t` (zero: only tries).
pub(crate) fn recv_fds_in_slices<T>(
    deadline: Deadline,
    mut recv: impl FnMut(Option<Duration>) -> Result<T, RecvFdsError>,
) -> Result<Result<T, RecvFdsError>, LinkError> {
    let wait = |w| match w {
        UdsWait::Now => Some(Duration::ZERO),
        UdsWait::Block => None,
        UdsWait::For(t) => Some(t),
    };
    let sliced = |e: &RecvFdsError| matches!(e, RecvFdsError::Recv(RecvError::WouldBlock));
    recv_in_slices(deadline, |w| recv(wait(w)), sliced)
}

#[cfg(test)]
mod wait_tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn long_waits_block_in_slices_and_short_ones_poll_to_the_deadline() {
        let at = |d: Duration| Deadline::At(Instant::now() + d);
        assert!(matches!(UdsWait::of(Deadline::Now), Ok(UdsWait::Now)));
        assert!(matches!(UdsWait::of(Deadline::Never), Ok(UdsWait::Block)));
        assert!(matches!(UdsWait::of(at(Duration::from_secs(10))), Ok(UdsWait::Block)));
        let short = UdsWait::of(at(BLOCKING_FROM / 2));
        assert!(matches!(short, Ok(UdsWait::For(t)) if t <= BLOCKING_FROM / 2), "exactly");
        let past = Deadline::At(Instant::now());
        assert!(matches!(UdsWait::of(past), Err(LinkError::Timeout)));
        // A blocking slice ends before a deadline it may start toward, even a tick late.
        assert!(RECV_SLICE * 2 <= BLOCKING_FROM);
    }
}
