//! RPC servers: a listening endpoint, an accept thread, and one thread per connected client
//! running the user's handler.
//!
//! A client that dies only ends its own connection thread. Requests of one client are
//! handled one after the other in arrival order (a client with several calls in flight gets
//! its responses in that order); clients are served in parallel. A unary handler
//! ([`serve`](RpcServer::serve), [`serve_in_place`](RpcServer::serve_in_place)) answers a
//! request that finds nothing queued before it straight from the receive buffer (on shm, the
//! ring itself): no copy of the request, no queue, no clock read. Shutdown (an explicit
//! [`ServerHandle::shutdown`], the stop flag, or dropping the handle) stops accepting and ends
//! every connection within about 50 ms once its handler returns; a handler stuck for good is
//! left behind (detached) after the bounded wait.

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::envelope::{self, Body, Envelope, ErrorCode, Kind, HEADER_LEN};
use super::session::{CallId, Queued, ServerSession, MAX_QUEUED};
use super::{rpc_contract, BindError, Payload, Raw};
use crate::channel::{
    AcceptError, Channel, ChannelBuilder, Listener, RecvError, Reply, SendError, SendMode,
};
use crate::codec::EncodeError;
use crate::namespace::Namespace;
use crate::node::{Node, Resource};
use crate::service::{Pattern, Service};
use crate::Transport;

/// How long dropping a [`ServerHandle`] waits for its threads.
pub const DEFAULT_SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// How often blocked server threads look at the stop flag.
const SLICE: Duration = Duration::from_millis(50);
/// How long a response waits for room in the channel between looks at the stop flag.
const ROOM_SLICE: Duration = Duration::from_millis(10);

