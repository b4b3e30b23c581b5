//! Dead-node cleanup: removing what dead nodes left behind, by exactly one cleaner each.
//!
//! For each node of the namespace whose liveness token nobody holds, a cleaner
//! [`claim_dead`]s the token (an exclusive `flock`: one cleaner at a time, and never a live
//! node), then removes, in this order: the node's registered resources (already-gone ones
//! are fine), the service descriptors that name it as owner, its resource list, its record,
//! and last its token. A cleaner that dies midway leaves the token (now unlocked) and the
//! rest, so the next cleaner finishes the job; one that cannot remove something (say, a
//! permission error) leaves the token too and reports the failure. Live nodes are never
//! touched.
//!
//! Cleanup runs when a [`Node`](crate::node::Node) is created, when a service is created or
//! opened, and on demand ([`clean`], `ipcx clean`).
//!
//! Channel listeners (and so RPC servers) belong to no node: a listener killed before it
//! could remove its endpoint file (`<name>.<transport>` in the namespace directory) leaves
//! it behind. [`clean`] also removes those files when nobody listens there any more (a
//! unix socket whose probe connect is refused twice, see [`ipcx_sys::uds::is_stale`]; a tcp
//! address file whose address refuses connections). Automatic cleanup does not: the probe
//! costs a connection to every live listener.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ipcx_sys::liveness::{claim_dead, probe, DeadToken, Liveness, ProbeError};
use ipcx_sys::uds::is_stale;
use thiserror::Error;

use crate::node::{self, Layout, NodeId, NodeRecord, RemoveResourceError, Resource};
use crate::service;
use crate::{Namespace, Transport};

/// One thing a cleaner removed (or, in a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A registered resource.
    Resource(Resource),
    /// A service descriptor owned by the node.
    Service(String),
    /// The node's resource list file.
    ResourceList,
    /// The node's record file.
    Record,
    /// The node's liveness token: the node is fully cleaned.
    Token,
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Removed::Resource(r) => r.fmt(f),
            Removed::Service(name) => write!(f, "service {name}"),
            Removed::ResourceList => f.write_str("resource list"),
            Removed::Record => f.write_str("node record"),
            Removed::Token => f.write_str("liveness token"),
        }
    }
}

