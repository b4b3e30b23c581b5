//! The RPC state machines, without I/O: what a client has in flight and what a server
//! connection has queued. The adapters ([`client`](super::client), [`server`](super::server))
//! move bytes between these and a [`Channel`](crate::Channel); tests drive them in memory.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::envelope::{self, Body, Envelope, ErrorCode, Kind};

/// Identifies one call of one client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// What happened to a call, in order; the last event of a call is anything but
/// [`Event::Chunk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The one response.
    Response(Vec<u8>),
    /// A chunk of a streamed response.
    Chunk(Vec<u8>),
    /// The streamed response is complete.
    End,
    /// The server failed the call.
    Error {
        /// Why.
        code: ErrorCode,
        /// The server's text.
        text: String,
    },
    /// The call's deadline passed first.
    Timeout,
    /// The server went away (or broke the protocol) first.
    Gone,
    /// The server sent more than [`MAX_UNREAD_CHUNKS`] chunks of a streamed response while
    /// the call was not being read: the client ended it (and sends the server a Cancel).
    Overrun,
}

impl Event {
    /// Whether the call is over after this event.
    fn is_last(&self) -> bool {
        !matches!(self, Event::Chunk(_))
    }
}

/// An envelope that does not belong in this direction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the peer sent a {kind:?} envelope, which only the other side may send; the peer is broken: close the connection")]
pub struct WrongDirection {
    /// The kind received.
    pub kind: Kind,
}

/// What a client did wrong, as the server's session sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientFault {
    /// An envelope only a server sends.
    #[error(transparent)]
    WrongDirection(#[from] WrongDirection),
    /// More requests queued than [`MAX_QUEUED`]: the client floods; our memory is not its
    /// buffer.
    #[error("the client has {queued} requests queued, more than a server keeps; the peer is broken: close the connection")]
    Flood {
        /// Requests queued.
        queued: usize,
    },
}

/// Most requests a server session keeps queued for one client.
pub const MAX_QUEUED: usize = 1024;

/// Most chunks of one streamed response a client session keeps while nobody reads them
/// (the client waits on another call, or does not iterate the stream): the server decides
/// how many chunks it sends, and our memory is not its buffer.
pub const MAX_UNREAD_CHUNKS: u32 = 1024;

/// One call in flight: 32 bytes, pushed and removed once per call. Its events not yet taken
/// wait in the session's queue ([`ClientSession::events`]); a unary call answered while it
/// was awaited has none (its response goes straight to the caller,
/// [`ClientSession::handle_for`]).
#[derive(Debug)]
struct Call {
    id: u64,
    /// When it ends (`None`: never, no timeout or one too long to represent).
    due: Option<Instant>,
    /// Events of this call in the session's queue.
    queued: u32,
    finished: bool,
}

impl Call {
    fn deadline(&self) -> Option<Instant> {
        self.due
    }
}

/// The client side of one connection: ids, deadlines, and responses matched to calls.
///
/// Calls are kept in a vector in id order (ids only grow, so starting one appends): with
/// the usual handful in flight a binary search beats hashing, and nothing is allocated per
/// call once the vector has grown.
#[derive(Debug, Default)]
pub struct ClientSession {
    next_id: u64,
    calls: Vec<Call>,
    /// Events not yet taken, of every call, in arrival order.
    events: VecDeque<(u64, Event)>,
    dropped: u64,
    /// Calls ended with [`Event::Overrun`] whose Cancel is still to be sent.
    overrun: Vec<CallId>,
}

impl ClientSession {
    /// A session with nothing in flight; the first call gets id 1.
    pub fn new() -> ClientSession {
        ClientSession {
            next_id: 1,
            calls: Vec::new(),
            events: VecDeque::new(),
            dropped: 0,
            overrun: Vec::new(),
        }
    }

    /// Forgets the call at `i`. Mostly it is the one started last: popped, with no call
    /// into `memmove` for the nothing behind it (on the path from a response to the next
    /// request).
    fn remove_at(&mut self, i: usize) -> Call {
        if i + 1 == self.calls.len() {
            if let Some(call) = self.calls.pop() {
                return call;
            }
        }
        self.calls.remove(i)
    }

    fn index(&self, id: u64) -> Option<usize> {
        // Mostly the call awaited is the one started last.
        match self.calls.last() {
            Some(last) if last.id == id => Some(self.calls.len() - 1),
            _ => self.calls.binary_search_by_key(&id, |c| c.id).ok(),
        }
    }

