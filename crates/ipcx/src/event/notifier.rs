//! The sending end of an event: an unbound datagram socket connected to the listener's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipcx_sys::uds::{ConnectError, SendError, UdsAddr, UdsDatagram};

use super::error::{NotifyError, OpenError};
use super::event_path;
use crate::namespace::{check_name, Namespace};

/// How one notification waits for room in the listener's queue.
#[derive(Debug, Clone, Copy)]
enum Wait {
    Forever,
    For(Duration),
    Never,
}

/// Sends notifications to one event's listener (see the [module docs](super)). Methods take
/// `&self`; several threads may share a notifier.
#[derive(Debug)]
pub struct EventNotifier {
    socket: UdsDatagram,
    addr: UdsAddr,
    name: String,
    path: PathBuf,
}

impl EventNotifier {
    /// Opens a notifier for event `name` in `ns`; fails with [`OpenError::NoListener`] if
    /// no live listener is bound there.
    pub fn open(ns: &Namespace, name: &str) -> Result<EventNotifier, OpenError> {
        check_name(name, "event")?;
        Self::connect(event_path(ns, name), name, ns.name())
    }

    /// Opens a notifier on a listener's socket file given by path (for example one of
    /// another user's namespace, shared through a group and
    /// [`permissions`](super::EventListenerBuilder::permissions)).
    pub fn open_path(path: impl AsRef<Path>) -> Result<EventNotifier, OpenError> {
        let path = path.as_ref();
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let namespace = path
            .parent()
            .and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::connect(path.to_owned(), &name, &namespace)
    }

    fn connect(path: PathBuf, name: &str, namespace: &str) -> Result<EventNotifier, OpenError> {
        let os = |source: Box<dyn std::error::Error + Send + Sync>| OpenError::Os {
            path: path.clone(),
            source,
        };
        let addr = UdsAddr::path(&path).map_err(|e| os(Box::new(e)))?;
        let socket = UdsDatagram::unbound().map_err(|e| os(Box::new(e)))?;
        socket.connect(&addr).map_err(|e| match e {
            ConnectError::NotFound { .. } | ConnectError::Refused { .. } => OpenError::NoListener {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                path: path.clone(),
            },
            ConnectError::PermissionDenied { .. } => {
                OpenError::PermissionDenied { path: path.clone() }
            }
            e => os(Box::new(e)),
        })?;
        Ok(EventNotifier { socket, addr, name: name.to_owned(), path })
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The listener's socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Notifies event `id`, waiting while the listener's queue is full (ends with
    /// [`NotifyError::NoListener`] if the listener goes away meanwhile).
    pub fn notify(&self, id: u64) -> Result<(), NotifyError> {
        self.send(id, Wait::Forever)
    }

    /// Like [`notify`](Self::notify), waiting at most `timeout` for room.
    pub fn notify_timeout(&self, id: u64, timeout: Duration) -> Result<(), NotifyError> {
        self.send(id, Wait::For(timeout))
    }

    /// Notifies event `id` if the listener's queue has room now ([`NotifyError::Full`]
    /// otherwise).
    pub fn try_notify(&self, id: u64) -> Result<(), NotifyError> {
        self.send(id, Wait::Never)
    }

    /// Sends once; if the listener is gone, reconnects once (a new listener may have bound
    /// the name) and sends again.
    fn send(&self, id: u64, wait: Wait) -> Result<(), NotifyError> {
        let msg = id.to_le_bytes();
        match self.send_once(&msg, wait) {
            Err(SendError::NoReceiver | SendError::PeerClosed | SendError::NotConnected) => {
                if self.socket.connect(&self.addr).is_err() {
                    return Err(self.no_listener());
                }
                self.send_once(&msg, wait).map_err(|e| self.error(e))
            }
            r => r.map_err(|e| self.error(e)),
        }
    }

    fn send_once(&self, msg: &[u8], wait: Wait) -> Result<(), SendError> {
        match wait {
            Wait::Forever => self.socket.send(msg),
            Wait::For(t) => self.socket.send_timeout(msg, t),
            Wait::Never => match self.socket.try_send(msg)? {
                true => Ok(()),
                false => Err(SendError::WouldBlock),
            },
        }
    }

    fn no_listener(&self) -> NotifyError {
        NotifyError::NoListener { name: self.name.clone(), path: self.path.clone() }
    }

    /// The notify error of a send error.
    fn error(&self, e: SendError) -> NotifyError {
        match e {
            SendError::NoReceiver | SendError::PeerClosed | SendError::NotConnected => {
                self.no_listener()
            }
            SendError::WouldBlock => NotifyError::Full,
            SendError::Timeout => NotifyError::Timeout,
            SendError::PermissionDenied => {
                NotifyError::PermissionDenied { path: self.path.clone() }
            }
            e => NotifyError::Os(e),
        }
    }
}
