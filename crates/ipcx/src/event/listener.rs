//! The receiving end of an event: a bound unix datagram socket.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ipcx_sys::uds::{BindError, BindOptions, RecvError, UdsAddr, UdsDatagram};
use ipcx_sys::{CreateMode, Permissions};

use super::error::{CreateError, WaitError};
use super::{event_path, EVENT_LEN, EVENT_TRANSPORT};
use crate::namespace::{check_name, Namespace};
use crate::node::{Node, Resource};
use crate::service::{Pattern, Service};

/// Most datagrams [`EventListener::drain`] reads in one call (the rest stay queued).
pub(super) const MAX_DRAIN: usize = 1024;

/// Where a listener lives: a namespace, or a node (which also owns it, see the
/// [module docs](super)).
#[derive(Debug, Clone, Copy)]
pub enum EventHome<'a> {
    /// Just a namespace.
    Namespace(&'a Namespace),
    /// A node: its namespace, its resource list and a service descriptor.
    Node(&'a Node),
}

impl<'a> From<&'a Namespace> for EventHome<'a> {
    fn from(ns: &'a Namespace) -> Self {
        EventHome::Namespace(ns)
    }
}

impl<'a> From<&'a Node> for EventHome<'a> {
    fn from(node: &'a Node) -> Self {
        EventHome::Node(node)
    }
}

/// Options of a listener; see [`EventListener::builder`].
#[derive(Debug, Clone)]
pub struct EventListenerBuilder {
    name: String,
    permissions: Permissions,
}

impl EventListenerBuilder {
    /// Mode of the socket file (default 0600): who may notify.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Binds the listener in `home` (a `&Namespace` or a `&Node`). A socket file left by a
    /// dead listener is replaced; a live one is [`CreateError::InUse`].
    pub fn create<'a>(&self, home: impl Into<EventHome<'a>>) -> Result<EventListener, CreateError> {
        let home = home.into();
        check_name(&self.name, "event")?;
        let ns = match home {
            EventHome::Namespace(ns) => ns,
            EventHome::Node(node) => node.namespace(),
        };
        ns.ensure_dir()?;
        let path = event_path(ns, &self.name);
        let bind_err = |source| CreateError::Bind { path: path.clone(), source };
        let addr = UdsAddr::path(&path)
            .map_err(|source| CreateError::Address { path: path.clone(), source })?;
        let opts = BindOptions::new(CreateMode::OpenOrCreate).permissions(self.permissions);
        let socket = UdsDatagram::bind_with(&addr, &opts).map_err(|e| match e {
            BindError::InUse { .. } => {
                CreateError::InUse { name: self.name.clone(), path: path.clone() }
            }
            e => bind_err(e),
        })?;
        let mut listener = EventListener {
            socket,
            name: self.name.clone(),
            path,
            rejected: AtomicU64::new(0),
            service: None,
        };
        if let EventHome::Node(node) = home {
            node.register_resource(Resource::Path { path: listener.path.clone() })
                .map_err(CreateError::Register)?;
            let service = Service::builder(&self.name, Pattern::Event)
                .transport_name(EVENT_TRANSPORT)
                .endpoint(listener.path.to_string_lossy())
                .permissions(self.permissions)
                .max_message(EVENT_LEN as u64)
                .create(node)
                .map_err(CreateError::Service)?;
            listener.service = Some(service);
        }
        Ok(listener)
    }
}

/// The receiving end of event `name` (see the [module docs](super)). All methods take
/// `&self`: one thread may wait while another uses a [`WaitSet`](super::WaitSet) on it,
/// each notification going to exactly one of them.
#[derive(Debug)]
pub struct EventListener {
    socket: UdsDatagram,
    name: String,
    path: PathBuf,
    rejected: AtomicU64,
    /// The descriptor published when created with a node (removed on drop).
    service: Option<Service>,
}

impl EventListener {
    /// A builder for event `name` (to set permissions).
    pub fn builder(name: &str) -> EventListenerBuilder {
        EventListenerBuilder { name: name.to_owned(), permissions: Permissions::OWNER_ONLY }
    }

    /// Binds event `name` in `home` (a `&Namespace` or a `&Node`) with mode 0600.
    pub fn create<'a>(
        home: impl Into<EventHome<'a>>,
        name: &str,
    ) -> Result<EventListener, CreateError> {
        Self::builder(name).create(home)
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket file notifiers send to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The service published for this listener (created with a node only).
    pub fn service(&self) -> Option<&Service> {
        self.service.as_ref()
    }

    /// How many datagrams that were not events have been dropped so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Waits for the next event id as long as it takes.
    pub fn wait(&self) -> Result<u64, WaitError> {
        let mut buf = [0u8; EVENT_LEN];
        let r = self.socket.recv(&mut buf);
        self.decode(r.map(Some), &buf).map(|id| id.unwrap_or_default())
    }

    /// Waits at most `timeout` for the next event id (`None` if none came).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<u64>, WaitError> {
        let mut buf = [0u8; EVENT_LEN];
        let r = match self.socket.recv_timeout(&mut buf, timeout) {
            Err(RecvError::Timeout) => Ok(None),
            r => r.map(Some),
        };
        self.decode(r, &buf)
    }

    /// The next event id if one is pending now (`None` if none is).
    pub fn try_wait(&self) -> Result<Option<u64>, WaitError> {
        let mut buf = [0u8; EVENT_LEN];
        let r = self.socket.try_recv(&mut buf);
        self.decode(r, &buf)
    }

    /// Every pending event id (up to 1024 datagrams per call), identical ids merged; datagrams
    /// that are not events are skipped and counted ([`rejected`](Self::rejected)). Empty if
    /// nothing is pending.
    pub fn drain(&self) -> Result<Vec<u64>, WaitError> {
        let mut ids = Vec::new();
        for _ in 0..MAX_DRAIN {
            match self.try_wait() {
                Ok(Some(id)) => {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                Ok(None) => break,
                Err(WaitError::Malformed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ids)
    }

    /// The id in a received datagram of `n` bytes, or the typed error for garbage.
    fn decode(
        &self,
        received: Result<Option<usize>, RecvError>,
        buf: &[u8; EVENT_LEN],
    ) -> Result<Option<u64>, WaitError> {
        let len = match received {
            Ok(None) => return Ok(None),
            Ok(Some(EVENT_LEN)) => return Ok(Some(u64::from_le_bytes(*buf))),
            Ok(Some(n)) => n,
            Err(RecvError::Truncated { size, .. }) => size,
            Err(e) => return Err(WaitError::Os(e)),
        };
        let rejected = self.rejected.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        // The 1st, 2nd, 4th, 8th, ... only: a peer that floods garbage cannot flood the log.
        if rejected.is_power_of_two() {
            tracing::warn!(
                event = %self.name,
                len,
                rejected,
                "dropped a datagram that is not an event (logged at the 1st, 2nd, 4th, 8th, ... such \
                 datagram; `rejected()` counts them all)"
            );
        }
        Err(WaitError::Malformed { len, path: self.path.clone() })
    }
}

impl AsFd for EventListener {
    /// The socket: readable while a notification (or garbage) is pending.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