    /// The id and Request header of the next call, which ends `timeout` after it is sent
    /// (never, if `None`). Nothing is recorded yet: the caller sends the header and the
    /// request, then [`begin`](Self::begin)s the call. All the bookkeeping comes after the
    /// send, off the path from one call's response to the next call's request.
    pub fn header(&self, timeout: Option<Duration>) -> (CallId, [u8; envelope::HEADER_LEN]) {
        (CallId(self.next_id), envelope::header(Kind::Request, self.next_id, timeout))
    }

    /// Records call `id` (the one [`header`](Self::header) named) as sent at `now` (or
    /// earlier): it ends at `now` + `timeout`. Reading the clock after the send, not before,
    /// makes the deadline a little late, never early.
    pub fn begin(&mut self, id: CallId, timeout: Option<Duration>, now: Instant) {
        self.next_id = self.next_id.max(id.0 + 1);
        let due = timeout.and_then(|t| now.checked_add(t));
        self.calls.push(Call { id: id.0, due, queued: 0, finished: false });
    }

    /// [`header`](Self::header) appended to `out`, then [`begin`](Self::begin) at `now`:
    /// a call sent at once (for drivers that send in memory).
    pub fn start(&mut self, timeout: Option<Duration>, now: Instant, out: &mut Vec<u8>) -> CallId {
        let (id, header) = self.header(timeout);
        out.extend_from_slice(&header);
        self.begin(id, timeout, now);
        id
    }

    /// Takes in one envelope from the server. Envelopes for calls that are unknown or over
    /// are dropped (counted in [`dropped`](Self::dropped)). A chunk beyond
    /// [`MAX_UNREAD_CHUNKS`] unread ones of its call ends that call: its queued events are
    /// dropped, [`Event::Overrun`] is its last, and [`take_overrun`](Self::take_overrun)
    /// names it once (to send the server a Cancel).
    pub fn handle(&mut self, env: Envelope<'_>) -> Result<(), WrongDirection> {
        let event = match env.body {
            Body::Request { .. } | Body::Cancel => {
                return Err(WrongDirection { kind: env.body.kind() })
            }
            Body::Response(p) => Event::Response(p.to_vec()),
            Body::ResponseChunk(p) => Event::Chunk(p.to_vec()),
            Body::ResponseEnd => Event::End,
            Body::Error { code, text } => Event::Error { code, text: text.to_owned() },
        };
        let chunk = matches!(event, Event::Chunk(_));
        match self.index(env.id).map(|i| &mut self.calls[i]) {
            Some(call) if !call.finished && chunk && call.queued >= MAX_UNREAD_CHUNKS => {
                (call.finished, call.queued) = (true, 1);
                self.dropped += u64::from(MAX_UNREAD_CHUNKS) + 1;
                self.events.retain(|(of, _)| *of != env.id);
                self.events.push_back((env.id, Event::Overrun));
                self.overrun.push(CallId(env.id));
            }
            Some(call) if !call.finished => {
                call.finished = event.is_last();
                call.queued += 1;
                self.events.push_back((env.id, event));
            }
            _ => self.dropped += 1,
        }
        Ok(())
    }

    /// A call ended with [`Event::Overrun`] whose server has not been told yet (each is
    /// named once).
    pub fn take_overrun(&mut self) -> Option<CallId> {
        self.overrun.pop()
    }