/// A streaming handler.
type HandlerFn<Req, Resp> =
    dyn Fn(Req, &mut Responder<'_, Resp>) -> Result<(), String> + Send + Sync;
/// Why a unary handler failed: the Error envelope's code and text.
type Failure = (ErrorCode, String);
/// A unary handler on encoded bytes: appends the encoded response to `out`.
type UnaryFn = dyn Fn(&[u8], &mut Vec<u8>) -> Result<(), Failure> + Send + Sync;

/// What every connection thread runs.
enum Handler<Req: Payload, Resp: Payload> {
    /// One response per request, answered in place when nothing is queued.
    Unary(Arc<UnaryFn>),
    /// Any number of responses per request, through a [`Responder`].
    Stream(Arc<HandlerFn<Req, Resp>>),
}

impl<Req: Payload, Resp: Payload> Clone for Handler<Req, Resp> {
    fn clone(&self) -> Self {
        match self {
            Handler::Unary(f) => Handler::Unary(f.clone()),
            Handler::Stream(f) => Handler::Stream(f.clone()),
        }
    }
}

/// A bound RPC service, not serving yet: start it with [`serve`](Self::serve) or
/// [`serve_stream`](Self::serve_stream).
pub struct RpcServer<Req: Payload, Resp: Payload> {
    listener: Listener,
    /// The service descriptor, when created through a node (removed when the server ends).
    service: Option<Service>,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req: Payload, Resp: Payload> RpcServer<Req, Resp> {
    /// Listens as service `name` over `transport` in `ns`.
    pub fn bind(ns: &Namespace, name: &str, transport: Transport) -> Result<Self, BindError> {
        Self::bind_with(Channel::builder(name, transport).namespace(ns.clone()))
    }

    /// Listens with a channel builder's options (its contract is replaced by
    /// [`rpc_contract::<Req, Resp>`](rpc_contract)).
    pub fn bind_with(builder: ChannelBuilder) -> Result<Self, BindError> {
        let listener = builder.contract(rpc_contract::<Req, Resp>()?).listen()?;
        Ok(RpcServer { listener, service: None, _types: PhantomData })
    }

    /// Creates service `name` (pattern `rpc`) owned by `node`, so `ipcx ls` and discovery
    /// see it and a cleaner removes it if the node dies, then listens over `transport` in the
    /// node's namespace. The descriptor is written first and the endpoint registered as the
    /// node's resource, so a crash at any point leaves nothing a cleaner does not remove.
    pub fn create(node: &Node, name: &str, transport: Transport) -> Result<Self, BindError> {
        let ns = node.namespace().clone();
        let contract = rpc_contract::<Req, Resp>()?;
        let endpoint = ns.dir().join(format!("{name}.{}", transport.name()));
        let service = Service::builder(name, Pattern::Rpc)
            .transport(transport)
            .contract(contract)
            .endpoint(endpoint.display().to_string())
            .create(node)
            .map_err(|e| BindError::Service(Box::new(e)))?;
        node.register_resource(Resource::Path { path: endpoint })
            .map_err(|e| BindError::Service(Box::new(e)))?;
        let mut server = Self::bind_with(Channel::builder(name, transport).namespace(ns))?;
        server.service = Some(service);
        Ok(server)
    }

    /// The endpoint file clients connect to.
    pub fn path(&self) -> &Path {
        self.listener.path()
    }

    /// Serves every client with `handler`, one response per request; an `Err(text)` becomes
    /// a [`CallError::Remote`](super::CallError::Remote) at the client. Returns at once.
    pub fn serve<F>(self, handler: F) -> ServerHandle
    where
        F: Fn(Req) -> Result<Resp, String> + Send + Sync + 'static,
    {
        let unary = move |bytes: &[u8], out: &mut Vec<u8>| {
            let req = Req::decode(bytes).map_err(|e| (ErrorCode::BadRequest, e.to_string()))?;
            let resp = handler(req).map_err(|text| (ErrorCode::Handler, text))?;
            resp.encode(out)
                .map_err(|e| (ErrorCode::Internal, format!("cannot encode the response: {e}")))
        };
        self.start(Handler::Unary(Arc::new(unary)))
    }

    /// Serves every client with a streaming `handler`: it sends any number of chunks with
    /// [`Responder::send`]; the stream ends when it returns (or calls
    /// [`Responder::end`]). Returns at once.
    pub fn serve_stream<F>(self, handler: F) -> ServerHandle
    where
        F: Fn(Req, &mut Responder<'_, Resp>) -> Result<(), String> + Send + Sync + 'static,
    {
        self.start(Handler::Stream(Arc::new(handler)))
    }

    /// Starts the accept thread.
    fn start(self, handler: Handler<Req, Resp>) -> ServerHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let path = self.listener.path().to_owned();
        let transport = self.listener.transport();
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let listener = self.listener;
        let service = self.service;
        let accept = thread::Builder::new()
            .name("ipcx-rpc-accept".into())
            .spawn(move || {
                accept_loop(listener, handler, stop2, conns2);
                // The descriptor goes when the server stops accepting.
                drop(service);
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the rpc accept thread"))
            .ok();
        ServerHandle { stop, accept, conns, path, transport }
    }

    /// Serves with `handler` until `stop` is set or `timeout` passes, then shuts down
    /// (waiting at most [`DEFAULT_SHUTDOWN_WAIT`]); whether every thread ended.
    pub fn serve_until<F>(self, handler: F, stop: &AtomicBool, timeout: Option<Duration>) -> bool
    where
        F: Fn(Req) -> Result<Resp, String> + Send + Sync + 'static,
    {
        let handle = self.serve(handler);
        let end = timeout.and_then(|t| Instant::now().checked_add(t));
        while !stop.load(Ordering::Relaxed) && end.is_none_or(|e| Instant::now() < e) {
            thread::sleep(Duration::from_millis(10));
        }
        handle.shutdown(DEFAULT_SHUTDOWN_WAIT)
    }
}

impl RpcServer<Raw, Raw> {
    /// Serves every client with a `handler` that reads the request where it lies (on shm, in
    /// the ring: zero copy) and appends its response to `out` (empty at the call); the
    /// response is sent when it returns. An `Err(text)` becomes a
    /// [`CallError::Remote`](super::CallError::Remote) at the client. Returns at once.
    pub fn serve_in_place<F>(self, handler: F) -> ServerHandle
    where
        F: Fn(&[u8], &mut Vec<u8>) -> Result<(), String> + Send + Sync + 'static,
    {
        let unary = move |req: &[u8], out: &mut Vec<u8>| {
            handler(req, out).map_err(|text| (ErrorCode::Handler, text))
        };
        self.start(Handler::Unary(Arc::new(unary)))
    }
}

impl<Req: Payload, Resp: Payload> std::fmt::Debug for RpcServer<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer").field("listener", &self.listener).finish()
    }
}

/// A running server; dropping it shuts the server down (see [`shutdown`](Self::shutdown)).
#[derive(Debug)]
pub struct ServerHandle {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    path: PathBuf,
    transport: Transport,
}

impl ServerHandle {
    /// The flag that stops the server when set (shutdown without waiting).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The endpoint file clients connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Connection threads still running.
    pub fn connections(&self) -> usize {
        lock(&self.conns).iter().filter(|h| !h.is_finished()).count()
    }

    /// Stops accepting, closes every connection once its handler returns, and waits at most
    /// `max_wait` for the threads; whether all of them ended (the others are detached).
    pub fn shutdown(mut self, max_wait: Duration) -> bool {
        self.stop_and_join(max_wait)
    }

    fn stop_and_join(&mut self, max_wait: Duration) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        let end = Instant::now() + max_wait;
        let mut all = join_until(self.accept.take(), end);
        // The accept thread has ended (or is detached): no more connections appear.
        for h in std::mem::take(&mut *lock(&self.conns)) {
            all &= join_until(Some(h), end);
        }
        all
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.accept.is_some() || !lock(&self.conns).is_empty() {
            self.stop_and_join(DEFAULT_SHUTDOWN_WAIT);
        }
    }
}

/// Joins `handle` if it ends by `end`; whether it did (or there was none).
fn join_until(handle: Option<JoinHandle<()>>, end: Instant) -> bool {
    let Some(handle) = handle else { return true };
    while !handle.is_finished() {
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(2));
    }
    handle.join().is_ok()
}

