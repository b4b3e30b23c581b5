//! POSIX message queues (`mq_open`): named kernel queues of whole messages, each with a
//! priority; a receive always takes the oldest message of the highest priority.
//!
//! Limits: a queue holds at most `maxmsg` messages of at most `msgsize` bytes, both fixed at
//! creation. Unprivileged processes may not exceed `/proc/sys/fs/mqueue/msg_max` and
//! `msgsize_max`; everyone is capped at [`HARD_MSGMAX`] and [`HARD_MSGSIZEMAX`]; the number
//! of queues is capped by `queues_max` and their memory by `RLIMIT_MSGQUEUE`. Errors name
//! the limit and what to raise.
//!
//! Lifecycle: the handle that created a queue unlinks its name on drop (opened handles keep
//! working until closed); [`PosixMq::remove`] and [`unlink`] unlink explicitly. A queue
//! whose creator was killed stays until unlinked. Handles always open the queue for reading
//! and writing.
//!
//! On Linux an `mqd_t` is a file descriptor: [`PosixMq`] implements [`AsFd`] and can be
//! polled (readable when a message is queued, writable when there is room). That is the
//! supported way to learn of arrivals without blocking; `mq_notify` is deliberately not
//! wrapped, since its signal and thread forms are process-global and poll/epoll covers it.

mod error;
mod io;

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::fs::{fchmod, Mode};
use rustix::io::Errno;

use crate::errno::last_errno;
use crate::name::posix_name;
use crate::options::{CreateMode, Permissions};

use error::{open_error, unlink_error, OpenAttempt};
pub use error::{
    AttrError, OpenError, RecvError, SendError, UnlinkError, HARD_MSGMAX, HARD_MSGSIZEMAX, PRIO_MAX,
};

/// How often `OpenOrCreate` retries when another process creates or unlinks the same name
/// between its attempts.
const OPEN_RACE_RETRIES: usize = 16;

/// The attributes of an open queue (`mq_getattr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// Most messages the queue holds (`mq_maxmsg`).
    pub maxmsg: usize,
    /// Largest message in bytes (`mq_msgsize`).
    pub msgsize: usize,
    /// Messages queued right now (`mq_curmsgs`).
    pub curmsgs: usize,
    /// Whether this handle's descriptor is non-blocking (`O_NONBLOCK`).
    pub nonblocking: bool,
}

/// Options for opening or creating a POSIX message queue; see [`PosixMq::builder`].
#[derive(Clone, Debug)]
pub struct PosixMqBuilder {
    name: String,
    create_mode: CreateMode,
    permissions: Permissions,
    capacity: Option<(usize, usize)>,
    nonblocking: bool,
    remove_on_drop: Option<bool>,
}

impl PosixMqBuilder {
    /// Whether to create the queue, open it, or either (default: `OpenOrCreate`).
    pub fn create_mode(mut self, mode: CreateMode) -> Self {
        self.create_mode = mode;
        self
    }

    /// Permission bits of a queue this call creates (default `0o600`), applied whatever the
    /// umask is. Ignored when an existing queue is opened.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Capacity of a queue this call creates: at most `maxmsg` messages of at most `msgsize`
    /// bytes each. Without it the kernel defaults apply (`msg_default`, `msgsize_default`).
    /// Ignored when an existing queue is opened; read [`PosixMq::attributes`] instead.
    pub fn capacity(mut self, maxmsg: usize, msgsize: usize) -> Self {
        self.capacity = Some((maxmsg, msgsize));
        self
    }

    /// Opens the descriptor with `O_NONBLOCK` (default `false`), for use with epoll. The
    /// blocking and timeout forms still wait (by polling the descriptor).
    pub fn nonblocking(mut self, nonblocking: bool) -> Self {
        self.nonblocking = nonblocking;
        self
    }

    /// Whether dropping the handle unlinks the name. Default: only if this call created it.
    pub fn remove_on_drop(mut self, remove: bool) -> Self {
        self.remove_on_drop = Some(remove);
        self
    }

