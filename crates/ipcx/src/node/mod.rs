//! Nodes: one participant (usually one per process) that owns services and resources, and
//! holds a liveness token for its whole life so others can tell when it died.
//!
//! Creating a [`Node`] first runs dead-node cleanup ([`crate::cleanup`]) in its namespace,
//! then acquires `<nsdir>/nodes/<id>.token` (an exclusive `flock` the kernel drops when the
//! process dies, see [`ipcx_sys::liveness`]), then writes its record `<id>.json`. Resources
//! it creates are registered with [`Node::register_resource`] and appended to
//! `<id>.resources`, so a cleaner can remove them once the node is dead.
//!
//! Dropping a node removes, in this order: the service descriptors it created (those still
//! naming it as owner), its registered resources (already-removed ones are fine), its
//! resource list, its record, and last its token. A node's resources therefore live no
//! longer than the node, whether it exits cleanly or dies.
//!
//! ```
//! use ipcx::{node::{Node, Resource}, Namespace};
//!
//! let ns = Namespace::new(&format!("doc-node-{}", std::process::id())).unwrap();
//! let node = Node::builder().namespace(ns.clone()).name("worker").create().unwrap();
//! node.register_resource(Resource::PosixShm { name: ns.object_name("buf") }).unwrap();
//! drop(node);
//! # std::fs::remove_dir_all(ns.dir()).unwrap();
//! ```

mod record;
mod resource;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use ipcx_sys::liveness::{AcquireError, LivenessToken};
use ipcx_sys::Permissions;
use thiserror::Error;

use crate::namespace::{DirError, NameError};
use crate::service::{CreateError, OpenOrCreateError, Service, ServiceBuilder};
use crate::Namespace;

pub(crate) use record::{
    create_atomic, ensure_subdir, now_unix_ms, orphan_temp_files, pid_alive, random_u64,
    remove_file, write_atomic, Layout,
};
pub use record::{NodeId, NodeRecord, RECORD_FORMAT};
pub(crate) use resource::read_list;
pub use resource::{RemoveResourceError, Resource};