/// Locks, ignoring poisoning (the list stays consistent: pushes and takes only).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Accepts clients until stopped, one thread each.
fn accept_loop<Req: Payload, Resp: Payload>(
    mut listener: Listener,
    handler: Handler<Req, Resp>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept_timeout(SLICE) {
            Ok(ch) => {
                let (handler, stop) = (handler.clone(), stop.clone());
                let spawned = thread::Builder::new()
                    .name("ipcx-rpc-conn".into())
                    .spawn(move || serve_connection(ch, &handler, &stop));
                match spawned {
                    Ok(h) => {
                        let mut conns = lock(&conns);
                        conns.retain(|h| !h.is_finished());
                        conns.push(h);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot start an rpc connection thread"),
                }
            }
            Err(AcceptError::Timeout) => {}
            Err(e) => {
                tracing::warn!(error = %e, "rpc accept failed");
                thread::sleep(SLICE);
            }
        }
    }
}

/// Serves one client until it leaves, breaks the protocol, or the server stops.
fn serve_connection<Req: Payload, Resp: Payload>(
    ch: Channel,
    handler: &Handler<Req, Resp>,
    stop: &AtomicBool,
) {
    let mut conn = Conn {
        ch,
        session: ServerSession::new(),
        buf: Vec::new(),
        body: Vec::new(),
        gone: false,
        clock: Instant::now(),
    };
    let unary = match handler {
        Handler::Unary(f) => Some(&**f),
        Handler::Stream(_) => None,
    };
    while !conn.gone && !stop.load(Ordering::Relaxed) {
        if conn.session.queued() == 0 {
            // Wakes up at least every SLICE to look at `stop` (earlier when the clock is
            // stale: then it is read again). A request answered in place is sent by the
            // receive itself; only one that found the channel full is sent here.
            match conn.take_in_until(conn.clock + SLICE, unary) {
                Some(Took::Answered(Reply::Full)) => {
                    let _ = conn.send_buf(stop);
                }
                Some(Took::Answered(Reply::Failed)) => conn.gone = true,
                Some(Took::Answered(_) | Took::Queued) => {}
                None => conn.clock = Instant::now(),
            }
            continue;
        }
        // A queued request waited behind others: it may have expired meanwhile.
        let Some(q) = conn.session.next(Instant::now()) else { continue };
        match handler {
            Handler::Unary(f) => {
                let max = conn.ch.max_message();
                answer(&mut conn.buf, &mut conn.body, q.id, &q.payload, &**f, max);
                let _ = conn.send_buf(stop);
            }
            Handler::Stream(handler) => stream(&mut conn, q, &**handler, stop),
        }
        conn.session.finish();
    }
}

