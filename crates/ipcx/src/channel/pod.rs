//! Fixed-layout messages: `#[repr(C)]` plain-data types ([`bytemuck::Pod`]) travel as their
//! bytes, without encoding. On `shm` the receiver reads them in place in the ring (zero copy);
//! elsewhere from the transport's buffer.
//!
//! The contract's fingerprint covers the type's size, alignment and the [`PodMessage::LAYOUT`]
//! text (e.g. `"x:f64,y:f64"`): it cannot see field types the way the serde fingerprint does,
//! so bump the major version whenever the layout changes.

use std::marker::PhantomData;
use std::time::Duration;

use super::error::{RecvError, SendError};
use super::{Channel, ChannelBuilder, TypedError};
use crate::contract::{ContractError, ContractId, Version};

/// A plain-data message type.
pub trait PodMessage: bytemuck::Pod {
    /// The contract name.
    const NAME: &'static str;
    /// The contract version.
    const VERSION: Version;
    /// A description of the fields, hashed into the fingerprint (optional).
    const LAYOUT: &'static str = "";

    /// The contract: name, version, and a fingerprint of size, alignment and `LAYOUT`.
    fn contract() -> Result<ContractId, ContractError> {
        let mut h = crate::contract::fnv1a(0xcbf2_9ce4_8422_2325, b"pod");
        h = crate::contract::fnv1a(h, &(std::mem::size_of::<Self>() as u64).to_le_bytes());
        h = crate::contract::fnv1a(h, &(std::mem::align_of::<Self>() as u64).to_le_bytes());
        h = crate::contract::fnv1a(h, Self::LAYOUT.as_bytes());
        ContractId::new(Self::NAME, Self::VERSION, h)
    }
}

/// A message of the wrong size arrived (the peer is broken: the handshake agreed on `T`).
#[derive(Debug, thiserror::Error)]
#[error("a {got}-byte message where a {want}-byte fixed-layout message was due")]
pub struct PodSizeError {
    /// Bytes received.
    pub got: usize,
    /// `size_of::<T>()`.
    pub want: usize,
}

impl ChannelBuilder {
    /// Sets the contract to the fixed-layout type `T`'s (see [`PodChannel`]).
    pub fn pod<T: PodMessage>(self) -> Result<ChannelBuilder, ContractError> {
        Ok(self.contract(T::contract()?))
    }
}

/// A channel carrying fixed-layout messages of type `T`, unencoded.
pub struct PodChannel<T: PodMessage> {
    inner: Channel,
    _type: PhantomData<fn(T) -> T>,
}

impl<T: PodMessage> PodChannel<T> {
    /// Wraps a channel built with [`ChannelBuilder::pod::<T>`](ChannelBuilder::pod).
    pub fn new(inner: Channel) -> Result<PodChannel<T>, TypedError> {
        let want = T::contract()?;
        if inner.contract() != &want {
            return Err(TypedError::WrongContract { have: inner.contract().clone(), want });
        }
        Ok(PodChannel { inner, _type: PhantomData })
    }

    /// Gives back the untyped channel.
    pub fn into_inner(self) -> Channel {
        self.inner
    }

    /// Sends `msg`'s bytes (see [`Channel::send_with`] for `timeout`).
    pub fn send(&mut self, msg: &T, timeout: Option<Duration>) -> Result<(), SendError> {
        let mode = self.inner.send_mode();
        self.inner.send_with(bytemuck::bytes_of(msg), mode, timeout)
    }

    /// Receives the next message and passes it to `f` in place where the transport and
    /// `T`'s alignment allow (shm rings align payloads to 8 bytes), else a copy.
    pub fn recv_in_place<R>(
        &mut self,
        timeout: Option<Duration>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, RecvError> {
        let want = std::mem::size_of::<T>();
        self.inner
            .recv_in_place(timeout, |bytes| {
                if bytes.len() != want {
                    return Err(PodSizeError { got: bytes.len(), want });
                }
                Ok(match bytemuck::try_from_bytes::<T>(bytes) {
                    Ok(msg) => f(msg),
                    Err(_) => f(&bytemuck::pod_read_unaligned::<T>(bytes)),
                })
            })?
            .map_err(|e| RecvError::Decode(Box::new(e)))
    }

    /// Receives the next message as a copy.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<T, RecvError> {
        self.recv_in_place(timeout, |msg| *msg)
    }
}

impl<T: PodMessage> std::fmt::Debug for PodChannel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodChannel").field("inner", &self.inner).finish_non_exhaustive()
    }
}
