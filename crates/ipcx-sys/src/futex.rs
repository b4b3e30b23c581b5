//! Futex wait and wake on an `AtomicU32`, the kernel's "sleep until this word changes".
//!
//! The futexes here are shared (no `FUTEX_PRIVATE_FLAG`), so a waiter and a waker in different
//! processes meet as long as the word lies in memory they both map (a
//! [`Mapping`](crate::mapping::Mapping) or a [`SysvAttachment`](crate::sysv_shm::SysvAttachment));
//! get the word with [`SharedRegion::atomic_u32_at`](crate::mapping::SharedRegion::atomic_u32_at).
//!
//! Protocol: the waiter loads the word, decides to sleep, and calls
//! [`futex_wait`](crate::futex::futex_wait) with the value it saw. The kernel sleeps only if the
//! word still holds that value, so a change made before the call is never missed
//! ([`WaitOutcome::ValueChanged`](crate::futex::WaitOutcome::ValueChanged)). The waker changes the
//! word first, then calls [`futex_wake`](crate::futex::futex_wake). Wake-ups may be spurious:
//! always re-check the word (with an `Acquire` load) after
//! [`WaitOutcome::Woken`](crate::futex::WaitOutcome::Woken).
//!
//! Limits: a futex carries no data and counts nothing; the word is the state. Waiters are woken in
//! no particular order.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::thread::futex;
use thiserror::Error;

/// How a [`futex_wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitOutcome {
    /// A wake-up arrived (or a spurious one); re-check the word.
    Woken,
    /// The word no longer held the expected value, so the call did not sleep.
    ValueChanged,
    /// The timeout passed without a wake-up.
    TimedOut,
}

/// The kernel rejected a futex call.
#[derive(Debug, Error)]
#[error(
    "futex {op} failed; the word must lie in memory mapped by this process (this is a bug, please \
     report it)"
)]
pub struct FutexError {
    /// `"wait"` or `"wake"`.
    pub op: &'static str,
    /// The errno.
    #[source]
    pub source: Errno,
}

/// Sleeps while `word` holds `expected`, until woken or `timeout` passes (`None`: no
/// timeout; `Some(Duration::ZERO)` only checks the value). Signals do not end the wait
/// early: it resumes with the time left.
pub fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> Result<WaitOutcome, FutexError> {
    let deadline = timeout.map(|t| Instant::now().checked_add(t));
    loop {
        let left = match deadline {
            Some(Some(d)) => {
                Some(crate::time::relative(d.saturating_duration_since(Instant::now())))
            }
            // No timeout, or one too long to represent: wait without one.
            Some(None) | None => None,
        };
        match futex::wait(word, futex::Flags::empty(), expected, left.as_ref()) {
            Ok(()) => return Ok(WaitOutcome::Woken),
            Err(Errno::AGAIN) => return Ok(WaitOutcome::ValueChanged),
            Err(Errno::TIMEDOUT) => return Ok(WaitOutcome::TimedOut),
            Err(Errno::INTR) => continue,
            Err(source) => return Err(FutexError { op: "wait", source }),
        }
    }
}

/// Wakes up to `n` waiters sleeping on `word` (in this or any other process) and returns
/// how many were woken. `u32::MAX` wakes them all.
pub fn futex_wake(word: &AtomicU32, n: u32) -> Result<usize, FutexError> {
    // The kernel reads the count as an int: clamp so u32::MAX means "all", not -1.
    let n = n.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), n).map_err(|source| FutexError { op: "wake", source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    #[test]
    fn a_changed_value_does_not_sleep() {
        let w = AtomicU32::new(1);
        assert_eq!(futex_wait(&w, 0, None).unwrap(), WaitOutcome::ValueChanged);
        assert_eq!(futex_wait(&w, 0, Some(Duration::ZERO)).unwrap(), WaitOutcome::ValueChanged);
    }

    #[test]
    fn times_out_and_zero_timeout_polls() {
        let w = AtomicU32::new(0);
        let start = Instant::now();
        assert_eq!(
            futex_wait(&w, 0, Some(Duration::from_millis(20))).unwrap(),
            WaitOutcome::TimedOut
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(futex_wait(&w, 0, Some(Duration::ZERO)).unwrap(), WaitOutcome::TimedOut);
    }

    #[test]
    fn wake_reaches_a_waiting_thread_and_counts_it() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = Arc::clone(&w);
        let t = std::thread::spawn(move || {
            while w2.load(Ordering::Acquire) == 0 {
                futex_wait(&w2, 0, Some(Duration::from_secs(10))).unwrap();
            }
        });
        w.store(1, Ordering::Release);
        futex_wake(&w, u32::MAX).unwrap();
        t.join().unwrap();
        assert_eq!(futex_wake(&w, 1).unwrap(), 0, "nobody is waiting any more");
    }
}