/// Handles request `q` with a streaming handler.
fn stream<Req: Payload, Resp: Payload>(
    conn: &mut Conn,
    q: Queued,
    handler: &HandlerFn<Req, Resp>,
    stop: &AtomicBool,
) {
    let mut r = Responder {
        conn,
        id: q.id,
        deadline: q.deadline,
        state: State::Open,
        stop,
        _type: PhantomData,
    };
    let outcome = match Req::from_vec(q.payload) {
        Err(e) => Err((ErrorCode::BadRequest, e.to_string())),
        Ok(req) => match catch_unwind(AssertUnwindSafe(|| handler(req, &mut r))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(text)) => Err((ErrorCode::Handler, text)),
            Err(_) => Err((ErrorCode::Internal, "the handler panicked".to_owned())),
        },
    };
    if !(r.state == State::Ended || r.conn.gone || r.conn.session.is_cancelled(r.id)) {
        let _ = match outcome {
            Ok(()) => r.end(),
            Err((code, text)) => r.fail(code, &text),
        };
    }
}

/// Runs a unary handler on request `id`, its response going to `body` (cleared first), and
/// leaves the response envelope's header in `out`, to be sent followed by `body`; or, if
/// the handler failed, the whole Error envelope in `out` and `body` empty. `max` is the
/// largest message the channel sends.
fn answer(
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
    id: CallId,
    req: &[u8],
    handler: &UnaryFn,
    max: usize,
) {
    body.clear();
    let failure = match catch_unwind(AssertUnwindSafe(|| handler(req, body))) {
        Ok(Ok(())) if body.len() + HEADER_LEN <= max => {
            out.clear();
            envelope::write_header(out, Kind::Response, id.0, None);
            return;
        }
        Ok(Ok(())) => {
            let len = body.len();
            let max = max.saturating_sub(HEADER_LEN);
            let text = format!(
                "the response of {len} bytes exceeds the channel's limit of {max} bytes; raise \
                 max_message on both sides"
            );
            (ErrorCode::Internal, text)
        }
        Ok(Err(failure)) => failure,
        Err(_) => (ErrorCode::Internal, "the handler panicked".to_owned()),
    };
    body.clear();
    write_error(out, id, failure.0, &failure.1, max);
}

/// Leaves an Error envelope for call `id` in `out`, its text cut to fit `max` bytes.
fn write_error(out: &mut Vec<u8>, id: CallId, code: ErrorCode, text: &str, max: usize) {
    let room = max.saturating_sub(HEADER_LEN + 2);
    let mut cut = text.len().min(room);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    out.clear();
    envelope::encode(&Envelope { id: id.0, body: Body::Error { code, text: &text[..cut] } }, out);
}

/// One connection's channel and session.
struct Conn {
    ch: Channel,
    session: ServerSession,
    /// The envelope being sent (or its header, followed by `body`).
    buf: Vec<u8>,
    /// A unary handler's response, sent after `buf`; empty for every other message.
    body: Vec<u8>,
    gone: bool,
    /// The last clock reading (the end of an idle wait, or a request queued).
    clock: Instant,
}

/// What a receive did with the envelope it brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Took {
    /// A request, answered in place; what became of the response (on [`Reply::Full`] it
    /// is still in the connection's buffer).
    Answered(Reply),
    /// Taken into the session (queued, or a cancel).
    Queued,
}

/// What one receive of a connection returned.
type Got = Result<Result<Took, String>, RecvError>;

impl Conn {
    /// Receives at most one envelope into the session, waiting at most `timeout`; whether one
    /// came.
    fn take_in(&mut self, timeout: Option<Duration>) -> bool {
        let Conn { session, clock, .. } = self;
        let got = self.ch.recv_in_place(timeout, |bytes| take(session, clock, None, bytes));
        self.took(got).is_some()
    }

