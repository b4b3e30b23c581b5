//! `ipcx` — inter-process communication for Linux: one API over shared memory, Unix
//! sockets, pipes, FIFOs, POSIX and System V message queues and TCP, with the patterns
//! programs use (publish/subscribe, request/response, byte streams, events), typed and
//! versioned messages, and crashed peers detected and cleaned up after.
//!
//! ```no_run
//! use ipcx::{Channel, Namespace, Transport};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ns = Namespace::new("demo")?;
//! // One process listens...
//! let mut listener = Channel::builder("sensors", Transport::Shm).namespace(ns.clone()).listen()?;
//! // ...another connects (switching transport is changing that one value)...
//! let mut client = Channel::builder("sensors", Transport::Shm).namespace(ns).connect()?;
//! client.send(b"21.5")?;
//! // ...and the first receives, in place in shared memory.
//! let mut server = listener.accept()?;
//! server.recv_in_place(None, |bytes| println!("{}", String::from_utf8_lossy(bytes)))?;
//! # Ok(()) }
//! ```
//!
//! The wire and memory formats are specified in `docs/PROTOCOL.md`; the design in
//! `docs/ARCHITECTURE.md`.
#![forbid(unsafe_code)]

/// Ordered message channels over every transport, one API.
pub mod channel;
/// Removing what dead nodes left behind.
pub mod cleanup;
/// The default message codec (serde + postcard).
pub mod codec;
/// Message contracts: name, version and structural fingerprint.
pub mod contract;
/// Listing nodes and services, waiting for a service.
pub mod discovery;
/// Events: notify/listen by id, and wait sets over several listeners.
pub mod event;
/// The frame header in front of every message.
pub mod frame;
/// The connect handshake (sans-IO).
pub mod handshake;
/// Namespaces: where endpoints and services live.
pub mod namespace;
/// Nodes: a process's liveness token, its resources and services.
pub mod node;
/// Publish/subscribe over shared memory, zero copy.
pub mod pubsub;
/// Request/response: typed clients and servers, streamed responses, deadlines.
pub mod rpc;
/// Service descriptors: what a service offers and who owns it.
pub mod service;
/// Byte streams implementing `std::io::Read` and `Write` over a channel.
pub mod stream;
/// Async adapters for tokio (feature `tokio`).
#[cfg(feature = "tokio")]
pub mod tokio;

pub use channel::{Channel, ChannelBuilder, Listener, RecvError, SendError, SendMode, Transport};
pub use codec::{decode, encode, DecodeError, EncodeError};
pub use contract::{check_compatible, ContractError, ContractId, Message, Mismatch, Version};
pub use event::{EventListener, EventNotifier, WaitSet};
pub use frame::{FrameDecoder, FrameError, FrameHeader, FrameKind};
pub use handshake::{Acceptor, Agreed, Connector, HandshakeError, Hello};
pub use namespace::Namespace;
pub use node::{Node, NodeBuilder, NodeId, Resource};
pub use service::{Pattern, Service, ServiceBuilder, ServiceDescriptor};
pub use stream::{ByteStream, StreamListener};

/// The OS layer: safe wrappers over each Linux IPC primitive.
pub use ipcx_sys as sys;