    /// Like [`handle`](Self::handle), but if the envelope is the last word on call `want`
    /// (a response, an error or an end of stream), which has no earlier event waiting, the
    /// call is forgotten and the body handed back to be decoded in place (no copy, no
    /// event); `None` when the envelope was handled as usual.
    pub fn handle_for<'a>(
        &mut self,
        env: Envelope<'a>,
        want: CallId,
    ) -> Result<Option<Body<'a>>, WrongDirection> {
        let last = matches!(env.body, Body::Response(_) | Body::ResponseEnd | Body::Error { .. });
        if last && env.id == want.0 && self.end_awaited(want) {
            return Ok(Some(env.body));
        }
        self.handle(env).map(|()| None)
    }

    /// Call `id`'s last word has come while it was awaited: if the call waits for it and has
    /// no earlier event queued, it is forgotten (`true`: hand the word to the caller in
    /// place); otherwise (`false`) the word goes through [`handle`](Self::handle).
    #[inline]
    pub fn end_awaited(&mut self, id: CallId) -> bool {
        let Some(i) = self.index(id.0) else { return false };
        let call = &self.calls[i];
        if call.finished || call.queued != 0 {
            return false;
        }
        self.remove_at(i);
        true
    }

    /// Ends every call whose deadline is at or before `now` with [`Event::Timeout`]; returns
    /// their ids (to send each a Cancel), in id order.
    pub fn expire(&mut self, now: Instant) -> Vec<CallId> {
        let mut expired = Vec::new();
        for call in &mut self.calls {
            if !call.finished && call.deadline().is_some_and(|d| d <= now) {
                call.finished = true;
                call.queued += 1;
                self.events.push_back((call.id, Event::Timeout));
                expired.push(CallId(call.id));
            }
        }
        expired
    }

    /// The earliest deadline of a call still waiting for the server.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.calls.iter().filter(|c| !c.finished).filter_map(Call::deadline).min()
    }

    /// Ends every call still waiting with [`Event::Gone`] (the server died).
    pub fn fail_all(&mut self) {
        for call in self.calls.iter_mut().filter(|c| !c.finished) {
            call.finished = true;
            call.queued += 1;
            self.events.push_back((call.id, Event::Gone));
        }
    }

    /// The next event of call `id`, if one arrived; the call is forgotten after its last
    /// event. `None` also for an unknown call (see [`is_known`](Self::is_known)).
    pub fn take(&mut self, id: CallId) -> Option<Event> {
        let i = self.index(id.0)?;
        if self.calls[i].queued == 0 {
            return None;
        }
        // The call's first event: near the front when events are taken as they come.
        let at = self.events.iter().position(|(of, _)| *of == id.0)?;
        let (_, event) = self.events.remove(at)?;
        self.calls[i].queued -= 1;
        if event.is_last() {
            self.remove_at(i);
        }
        Some(event)
    }

    /// Forgets call `id` (the caller gave up on it). Returns whether the server may still be
    /// working on it (send it a Cancel).
    pub fn forget(&mut self, id: CallId) -> bool {
        let Some(i) = self.index(id.0) else { return false };
        let call = self.remove_at(i);
        if call.queued != 0 {
            self.events.retain(|(of, _)| *of != id.0);
        }
        !call.finished
    }

    /// How many events of call `id` wait to be taken (`None`: an unknown call, or one whose
    /// last event was taken).
    pub fn events_of(&self, id: CallId) -> Option<u32> {
        self.index(id.0).map(|i| self.calls[i].queued)
    }

    /// Whether call `id` was started and its last event not yet taken.
    pub fn is_known(&self, id: CallId) -> bool {
        self.index(id.0).is_some()
    }

    /// Calls started whose last event was not yet taken.
    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Envelopes dropped because their call was unknown or over.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A request waiting for the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Its id.
    pub id: CallId,
    /// When the client stops waiting, by our clock (receipt + hint; a little late, never
    /// early).
    pub deadline: Option<Instant>,
    /// The encoded request.
    pub payload: Vec<u8>,
}

/// The server side of one connection: requests queued in arrival order, cancellations.
#[derive(Debug, Default)]
pub struct ServerSession {
    queue: VecDeque<Queued>,
    active: Option<(CallId, bool)>,
    skipped: u64,
}

impl ServerSession {
    /// An empty session.
    pub fn new() -> ServerSession {
        ServerSession::default()
    }

    /// Takes in one envelope from the client, received at `now`. A Cancel removes a queued
    /// request, or marks the active one cancelled ([`is_cancelled`](Self::is_cancelled)).
    pub fn handle(&mut self, env: Envelope<'_>, now: Instant) -> Result<(), ClientFault> {
        match env.body {
            Body::Request { .. } if self.queue.len() >= MAX_QUEUED => {
                return Err(ClientFault::Flood { queued: self.queue.len() })
            }
            Body::Request { deadline, payload } => {
                let deadline = deadline.and_then(|d| now.checked_add(d));
                let id = CallId(env.id);
                self.queue.push_back(Queued { id, deadline, payload: payload.to_vec() });
            }
            Body::Cancel => match &mut self.active {
                Some((id, cancelled)) if id.0 == env.id => *cancelled = true,
                _ => {
                    let before = self.queue.len();
                    self.queue.retain(|q| q.id.0 != env.id);
                    self.skipped += (before - self.queue.len()) as u64;
                }
            },
            _ => return Err(WrongDirection { kind: env.body.kind() }.into()),
        }
        Ok(())
    }

