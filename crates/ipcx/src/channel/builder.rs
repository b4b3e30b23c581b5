//! Describing a channel, listening and connecting.
//!
//! Where endpoints live, in the namespace's runtime directory:
//! - `<name>.<transport>`: the listening unix socket of every transport but `tcp` (for
//!   `uds-stream` and `uds-seqpacket` it carries the data; for the others it is the
//!   rendezvous where the handshake runs and the data path is handed over);
//! - `<name>.tcp`: a file holding the listener's `ip:port`.
//!
//! The listener removes its file when dropped; a file left by a killed listener is replaced
//! by the next listener once a probe shows nobody listens there.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use ipcx_sys::uds::{BindOptions, UdsAddr, UdsListener, UdsStream};
use ipcx_sys::{CreateMode, Permissions};

use super::core::Core;
use super::error::{AcceptError, ConnectError, ListenError};
use super::handshake_io::{self, AllowList, FrameIo, Outcome};
use super::link::Deadline;
use super::transport::stream::{StreamLink, TcpIo};
use super::transport::{self, Link, SeqpacketLink, Setup};
use super::{Channel, PeerInfo, SendMode, Transport};
use crate::contract::{ContractId, Version};
use crate::frame::HEADER_LEN;
use crate::handshake::{Agreed, Hello};
use crate::namespace::{check_name, Namespace};

/// Largest message by default (or the transport's limit, if lower).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 10;

/// How long connecting waits by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a listener waits for an accepted peer's hello before dropping it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default spin of a shared-memory receive before it parks.
const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// Everything that describes one end of a channel before it exists.
#[derive(Debug, Clone)]
pub struct ChannelBuilder {
    name: String,
    transport: Transport,
    namespace: Option<Namespace>,
    contract: ContractId,
    max_message: Option<usize>,
    send_mode: SendMode,
    allow: AllowList,
    permissions: Permissions,
    tcp_addr: Option<SocketAddr>,
    spin: Duration,
    checksum: bool,
}

impl ChannelBuilder {
    pub(super) fn new(name: &str, transport: Transport) -> ChannelBuilder {
        ChannelBuilder {
            name: name.to_owned(),
            transport,
            namespace: None,
            contract: raw_contract(),
            max_message: None,
            send_mode: SendMode::Buffered,
            allow: AllowList::default(),
            permissions: Permissions::OWNER_ONLY,
            tcp_addr: None,
            spin: DEFAULT_SPIN,
            checksum: false,
        }
    }

