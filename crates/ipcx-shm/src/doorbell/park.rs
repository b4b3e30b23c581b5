//! The seam between the doorbell protocol and the kernel's futex, chosen once: the real
//! `futex_wait`/`futex_wake` of `ipcx_sys::futex` normally, a model of them under `cfg(loom)`.
//!
//! The model keeps the futex semantics the protocol relies on: `wait(word, expected)`
//! checks the word and queues the caller under one lock (the kernel's hash-bucket lock),
//! so a `wake` — which takes the same lock after the waker changed the word — either finds
//! the waiter queued or the waiter finds the word changed. Not modelled: timeouts (a model wait sleeps until woken; loom
//! reports a wait nobody wakes as a deadlock, which is exactly a lost wake-up) and spurious
//! wake-ups (the real code re-checks after every return anyway).

#[cfg(not(loom))]
pub(crate) use real::{prepare, wait, wake_all};

#[cfg(loom)]
pub(crate) use model::{prepare, wait, wake_all};

#[cfg(not(loom))]
mod real {
    use std::time::Duration;

    use ipcx_sys::futex::{futex_wait, futex_wake};
    use ipcx_sys::Errno;

    use crate::sync::AtomicU32;

    /// Nothing to set up for the kernel's futexes.
    #[inline]
    pub(crate) fn prepare() {}

    /// Sleeps while `word == expected`, until woken or `timeout` passes (`EINTR` retried).
    pub(crate) fn wait(
        word: &AtomicU32,
        expected: u32,
        timeout: Option<Duration>,
    ) -> Result<(), Errno> {
        futex_wait(word, expected, timeout).map(drop).map_err(|e| e.source)
    }

    /// Wakes every waiter on `word`.
    pub(crate) fn wake_all(word: &AtomicU32) -> Result<(), Errno> {
        futex_wake(word, u32::MAX).map(drop).map_err(|e| e.source)
    }
}

#[cfg(loom)]
mod model {
    use std::sync::PoisonError;
    use std::time::Duration;

    use ipcx_sys::Errno;
    use loom::sync::{Condvar, Mutex};

    use crate::sync::{AtomicU32, Ordering};

    /// All futexes of one model execution: like one kernel hash bucket.
    struct Futexes {
        table: Mutex<Table>,
        woken: Condvar,
    }

    #[derive(Default)]
    struct Table {
        next_ticket: u64,
        /// (address of the word, ticket) of every queued waiter.
        queued: Vec<(usize, u64)>,
    }

    loom::lazy_static! {
        static ref FUTEXES: Futexes =
            Futexes { table: Mutex::new(Table::default()), woken: Condvar::new() };
    }

    /// Creates the table from the thread that builds the doorbell, before the threads that
    /// use it exist, so lazy initialisation adds no synchronisation between them.
    pub(crate) fn prepare() {
        drop(FUTEXES.table.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The model of `futex_wait` (no timeout: see the module docs).
    pub(crate) fn wait(
        word: &AtomicU32,
        expected: u32,
        _timeout: Option<Duration>,
    ) -> Result<(), Errno> {
        let addr = word as *const AtomicU32 as usize;
        let mut table = FUTEXES.table.lock().unwrap_or_else(PoisonError::into_inner);
        // Read under the bucket lock, like the kernel; the lock orders it after a waker's
        // change of the word when the waker locked first.
        if word.load(Ordering::Relaxed) != expected {
            return Ok(()); // EAGAIN
        }
        let ticket = table.next_ticket;
        table.next_ticket += 1;
        table.queued.push((addr, ticket));
        while table.queued.iter().any(|&(_, t)| t == ticket) {
            table = FUTEXES.woken.wait(table).unwrap_or_else(PoisonError::into_inner);
        }
        Ok(())
    }

    /// The model of `futex_wake(word, all)`.
    pub(crate) fn wake_all(word: &AtomicU32) -> Result<(), Errno> {
        let addr = word as *const AtomicU32 as usize;
        let mut table = FUTEXES.table.lock().unwrap_or_else(PoisonError::into_inner);
        let before = table.queued.len();
        table.queued.retain(|&(a, _)| a != addr);
        if table.queued.len() != before {
            FUTEXES.woken.notify_all();
        }
        Ok(())
    }
}
