//! Request/response (RPC) over a [`Channel`](crate::Channel): typed clients and servers,
//! several calls in flight per client, per-call deadlines, streamed responses, and prompt
//! failure of pending calls when the server dies.
//!
//! An RPC service is addressed like a channel endpoint: (namespace, name, transport); shm is
//! the usual transport, every transport works. The server ([`RpcServer`]) listens and runs
//! one thread per connected client, so a slow or dead client never holds up another; the
//! client ([`RpcClient`], or [`RawRpcClient`] for bytes) is one connection used by one thread.
//!
//! Every channel message is one [envelope](envelope): kind, correlation id, deadline hint,
//! then the message encoded by the contract's codec (postcard for [`Message`] types, the bytes
//! as they are for [`Raw`]). The client numbers its calls 1, 2, 3, … and matches responses by
//! id, so responses may come in any order; a response to a call that is over is dropped.
//! When a call's deadline passes the client reports [`CallError::Timeout`] and sends a Cancel,
//! best effort; the server skips a cancelled or expired request it has not started, and a
//! streaming handler sees [`RespondError::Cancelled`]. When the server dies, its channel
//! reports it within 20 ms on every transport and every pending call fails with
//! [`CallError::ServerGone`]. docs/PROTOCOL.md section 10 is the wire description.
//!
//! Zero copy on shm: a unary server answers a request that finds nothing queued straight
//! from the ring ([`RpcServer::serve`] decodes it there; [`RpcServer::serve_in_place`] hands
//! the bytes to the handler), and [`RawRpcClient::wait_in_place`] /
//! [`RawRpcClient::call_in_place`] hand the response over where it lies.
//!
//! The channel contract of an RPC service combines both message types (see
//! [`rpc_contract`]): a client connects only to a server with the same request and response
//! types.
//!
//! ```no_run
//! use std::time::Duration;
//! use ipcx::rpc::{RpcClient, RpcServer};
//! use ipcx::{Namespace, Transport};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ns = Namespace::new("demo")?;
//! // Process A
//! let server = RpcServer::<String, String>::bind(&ns, "upper", Transport::Shm)?
//!     .serve(|req: String| Ok(req.to_uppercase()));
//! // Process B
//! let mut client =
//!     RpcClient::<String, String>::connect(&ns, "upper", Transport::Shm, Duration::from_secs(1))?;
//! assert_eq!(client.call(&"hi".to_string(), Duration::from_secs(1))?, "HI");
//! # drop(server); Ok(()) }
//! ```

mod client;
pub mod envelope;
mod server;
pub mod session;

pub use client::{CallStream, RawRpcClient, RpcClient};
pub use envelope::ErrorCode;
pub use server::{RespondError, Responder, RpcServer, ServerHandle, DEFAULT_SHUTDOWN_WAIT};
pub use session::CallId;

use crate::channel::{raw_contract, ConnectError, ListenError, SendError};
use crate::codec::{self, DecodeError, EncodeError};
use crate::contract::{fnv1a, ContractError, ContractId, Message};

/// How a request or response type travels in an envelope body: every [`Message`] (postcard),
/// and [`Raw`] (the bytes as they are).
pub trait Payload: Sized + Send + 'static {
    /// The type's contract.
    fn contract() -> Result<ContractId, ContractError>;
    /// Appends the encoded value to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
    /// Decodes a value that fills `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
    /// Decodes a value from an owned buffer (no copy where the type allows).
    fn from_vec(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        Self::decode(&bytes)
    }
}

impl<T: Message + Send> Payload for T {
    fn contract() -> Result<ContractId, ContractError> {
        T::contract()
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        codec::encode(self, out)
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes)
    }
}

/// Untyped bytes, carried without encoding (contract [`raw_contract`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Raw(pub Vec<u8>);

impl Payload for Raw {
    fn contract() -> Result<ContractId, ContractError> {
        Ok(raw_contract())
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.0);
        Ok(())
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(Raw(bytes.to_vec()))
    }
    fn from_vec(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        Ok(Raw(bytes))
    }
}