    /// Opens or creates the queue.
    pub fn open(self) -> Result<PosixMq, OpenError> {
        let path = posix_name(&self.name)?;
        if let Some((maxmsg, msgsize)) = self.capacity {
            if maxmsg == 0 || msgsize == 0 {
                return Err(OpenError::ZeroCapacity);
            }
            if maxmsg > HARD_MSGMAX || msgsize > HARD_MSGSIZEMAX {
                return Err(OpenError::OverHardCap { maxmsg, msgsize });
            }
        }
        let c_path = CString::new(path).map_err(|_| OpenError::Os(Errno::INVAL))?;
        let (fd, created) = self.open_or_create(&c_path)?;
        let attr = self.finish(&fd, created).inspect_err(|_| {
            if created {
                raw_unlink(&c_path).ok();
            }
        })?;
        Ok(PosixMq {
            fd,
            name: self.name,
            path: c_path,
            msgsize: attr.msgsize,
            nonblocking: self.nonblocking,
            remove_on_drop: self.remove_on_drop.unwrap_or(created),
        })
    }

    /// Sets the exact mode on a queue we created and reads back its attributes.
    fn finish(&self, fd: &OwnedFd, created: bool) -> Result<Attributes, OpenError> {
        if created {
            fchmod(fd, Mode::from_raw_mode(self.permissions.mode())).map_err(OpenError::Os)?;
        }
        getattr(fd.as_fd()).map_err(|AttrError(e)| OpenError::Os(e))
    }

    /// Tries an exclusive create first (so we know whether we created the queue), then a
    /// plain open; returns the descriptor and whether this call created the queue.
    fn open_or_create(&self, path: &CString) -> Result<(OwnedFd, bool), OpenError> {
        let base =
            libc::O_RDWR | libc::O_CLOEXEC | if self.nonblocking { libc::O_NONBLOCK } else { 0 };
        let create = OpenAttempt { creating: true, capacity: self.capacity };
        let open = OpenAttempt { creating: false, capacity: None };
        for _ in 0..OPEN_RACE_RETRIES {
            if self.create_mode.may_create() {
                let flags = base | libc::O_CREAT | libc::O_EXCL;
                match raw_open(path, flags, self.permissions.mode(), self.capacity) {
                    Ok(fd) => return Ok((fd, true)),
                    Err(Errno::EXIST) if self.create_mode == CreateMode::OpenOrCreate => {}
                    Err(e) => return Err(open_error(e, &create)),
                }
            }
            match raw_open(path, base, 0, None) {
                Ok(fd) => return Ok((fd, false)),
                // Unlinked between our create and open attempts: try creating again.
                Err(Errno::NOENT) if self.create_mode == CreateMode::OpenOrCreate => {}
                Err(e) => return Err(open_error(e, &open)),
            }
        }
        Err(open_error(Errno::NOENT, &open))
    }
}

/// An open POSIX message queue. Sending and receiving take `&self`; the handle is `Send`
/// and `Sync` (the kernel serialises operations on the queue).
#[derive(Debug)]
pub struct PosixMq {
    fd: OwnedFd,
    name: String,
    path: CString,
    msgsize: usize,
    nonblocking: bool,
    remove_on_drop: bool,
}

impl PosixMq {
    /// Starts describing the queue called `name` (given without the leading `/`).
    pub fn builder(name: &str) -> PosixMqBuilder {
        PosixMqBuilder {
            name: name.to_owned(),
            create_mode: CreateMode::OpenOrCreate,
            permissions: Permissions::default(),
            capacity: None,
            nonblocking: false,
            remove_on_drop: None,
        }
    }

    /// The queue's name, as given to the builder.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue's current attributes.
    pub fn attributes(&self) -> Result<Attributes, AttrError> {
        getattr(self.fd.as_fd())
    }

