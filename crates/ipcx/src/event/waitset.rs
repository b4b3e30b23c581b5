//! Waiting on several listeners (and other fds) at once, with epoll.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use ipcx_sys::epoll::{Epoll, Events, Interest};

use super::error::WaitSetError;
use super::listener::EventListener;

/// Events one epoll wait collects at most (more stay ready for the next wait).
const EVENTS_PER_WAIT: usize = 64;

/// What a key stands for.
#[derive(Debug)]
enum Source<'a> {
    Listener(&'a EventListener),
    Fd(BorrowedFd<'a>),
}

/// A set of [`EventListener`]s and other fds, each under a caller-chosen `u64` key, waited on
/// together (epoll, level-triggered). The set borrows what it watches, so the listeners stay
/// usable (`&self` methods) between waits.
#[derive(Debug)]
pub struct WaitSet<'a> {
    epoll: Epoll,
    events: Events,
    sources: HashMap<u64, Source<'a>>,
}

impl<'a> WaitSet<'a> {
    /// An empty set.
    pub fn new() -> Result<WaitSet<'a>, WaitSetError> {
        Ok(WaitSet {
            epoll: Epoll::new()?,
            events: Events::with_capacity(EVENTS_PER_WAIT),
            sources: HashMap::new(),
        })
    }

    /// Adds `listener` under `key`; [`wait`](Self::wait) reports its ids under that key.
    pub fn add(&mut self, key: u64, listener: &'a EventListener) -> Result<(), WaitSetError> {
        self.insert(key, listener.as_fd(), Source::Listener(listener))
    }

    /// Adds any pollable fd under `key`; [`wait`](Self::wait) reports it, with no ids, while
    /// it is readable (or hung up). Reading from it is the caller's business.
    pub fn add_fd(&mut self, key: u64, fd: &'a impl AsFd) -> Result<(), WaitSetError> {
        let fd = fd.as_fd();
        self.insert(key, fd, Source::Fd(fd))
    }

    fn insert(
        &mut self,
        key: u64,
        fd: BorrowedFd<'a>,
        source: Source<'a>,
    ) -> Result<(), WaitSetError> {
        if self.sources.contains_key(&key) {
            return Err(WaitSetError::DuplicateKey { key });
        }
        self.epoll.add(fd, key, Interest::Readable).map_err(WaitSetError::Register)?;
        self.sources.insert(key, source);
        Ok(())
    }

    /// Removes what was added under `key`; `false` if nothing was.
    pub fn remove(&mut self, key: u64) -> bool {
        let Some(source) = self.sources.remove(&key) else {
            return false;
        };
        let fd = match source {
            Source::Listener(l) => l.as_fd(),
            Source::Fd(fd) => fd,
        };
        // Cannot fail for an fd we added (and borrow, so it is still open).
        let _ = self.epoll.delete(fd);
        true
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Waits until at least one listener has events (or an added fd is readable), or
    /// `timeout` passes (`None`: no limit; zero: just look). Returns, per ready key, the
    /// pending ids of that listener with identical ids merged (empty for a plain fd); an
    /// empty vector means the timeout passed. Datagrams that are not events are skipped
    /// (counted by [`EventListener::rejected`]) and do not end the wait.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Vec<(u64, Vec<u64>)>, WaitSetError> {
        // An overflowing timeout waits forever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            self.epoll.wait(&mut self.events, left)?;
            let mut ready = Vec::new();
            for ev in self.events.iter() {
                match self.sources.get(&ev.key) {
                    Some(Source::Listener(l)) => {
                        let ids = l
                            .drain()
                            .map_err(|source| WaitSetError::Recv { key: ev.key, source })?;
                        if !ids.is_empty() {
                            ready.push((ev.key, ids));
                        }
                    }
                    Some(Source::Fd(_)) => ready.push((ev.key, Vec::new())),
                    None => {}
                }
            }
            // Only garbage (or another thread took the events): wait on while time is left.
            if !ready.is_empty() || self.events.is_empty() || left.is_some_and(|l| l.is_zero()) {
                return Ok(ready);
            }
        }
    }

    /// What is ready now, without waiting (same as `wait(Some(Duration::ZERO))`).
    pub fn try_wait(&mut self) -> Result<Vec<(u64, Vec<u64>)>, WaitSetError> {
        self.wait(Some(Duration::ZERO))
    }
}