/// Creating a node failed.
#[derive(Debug, Error)]
pub enum NodeError {
    /// `IPCX_NAMESPACE` holds an invalid name (only when no namespace was given).
    #[error("invalid default namespace; set IPCX_NAMESPACE to a valid name or pass one")]
    Namespace(#[source] NameError),
    /// The namespace directory could not be prepared.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// The liveness token could not be acquired.
    #[error("cannot acquire the node's liveness token")]
    Token(#[source] AcquireError),
    /// Writing a node file failed.
    #[error("cannot write node file {path:?}; check that the namespace directory is writable")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Registering a resource failed.
#[derive(Debug, Error)]
#[error("cannot record the resource in {path:?}; check that the namespace directory is writable")]
pub struct RegisterError {
    /// The node's resource list.
    pub path: PathBuf,
    /// The error.
    #[source]
    pub source: io::Error,
}

/// Describes a node to create; see [`Node::builder`].
#[derive(Debug, Clone, Default)]
pub struct NodeBuilder {
    namespace: Option<Namespace>,
    label: Option<String>,
}

impl NodeBuilder {
    /// The namespace to live in (default: [`Namespace::from_env`]).
    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespace = Some(ns);
        self
    }

    /// A label for people (`ipcx ls` shows it); not unique, not an address.
    pub fn name(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Cleans up after dead nodes of the namespace, then creates the node.
    pub fn create(self) -> Result<Node, NodeError> {
        let ns = match self.namespace {
            Some(ns) => ns,
            None => Namespace::from_env().map_err(NodeError::Namespace)?,
        };
        ns.ensure_dir()?;
        let layout = Layout::of(&ns);
        let io_err = |path: &PathBuf| {
            let path = path.clone();
            move |source| NodeError::Io { path, source }
        };
        ensure_subdir(&layout.nodes).map_err(io_err(&layout.nodes))?;
        ensure_subdir(&layout.services).map_err(io_err(&layout.services))?;
        crate::cleanup::clean_quietly(&ns);

        let id = NodeId::random();
        // The token first: a record is never visible without a live token behind it.
        let token = LivenessToken::acquire(layout.token(&id), Permissions::OWNER_ONLY)
            .map_err(NodeError::Token)?;
        let record = NodeRecord {
            format: RECORD_FORMAT,
            id: id.clone(),
            label: self.label,
            pid: std::process::id(),
            uid: ipcx_sys::process::current_uid(),
            started_unix_ms: now_unix_ms(),
            ipcx_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(io::Error::other);
        let record_path = layout.record(&id);
        json.and_then(|j| write_atomic(&record_path, &j, 0o600)).map_err(io_err(&record_path))?;
        let res_path = layout.resources(&id);
        let resources = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&res_path)
            .map_err(io_err(&res_path));
        let resources = match resources {
            Ok(f) => f,
            Err(e) => {
                let _ = remove_file(&record_path);
                return Err(e);
            }
        };
        Ok(Node {
            ns,
            layout,
            record,
            state: Mutex::new(State {
                file: resources,
                resources: Vec::new(),
                services: Vec::new(),
            }),
            token: Some(token),
        })
    }
}

/// What a node has registered, for its drop.
#[derive(Debug)]
struct State {
    file: File,
    resources: Vec<Resource>,
    services: Vec<String>,
}

/// A participant in a namespace, alive as long as this value is (see the module docs).
#[derive(Debug)]
pub struct Node {
    ns: Namespace,
    layout: Layout,
    record: NodeRecord,
    state: Mutex<State>,
    token: Option<LivenessToken>,
}

impl Node {
    /// A builder: namespace (default from the environment) and optional label.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.record.id
    }

    /// The node's label, if one was given.
    pub fn label(&self) -> Option<&str> {
        self.record.label.as_deref()
    }

    /// The namespace the node lives in.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The record the node wrote about itself.
    pub fn record(&self) -> &NodeRecord {
        &self.record
    }

    /// Records that this node owns `resource`: once the node is dead a cleaner removes it,
    /// and dropping the node removes it too. Register right after creating the resource.
    pub fn register_resource(&self, resource: Resource) -> Result<(), RegisterError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = serde_json::to_vec(&resource).map_err(|e| RegisterError {
            path: self.layout.resources(self.id()),
            source: io::Error::other(e),
        })?;
        line.push(b'\n');
        // One write of an O_APPEND file: lines of concurrent writers never interleave.
        state
            .file
            .write_all(&line)
            .map_err(|source| RegisterError { path: self.layout.resources(self.id()), source })?;
        state.resources.push(resource);
        Ok(())
    }

    /// Creates a service owned by this node (same as [`ServiceBuilder::create`]).
    pub fn create_service(&self, service: &ServiceBuilder) -> Result<Service, CreateError> {
        service.create(self)
    }

    /// Opens the service if a live node serves it, else creates it owned by this node
    /// (same as [`ServiceBuilder::open_or_create`]).
    pub fn open_or_create_service(
        &self,
        service: &ServiceBuilder,
    ) -> Result<Service, OpenOrCreateError> {
        service.open_or_create(self)
    }

    /// Remembers a service descriptor this node created, for its drop.
    pub(crate) fn add_service(&self, name: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.services.push(name.to_owned());
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for name in &state.services {
            crate::service::remove_if_owned(&self.layout, name, &self.record.id);
        }
        for resource in &state.resources {
            if let Err(e) = resource.remove() {
                tracing::warn!(node = %self.record.id, %resource, error = %e, "cannot remove resource");
            }
        }
        let _ = remove_file(&self.layout.resources(&self.record.id));
        let _ = remove_file(&self.layout.record(&self.record.id));
        // The token last: while it is held, no cleaner touches the files above.
        if let Some(token) = self.token.take() {
            let _ = token.remove();
        }
    }
}
