//! Typed channels: messages of one [`Message`] type, encoded with the default codec
//! (serde + postcard), over any transport.
//!
//! The contract (name, version, structural fingerprint) is what the handshake checks, so both
//! ends of a [`TypedChannel<T>`] are known to agree on `T`'s shape before the first message.

use std::marker::PhantomData;
use std::time::Duration;

use super::error::{RecvError, SendError};
use super::{Channel, ChannelBuilder};
use crate::codec;
use crate::contract::{ContractError, ContractId, Message};

/// A channel carrying messages of type `T`.
pub struct TypedChannel<T: Message> {
    inner: Channel,
    buf: Vec<u8>,
    _type: PhantomData<fn(T) -> T>,
}

/// The channel's contract is not `T`'s.
#[derive(Debug, thiserror::Error)]
pub enum TypedError {
    /// `T`'s contract could not be computed.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The channel was built for another contract.
    #[error("the channel speaks {have}, not {want}; build it with ChannelBuilder::typed::<T>()")]
    WrongContract {
        /// The channel's contract.
        have: ContractId,
        /// `T`'s.
        want: ContractId,
    },
}

impl ChannelBuilder {
    /// Sets the contract to `T`'s (see [`TypedChannel`]).
    pub fn typed<T: Message>(self) -> Result<ChannelBuilder, ContractError> {
        Ok(self.contract(T::contract()?))
    }
}

impl<T: Message> TypedChannel<T> {
    /// Wraps a channel built with [`ChannelBuilder::typed::<T>`](ChannelBuilder::typed).
    pub fn new(inner: Channel) -> Result<TypedChannel<T>, TypedError> {
        let want = T::contract()?;
        if inner.contract() != &want {
            return Err(TypedError::WrongContract { have: inner.contract().clone(), want });
        }
        Ok(TypedChannel { inner, buf: Vec::new(), _type: PhantomData })
    }

    /// The untyped channel underneath.
    pub fn inner(&self) -> &Channel {
        &self.inner
    }

    /// Gives back the untyped channel.
    pub fn into_inner(self) -> Channel {
        self.inner
    }

    /// Sends `msg` (see [`Channel::send`]).
    pub fn send(&mut self, msg: &T) -> Result<(), SendError> {
        self.send_with(msg, None)
    }

    /// Sends `msg`, waiting at most `timeout` (see [`Channel::send_timeout`]).
    pub fn send_timeout(&mut self, msg: &T, timeout: Duration) -> Result<(), SendError> {
        self.send_with(msg, Some(timeout))
    }

    /// Sends `msg` if there is room now (see [`Channel::try_send`]).
    pub fn try_send(&mut self, msg: &T) -> Result<(), SendError> {
        self.send_with(msg, Some(Duration::ZERO))
    }

    fn send_with(&mut self, msg: &T, timeout: Option<Duration>) -> Result<(), SendError> {
        self.buf.clear();
        codec::encode(msg, &mut self.buf).map_err(|e| SendError::Encode(Box::new(e)))?;
        let mode = self.inner.send_mode();
        self.inner.send_with(&self.buf, mode, timeout)
    }

    /// Receives and decodes the next message (see [`Channel::recv`]). A message that does
    /// not decode is consumed and reported as [`RecvError::Decode`].
    pub fn recv(&mut self) -> Result<T, RecvError> {
        self.recv_with(None)
    }

    /// Like [`recv`](Self::recv), giving up after `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvError> {
        self.recv_with(Some(timeout))
    }

    /// The next message if one is there now.
    pub fn try_recv(&mut self) -> Result<T, RecvError> {
        self.recv_with(Some(Duration::ZERO))
    }

    fn recv_with(&mut self, timeout: Option<Duration>) -> Result<T, RecvError> {
        // Decoded straight from the transport's bytes (in place on shm).
        self.inner
            .recv_in_place(timeout, codec::decode::<T>)?
            .map_err(|e| RecvError::Decode(Box::new(e)))
    }
}

impl<T: Message> std::fmt::Debug for TypedChannel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedChannel").field("inner", &self.inner).finish_non_exhaustive()
    }
}