    /// The namespace (default: [`Namespace::from_env`]).
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = Some(namespace);
        self
    }

    /// The contract both ends must agree on (default: [`raw_contract`], untyped bytes).
    pub fn contract(mut self, contract: ContractId) -> Self {
        self.contract = contract;
        self
    }

    /// The largest message this end receives (default [`DEFAULT_MAX_MESSAGE`] or the
    /// transport's limit if lower). The channel carries the smaller of both ends' values.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// The mode of the plain send calls (default [`SendMode::Buffered`]).
    pub fn send_mode(mut self, mode: SendMode) -> Self {
        self.send_mode = mode;
        self
    }

    /// Listener: admit peers running as `uid` (checked with `SO_PEERCRED`; not on `tcp`).
    /// With no uid or gid given, anyone who can reach the socket file is admitted.
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.allow.uids.push(uid);
        self
    }

    /// Listener: admit peers whose primary group is `gid`.
    pub fn allow_gid(mut self, gid: u32) -> Self {
        self.allow.gids.push(gid);
        self
    }

    /// Mode of the socket file and of named objects created per connection (default 0600).
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// `tcp` listener: the address to bind (default `127.0.0.1:0`, a free loopback port).
    pub fn tcp_addr(mut self, addr: SocketAddr) -> Self {
        self.tcp_addr = Some(addr);
        self
    }

    /// `shm`: how long a receive busy-polls before it parks (default 20 µs; zero parks at
    /// once).
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Sends a crc32c of every message's payload in its frame header (off by default: every
    /// transport already delivers bytes intact; turn it on to detect corruption by a peer
    /// or a shared-memory scribbler). Receivers check a checksum whenever one is present.
    pub fn checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// The namespace, checked name and our hello.
    fn prepare(&self) -> Result<(Namespace, Hello), ConnectError> {
        check_name(&self.name, "endpoint")?;
        let ns = match &self.namespace {
            Some(ns) => ns.clone(),
            None => Namespace::from_env()?,
        };
        // A limit below one header (a sysctl set absurdly low) carries no message at all.
        let limit = transport::limit(self.transport)?.saturating_sub(HEADER_LEN);
        let max = match self.max_message {
            Some(m) if m > limit => {
                return Err(ConnectError::TooLarge {
                    requested: m,
                    limit,
                    transport: self.transport,
                    hint: self.transport.size_hint(),
                })
            }
            Some(m) => m.max(1),
            None => DEFAULT_MAX_MESSAGE.min(limit),
        };
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let mut hello = Hello::new(self.contract.clone(), self.transport.name(), max);
        hello.pid = std::process::id();
        hello.uid = ipcx_sys::process::current_uid();
        Ok((ns, hello))
    }

    /// The endpoint file of this name and transport.
    fn path(&self, ns: &Namespace) -> PathBuf {
        ns.dir().join(format!("{}.{}", self.name, self.transport.name()))
    }

    /// Starts listening. Fails if a live listener already serves this name and transport.
    pub fn listen(self) -> Result<Listener, ListenError> {
        let (ns, hello) = self.prepare().map_err(|e| match e {
            ConnectError::Name(e) => ListenError::Name(e),
            ConnectError::Dir(e) => ListenError::Dir(e),
            e => ListenError::Os { op: "preparing the listener", source: Box::new(e) },
        })?;
        ns.ensure_dir()?;
        let path = self.path(&ns);
        let in_use = || ListenError::InUse {
            name: self.name.clone(),
            transport: self.transport,
            path: path.clone(),
        };
        let socket = match self.transport {
            Transport::Tcp => {
                let addr = self.tcp_addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
                let tcp = TcpListener::bind(addr).map_err(|e| ListenError::Os {
                    op: "binding the tcp listener",
                    source: Box::new(e),
                })?;
                let local = tcp.local_addr().map_err(|e| ListenError::Os {
                    op: "reading the tcp listener's address",
                    source: Box::new(e),
                })?;
                let text = local.to_string();
                let mode = self.permissions.mode();
                crate::node::write_atomic(&path, text.as_bytes(), mode).map_err(|e| {
                    ListenError::Os { op: "writing the tcp address file", source: Box::new(e) }
                })?;
                Socket::Tcp { listener: tcp, addr_file: path.clone() }
            }
            Transport::UdsSeqpacket => Socket::Seqpacket(
                transport::seqpacket_listen(&path, self.permissions).map_err(|e| match e {
                    transport::BindFailure::InUse => in_use(),
                    transport::BindFailure::Other(e) => {
                        ListenError::Os { op: "binding the seqpacket socket", source: e }
                    }
                })?,
            ),
            _ => {
                let addr = UdsAddr::path(&path).map_err(|e| ListenError::Os {
                    op: "naming the socket",
                    source: Box::new(e),
                })?;
                let opts = BindOptions::new(CreateMode::OpenOrCreate).permissions(self.permissions);
                match UdsListener::bind(&addr, &opts) {
                    Ok(l) => Socket::Uds(l),
                    Err(ipcx_sys::uds::BindError::InUse { .. }) => return Err(in_use()),
                    Err(e) => {
                        return Err(ListenError::Os {
                            op: "binding the socket",
                            source: Box::new(e),
                        })
                    }
                }
            }
        };
        Ok(Listener { builder: self, namespace: ns, hello, socket, path, refused: 0 })
    }

    /// Connects, waiting at most [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect(self) -> Result<Channel, ConnectError> {
        self.connect_timeout(DEFAULT_CONNECT_TIMEOUT)
    }

    /// Connects, waiting at most `timeout` for the listener to accept and agree.
    pub fn connect_timeout(self, timeout: Duration) -> Result<Channel, ConnectError> {
        let deadline = Deadline::after(Some(timeout));
        let (ns, hello) = self.prepare()?;
        let path = self.path(&ns);
        let no_listener = || ConnectError::NoListener {
            name: self.name.clone(),
            namespace: ns.name().to_owned(),
            transport: self.transport,
            path: path.clone(),
        };
        let (link, agreed) = match self.transport {
            Transport::Tcp => {
                let addr = read_addr_file(&path).ok_or_else(no_listener)?;
                let left = deadline.remaining().unwrap_or(timeout);
                let stream =
                    TcpStream::connect_timeout(&addr, left).map_err(|e| match e.kind() {
                        std::io::ErrorKind::ConnectionRefused => no_listener(),
                        std::io::ErrorKind::TimedOut => ConnectError::Timeout,
                        _ => ConnectError::os("connecting over tcp", e),
                    })?;
                let mut io = TcpIo::new(stream).map_err(|e| ConnectError::os("TCP_NODELAY", e))?;
                let agreed = handshake_io::connect(&mut io, hello, deadline)?;
                let link = Link::Tcp(StreamLink::new(io, frame_max(&agreed)));
                (link, agreed)
            }
            Transport::UdsSeqpacket => {
                let mut sock = transport::seqpacket_connect(&path, deadline)
                    .map_err(|e| e.unwrap_or_else(no_listener))?;
                let agreed = handshake_io::connect(&mut sock, hello, deadline)?;
                let link = SeqpacketLink::new(sock, frame_max(&agreed))
                    .map_err(|e| ConnectError::os("setting the socket's receive timeout", e))?;
                let link = Link::Seqpacket(link);
                (link, agreed)
            }
            t => {
                let mut stream =
                    connect_uds(&path, deadline).map_err(|e| e.unwrap_or_else(no_listener))?;
                let agreed = handshake_io::connect(&mut stream, hello, deadline)?;
                let link = if t == Transport::UdsStream {
                    let link = StreamLink::new_uds(stream, frame_max(&agreed))
                        .map_err(|e| ConnectError::os("setting the socket's receive timeout", e))?;
                    Link::UdsStream(link)
                } else {
                    let setup = self.setup(&ns, &agreed, deadline);
                    transport::connect(t, stream, &setup)?
                };
                (link, agreed)
            }
        };
        Ok(self.channel(link, agreed))
    }

    /// The setup of a rendezvous transport's data path.
    fn setup<'a>(&'a self, ns: &'a Namespace, agreed: &Agreed, deadline: Deadline) -> Setup<'a> {
        Setup {
            namespace: ns,
            name: &self.name,
            max_frame: frame_max(agreed),
            permissions: self.permissions,
            deadline,
            spin: self.spin,
        }
    }

    /// The channel over an established link.
    fn channel(&self, link: Link, agreed: Agreed) -> Channel {
        let max = agreed.max_message as usize;
        let mut core = Core::new(link, self.transport, max, max, self.send_mode);
        core.set_checksum(self.checksum);
        let peer =
            PeerInfo { pid: agreed.peer.pid, uid: agreed.peer.uid, contract: agreed.peer.contract };
        Channel { core, peer, contract: self.contract.clone() }
    }
}

