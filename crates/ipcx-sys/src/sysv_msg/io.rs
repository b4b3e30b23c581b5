//! Sending and receiving, in blocking, non-blocking (`try_`) and timeout forms.
//!
//! The kernel takes a message as a `long` type followed by the bytes. We build that in a
//! `Vec<c_long>` (so the type is aligned) and copy the bytes in and out word by word, which
//! needs no unsafe code besides the syscalls.

use std::mem::size_of;
use std::time::{Duration, Instant};

use libc::c_long;
use rustix::io::Errno;

use super::error::{recv_error, send_error};
use super::{RecvError, SendError, SysvMsgQueue};
use crate::errno::last_errno;

/// First pause of the `_timeout` forms between `IPC_NOWAIT` attempts.
const BACKOFF_START: Duration = Duration::from_micros(50);
/// Longest pause of the `_timeout` forms: the most a timed wait notices a message late.
const BACKOFF_MAX: Duration = Duration::from_millis(2);
const WORD: usize = size_of::<c_long>();

/// Which messages a receive takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// The oldest message of any type.
    Any,
    /// The oldest message of exactly this type (> 0).
    Exactly(i64),
    /// The oldest message of the lowest type that is at most this bound (> 0).
    AtMost(i64),
}

impl MsgType {
    /// The `msgtyp` argument of `msgrcv`.
    fn msgtyp(self) -> Result<c_long, RecvError> {
        let (t, sign) = match self {
            MsgType::Any => return Ok(0),
            MsgType::Exactly(t) => (t, 1),
            MsgType::AtMost(t) => (t, -1),
        };
        match c_long::try_from(t) {
            Ok(v) if v > 0 => Ok(v * sign),
            _ => Err(RecvError::BadType { mtype: t }),
        }
    }
}

impl SysvMsgQueue {
    /// Sends `msg` with type `mtype` (> 0), waiting while the queue is full.
    pub fn send(&self, mtype: i64, msg: &[u8]) -> Result<(), SendError> {
        let packed = self.pack(mtype, msg)?;
        self.raw_send(&packed, 0).map(drop)
    }

    /// Sends `msg` if there is room now; [`SendError::Full`] otherwise.
    pub fn try_send(&self, mtype: i64, msg: &[u8]) -> Result<(), SendError> {
        let packed = self.pack(mtype, msg)?;
        match self.raw_send(&packed, libc::IPC_NOWAIT)? {
            true => Ok(()),
            false => Err(SendError::Full),
        }
    }

    /// Sends `msg`, waiting up to `timeout` for room; [`SendError::Timeout`] otherwise.
    /// Polls with `IPC_NOWAIT` (System V has no timed send); see the module docs.
    pub fn send_timeout(&self, mtype: i64, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        let packed = self.pack(mtype, msg)?;
        let sent =
            retry_until(timeout, || Ok(self.raw_send(&packed, libc::IPC_NOWAIT)?.then_some(())))?;
        sent.ok_or(SendError::Timeout)
    }

    /// Receives the oldest message `selector` matches into `buf`, waiting until one is
    /// queued. Returns its type and length. A message longer than `buf` is never truncated:
    /// it stays queued and the call fails with [`RecvError::BufferTooSmall`].
    pub fn recv(&self, selector: MsgType, buf: &mut [u8]) -> Result<(i64, usize), RecvError> {
        let msgtyp = selector.msgtyp()?;
        let got = self.raw_recv(buf, msgtyp, 0)?;
        got.ok_or(RecvError::Os(Errno::NOMSG))
    }

    /// Receives a matching message if one is queued now; [`RecvError::Empty`] otherwise.
    pub fn try_recv(&self, selector: MsgType, buf: &mut [u8]) -> Result<(i64, usize), RecvError> {
        let msgtyp = selector.msgtyp()?;
        self.raw_recv(buf, msgtyp, libc::IPC_NOWAIT)?.ok_or(RecvError::Empty)
    }