    /// Receives at most one envelope, waiting until `deadline`: a request that finds nothing
    /// queued is answered in place by `unary` (if given), its response sent by the same call
    /// into the channel; anything else goes to the session.
    fn take_in_until(&mut self, deadline: Instant, unary: Option<&UnaryFn>) -> Option<Took> {
        let max = self.ch.max_message();
        let Conn { ch, session, clock, buf, body, .. } = self;
        let got = ch.recv_reply_until(Some(deadline), buf, body, |bytes, out, body| {
            let unary = unary.map(|f| Answer { handler: f, out, body, max });
            let took = take(session, clock, unary, bytes);
            let answered = matches!(took, Ok(Took::Answered(_)));
            (took, answered)
        });
        self.took(got.map(|(took, reply)| match took {
            Ok(Took::Answered(_)) => Ok(Took::Answered(reply)),
            other => other,
        }))
    }

    /// Whether a receive brought an envelope; marks the connection gone if it ended.
    fn took(&mut self, got: Got) -> Option<Took> {
        match got {
            Ok(Ok(took)) => Some(took),
            Ok(Err(bad)) => {
                tracing::warn!(error = %bad, "rpc client broke the protocol; closing its connection");
                self.gone = true;
                None
            }
            Err(RecvError::Timeout | RecvError::Empty) => None,
            Err(e) => {
                tracing::debug!(error = %e, "rpc client left");
                self.gone = true;
                None
            }
        }
    }

    /// Sends `self.buf` followed by `self.body`; while the channel is full, waits for room
    /// (looking at `stop` every [`ROOM_SLICE`]). It takes no requests in meanwhile: a client
    /// that does not read its responses is held back by its own full request channel, not
    /// buffered here until it counts as a flood (an ipcx client takes responses in whenever
    /// its requests cannot go out, so the two never wait on each other).
    fn send_buf(&mut self, stop: &AtomicBool) -> Result<(), RespondError> {
        loop {
            let (head, body) = (&self.buf, &self.body);
            match self.ch.send_parts(head, body, SendMode::Buffered, Some(ROOM_SLICE)) {
                Ok(()) => return Ok(()),
                Err(SendError::Full | SendError::Timeout) => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(RespondError::ShuttingDown);
                    }
                }
                Err(SendError::PeerGone | SendError::Broken(_)) => {
                    self.gone = true;
                    return Err(RespondError::ClientGone);
                }
                Err(e) => return Err(RespondError::Send(e)),
            }
        }
    }
}

/// How [`take`] answers a request in place (see [`answer`]).
struct Answer<'a> {
    handler: &'a UnaryFn,
    out: &'a mut Vec<u8>,
    body: &'a mut Vec<u8>,
    max: usize,
}

/// Decodes one envelope from the client: a request that finds nothing queued is answered
/// with `unary`, if given; anything else goes into the session, stamped with the time it
/// came (read only then).
fn take(
    session: &mut ServerSession,
    clock: &mut Instant,
    unary: Option<Answer<'_>>,
    bytes: &[u8],
) -> Result<Took, String> {
    // A request that has just come with nothing ahead of it: its deadline has not passed.
    // (`plain` takes every valid request; anything else is decoded below.)
    if let Some(a) = unary.filter(|_| session.queued() == 0) {
        if let Some((id, payload)) = envelope::plain(bytes, Kind::Request) {
            answer(a.out, a.body, CallId(id), payload, a.handler, a.max);
            return Ok(Took::Answered(Reply::None));
        }
    }
    let env = envelope::decode(bytes).map_err(|e| e.to_string())?;
    let now = Instant::now();
    *clock = now;
    session.handle(env, now).map_err(|e| e.to_string())?;
    Ok(Took::Queued)
}

/// Where a response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Streaming,
    Ended,
}

/// Sends the response(s) to one request, from inside a handler.
pub struct Responder<'a, Resp: Payload> {
    conn: &'a mut Conn,
    id: CallId,
    deadline: Option<Instant>,
    state: State,
    stop: &'a AtomicBool,
    _type: PhantomData<fn(Resp)>,
}

