//! Async adapters for tokio (feature `tokio`): [`AsyncChannel`], a [`Channel`] whose waits
//! are futures.
//!
//! Transports with pollable descriptors (`uds-stream`, `uds-seqpacket`, `tcp`, `pipe`,
//! `fifo`, `posix-mq`) wait on tokio's reactor: a receive tries the channel without blocking
//! and, if nothing is there, awaits readability of the data descriptor (and, for
//! `posix-mq`, of the rendezvous socket whose end-of-file announces a dead peer), then
//! tries again. No thread is parked; these futures are cancel-safe (dropping one loses no
//! message). `shm` and `sysv-msg` wait on a futex or a System V queue, which no reactor can
//! watch: there the operation runs on tokio's blocking pool (`spawn_blocking`) with the
//! channel moved into it, in slices of [`BLOCKING_SLICE`] so that a dropped future gives the
//! channel back within a slice; such an operation is not cancel-safe for the message being
//! received in the slice that was running. Acknowledged sends always take the blocking path.
//!
//! Building the channel (listen, accept, connect) stays synchronous: do it in
//! `spawn_blocking` or before the runtime starts, then wrap it with [`AsyncChannel::new`].

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::channel::{Channel, RecvError, SendError, SendMode};

/// How long one blocking-pool slice of a `shm` or `sysv-msg` wait lasts.
pub const BLOCKING_SLICE: Duration = Duration::from_millis(50);

/// A [`Channel`] with async `send` and `recv`.
pub struct AsyncChannel {
    /// The channel; shared with the blocking pool on transports without descriptors.
    inner: Arc<Mutex<Channel>>,
    /// Readiness of the descriptors a receive / a send may wait on (empty: blocking pool).
    read: Vec<AsyncFd<OwnedFd>>,
    write: Vec<AsyncFd<OwnedFd>>,
}

/// Wrapping the channel failed (registering its descriptors with the reactor).
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot register the channel's descriptors with the tokio reactor; call from within a runtime"
)]
pub struct WrapError(#[source] pub std::io::Error);

/// Duplicates `fds` and registers them with the reactor for `interest`.
// `with_interest` is deprecated because a caller could close or reuse the fd while it is
// registered; here each registered fd is a duplicate owned by its `AsyncFd` (closed only when
// the `AsyncFd` drops and deregisters), which is exactly the invariant the unsafe
// `register_with_interest` asks for — and this crate forbids `unsafe`.
#[allow(deprecated)]
fn register(
    fds: &[std::os::fd::BorrowedFd<'_>],
    interest: Interest,
) -> std::io::Result<Vec<AsyncFd<OwnedFd>>> {
    fds.iter().map(|fd| AsyncFd::with_interest(fd.try_clone_to_owned()?, interest)).collect()
}

/// Awaits readiness of any of `fds` and clears it, so the caller retries its operation.
async fn any_ready(fds: &[AsyncFd<OwnedFd>], interest: Interest) -> std::io::Result<()> {
    match fds {
        [a] => a.ready(interest).await.map(|mut g| g.clear_ready()),
        [a, b, ..] => tokio::select! {
            g = a.ready(interest) => g.map(|mut g| g.clear_ready()),
            g = b.ready(interest) => g.map(|mut g| g.clear_ready()),
        },
        [] => Ok(()),
    }
}

impl AsyncChannel {
    /// Wraps `channel`; must be called within a tokio runtime.
    pub fn new(channel: Channel) -> Result<AsyncChannel, WrapError> {
        let (read, write) = match channel.readiness() {
            Some(r) => (
                register(&r.read, Interest::READABLE).map_err(WrapError)?,
                register(&r.write, Interest::WRITABLE).map_err(WrapError)?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(AsyncChannel { inner: Arc::new(Mutex::new(channel)), read, write })
    }

    /// Runs `op` on the channel in the blocking pool.
    async fn blocking<R: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Channel) -> R + Send + 'static,
    ) -> R {
        let inner = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut ch = inner.lock().unwrap_or_else(|p| p.into_inner());
            op(&mut ch)
        });
        match task.await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Locks the channel for a non-blocking call.
    fn lock(&self) -> std::sync::MutexGuard<'_, Channel> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Receives the next message.
    pub async fn recv(&mut self) -> Result<Vec<u8>, RecvError> {
        if self.read.is_empty() {
            // What is there already needs no thread.
            match self.lock().try_recv() {
                Err(RecvError::Empty) => {}
                r => return r,
            }
            loop {
                match self.blocking(|ch| ch.recv_timeout(BLOCKING_SLICE)).await {
                    Err(RecvError::Timeout) => continue,
                    r => return r,
                }
            }
        }
        loop {
            match self.lock().try_recv() {
                Err(RecvError::Empty) => {}
                r => return r,
            }
            any_ready(&self.read, Interest::READABLE)
                .await
                .map_err(|e| RecvError::Os { op: "waiting for readiness", source: Box::new(e) })?;
        }
    }

    /// Sends `msg` in the channel's send mode.
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let buffered = self.lock().send_mode() == SendMode::Buffered;
        if !buffered {
            // Acknowledged: one blocking send (a retry could duplicate the message).
            let msg = msg.to_vec();
            return self.blocking(move |ch| ch.send(&msg)).await;
        }
        if self.write.is_empty() {
            match self.lock().try_send(msg) {
                Err(SendError::Full) => {}
                r => return r,
            }
            let msg = msg.to_vec();
            loop {
                let m = msg.clone();
                // A timed-out buffered send accepted nothing: retrying is safe.
                match self.blocking(move |ch| ch.send_timeout(&m, BLOCKING_SLICE)).await {
                    Err(SendError::Timeout) => continue,
                    r => return r,
                }
            }
        }
        loop {
            match self.lock().try_send(msg) {
                Err(SendError::Full) => {}
                r => return r,
            }
            any_ready(&self.write, Interest::WRITABLE)
                .await
                .map_err(|e| SendError::Os { op: "waiting for readiness", source: Box::new(e) })?;
        }
    }

    /// The channel, for its non-waiting calls.
    pub fn channel(&self) -> std::sync::MutexGuard<'_, Channel> {
        self.lock()
    }
}

impl std::fmt::Debug for AsyncChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncChannel")
            .field("reactor", &!self.read.is_empty())
            .finish_non_exhaustive()
    }
}