    /// Unlinks the queue's name now. Open handles (this one included) keep working; the
    /// queue is freed when the last one closes. Dropping this handle will not unlink again.
    pub fn remove(&mut self) -> Result<(), UnlinkError> {
        self.remove_on_drop = false;
        raw_unlink(&self.path).map_err(unlink_error)
    }
}

impl AsFd for PosixMq {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for PosixMq {
    fn drop(&mut self) {
        if self.remove_on_drop {
            raw_unlink(&self.path).ok();
        }
    }
}

/// Unlinks the queue called `name` (without the leading `/`), e.g. one left behind by a
/// killed process. Processes that have it open keep using it until they close it.
pub fn unlink(name: &str) -> Result<(), UnlinkError> {
    let path = posix_name(name)?;
    let c_path = CString::new(path).map_err(|_| UnlinkError::Os(Errno::INVAL))?;
    raw_unlink(&c_path).map_err(unlink_error)
}

fn raw_open(
    path: &CString,
    flags: libc::c_int,
    mode: u32,
    capacity: Option<(usize, usize)>,
) -> Result<OwnedFd, Errno> {
    let mut attr = zeroed_attr();
    let attr_ptr = match capacity {
        Some((maxmsg, msgsize)) => {
            // Both are at most the hard caps, checked by the builder, so they fit a c_long.
            attr.mq_maxmsg = maxmsg as libc::c_long;
            attr.mq_msgsize = msgsize as libc::c_long;
            &mut attr as *mut libc::mq_attr
        }
        None => std::ptr::null_mut(),
    };
    // SAFETY: path is NUL-terminated and attr_ptr is null or points to a live mq_attr.
    let fd = unsafe { libc::mq_open(path.as_ptr(), flags, mode as libc::mode_t, attr_ptr) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: mq_open returned a new descriptor (an mqd_t is an fd on Linux) that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn raw_unlink(path: &CString) -> Result<(), Errno> {
    // SAFETY: path is a NUL-terminated string.
    if unsafe { libc::mq_unlink(path.as_ptr()) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

fn getattr(fd: BorrowedFd<'_>) -> Result<Attributes, AttrError> {
    use std::os::fd::AsRawFd;
    let mut attr = zeroed_attr();
    // SAFETY: fd is an open mqd_t and attr is a live mq_attr the call fills in.
    if unsafe { libc::mq_getattr(fd.as_raw_fd(), &mut attr) } < 0 {
        return Err(AttrError(last_errno()));
    }
    let to_usize = |v: libc::c_long| usize::try_from(v).unwrap_or(0);
    Ok(Attributes {
        maxmsg: to_usize(attr.mq_maxmsg),
        msgsize: to_usize(attr.mq_msgsize),
        curmsgs: to_usize(attr.mq_curmsgs),
        nonblocking: attr.mq_flags & libc::c_long::from(libc::O_NONBLOCK) != 0,
    })
}

fn zeroed_attr() -> libc::mq_attr {
    // SAFETY: mq_attr is plain integers (and padding); all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(tag: &str) -> String {
        format!("ipcxu-mq-{tag}-{}", std::process::id())
    }

    #[test]
    fn builder_refuses_bad_capacity_before_any_syscall() {
        let r = PosixMq::builder(&name("zero")).capacity(0, 16).open();
        assert!(matches!(r, Err(OpenError::ZeroCapacity)));
        let r = PosixMq::builder(&name("huge")).capacity(HARD_MSGMAX + 1, 16).open();
        assert!(matches!(r, Err(OpenError::OverHardCap { .. })));
    }

    #[test]
    fn creator_reads_back_its_capacity_and_unlinks() {
        let n = name("cap");
        let q = PosixMq::builder(&n).create_mode(CreateMode::CreateExclusive).capacity(3, 40);
        let q = q.open().unwrap();
        let a = q.attributes().unwrap();
        assert_eq!((a.maxmsg, a.msgsize, a.curmsgs, a.nonblocking), (3, 40, 0, false));
        drop(q);
        assert!(matches!(unlink(&n), Err(UnlinkError::NotFound(_))));
    }
}