impl<Resp: Payload> Responder<'_, Resp> {
    /// The request's id on its connection.
    pub fn id(&self) -> CallId {
        self.id
    }

    /// When the client stops waiting (by our clock; a little late, never early), if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the client cancelled this request (or left): stop working on it. Takes in
    /// what the client sent meanwhile, up to the queue's limit ([`MAX_QUEUED`] requests):
    /// the rest stays in the channel, holding the client back, so a client that starts
    /// many calls while a long stream runs is not taken for a flood (a Cancel behind them
    /// is seen once the queue has room).
    pub fn is_cancelled(&mut self) -> bool {
        while !self.conn.gone
            && self.conn.session.queued() < MAX_QUEUED
            && self.conn.take_in(Some(Duration::ZERO))
        {}
        self.conn.gone || self.conn.session.is_cancelled(self.id)
    }

    /// Sends one chunk of a streamed response.
    pub fn send(&mut self, chunk: &Resp) -> Result<(), RespondError> {
        self.emit(Kind::ResponseChunk, Some(chunk))?;
        self.state = State::Streaming;
        Ok(())
    }

    /// Sends the one response (a plain call's answer); the call is over.
    pub fn reply(&mut self, resp: &Resp) -> Result<(), RespondError> {
        if self.state == State::Streaming {
            return Err(RespondError::Streaming);
        }
        self.emit(Kind::Response, Some(resp))?;
        self.state = State::Ended;
        Ok(())
    }

    /// Ends a streamed response (also done when the handler returns `Ok`).
    pub fn end(&mut self) -> Result<(), RespondError> {
        self.emit(Kind::ResponseEnd, None)?;
        self.state = State::Ended;
        Ok(())
    }

    /// Fails the call with an Error envelope; the text is cut to fit the channel.
    fn fail(&mut self, code: ErrorCode, text: &str) -> Result<(), RespondError> {
        if self.state == State::Ended {
            return Err(RespondError::Ended);
        }
        write_error(&mut self.conn.buf, self.id, code, text, self.conn.ch.max_message());
        self.conn.body.clear();
        self.state = State::Ended;
        self.conn.send_buf(self.stop)
    }

    /// Encodes and sends an envelope of `kind` carrying `msg`.
    fn emit(&mut self, kind: Kind, msg: Option<&Resp>) -> Result<(), RespondError> {
        if self.state == State::Ended {
            return Err(RespondError::Ended);
        }
        // Only a stream looks for a Cancel before each part (it costs a receive attempt); a
        // last envelope goes out anyway, and the client drops it if it gave up.
        if kind == Kind::ResponseChunk && self.is_cancelled() {
            return Err(if self.conn.gone {
                RespondError::ClientGone
            } else {
                RespondError::Cancelled
            });
        }
        self.conn.buf.clear();
        self.conn.body.clear();
        envelope::write_header(&mut self.conn.buf, kind, self.id.0, None);
        if let Some(msg) = msg {
            msg.encode(&mut self.conn.buf).map_err(RespondError::Encode)?;
        }
        self.conn.send_buf(self.stop)
    }
}

impl<Resp: Payload> std::fmt::Debug for Responder<'_, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").field("id", &self.id).field("state", &self.state).finish()
    }
}

/// A response could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    /// The client cancelled the call (it timed out or gave up): stop working on it.
    #[error("the client cancelled the call; stop working on it")]
    Cancelled,
    /// The client is gone: stop working on it.
    #[error("the client is gone")]
    ClientGone,
    /// The server is shutting down: return from the handler.
    #[error("the server is shutting down; return from the handler")]
    ShuttingDown,
    /// The response is already complete (after `reply`, `end`, or an error).
    #[error("the response is already complete; send nothing after reply or end")]
    Ended,
    /// `reply` after `send`: a streamed response ends with `end`, not `reply`.
    #[error("the response is being streamed; send the last part with send, then end")]
    Streaming,
    /// The response could not be encoded.
    #[error("cannot encode the response")]
    Encode(#[source] EncodeError),
    /// The response could not be sent (e.g. too large for the channel).
    #[error("cannot send the response")]
    Send(#[source] SendError),
}
