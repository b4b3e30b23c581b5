//! RPC clients: one connection, used by one thread, with any number of calls in flight.

use std::marker::PhantomData;
use std::thread;
use std::time::{Duration, Instant};

use super::envelope::{self, Body, Kind};
use super::session::{CallId, ClientSession, Event, WrongDirection, MAX_UNREAD_CHUNKS};
use super::{rpc_contract, CallError, Payload, Raw, RpcConnectError};
use crate::channel::{Channel, ChannelBuilder, ConnectError, RecvError, SendError, SendMode};
use crate::codec::EncodeError;
use crate::namespace::Namespace;
use crate::Transport;

/// First pause of [`RpcClient::connect_with_backoff`]; it doubles after each failed attempt.
const BACKOFF_START: Duration = Duration::from_millis(10);
/// Longest pause of [`RpcClient::connect_with_backoff`].
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How long a request send waits for incoming responses while the channel is full.
const FULL_PAUSE: Duration = Duration::from_millis(1);

/// A typed RPC client: requests `Req`, responses `Resp`.
pub struct RpcClient<Req: Payload, Resp: Payload> {
    core: Core,
    _types: PhantomData<fn(Req) -> Resp>,
}

/// An untyped RPC client: bytes in, bytes out (contract `rpc:ipcx.raw/ipcx.raw`).
#[derive(Debug)]
pub struct RawRpcClient {
    inner: RpcClient<Raw, Raw>,
}

/// The untyped machinery under both clients.
struct Core {
    ch: Channel,
    session: ClientSession,
    buf: Vec<u8>,
    gone: bool,
}

impl<Req: Payload, Resp: Payload> RpcClient<Req, Resp> {
    /// Connects to the service `name` over `transport` in `ns`, waiting at most `timeout`.
    pub fn connect(
        ns: &Namespace,
        name: &str,
        transport: Transport,
        timeout: Duration,
    ) -> Result<Self, RpcConnectError> {
        Self::connect_with(Channel::builder(name, transport).namespace(ns.clone()), timeout)
    }

    /// Connects with a channel builder's options (its contract is replaced by
    /// [`rpc_contract::<Req, Resp>`](rpc_contract)), waiting at most `timeout`.
    pub fn connect_with(
        builder: ChannelBuilder,
        timeout: Duration,
    ) -> Result<Self, RpcConnectError> {
        let ch = builder.contract(rpc_contract::<Req, Resp>()?).connect_timeout(timeout)?;
        Ok(Self::from_channel(ch))
    }