/// The contract of untyped channels: raw bytes, no encoding ("ipcx.raw" 1.0, fingerprint 0).
/// Distinct from `ContractId::bytes()`, which is postcard-encoded `Vec<u8>`.
pub fn raw_contract() -> ContractId {
    ContractId { name: "ipcx.raw".to_owned(), version: Version::new(1, 0), fingerprint: 0 }
}

/// The largest frame of an agreed channel.
fn frame_max(agreed: &Agreed) -> usize {
    HEADER_LEN + agreed.max_message as usize
}

/// Connects to a unix stream socket; `Err(None)` when nobody listens there.
fn connect_uds(
    path: &std::path::Path,
    deadline: Deadline,
) -> Result<UdsStream, Option<ConnectError>> {
    use ipcx_sys::uds::ConnectError as E;
    let addr = UdsAddr::path(path).map_err(|e| Some(ConnectError::os("naming the socket", e)))?;
    let r = match deadline.remaining() {
        None => UdsStream::connect(&addr),
        Some(t) => UdsStream::connect_timeout(&addr, t),
    };
    r.map_err(|e| match e {
        E::NotFound { .. } | E::Refused { .. } => None,
        E::Timeout => Some(ConnectError::Timeout),
        e => Some(ConnectError::os("connecting to the unix socket", e)),
    })
}