    /// The next request to handle, skipping those whose deadline passed by `now` (their
    /// client has given up); it becomes the active one.
    pub fn next(&mut self, now: Instant) -> Option<Queued> {
        while let Some(q) = self.queue.pop_front() {
            if q.deadline.is_some_and(|d| d <= now) {
                self.skipped += 1;
                continue;
            }
            self.active = Some((q.id, false));
            return Some(q);
        }
        self.active = None;
        None
    }

    /// The active request is over (its response sent); nothing is active until the next
    /// [`next`](Self::next).
    pub fn finish(&mut self) {
        self.active = None;
    }

    /// Whether the client cancelled the active request `id`.
    pub fn is_cancelled(&self, id: CallId) -> bool {
        self.active == Some((id, true))
    }

    /// Requests waiting for the handler.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Requests dropped unhandled (cancelled or expired while queued).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(server_side: Body<'_>, id: CallId) -> Vec<u8> {
        let mut out = Vec::new();
        envelope::encode(&Envelope { id: id.0, body: server_side }, &mut out);
        out
    }

    /// Feeds `bytes` to the client session.
    fn feed(c: &mut ClientSession, bytes: &[u8]) {
        c.handle(envelope::decode(bytes).unwrap()).unwrap();
    }

    #[test]
    fn a_stream_nobody_reads_is_ended_at_the_limit_and_one_that_is_read_never_is() {
        let now = Instant::now();
        let mut c = ClientSession::new();
        let chunk = |c: &mut ClientSession, id| feed(c, &reply(Body::ResponseChunk(&[1]), id));
        // Unread: the chunk past the limit ends the call, once.
        let id = c.start(None, now, &mut Vec::new());
        for _ in 0..MAX_UNREAD_CHUNKS {
            chunk(&mut c, id);
        }
        assert_eq!((c.events_of(id), c.take_overrun()), (Some(MAX_UNREAD_CHUNKS), None));
        chunk(&mut c, id);
        assert_eq!(c.take_overrun(), Some(id));
        assert_eq!(c.take_overrun(), None, "named once");
        assert_eq!(c.take(id), Some(Event::Overrun));
        assert!(!c.is_known(id));
        feed(&mut c, &reply(Body::ResponseEnd, id));
        assert_eq!(
            c.dropped(),
            u64::from(MAX_UNREAD_CHUNKS) + 2,
            "the chunks, the one past, the end"
        );
        // Read as it comes: never cut, however long.
        let read = c.start(None, now, &mut Vec::new());
        for _ in 0..3 * MAX_UNREAD_CHUNKS {
            chunk(&mut c, read);
            assert_eq!(c.take(read), Some(Event::Chunk(vec![1])));
        }
        // The limit is on chunks: the end of a stream that filled it still comes through.
        for _ in 0..MAX_UNREAD_CHUNKS {
            chunk(&mut c, read);
        }
        feed(&mut c, &reply(Body::ResponseEnd, read));
        assert_eq!(c.events_of(read), Some(MAX_UNREAD_CHUNKS + 1));
        assert_eq!(c.take_overrun(), None);
    }

    #[test]
    fn responses_match_their_calls_in_any_order() {
        let now = Instant::now();
        let mut c = ClientSession::new();
        let mut s = ServerSession::new();
        let mut ids = Vec::new();
        for i in 0..3u8 {
            let mut out = Vec::new();
            ids.push(c.start(Some(Duration::from_secs(1)), now, &mut out));
            out.push(i);
            s.handle(envelope::decode(&out).unwrap(), now).unwrap();
        }
        assert_eq!(ids, [CallId(1), CallId(2), CallId(3)], "ids increase from 1");
        let mut served = Vec::new();
        while let Some(q) = s.next(now) {
            served.push(q);
        }
        for q in served.iter().rev() {
            feed(&mut c, &reply(Body::Response(&q.payload), q.id));
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(c.take(*id), Some(Event::Response(vec![i as u8])));
            assert!(!c.is_known(*id));
        }
        feed(&mut c, &reply(Body::Response(b"late"), ids[0]));
        feed(&mut c, &reply(Body::ResponseEnd, CallId(99)));
        assert_eq!(c.dropped(), 2, "responses to unknown or finished calls are dropped");
    }

    #[test]
    fn a_flooding_client_is_a_fault() {
        let now = Instant::now();
        let mut s = ServerSession::new();
        let req = |id: u64| Envelope { id, body: Body::Request { deadline: None, payload: b"" } };
        for id in 0..MAX_QUEUED as u64 {
            s.handle(req(id), now).unwrap();
        }
        let err = s.handle(req(MAX_QUEUED as u64), now).unwrap_err();
        assert_eq!(err, ClientFault::Flood { queued: MAX_QUEUED });
    }

    #[test]
    fn deadlines_expire_and_cancel() {
        let now = Instant::now();
        let mut c = ClientSession::new();
        let mut out = Vec::new();
        let short = c.start(Some(Duration::from_millis(10)), now, &mut out);
        let long = c.start(None, now, &mut Vec::new());
        assert_eq!(c.next_deadline(), now.checked_add(Duration::from_millis(10)));
        assert!(c.expire(now).is_empty());
        assert_eq!(c.expire(now + Duration::from_millis(10)), [short]);
        assert_eq!(c.take(short), Some(Event::Timeout));
        assert_eq!(c.next_deadline(), None);

        // The server skips the expired request, or cancels it while queued or active.
        let mut s = ServerSession::new();
        s.handle(envelope::decode(&out).unwrap(), now).unwrap();
        assert_eq!(s.next(now + Duration::from_millis(10)), None);
        assert_eq!(s.skipped(), 1);
        let cancel = |id: u64| Envelope { id, body: Body::Cancel };
        let req = |id: u64| Envelope { id, body: Body::Request { deadline: None, payload: b"" } };
        s.handle(req(5), now).unwrap();
        s.handle(req(6), now).unwrap();
        s.handle(cancel(6), now).unwrap();
        let q = s.next(now).unwrap();
        assert_eq!((q.id, s.queued()), (CallId(5), 0));
        assert!(!s.is_cancelled(q.id));
        s.handle(cancel(5), now).unwrap();
        assert!(s.is_cancelled(q.id));
        assert!(c.forget(long), "the server may still be working on it");
    }

    #[test]
    fn the_awaited_call_is_answered_in_place() {
        let mut c = ClientSession::new();
        let a = c.start(None, Instant::now(), &mut Vec::new());
        let b = c.start(None, Instant::now(), &mut Vec::new());
        let resp = reply(Body::Response(b"b"), b);
        let env = envelope::decode(&resp).unwrap();
        assert_eq!(c.handle_for(env, b), Ok(Some(Body::Response(b"b"))));
        assert!(!c.is_known(b) && c.is_known(a));
        // Not the awaited call, or a chunk: queued as events.
        let chunk = reply(Body::ResponseChunk(b"1"), a);
        assert_eq!(c.handle_for(envelope::decode(&chunk).unwrap(), a), Ok(None));
        assert_eq!(c.handle_for(envelope::decode(&resp).unwrap(), b), Ok(None));
        assert_eq!(c.dropped(), 1, "b is over");
        // a has a chunk waiting: its end must queue behind it.
        let end = reply(Body::ResponseEnd, a);
        assert_eq!(c.handle_for(envelope::decode(&end).unwrap(), a), Ok(None));
        assert_eq!(c.take(a), Some(Event::Chunk(b"1".to_vec())));
        assert_eq!(c.take(a), Some(Event::End));
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn an_awaited_call_before_the_last_is_answered_in_place_too() {
        let mut c = ClientSession::new();
        let a = c.start(None, Instant::now(), &mut Vec::new());
        let b = c.start(None, Instant::now(), &mut Vec::new());
        let d = c.start(None, Instant::now(), &mut Vec::new());
        assert!(c.end_awaited(b), "taken from the middle");
        assert!(!c.is_known(b) && c.is_known(a) && c.is_known(d));
        assert!(!c.end_awaited(b), "once");
        assert!(c.end_awaited(d) && c.end_awaited(a));
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn streams_end_and_server_death_fails_everything() {
        let mut c = ClientSession::new();
        let a = c.start(None, Instant::now(), &mut Vec::new());
        let b = c.start(None, Instant::now(), &mut Vec::new());
        feed(&mut c, &reply(Body::ResponseChunk(b"1"), a));
        feed(&mut c, &reply(Body::ResponseChunk(b"2"), a));
        feed(&mut c, &reply(Body::ResponseEnd, a));
        assert_eq!(c.take(a), Some(Event::Chunk(b"1".to_vec())));
        assert_eq!(c.take(a), Some(Event::Chunk(b"2".to_vec())));
        assert_eq!(c.take(a), Some(Event::End));
        assert_eq!(c.take(a), None);
        c.fail_all();
        assert_eq!(c.take(b), Some(Event::Gone));
        assert_eq!(c.in_flight(), 0);
        let wrong = Envelope { id: 1, body: Body::Cancel };
        assert_eq!(c.handle(wrong), Err(WrongDirection { kind: Kind::Cancel }));
    }
}