    /// Connects, retrying while nobody serves the name yet (or the server is restarting),
    /// with pauses of 10 ms doubling up to 500 ms, until `max_wait` has passed.
    pub fn connect_with_backoff(
        builder: ChannelBuilder,
        max_wait: Duration,
    ) -> Result<Self, RpcConnectError> {
        let builder = builder.contract(rpc_contract::<Req, Resp>()?);
        let start = Instant::now();
        let mut pause = BACKOFF_START;
        loop {
            let left = max_wait.saturating_sub(start.elapsed()).max(Duration::from_millis(1));
            match builder.clone().connect_timeout(left) {
                Ok(ch) => return Ok(Self::from_channel(ch)),
                Err(ConnectError::NoListener { .. } | ConnectError::PeerGone)
                    if start.elapsed() + pause < max_wait =>
                {
                    thread::sleep(pause);
                    pause = (pause * 2).min(BACKOFF_MAX);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A client over an established channel (whose contract must be the RPC contract).
    fn from_channel(ch: Channel) -> Self {
        let core = Core { ch, session: ClientSession::new(), buf: Vec::new(), gone: false };
        RpcClient { core, _types: PhantomData }
    }

    /// The channel underneath (transport, peer, limits).
    pub fn channel(&self) -> &Channel {
        &self.core.ch
    }

    /// Whether the server is known to be gone (every call fails with
    /// [`CallError::ServerGone`]; reconnect).
    pub fn is_gone(&self) -> bool {
        self.core.gone
    }

    /// Calls in flight (started, result not yet taken).
    pub fn in_flight(&self) -> usize {
        self.core.session.in_flight()
    }

    /// Sends `req` and waits for its response, at most `timeout`.
    pub fn call(&mut self, req: &Req, timeout: Duration) -> Result<Resp, CallError> {
        let id = self.start(req, Some(timeout))?;
        self.wait(id, None)
    }

    /// Sends `req` and returns at once; the call ends after `timeout` (`None`: when the
    /// server answers or dies). Collect the response with [`wait`](Self::wait) or
    /// [`poll`](Self::poll), in any order.
    pub fn start(&mut self, req: &Req, timeout: Option<Duration>) -> Result<CallId, CallError> {
        self.core.start_with(timeout, |out| req.encode(out), None)
    }

    /// Waits for the response of call `id`, at most `timeout` (`None`: until the call's own
    /// deadline). [`CallError::Pending`] if `timeout` passed first: the call stays in flight.
    pub fn wait(&mut self, id: CallId, timeout: Option<Duration>) -> Result<Resp, CallError> {
        let until = timeout.and_then(|t| Instant::now().checked_add(t));
        let decode = |bytes: &[u8]| Resp::decode(bytes).map_err(CallError::Decode);
        self.core.wait_unary(id, until, decode)
    }

    /// The response of call `id` if it is there now (after taking in whatever arrived).
    pub fn poll(&mut self, id: CallId) -> Result<Option<Resp>, CallError> {
        self.core.drain();
        match self.wait(id, Some(Duration::ZERO)) {
            Err(CallError::Pending) => Ok(None),
            r => r.map(Some),
        }
    }

    /// Responses dropped because their call was unknown or over (given up on, timed out, or
    /// ended for too many unread chunks).
    pub fn dropped(&self) -> u64 {
        self.core.session.dropped()
    }

    /// Gives up on call `id`: its response will be dropped; the server is sent a Cancel.
    pub fn forget(&mut self, id: CallId) {
        if self.core.session.forget(id) {
            self.core.send_cancel(id);
        }
    }

    /// Sends `req` and iterates over its streamed response until the server ends it; the
    /// whole stream must arrive within `timeout`. A unary response is a stream of one.
    /// Dropping the iterator early cancels the call.
    pub fn call_stream(
        &mut self,
        req: &Req,
        timeout: Duration,
    ) -> Result<CallStream<'_, Resp>, CallError> {
        let id = self.start(req, Some(timeout))?;
        Ok(CallStream { core: &mut self.core, id, done: false, _type: PhantomData })
    }
}

impl<Req: Payload, Resp: Payload> std::fmt::Debug for RpcClient<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("channel", &self.core.ch)
            .field("in_flight", &self.core.session.in_flight())
            .field("gone", &self.core.gone)
            .finish()
    }
}

impl RawRpcClient {
    /// Connects (see [`RpcClient::connect`]).
    pub fn connect(
        ns: &Namespace,
        name: &str,
        transport: Transport,
        timeout: Duration,
    ) -> Result<Self, RpcConnectError> {
        Ok(RawRpcClient { inner: RpcClient::connect(ns, name, transport, timeout)? })
    }

    /// Connects with a builder's options (see [`RpcClient::connect_with`]).
    pub fn connect_with(
        builder: ChannelBuilder,
        timeout: Duration,
    ) -> Result<Self, RpcConnectError> {
        Ok(RawRpcClient { inner: RpcClient::connect_with(builder, timeout)? })
    }

    /// Connects with backoff (see [`RpcClient::connect_with_backoff`]).
    pub fn connect_with_backoff(
        builder: ChannelBuilder,
        max_wait: Duration,
    ) -> Result<Self, RpcConnectError> {
        Ok(RawRpcClient { inner: RpcClient::connect_with_backoff(builder, max_wait)? })
    }

    /// Sends `req` and waits for the response, at most `timeout`.
    pub fn call(&mut self, req: &[u8], timeout: Duration) -> Result<Vec<u8>, CallError> {
        let id = self.start(req, Some(timeout))?;
        self.wait(id, None)
    }

    /// Sends `req` (see [`RpcClient::start`]).
    pub fn start(&mut self, req: &[u8], timeout: Option<Duration>) -> Result<CallId, CallError> {
        // The request goes out after the envelope header as it is, not copied behind it.
        self.inner.core.start_with(timeout, |_| Ok(()), Some(req))
    }

    /// Waits for a response (see [`RpcClient::wait`]).
    pub fn wait(&mut self, id: CallId, timeout: Option<Duration>) -> Result<Vec<u8>, CallError> {
        self.inner.wait(id, timeout).map(|Raw(v)| v)
    }