    /// Receives a matching message, waiting up to `timeout`; [`RecvError::Timeout`]
    /// otherwise. Polls with `IPC_NOWAIT` (System V has no timed receive); see the module docs.
    pub fn recv_timeout(
        &self,
        selector: MsgType,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(i64, usize), RecvError> {
        let msgtyp = selector.msgtyp()?;
        let got = retry_until(timeout, || self.raw_recv(buf, msgtyp, libc::IPC_NOWAIT))?;
        got.ok_or(RecvError::Timeout)
    }

    /// Checks the type and size and lays out `mtype` followed by `msg` in aligned words.
    fn pack(&self, mtype: i64, msg: &[u8]) -> Result<Packed, SendError> {
        let mtype_long = match c_long::try_from(mtype) {
            Ok(t) if t > 0 => t,
            _ => return Err(SendError::BadType { mtype }),
        };
        if let Some(limit) = self.msgmax.filter(|&limit| msg.len() > limit) {
            return Err(SendError::TooLarge { len: msg.len(), limit });
        }
        if let Some(limit) = self.qbytes.filter(|&limit| msg.len() > limit) {
            return Err(SendError::TooLargeForQueue { len: msg.len(), limit });
        }
        let mut words = Vec::with_capacity(1 + msg.len().div_ceil(WORD));
        words.push(mtype_long);
        words.extend(msg.chunks(WORD).map(|chunk| {
            let mut bytes = [0u8; WORD];
            bytes[..chunk.len()].copy_from_slice(chunk);
            c_long::from_ne_bytes(bytes)
        }));
        Ok(Packed { words, len: msg.len() })
    }

    /// One `msgsnd`, retried on EINTR. `Ok(false)`: full and `IPC_NOWAIT` was given.
    fn raw_send(&self, msg: &Packed, flags: libc::c_int) -> Result<bool, SendError> {
        let (ptr, len) = (msg.words.as_ptr().cast(), msg.len);
        loop {
            // SAFETY: ptr holds the type followed by at least len bytes (a Packed invariant).
            if unsafe { libc::msgsnd(self.id, ptr, len, flags) } == 0 {
                return Ok(true);
            }
            match last_errno() {
                Errno::INTR => {}
                Errno::AGAIN if flags & libc::IPC_NOWAIT != 0 => return Ok(false),
                e => return Err(send_error(e, len)),
            }
        }
    }

    /// One `msgrcv` into `buf`, retried on EINTR. `Ok(None)`: no matching message and
    /// `IPC_NOWAIT` was given.
    fn raw_recv(
        &self,
        buf: &mut [u8],
        msgtyp: c_long,
        flags: libc::c_int,
    ) -> Result<Option<(i64, usize)>, RecvError> {
        let mut words: Vec<c_long> = vec![0; 1 + buf.len().div_ceil(WORD)];
        let n = loop {
            let ptr = words.as_mut_ptr().cast();
            // SAFETY: words has room for the type and buf.len() bytes after it.
            let n = unsafe { libc::msgrcv(self.id, ptr, buf.len(), msgtyp, flags) };
            if let Ok(n) = usize::try_from(n) {
                break n.min(buf.len());
            }
            match last_errno() {
                Errno::INTR => {}
                Errno::NOMSG | Errno::AGAIN if flags & libc::IPC_NOWAIT != 0 => return Ok(None),
                e => return Err(recv_error(e, buf.len())),
            }
        };
        let body = words[1..].iter().flat_map(|w| w.to_ne_bytes());
        for (dst, src) in buf[..n].iter_mut().zip(body) {
            *dst = src;
        }
        Ok(Some((words[0] as i64, n)))
    }
}

/// A message laid out for `msgsnd`: `words[0]` is the type, the next words hold `len`
/// bytes. Only [`SysvMsgQueue::pack`] builds one.
struct Packed {
    words: Vec<c_long>,
    len: usize,
}

/// Calls `attempt` (a non-blocking try; `Ok(None)` means "would block") until it gives a
/// value or `timeout` passes, pausing between tries with exponential backoff.
fn retry_until<T, E>(
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let start = Instant::now();
    let mut pause = BACKOFF_START;
    loop {
        if let Some(v) = attempt()? {
            return Ok(Some(v));
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::super::MsgKey;
    use super::*;

    #[test]
    fn selectors_map_to_msgtyp_and_refuse_non_positive_types() {
        assert_eq!(MsgType::Any.msgtyp().unwrap(), 0);
        assert_eq!(MsgType::Exactly(7).msgtyp().unwrap(), 7);
        assert_eq!(MsgType::AtMost(7).msgtyp().unwrap(), -7);
        assert!(matches!(MsgType::Exactly(0).msgtyp(), Err(RecvError::BadType { mtype: 0 })));
        assert!(matches!(MsgType::AtMost(-3).msgtyp(), Err(RecvError::BadType { mtype: -3 })));
    }

    #[test]
    fn odd_lengths_round_trip_and_types_select() {
        let q = SysvMsgQueue::builder(MsgKey::Private).open().unwrap();
        for len in [0usize, 1, 7, 8, 9, 23] {
            let msg: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            q.try_send(5, &msg).unwrap();
            let mut buf = [0xAAu8; 32];
            assert_eq!(q.try_recv(MsgType::Any, &mut buf).unwrap(), (5, len));
            assert_eq!(&buf[..len], &msg[..]);
        }
        q.send(3, b"three").unwrap();
        q.send(1, b"one").unwrap();
        let mut buf = [0u8; 8];
        assert!(matches!(q.try_recv(MsgType::Exactly(2), &mut buf), Err(RecvError::Empty)));
        assert_eq!(q.recv(MsgType::AtMost(3), &mut buf).unwrap(), (1, 3));
        let mut small = [0u8; 4];
        assert!(matches!(
            q.try_recv(MsgType::Any, &mut small),
            Err(RecvError::BufferTooSmall { len: 4 })
        ));
        assert_eq!(q.recv_timeout(MsgType::Any, &mut buf, Duration::ZERO).unwrap(), (3, 5));
        assert!(matches!(q.try_send(0, b"x"), Err(SendError::BadType { mtype: 0 })));
    }
}