/// The channel contract of an RPC service with requests `Req` and responses `Resp`:
///
/// - name `rpc:<Req's name>/<Resp's name>` (so both names together fit in 251 bytes);
/// - version: `Req`'s version;
/// - fingerprint: FNV-1a 64 (offset basis `0xcbf29ce484222325`) over the bytes of `"ipcx.rpc"`,
///   then `Req`'s fingerprint (u64 LE), `Resp`'s fingerprint (u64 LE) and `Resp`'s major
///   version (u16 LE): so a change of either type's shape, or of the response's major
///   version, refuses the connection.
pub fn rpc_contract<Req: Payload, Resp: Payload>() -> Result<ContractId, ContractError> {
    let req = Req::contract()?;
    let resp = Resp::contract()?;
    let mut fp = fnv1a(0xcbf2_9ce4_8422_2325, b"ipcx.rpc");
    fp = fnv1a(fp, &req.fingerprint.to_le_bytes());
    fp = fnv1a(fp, &resp.fingerprint.to_le_bytes());
    fp = fnv1a(fp, &resp.version.major.to_le_bytes());
    ContractId::new(format!("rpc:{}/{}", req.name, resp.name), req.version, fp)
}

/// A call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call's deadline passed before its (last) response; a Cancel was sent, best effort.
    #[error(
        "the call timed out; the server is slow or stuck: raise the timeout or check the server"
    )]
    Timeout,
    /// The server exited, closed the connection or broke the protocol before answering; the
    /// client is unusable, reconnect.
    #[error("the server is gone (it exited or closed the connection); reconnect, e.g. with connect_with_backoff")]
    ServerGone,
    /// The server answered with an error.
    #[error("the server failed the call ({code}): {message}")]
    Remote {
        /// Why.
        code: ErrorCode,
        /// The server's text.
        message: String,
    },
    /// A plain call got an empty streamed response (the handler streams: use `call_stream`).
    #[error("the server ended the call without a response; the service streams its responses: use call_stream")]
    EmptyStream,
    /// `wait`: its own timeout passed while the call is still in flight; wait again.
    #[error("the call is still in flight; wait again or give up with forget")]
    Pending,
    /// `wait`/`poll`: no such call in flight (never started, or its result was taken).
    #[error("call {0:?} is not in flight on this client; use the id start returned, once")]
    UnknownCall(CallId),
    /// The request could not be sent (too large for the channel, or an OS error).
    #[error("cannot send the request")]
    Send(#[source] SendError),
    /// The request could not be encoded.
    #[error("cannot encode the request")]
    Encode(#[source] EncodeError),
    /// The response did not decode as `Resp`.
    #[error("cannot decode the response")]
    Decode(#[source] DecodeError),
    /// The server streamed more than `limit` chunks of this call while nobody read them
    /// (the client waited on other calls, or did not iterate the stream): the client ended
    /// the call and told the server.
    #[error("the server streamed more than {limit} chunks of this call while it was not being read, so the client ended it; iterate a stream as it comes, before waiting on other calls")]
    Overrun {
        /// Most unread chunks a client keeps per call.
        limit: u32,
    },
}

/// Connecting an RPC client failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcConnectError {
    /// The request or response type's contract could not be computed.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The channel could not connect (nobody serving, refused, timeout, …).
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Binding an RPC server failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The request or response type's contract could not be computed.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The channel could not listen (name in use, bad name, …).
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The service descriptor could not be created (another live node serves the name, …).
    #[error("cannot create the rpc service")]
    Service(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_contract_combines_both_types() {
        let ss = rpc_contract::<String, String>().unwrap();
        assert_eq!(ss.name, "rpc:ipcx.string/ipcx.string");
        let sb = rpc_contract::<String, Vec<u8>>().unwrap();
        assert_ne!(ss.fingerprint, sb.fingerprint);
        let raw = rpc_contract::<Raw, Raw>().unwrap();
        assert_eq!(raw.name, "rpc:ipcx.raw/ipcx.raw");
        assert_eq!(rpc_contract::<String, String>().unwrap(), ss, "deterministic");
    }
}