    /// Waits for the response of call `id` (see [`RpcClient::wait`]) and hands it to `f`
    /// where it lies (on shm, in the ring: zero copy); returns what `f` returns.
    pub fn wait_in_place<R>(
        &mut self,
        id: CallId,
        timeout: Option<Duration>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, CallError> {
        let until = timeout.and_then(|t| Instant::now().checked_add(t));
        self.inner.core.wait_unary(id, until, |bytes| Ok(f(bytes)))
    }

    /// Sends `req` and hands its response to `f` where it lies (see
    /// [`wait_in_place`](Self::wait_in_place)), all within `timeout`.
    pub fn call_in_place<R>(
        &mut self,
        req: &[u8],
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, CallError> {
        let id = self.start(req, Some(timeout))?;
        self.wait_in_place(id, None, f)
    }

    /// Takes a response if it is there (see [`RpcClient::poll`]).
    pub fn poll(&mut self, id: CallId) -> Result<Option<Vec<u8>>, CallError> {
        self.inner.poll(id).map(|r| r.map(|Raw(v)| v))
    }

    /// Responses dropped (see [`RpcClient::dropped`]).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    /// Gives up on a call (see [`RpcClient::forget`]).
    pub fn forget(&mut self, id: CallId) {
        self.inner.forget(id);
    }

    /// A streamed call (see [`RpcClient::call_stream`]).
    pub fn call_stream(
        &mut self,
        req: &[u8],
        timeout: Duration,
    ) -> Result<impl Iterator<Item = Result<Vec<u8>, CallError>> + '_, CallError> {
        let id = self.start(req, Some(timeout))?;
        let stream: CallStream<'_, Raw> =
            CallStream { core: &mut self.inner.core, id, done: false, _type: PhantomData };
        Ok(stream.map(|r| r.map(|Raw(v)| v)))
    }

    /// The typed client underneath (`Raw` messages).
    pub fn typed(&mut self) -> &mut RpcClient<Raw, Raw> {
        &mut self.inner
    }
}

/// The responses of a streamed call, in order; ends after the last one. Dropping it early
/// cancels the call.
pub struct CallStream<'a, Resp: Payload> {
    core: &'a mut Core,
    id: CallId,
    done: bool,
    _type: PhantomData<fn() -> Resp>,
}

impl<Resp: Payload> Iterator for CallStream<'_, Resp> {
    type Item = Result<Resp, CallError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let event = self.core.wait_event(self.id, None);
        self.done = !matches!(event, Ok(Event::Chunk(_)));
        match event.and_then(outcome) {
            Ok(Some(p)) => Some(Resp::from_vec(p).map_err(CallError::Decode)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl<Resp: Payload> Drop for CallStream<'_, Resp> {
    fn drop(&mut self) {
        if !self.done && self.core.session.forget(self.id) {
            self.core.send_cancel(self.id);
        }
    }
}

impl<Resp: Payload> std::fmt::Debug for CallStream<'_, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallStream").field("id", &self.id).field("done", &self.done).finish()
    }
}

/// An event's response bytes (`Some`), end of stream (`None`), or failure.
fn outcome(event: Event) -> Result<Option<Vec<u8>>, CallError> {
    match event {
        Event::Response(p) | Event::Chunk(p) => Ok(Some(p)),
        Event::End => Ok(None),
        Event::Error { code, text } => Err(CallError::Remote { code, message: text }),
        Event::Timeout => Err(CallError::Timeout),
        Event::Gone => Err(CallError::ServerGone),
        Event::Overrun => Err(CallError::Overrun { limit: MAX_UNREAD_CHUNKS }),
    }
}

