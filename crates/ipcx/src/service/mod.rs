//! Services: named, discoverable endpoints owned by a [`Node`].
//!
//! A service is described by a [`ServiceDescriptor`] at `<nsdir>/services/<name>.json`:
//! pattern, transport, contract, capacities, back-pressure policy, permissions, owner node
//! and endpoint. The owner creates it with [`ServiceBuilder::create`] (or
//! [`Node::create_service`]); others find it with [`Service::open`] or, checking that it
//! matches what they expect, [`ServiceBuilder::open`]. A service lives as long as its
//! owner: the owner's drop removes the descriptor, and a service whose owner died counts as
//! absent and is cleaned up by whoever opens it ([`crate::cleanup`]).
//!
//! Descriptors are written to a temporary file with the service's exact mode (0600 by
//! default, whatever the umask) and published with `link`, which never replaces an
//! existing descriptor: of two nodes creating the same name, one wins and the other gets
//! [`CreateError::Exists`]. Creating and opening run dead-node cleanup first.
//!
//! ```
//! use ipcx::{node::Node, service::{Pattern, Service}, Namespace, Transport};
//!
//! let ns = Namespace::new(&format!("doc-svc-{}", std::process::id())).unwrap();
//! let node = Node::builder().namespace(ns.clone()).create().unwrap();
//! let svc = Service::builder("echo", Pattern::Rpc)
//!     .transport(Transport::UdsSeqpacket)
//!     .create(&node)
//!     .unwrap();
//! let seen = Service::builder("echo", Pattern::Rpc).open(&ns).unwrap();
//! assert_eq!(seen.descriptor().owner, *node.id());
//! drop((seen, svc, node));
//! # std::fs::remove_dir_all(ns.dir()).unwrap();
//! ```

mod descriptor;
mod error;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipcx_sys::liveness::{probe, Liveness};
use ipcx_sys::Permissions;

use crate::contract::ContractId;
use crate::namespace::check_name;
use crate::node::{self, Layout, Node, NodeId};
use crate::{Namespace, Transport};

pub use descriptor::{ContractRecord, Incompatibility, Pattern, ServiceDescriptor, SERVICE_FORMAT};
pub use error::{CreateError, OpenError, OpenOrCreateError};

/// How often `create` retries while a dead owner's descriptor is being cleaned up.
const CREATE_ATTEMPTS: u32 = 50;

/// Describes a service to create, or what an opener expects of one; see
/// [`Service::builder`].
#[derive(Debug, Clone)]
pub struct ServiceBuilder {
    name: String,
    pattern: Pattern,
    transport: Option<String>,
    contract: Option<ContractId>,
    capacity: u64,
    max_message: u64,
    back_pressure: String,
    permissions: Permissions,
    allow_uids: Vec<u32>,
    allow_gids: Vec<u32>,
    endpoint: Option<String>,
    properties: BTreeMap<String, String>,
}

