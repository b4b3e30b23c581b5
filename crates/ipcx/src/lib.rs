//! `ipcx` — inter-process communication for Linux: one API over shared memory, Unix
//! sockets, pipes, FIFOs, message queues and semaphores.
//!
//! Today this facade re-exports the OS layer; channels, contracts and patterns build on it.
#![forbid(unsafe_code)]

pub mod channel;
pub mod cleanup;
pub mod codec;
pub mod contract;
pub mod discovery;
pub mod event;
pub mod frame;
pub mod handshake;
pub mod namespace;
pub mod node;
pub mod pubsub;
pub mod rpc;
pub mod service;
pub mod stream;

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