impl Core {
    /// Starts a call whose request is `raw`, or else what `encode` writes. The envelope
    /// header goes out from the stack in front of it; the call is recorded once it is out.
    fn start_with(
        &mut self,
        timeout: Option<Duration>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
        raw: Option<&[u8]>,
    ) -> Result<CallId, CallError> {
        if self.gone {
            return Err(CallError::ServerGone);
        }
        if raw.is_none() {
            self.buf.clear();
            encode(&mut self.buf).map_err(CallError::Encode)?;
        }
        let (id, head) = self.session.header(timeout);
        // The clock is read once the request is out (the server works meanwhile), or at the
        // first full channel: the call's deadline counts from then.
        let mut first_full: Option<Instant> = None;
        // Never block on a full channel while the server may be blocked on us: take in
        // responses between attempts.
        loop {
            let body = raw.unwrap_or(&self.buf);
            match self.ch.send_parts(&head, body, SendMode::Buffered, Some(Duration::ZERO)) {
                Ok(()) => {
                    self.session.begin(id, timeout, first_full.unwrap_or_else(Instant::now));
                    return Ok(id);
                }
                Err(SendError::Full) => {
                    let now = Instant::now();
                    let since = *first_full.get_or_insert(now);
                    if timeout.and_then(|t| since.checked_add(t)).is_some_and(|d| now >= d) {
                        return Err(CallError::Timeout);
                    }
                    self.recv_one(Some(FULL_PAUSE));
                    if self.gone {
                        return Err(CallError::ServerGone);
                    }
                }
                Err(SendError::Timeout) => return Err(CallError::Timeout),
                Err(SendError::PeerGone | SendError::Broken(_)) => {
                    self.die();
                    return Err(CallError::ServerGone);
                }
                Err(e) => return Err(CallError::Send(e)),
            }
        }
    }