impl ServiceBuilder {
    /// The transport (default for `create`: shm; `open` checks it only if set).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport.name().to_owned());
        self
    }

    /// The transport by name, for transports a pattern defines itself.
    pub fn transport_name(mut self, transport: impl Into<String>) -> Self {
        self.transport = Some(transport.into());
        self
    }

    /// The message contract (default for `create`: [`ContractId::bytes`]; `open` checks
    /// name, major version and fingerprint only if set).
    pub fn contract(mut self, contract: ContractId) -> Self {
        self.contract = Some(contract);
        self
    }

    /// Queue capacity in messages (0: the pattern's default).
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Largest message in bytes (0: the transport's default).
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// The back-pressure policy, as the pattern names it (default `"block"`).
    pub fn back_pressure(mut self, policy: impl Into<String>) -> Self {
        self.back_pressure = policy.into();
        self
    }

    /// Mode of the descriptor and of the service's objects (default 0600).
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Also allows `uid` to connect.
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.allow_uids.push(uid);
        self
    }

    /// Also allows members of group `gid` to connect.
    pub fn allow_gid(mut self, gid: u32) -> Self {
        self.allow_gids.push(gid);
        self
    }

    /// Where to connect (default: `<nsdir>/<name>.<transport>`, where a
    /// [`Channel`](crate::Channel) of that name listens).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// A pattern-specific setting stored in the descriptor.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor `node` would write.
    fn descriptor(&self, node: &Node) -> ServiceDescriptor {
        let transport = self.transport.clone().unwrap_or_else(|| Transport::Shm.name().to_owned());
        let endpoint = self.endpoint.clone().unwrap_or_else(|| {
            let path = node.namespace().dir().join(format!("{}.{transport}", self.name));
            path.to_string_lossy().into_owned()
        });
        ServiceDescriptor {
            format: SERVICE_FORMAT,
            name: self.name.clone(),
            pattern: self.pattern,
            transport,
            contract: (&self.contract.clone().unwrap_or_else(ContractId::bytes)).into(),
            capacity: self.capacity,
            max_message: self.max_message,
            back_pressure: self.back_pressure.clone(),
            permissions: format!("{:04o}", self.permissions.mode()),
            allow_uids: self.allow_uids.clone(),
            allow_gids: self.allow_gids.clone(),
            owner: node.id().clone(),
            endpoint,
            created_unix_ms: node::now_unix_ms(),
            properties: self.properties.clone(),
        }
    }

    /// Creates the service, owned by `node`, in `node`'s namespace. Fails with
    /// [`CreateError::Exists`] if a live node serves the name; a dead owner's descriptor is
    /// cleaned up first.
    pub fn create(&self, node: &Node) -> Result<Service, CreateError> {
        check_name(&self.name, "service")?;
        let ns = node.namespace();
        ns.ensure_dir()?;
        let layout = node.layout();
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| CreateError::Io { path, source }
        };
        node::ensure_subdir(&layout.services).map_err(io_err(&layout.services))?;
        crate::cleanup::clean_quietly(ns);
        let desc = self.descriptor(node);
        let path = layout.service(&self.name);
        let json = serde_json::to_vec_pretty(&desc).map_err(io::Error::other);
        let json = json.map_err(io_err(&path))?;
        let mut backoff = Duration::from_millis(1);
        for _ in 0..CREATE_ATTEMPTS {
            match node::create_atomic(&path, &json, self.permissions.mode()) {
                Ok(()) => {
                    node.add_service(&self.name);
                    return Ok(Service {
                        descriptor: desc,
                        path,
                        layout: layout.clone(),
                        owned: true,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            match read_live(ns, layout, &self.name) {
                Ok(existing) => {
                    return Err(CreateError::Exists {
                        name: self.name.clone(),
                        namespace: ns.name().to_owned(),
                        owner: existing.owner,
                    })
                }
                // Gone, or a dead owner being cleaned by someone else: try again shortly.
                Err(OpenError::NotFound { .. }) => {}
                Err(e) => return Err(CreateError::Existing(Box::new(e))),
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(20));
        }
        Err(CreateError::Busy { name: self.name.clone() })
    }

    /// Opens the service in `ns` and checks that it matches: same pattern, and the
    /// transport and contract (name, major version, fingerprint) if they were set.
    pub fn open(&self, ns: &Namespace) -> Result<Service, OpenError> {
        let svc = Service::open(ns, &self.name)?;
        descriptor::check(
            &svc.descriptor,
            self.pattern,
            self.transport.as_deref(),
            self.contract.as_ref(),
        )
        .map_err(|reason| OpenError::Incompatible { name: self.name.clone(), reason })?;
        Ok(svc)
    }

    /// Opens the service if a live node serves it (checking it as [`open`](Self::open)
    /// does), else creates it owned by `node`.
    pub fn open_or_create(&self, node: &Node) -> Result<Service, OpenOrCreateError> {
        loop {
            match self.open(node.namespace()) {
                Ok(svc) => return Ok(svc),
                Err(OpenError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match self.create(node) {
                Ok(svc) => return Ok(svc),
                // Another node created it between our open and create: open that one.
                Err(CreateError::Exists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A service: its descriptor, and for the owner's handle the duty to remove it on drop.
#[derive(Debug)]
pub struct Service {
    descriptor: ServiceDescriptor,
    path: PathBuf,
    layout: Layout,
    owned: bool,
}

impl Service {
    /// A builder for service `name` with `pattern`.
    pub fn builder(name: impl Into<String>, pattern: Pattern) -> ServiceBuilder {
        ServiceBuilder {
            name: name.into(),
            pattern,
            transport: None,
            contract: None,
            capacity: 0,
            max_message: 0,
            back_pressure: "block".to_owned(),
            permissions: Permissions::OWNER_ONLY,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            endpoint: None,
            properties: BTreeMap::new(),
        }
    }

    /// Opens service `name` in `ns` without checking what it offers. Runs dead-node cleanup
    /// first; a service whose owner is dead is [`OpenError::NotFound`].
    pub fn open(ns: &Namespace, name: &str) -> Result<Service, OpenError> {
        check_name(name, "service")?;
        crate::cleanup::clean_quietly(ns);
        let layout = Layout::of(ns);
        let descriptor = read_live(ns, &layout, name)?;
        Ok(Service { descriptor, path: layout.service(name), layout, owned: false })
    }

    /// The descriptor.
    pub fn descriptor(&self) -> &ServiceDescriptor {
        &self.descriptor
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.descriptor.name
    }

    /// The descriptor's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this handle created the service (and removes it on drop).
    pub fn is_owner(&self) -> bool {
        self.owned
    }

    /// Whether the owner node is still alive (a probe of its token).
    pub fn owner_alive(&self) -> bool {
        matches!(probe(self.layout.token(&self.descriptor.owner)), Ok(Liveness::Alive))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.owned {
            remove_if_owned(&self.layout, &self.descriptor.name, &self.descriptor.owner);
        }
    }
}

/// Reads and parses the descriptor at `path`.
pub(crate) fn read_descriptor(path: &Path) -> Result<ServiceDescriptor, OpenError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::PermissionDenied => {
            OpenError::PermissionDenied { path: path.to_owned(), source }
        }
        _ => OpenError::Io { path: path.to_owned(), source },
    })?;
    #[derive(serde::Deserialize)]
    struct Format {
        format: u32,
    }
    let corrupt = |source| OpenError::Corrupt { path: path.to_owned(), source };
    let format: Format = serde_json::from_slice(&bytes).map_err(corrupt)?;
    if format.format > SERVICE_FORMAT {
        return Err(OpenError::UnsupportedFormat {
            path: path.to_owned(),
            found: format.format,
            supported: SERVICE_FORMAT,
        });
    }
    serde_json::from_slice(&bytes).map_err(corrupt)
}

/// Reads service `name` if its owner is alive; a dead owner is cleaned up and the service
/// reported absent.
fn read_live(ns: &Namespace, layout: &Layout, name: &str) -> Result<ServiceDescriptor, OpenError> {
    let path = layout.service(name);
    let not_found =
        || OpenError::NotFound { name: name.to_owned(), namespace: ns.name().to_owned() };
    let desc = match read_descriptor(&path) {
        Ok(d) => d,
        Err(OpenError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Err(not_found())
        }
        Err(e) => return Err(e),
    };
    match probe(layout.token(&desc.owner)) {
        // A cleaner holds a dead owner's token while it removes the owner's services.
        Ok(Liveness::Alive) if layout.cleaning(&desc.owner).exists() => Err(not_found()),
        Ok(Liveness::Alive) | Err(_) => Ok(desc),
        Ok(Liveness::Dead) => {
            crate::cleanup::clean_node_quietly(ns, &desc.owner);
            Err(not_found())
        }
        Ok(Liveness::Missing) => {
            // An owner that is gone without its token removes its descriptors first, so
            // this one is left over from outside meddling.
            remove_if_owned(layout, name, &desc.owner);
            Err(not_found())
        }
    }
}

/// Removes descriptor `name` if it names `owner`; returns whether this call removed it.
pub(crate) fn remove_if_owned(layout: &Layout, name: &str, owner: &NodeId) -> bool {
    let path = layout.service(name);
    match read_descriptor(&path) {
        Ok(d) if d.owner == *owner => node::remove_file(&path).unwrap_or(false),
        _ => false,
    }
}