/// Reads a tcp address file.
pub(crate) fn read_addr_file(path: &std::path::Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok()
}

/// The listening socket of each kind of transport.
enum Socket {
    /// Every transport with a unix stream socket (data or rendezvous).
    Uds(UdsListener),
    /// `uds-seqpacket`.
    Seqpacket(ipcx_sys::uds::UdsSeqpacketListener),
    /// `tcp`, and the address file we wrote.
    Tcp { listener: TcpListener, addr_file: PathBuf },
}

/// A listening endpoint; [`accept`](Listener::accept) gives one [`Channel`] per peer.
pub struct Listener {
    builder: ChannelBuilder,
    namespace: Namespace,
    hello: Hello,
    socket: Socket,
    path: PathBuf,
    refused: u64,
}

impl Listener {
    /// The endpoint file (socket or tcp address file).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.builder.transport
    }

    /// How many peers were refused so far (not in the allow-list, incompatible contract or
    /// transport, or an invalid handshake).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Accepts the next compatible, admitted peer, waiting as long as it takes. Refused
    /// peers are told why, closed and counted ([`refused`](Self::refused)).
    pub fn accept(&mut self) -> Result<Channel, AcceptError> {
        self.accept_until(Deadline::Never)
    }

    /// Like [`accept`](Self::accept), giving up after `timeout`.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Channel, AcceptError> {
        self.accept_until(Deadline::after(Some(timeout)))
    }

    /// Accepts a peer that is already waiting, if any ([`AcceptError::Timeout`] if none).
    pub fn try_accept(&mut self) -> Result<Channel, AcceptError> {
        self.accept_until(Deadline::Now)
    }

    fn accept_until(&mut self, deadline: Deadline) -> Result<Channel, AcceptError> {
        loop {
            match self.accept_one(deadline)? {
                Some(channel) => return Ok(channel),
                None => self.refused += 1,
            }
        }
    }

    /// Accepts one connection; `None` if it was refused.
    fn accept_one(&mut self, deadline: Deadline) -> Result<Option<Channel>, AcceptError> {
        let t = self.builder.transport;
        let setup_err = AcceptError::Setup;
        let (link, agreed) = match &self.socket {
            Socket::Tcp { listener, .. } => {
                let stream = accept_tcp(listener, deadline)?;
                let mut io = TcpIo::new(stream).map_err(|e| os("TCP_NODELAY", e))?;
                let admitted =
                    self.builder.allow.uids.is_empty() && self.builder.allow.gids.is_empty();
                let hs_deadline = Deadline::after(Some(HANDSHAKE_TIMEOUT));
                let Some(agreed) = self.handshake(&mut io, admitted, hs_deadline)? else {
                    return Ok(None);
                };
                (Link::Tcp(StreamLink::new(io, frame_max(&agreed))), agreed)
            }
            Socket::Seqpacket(l) => {
                let mut sock = transport::seqpacket_accept(l, deadline)?;
                let admitted = self.builder.allow.admits(sock.peer_cred().ok());
                let hs_deadline = Deadline::after(Some(HANDSHAKE_TIMEOUT));
                let Some(agreed) = self.handshake(&mut sock, admitted, hs_deadline)? else {
                    return Ok(None);
                };
                let link = SeqpacketLink::new(sock, frame_max(&agreed))
                    .map_err(|e| os("setting the socket's receive timeout", e))?;
                (Link::Seqpacket(link), agreed)
            }
            Socket::Uds(l) => {
                let r = match deadline {
                    Deadline::Never => l.accept(),
                    Deadline::Now => {
                        l.try_accept().and_then(|s| s.ok_or(ipcx_sys::uds::AcceptError::Timeout))
                    }
                    d => l.accept_timeout(d.remaining().unwrap_or_default()),
                };
                let mut stream = r.map_err(|e| match e {
                    ipcx_sys::uds::AcceptError::Timeout => AcceptError::Timeout,
                    e => os("accepting on the unix socket", e),
                })?;
                let admitted = self.builder.allow.admits(stream.peer_cred().ok());
                let hs_deadline = Deadline::after(Some(HANDSHAKE_TIMEOUT));
                let Some(agreed) = self.handshake(&mut stream, admitted, hs_deadline)? else {
                    return Ok(None);
                };
                let link = if t == Transport::UdsStream {
                    let link = StreamLink::new_uds(stream, frame_max(&agreed))
                        .map_err(|e| os("setting the socket's receive timeout", e))?;
                    Link::UdsStream(link)
                } else {
                    let setup = self.builder.setup(&self.namespace, &agreed, hs_deadline);
                    match transport::accept(t, stream, &setup) {
                        Ok(link) => link,
                        // The peer's fault (it vanished, stalled or sent garbage during the
                        // setup): refused and counted, like a bad handshake.
                        Err(
                            ConnectError::Handshake(_)
                            | ConnectError::PeerGone
                            | ConnectError::Timeout,
                        ) => return Ok(None),
                        Err(e) => return Err(setup_err(e)),
                    }
                };
                (link, agreed)
            }
        };
        Ok(Some(self.builder.channel(link, agreed)))
    }

    /// Runs the listener's handshake; `None` if the peer was refused.
    fn handshake(
        &self,
        io: &mut impl FrameIo,
        admitted: bool,
        deadline: Deadline,
    ) -> Result<Option<Agreed>, AcceptError> {
        match handshake_io::accept(io, self.hello.clone(), admitted, deadline) {
            Ok(Outcome::Agreed(agreed)) => Ok(Some(agreed)),
            Ok(Outcome::Refused(why)) => {
                tracing::debug!(error = %why, "refused a peer");
                Ok(None)
            }
            // The peer vanished or stalled during its handshake: its problem, not ours.
            Err(ConnectError::PeerGone | ConnectError::Timeout) => Ok(None),
            Err(e) => Err(AcceptError::Setup(e)),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Socket::Tcp { addr_file, .. } = &self.socket {
            let _ = std::fs::remove_file(addr_file);
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("transport", &self.builder.transport)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// An OS error of accepting.
fn os(op: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> AcceptError {
    AcceptError::Os { op, source: Box::new(e) }
}

/// Accepts on a tcp listener, waiting until `deadline`.
fn accept_tcp(listener: &TcpListener, deadline: Deadline) -> Result<TcpStream, AcceptError> {
    let timeout = deadline.remaining();
    let ready = ipcx_sys::poll::wait_readable(&[listener.as_fd()], timeout)
        .map_err(|e| os("waiting for a tcp connection", e))?;
    if ready.is_none() {
        return Err(AcceptError::Timeout);
    }
    let (stream, _) = listener.accept().map_err(|e| os("accepting a tcp connection", e))?;
    stream.set_nonblocking(false).map_err(|e| os("accepting a tcp connection", e))?;
    Ok(stream)
}