/// Removing one item of a dead node failed; the node's token stays for a later cleaner.
#[derive(Debug, Error)]
pub enum ItemError {
    /// Removing a resource failed.
    #[error(transparent)]
    Resource(#[from] RemoveResourceError),
    /// Removing a node file failed.
    #[error("cannot remove {path:?}; check the namespace directory's owner and mode")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Something that could not be removed.
#[derive(Debug)]
pub struct CleanFailure {
    /// What.
    pub item: Removed,
    /// Why.
    pub error: ItemError,
}

/// What was done about one dead node.
#[derive(Debug)]
pub struct CleanedNode {
    /// The node's id.
    pub id: NodeId,
    /// Its record, if it was still there.
    pub record: Option<NodeRecord>,
    /// What was removed (in a dry run: what would be).
    pub removed: Vec<Removed>,
    /// What could not be removed.
    pub failures: Vec<CleanFailure>,
}

impl CleanedNode {
    /// Whether this cleaner finished the node (removed its token).
    pub fn finished(&self) -> bool {
        self.removed.contains(&Removed::Token)
    }
}

/// The outcome of one [`clean`].
#[derive(Debug, Default)]
pub struct CleanReport {
    /// Whether nothing was removed, only listed.
    pub dry_run: bool,
    /// The dead nodes this cleaner handled (a dead node another cleaner holds is skipped).
    pub nodes: Vec<CleanedNode>,
    /// Endpoint files of dead listeners that were removed (in a dry run: would be).
    pub endpoints: Vec<PathBuf>,
    /// Temporary files of writers killed mid-write that were removed (dry run: would be).
    pub temp_files: Vec<PathBuf>,
    /// System V queues of `sysv-msg` channels whose processes all died, removed (dry run:
    /// would be).
    pub sysv_queues: Vec<i32>,
}

/// Listing the namespace failed.
#[derive(Debug, Error)]
pub enum CleanError {
    /// Reading a directory of the namespace failed.
    #[error("cannot list {path:?}; check the namespace directory's owner and mode")]
    List {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Probing or claiming a token failed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// Cleans up after every dead node of `ns` (with `dry_run`, only reports what it would
/// remove). Nodes another cleaner is handling right now are skipped.
pub fn clean(ns: &Namespace, dry_run: bool) -> Result<CleanReport, CleanError> {
    clean_with(ns, dry_run, &mut |_, _| {})
}

/// [`clean`], calling `progress` after each item of a node is removed (for progress
/// output).
pub fn clean_with(
    ns: &Namespace,
    dry_run: bool,
    progress: &mut dyn FnMut(&NodeId, &Removed),
) -> Result<CleanReport, CleanError> {
    let mut report = clean_nodes(ns, dry_run, progress)?;
    report.endpoints = sweep_endpoints(ns, dry_run)?;
    // Temporary files of writers killed between writing and publishing a record.
    for tmp in crate::node::orphan_temp_files(&ns.dir()) {
        if dry_run || node::remove_file(&tmp).unwrap_or(false) {
            tracing::info!(file = %tmp.display(), "removed a killed writer's temporary file");
            report.temp_files.push(tmp);
        }
    }
    // System V queues of sysv-msg channels whose processes all died.
    report.sysv_queues = crate::channel::sweep_orphan_queues(&ns.dir(), dry_run);
    Ok(report)
}

/// The node part of [`clean_with`].
fn clean_nodes(
    ns: &Namespace,
    dry_run: bool,
    progress: &mut dyn FnMut(&NodeId, &Removed),
) -> Result<CleanReport, CleanError> {
    let layout = Layout::of(ns);
    let list = |path: &PathBuf| {
        let path = path.clone();
        move |source| CleanError::List { path, source }
    };
    let mut report = CleanReport { dry_run, ..CleanReport::default() };
    for id in layout.node_ids().map_err(list(&layout.nodes))? {
        // One node's unreadable token (a stray directory, a file we may not lock) must not
        // stop the cleanup of the others.
        match clean_one(&layout, &id, dry_run, progress) {
            Ok(Some(done)) => report.nodes.push(done),
            Ok(None) => {}
            Err(e) => tracing::warn!(node = %id, error = %e, "cannot clean up after this node"),
        }
    }
    // Descriptors whose owner left no trace at all (only by outside meddling).
    for name in layout.service_names().map_err(list(&layout.services))? {
        let Ok(desc) = service::read_descriptor(&layout.service(&name)) else { continue };
        if !matches!(probe(layout.token(&desc.owner)), Ok(Liveness::Missing))
            || report.nodes.iter().any(|n| n.id == desc.owner)
        {
            continue;
        }
        let removed = dry_run || service::remove_if_owned(&layout, &name, &desc.owner);
        if removed {
            let item = Removed::Service(name);
            if !dry_run {
                progress(&desc.owner, &item);
            }
            report.nodes.push(CleanedNode {
                id: desc.owner,
                record: None,
                removed: vec![item],
                failures: Vec::new(),
            });
        }
    }
    Ok(report)
}

/// Cleans up after node `id` if it is dead and no other cleaner holds it.
fn clean_one(
    layout: &Layout,
    id: &NodeId,
    dry_run: bool,
    progress: &mut dyn FnMut(&NodeId, &Removed),
) -> Result<Option<CleanedNode>, CleanError> {
    let token_path = layout.token(id);
    // Missing: files without a token, left over from outside meddling, or already removed
    // by a cleaner that finished while we listed.
    let state = probe(&token_path)?;
    let token = match state {
        Liveness::Alive => return Ok(None),
        Liveness::Dead if !dry_run => match claim_dead(&token_path)? {
            Some(token) => Some(token),
            None => return Ok(None),
        },
        Liveness::Dead | Liveness::Missing => None,
    };
    if token.is_some() {
        use std::os::unix::fs::OpenOptionsExt;
        let mut marker = std::fs::OpenOptions::new();
        let _ = marker.write(true).create(true).mode(0o600).open(layout.cleaning(id));
    }
    let record = std::fs::read(layout.record(id))
        .ok()
        .and_then(|b| serde_json::from_slice::<NodeRecord>(&b).ok());
    let mut node =
        CleanedNode { id: id.clone(), record, removed: Vec::new(), failures: Vec::new() };
    let mut plan: Vec<Removed> = node::read_list(&layout.resources(id))
        .unwrap_or_default()
        .into_iter()
        .map(Removed::Resource)
        .collect();
    for name in layout.service_names().unwrap_or_default() {
        match service::read_descriptor(&layout.service(&name)) {
            Ok(d) if d.owner == *id => plan.push(Removed::Service(name)),
            _ => {}
        }
    }
    let files =
        [(Removed::ResourceList, layout.resources(id)), (Removed::Record, layout.record(id))];
    for (item, path) in &files {
        if !dry_run || path.exists() {
            plan.push(item.clone());
        }
    }
    if dry_run {
        node.removed = plan;
        if state == Liveness::Dead {
            node.removed.push(Removed::Token);
        }
        return Ok((!node.removed.is_empty()).then_some(node));
    }
    for item in plan {
        match remove_item(layout, id, &item) {
            Ok(true) => {
                progress(id, &item);
                node.removed.push(item);
            }
            Ok(false) => {}
            Err(error) => node.failures.push(CleanFailure { item, error }),
        }
    }
    if let Some(token) = token {
        finish(token, &mut node, progress);
    }
    // After the token: a leftover marker beside no token is swept up by the next cleaner.
    let _ = node::remove_file(&layout.cleaning(id));
    Ok((!node.removed.is_empty() || !node.failures.is_empty()).then_some(node))
}

/// Removes the token of a fully cleaned node (the last step); keeps it if anything failed.
fn finish(token: DeadToken, node: &mut CleanedNode, progress: &mut dyn FnMut(&NodeId, &Removed)) {
    if !node.failures.is_empty() {
        return; // Dropping `token` unlocks it: a later cleaner retries.
    }
    let path = token.path().to_owned();
    match token.remove() {
        Ok(()) => {
            progress(&node.id, &Removed::Token);
            node.removed.push(Removed::Token);
        }
        Err(e) => node.failures.push(CleanFailure {
            item: Removed::Token,
            error: ItemError::File { path, source: io::Error::from(e.source) },
        }),
    }
}

/// Removes one item; `Ok(false)` if it was already gone.
fn remove_item(layout: &Layout, id: &NodeId, item: &Removed) -> Result<bool, ItemError> {
    let file =
        |path: PathBuf| node::remove_file(&path).map_err(|source| ItemError::File { path, source });
    match item {
        Removed::Resource(r) => Ok(r.remove()?),
        Removed::Service(name) => Ok(service::remove_if_owned(layout, name, id)),
        Removed::ResourceList => file(layout.resources(id)),
        Removed::Record => file(layout.record(id)),
        Removed::Token => Ok(false),
    }
}

/// How long a probe of a tcp endpoint waits for an answer.
const TCP_PROBE: Duration = Duration::from_millis(100);

/// Removes the endpoint files in `ns`'s directory that no listener serves any more.
fn sweep_endpoints(ns: &Namespace, dry_run: bool) -> Result<Vec<PathBuf>, CleanError> {
    let dir = ns.dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CleanError::List { path: dir, source }),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Some((_, ext)) = name.to_str().and_then(|n| n.rsplit_once('.')) else { continue };
        let Ok(transport) = ext.parse::<Transport>() else { continue };
        let stale = match transport {
            Transport::Tcp => tcp_refuses(&path),
            t => is_stale(&path, t == Transport::UdsSeqpacket).unwrap_or(false),
        };
        if stale && (dry_run || node::remove_file(&path).unwrap_or(false)) {
            tracing::info!(endpoint = %path.display(), "removed a dead listener's endpoint");
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Whether the tcp address file at `path` names an address that refuses connections.
fn tcp_refuses(path: &std::path::Path) -> bool {
    let Some(addr) = crate::channel::read_addr_file(path) else { return false };
    matches!(
        std::net::TcpStream::connect_timeout(&addr, TCP_PROBE),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
    )
}

/// Runs the node part of [`clean`] and only logs what goes wrong: automatic cleanup never
/// fails the operation that triggered it.
pub(crate) fn clean_quietly(ns: &Namespace) {
    match clean_nodes(ns, false, &mut |_, _| {}) {
        Ok(report) => log(&report),
        Err(e) => tracing::debug!(error = %e, "automatic cleanup skipped"),
    }
}

/// Cleans up after node `id` only, logging failures.
pub(crate) fn clean_node_quietly(ns: &Namespace, id: &NodeId) {
    match clean_one(&Layout::of(ns), id, false, &mut |_, _| {}) {
        Ok(Some(node)) => {
            log(&CleanReport { dry_run: false, nodes: vec![node], ..CleanReport::default() })
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "automatic cleanup skipped"),
    }
}

fn log(report: &CleanReport) {
    for node in &report.nodes {
        tracing::info!(node = %node.id, removed = node.removed.len(), "cleaned up after a dead node");
        for f in &node.failures {
            tracing::warn!(node = %node.id, item = %f.item, error = %f.error, "cleanup failed");
        }
    }
}
