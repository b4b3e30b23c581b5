//! Discovery: listing a namespace's services and nodes, and waiting for a service.
//!
//! Listing only reads: it reports dead nodes and their services as such (with their
//! liveness) and leaves cleaning to [`crate::cleanup`]. Waiting polls the services
//! directory with a short backoff (1 ms doubling up to 20 ms) until the service is there
//! and its owner alive, or the timeout passes.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipcx_sys::liveness::probe;
use thiserror::Error;

use crate::node::{Layout, NodeId, NodeRecord};
use crate::service::{self, OpenError, Service, ServiceDescriptor};
use crate::Namespace;

pub use ipcx_sys::liveness::Liveness;

/// Longest pause between two looks at the services directory while waiting.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// A node as listed.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its id.
    pub id: NodeId,
    /// Its record, if present and readable.
    pub record: Option<NodeRecord>,
    /// Whether it is alive (a probe of its token; `Missing` for a node without one).
    pub liveness: Liveness,
}

/// A service as listed.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Its descriptor.
    pub descriptor: ServiceDescriptor,
    /// Whether its owner node is alive.
    pub owner: Liveness,
}

/// Listing failed.
#[derive(Debug, Error)]
pub enum ListError {
    /// A directory of the namespace could not be read.
    #[error("cannot list {path:?}; check the namespace directory's owner and mode")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Waiting for a service failed.
#[derive(Debug, Error)]
pub enum WaitError {
    /// The service did not appear in time.
    #[error(
        "service {name:?} did not appear in namespace {namespace:?} within {waited:?}; start \
         its server or check the name and namespace"
    )]
    Timeout {
        /// The service name.
        name: String,
        /// The namespace.
        namespace: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The service exists but cannot be opened (permissions, a corrupt descriptor...).
    #[error(transparent)]
    Open(OpenError),
}

/// Every node of `ns` with its liveness, sorted by id. Empty if the namespace has none.
pub fn list_nodes(ns: &Namespace) -> Result<Vec<NodeInfo>, ListError> {
    let layout = Layout::of(ns);
    let ids =
        layout.node_ids().map_err(|source| ListError::Io { path: layout.nodes.clone(), source })?;
    Ok(ids
        .into_iter()
        .map(|id| {
            let record = std::fs::read(layout.record(&id))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let liveness = probe(layout.token(&id)).unwrap_or(Liveness::Alive);
            NodeInfo { id, record, liveness }
        })
        .collect())
}

/// Every readable service descriptor of `ns` with its owner's liveness, sorted by name.
/// Descriptors that cannot be read (corrupt, from a newer ipcx) are skipped.
pub fn list_services(ns: &Namespace) -> Result<Vec<ServiceInfo>, ListError> {
    let layout = Layout::of(ns);
    let names = layout
        .service_names()
        .map_err(|source| ListError::Io { path: layout.services.clone(), source })?;
    Ok(names
        .into_iter()
        .filter_map(|name| match service::read_descriptor(&layout.service(&name)) {
            Ok(descriptor) => {
                let owner = probe(layout.token(&descriptor.owner)).unwrap_or(Liveness::Alive);
                Some(ServiceInfo { descriptor, owner })
            }
            Err(e) => {
                tracing::debug!(service = %name, error = %e, "descriptor skipped");
                None
            }
        })
        .collect())
}

/// Whether a unix socket is listening at `path` (an RPC, stream or channel endpoint), read
/// from the kernel's socket table (`/proc/net/unix`, sockets of this network namespace)
/// without connecting, so the listener sees nothing. `Ok(false)` for a stale socket file or
/// no file at all.
pub fn endpoint_listening(path: &Path) -> io::Result<bool> {
    let table = std::fs::read_to_string("/proc/net/unix")?;
    Ok(unix_table_has_listener(&table, &path.to_string_lossy()))
}

/// Whether `table` (the text of `/proc/net/unix`) lists a listening socket bound at `path`.
fn unix_table_has_listener(table: &str, path: &str) -> bool {
    /// `__SO_ACCEPTCON` in the Flags column: the socket listens.
    const ACCEPTCON: u32 = 1 << 16;
    table.lines().skip(1).any(|line| {
        // Num RefCount Protocol Flags Type St Inode [Path]; the path may hold spaces.
        let mut rest = line;
        let mut fields = [""; 7];
        for field in &mut fields {
            let t = rest.trim_start();
            let end = t.find(' ').unwrap_or(t.len());
            (*field, rest) = t.split_at(end);
        }
        let listening =
            u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & ACCEPTCON != 0);
        listening && rest.trim_start() == path
    })
}

/// Waits until service `name` of `ns` exists with a live owner, and opens it.
pub fn wait_for_service(
    ns: &Namespace,
    name: &str,
    timeout: Duration,
) -> Result<Service, WaitError> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(1);
    loop {
        match Service::open(ns, name) {
            Ok(svc) => return Ok(svc),
            Err(OpenError::NotFound { .. }) => {}
            Err(e) => return Err(WaitError::Open(e)),
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(WaitError::Timeout {
                name: name.to_owned(),
                namespace: ns.name().to_owned(),
                waited,
            });
        }
        std::thread::sleep(backoff.min(timeout - waited));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::unix_table_has_listener;

    #[test]
    fn finds_listening_sockets_only() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 1001 /run/a b.shm\n\
            0000000000000000: 00000002 00000000 00000000 0001 03 1002 /run/c.shm\n\
            0000000000000000: 00000002 00000000 00010000 0005 01 1003 /run/x/c.shm\n";
        assert!(unix_table_has_listener(table, "/run/a b.shm"));
        assert!(!unix_table_has_listener(table, "/run/c.shm"));
        assert!(!unix_table_has_listener(table, "/run/missing"));
        assert!(!unix_table_has_listener("garbage\n\n\u{1F600} 1 2 zz", "/run/c.shm"));
    }
}