    /// The next event of call `id`, waiting until `until` (`None`: the call's deadline).
    fn wait_event(&mut self, id: CallId, until: Option<Instant>) -> Result<Event, CallError> {
        loop {
            if let Some(event) = self.session.take(id) {
                return Ok(event);
            }
            if !self.session.is_known(id) {
                return Err(CallError::UnknownCall(id));
            }
            let now = Instant::now();
            if self.expire(now) {
                continue;
            }
            if until.is_some_and(|u| u <= now) {
                return Err(CallError::Pending);
            }
            let end = match (until, self.session.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.recv_one(end.map(|e| e.saturating_duration_since(now)));
        }
    }

    /// A unary call's result, waiting until `until` (`None`: the call's deadline): its
    /// response goes through `decode`. The direct path: the response to `id` is decoded
    /// straight from the channel's buffer, with no event queued, when nothing else of that
    /// call is waiting.
    fn wait_unary<T>(
        &mut self,
        id: CallId,
        until: Option<Instant>,
        decode: impl FnOnce(&[u8]) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let mut decode = Some(decode);
        // The first receive needs no clock: the channel gives up at the earliest deadline
        // by itself. Only after it returned empty-handed (a timeout, another call's
        // envelope) are deadlines checked against the clock.
        let mut first = true;
        loop {
            match self.session.events_of(id) {
                None => return Err(CallError::UnknownCall(id)),
                Some(0) => {}
                Some(_) => {
                    let event = self.session.take(id).ok_or(CallError::UnknownCall(id))?;
                    return match self.unary(id, event)? {
                        Some(p) => decode.take().map_or(Err(CallError::UnknownCall(id)), |f| f(&p)),
                        None => Err(CallError::EmptyStream),
                    };
                }
            }
            if !first {
                let now = Instant::now();
                if self.expire(now) {
                    continue;
                }
                if until.is_some_and(|u| u <= now) {
                    return Err(CallError::Pending);
                }
            }
            first = false;
            let end = match (until, self.session.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // The value and the error are kept apart, not as one `Option<Result<T, _>>`: that
            // enum, stored field by field, was copied out with wider loads than its stores,
            // which the store buffer cannot forward (the copy waited for the stores to reach
            // the cache: ~2.5 ns of the 6.4 this function took per call in the single-thread
            // `rpc/shm_round` bench, 6–8 cycles of the client's own time across processes).
            let (mut value, mut failure) = (None, None);
            let last = |body: Body<'_>| {
                let result = match body {
                    Body::Response(p) => {
                        decode.take().map_or(Err(CallError::UnknownCall(id)), |f| f(p))
                    }
                    Body::Error { code, text } => {
                        Err(CallError::Remote { code, message: text.to_owned() })
                    }
                    _ => Err(CallError::EmptyStream),
                };
                match result {
                    Ok(v) => value = Some(v),
                    Err(e) => failure = Some(e),
                }
            };
            self.recv_for(id, end, last);
            if let Some(v) = value {
                return Ok(v);
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    /// A unary call's response bytes (`None`: an empty stream) from its event.
    fn unary(&mut self, id: CallId, event: Event) -> Result<Option<Vec<u8>>, CallError> {
        // A streaming handler may answer a plain call: take its first chunk, cancel the rest.
        if matches!(event, Event::Chunk(_)) && self.session.forget(id) {
            self.send_cancel(id);
        }
        outcome(event)
    }

    /// Takes in everything that is there now.
    fn drain(&mut self) {
        while !self.gone && self.recv_one(Some(Duration::ZERO)) {}
        self.expire(Instant::now());
    }

    /// Receives at most one envelope, waiting at most `timeout`; whether one came.
    fn recv_one(&mut self, timeout: Option<Duration>) -> bool {
        if self.gone {
            return false;
        }
        let session = &mut self.session;
        let got = self.ch.recv_in_place(timeout, |bytes| match envelope::decode(bytes) {
            Ok(env) => session.handle(env).map_err(Bad::Direction),
            Err(e) => Err(Bad::Envelope(e)),
        });
        self.cancel_overrun();
        match got {
            Ok(Ok(())) => true,
            Ok(Err(bad)) => {
                tracing::warn!(error = %bad, "rpc server broke the protocol; closing");
                self.die();
                false
            }
            Err(RecvError::Timeout | RecvError::Empty) => false,
            Err(e) => {
                tracing::debug!(error = %e, "rpc connection ended");
                self.die();
                false
            }
        }
    }

    /// Like [`recv_one`](Self::recv_one), but the last envelope of call `want` (see
    /// [`ClientSession::handle_for`]) goes to `f` in place. Waits until `deadline` (`None`:
    /// no deadline). The receive's own result is kept small (a unit or a boxed fault): on
    /// this path every byte of a result moved through memory costs.
    fn recv_for(&mut self, want: CallId, deadline: Option<Instant>, f: impl FnOnce(Body<'_>)) {
        if self.gone {
            return;
        }
        let session = &mut self.session;
        let got = self.ch.recv_in_place_until(deadline, |bytes| -> Result<(), Box<Bad>> {
            // The usual case first: the response awaited (`plain` takes every valid one).
            // Anything else is decoded out of line, which keeps this closure small.
            if let Some((id, payload)) = envelope::plain(bytes, Kind::Response) {
                if id == want.0 && session.end_awaited(want) {
                    f(Body::Response(payload));
                    return Ok(());
                }
            }
            other_for(session, bytes, want, f)
        });
        self.cancel_overrun();
        match got {
            Ok(Ok(())) | Err(RecvError::Timeout | RecvError::Empty) => {}
            Ok(Err(bad)) => {
                tracing::warn!(error = %bad, "rpc server broke the protocol; closing");
                self.die();
            }
            Err(e) => {
                tracing::debug!(error = %e, "rpc connection ended");
                self.die();
            }
        }
    }

    /// Times out the calls whose deadline passed, sending each a Cancel; whether any did.
    fn expire(&mut self, now: Instant) -> bool {
        let expired = self.session.expire(now);
        for id in &expired {
            self.send_cancel(*id);
        }
        !expired.is_empty()
    }

    /// Tells the server to stop the calls the session ended for sending too many unread
    /// chunks.
    fn cancel_overrun(&mut self) {
        while let Some(id) = self.session.take_overrun() {
            self.send_cancel(id);
        }
    }

    /// Tells the server to drop call `id`, if there is room now (best effort).
    fn send_cancel(&mut self, id: CallId) {
        if self.gone {
            return;
        }
        self.buf.clear();
        envelope::write_header(&mut self.buf, Kind::Cancel, id.0, None);
        let _ = self.ch.send_with(&self.buf, SendMode::Buffered, Some(Duration::ZERO));
    }

    /// The server is gone: fail everything in flight.
    fn die(&mut self) {
        self.gone = true;
        self.session.fail_all();
    }
}

/// [`Core::recv_for`]'s envelope when it is not the plain response awaited: decoded and
/// taken into the session, or, if it is the awaited call's last word after all, given to
/// `f`.
#[inline(never)]
fn other_for(
    session: &mut ClientSession,
    bytes: &[u8],
    want: CallId,
    f: impl FnOnce(Body<'_>),
) -> Result<(), Box<Bad>> {
    let env = envelope::decode(bytes).map_err(|e| Box::new(Bad::Envelope(e)))?;
    match session.handle_for(env, want) {
        Ok(Some(body)) => {
            f(body);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(Box::new(Bad::Direction(e))),
    }
}

/// A server message that breaks the protocol.
#[derive(Debug, thiserror::Error)]
enum Bad {
    #[error(transparent)]
    Envelope(envelope::EnvelopeError),
    #[error(transparent)]
    Direction(WrongDirection),
}
