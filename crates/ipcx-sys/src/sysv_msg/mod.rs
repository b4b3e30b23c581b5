//! System V message queues (`msgget`): kernel queues of typed messages, identified by a
//! numeric key (or private to their creator and shared by id). A receiver picks messages
//! by type: any, exactly one type, or the lowest type up to a bound.
//!
//! Limits: one message is at most `/proc/sys/kernel/msgmax` bytes, a queue holds at most
//! `msg_qbytes` bytes (`/proc/sys/kernel/msgmnb` at creation) and the system at most
//! `msgmni` queues. Errors name the limit and what to raise.
//!
//! Lifecycle: a queue lives until removed (`IPC_RMID`), even after every process using it
//! has exited. The handle that created it removes it on drop; [`SysvMsgQueue::remove`]
//! removes it explicitly. A process waiting on a removed queue gets a `Removed` error, which
//! is how a peer learns that the owner is gone. A queue whose creator was killed stays until
//! someone removes it (`ipcrm -q`, or open it and call `remove`).
//!
//! System V has no timed send or receive: the `_timeout` forms poll with `IPC_NOWAIT` and a
//! growing pause (50 µs up to 2 ms), so they may notice a message up to 2 ms late.

mod error;
mod io;

use rustix::io::Errno;

use crate::errno::last_errno;
use crate::options::{CreateMode, Permissions};

use error::{open_error, read_limit, remove_error, stat_error, MSGMAX};
pub use error::{OpenError, RecvError, RemoveError, SendError, StatError};
pub use io::MsgType;

/// How often `OpenOrCreate` retries when another process creates or removes the same key
/// between its attempts.
const OPEN_RACE_RETRIES: usize = 16;
/// Access asked for when opening an existing queue: read and write.
const OPEN_ACCESS: libc::c_int = 0o600;

/// Which queue a builder opens or creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgKey {
    /// A new queue no other process can find by key (`IPC_PRIVATE`); share its
    /// [`id`](SysvMsgQueue::id) and open it with [`SysvMsgQueue::open_id`].
    Private,
    /// The queue with this key (not 0, which means `IPC_PRIVATE`).
    Key(i32),
}

/// The status of a queue (`msgctl(IPC_STAT)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Permission bits (`0o000..=0o777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Messages queued (`msg_qnum`).
    pub messages: u64,
    /// Bytes queued (`msg_cbytes`).
    pub bytes: u64,
    /// Most bytes the queue holds (`msg_qbytes`).
    pub max_bytes: u64,
    /// Process that sent last (`msg_lspid`), 0 if none.
    pub last_send_pid: i32,
    /// Process that received last (`msg_lrpid`), 0 if none.
    pub last_recv_pid: i32,
    /// Last change of the queue's settings, in seconds since the epoch (`msg_ctime`): set at
    /// creation, so with the id it tells a queue from a later one that reused the id.
    pub ctime: i64,
}

/// Options for opening or creating a System V message queue; see [`SysvMsgQueue::builder`].
#[derive(Clone, Debug)]
pub struct SysvMsgQueueBuilder {
    key: MsgKey,
    create_mode: CreateMode,
    permissions: Permissions,
    remove_on_drop: Option<bool>,
}

impl SysvMsgQueueBuilder {
    /// Whether to create the queue, open it, or either (default: `OpenOrCreate`).
    pub fn create_mode(mut self, mode: CreateMode) -> Self {
        self.create_mode = mode;
        self
    }

    /// Permission bits of a queue this call creates (default `0o600`); `msgget` takes them
    /// as they are, the umask does not apply. Ignored when an existing queue is opened.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Whether dropping the handle removes the queue. Default: only if this call created it.
    pub fn remove_on_drop(mut self, remove: bool) -> Self {
        self.remove_on_drop = Some(remove);
        self
    }

    /// Opens or creates the queue. Opening asks for read and write access.
    pub fn open(self) -> Result<SysvMsgQueue, OpenError> {
        let key = match self.key {
            MsgKey::Private if self.create_mode == CreateMode::Open => {
                return Err(OpenError::PrivateNeedsCreate)
            }
            MsgKey::Private => libc::IPC_PRIVATE,
            MsgKey::Key(0) => return Err(OpenError::BadKey),
            MsgKey::Key(k) => k,
        };
        let (id, created) = self.get(key)?;
        let remove_on_drop = self.remove_on_drop.unwrap_or(created);
        Ok(SysvMsgQueue::with_limits(id, remove_on_drop))
    }

    /// Tries an exclusive create first (so we know whether we created the queue), then a
    /// plain open; returns the id and whether this call created the queue.
    fn get(&self, key: libc::key_t) -> Result<(i32, bool), OpenError> {
        // Permissions::mode() is within 0o777, so it fits a c_int.
        let mode = self.permissions.mode() as libc::c_int;
        for _ in 0..OPEN_RACE_RETRIES {
            if self.create_mode.may_create() {
                match msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | mode) {
                    Ok(id) => return Ok((id, true)),
                    Err(Errno::EXIST) if self.create_mode == CreateMode::OpenOrCreate => {}
                    Err(e) => return Err(open_error(e)),
                }
            }
            match msgget(key, OPEN_ACCESS) {
                Ok(id) => return Ok((id, false)),
                // Removed between our create and open attempts: try creating again.
                Err(Errno::NOENT) if self.create_mode == CreateMode::OpenOrCreate => {}
                Err(e) => return Err(open_error(e)),
            }
        }
        Err(open_error(Errno::NOENT))
    }
}

/// An open System V message queue. Sending and receiving take `&self`; the handle is `Send`
/// and `Sync` (the kernel serialises operations on the queue).
#[derive(Debug)]
pub struct SysvMsgQueue {
    id: i32,
    remove_on_drop: bool,
    /// `msgmax` when opened, if readable; longer messages are refused before the syscall.
    msgmax: Option<usize>,
    /// `msg_qbytes` when opened, if readable; longer messages could never be queued.
    qbytes: Option<usize>,
}

impl SysvMsgQueue {
    /// Starts describing the queue with `key`.
    pub fn builder(key: MsgKey) -> SysvMsgQueueBuilder {
        SysvMsgQueueBuilder {
            key,
            create_mode: CreateMode::OpenOrCreate,
            permissions: Permissions::default(),
            remove_on_drop: None,
        }
    }

    /// Opens the existing queue with identifier `id` (e.g. a private queue's id passed on by
    /// its creator). Checks that it exists and that this user may read its status. The
    /// handle does not remove the queue on drop unless [`set_remove_on_drop`] is called.
    ///
    /// [`set_remove_on_drop`]: SysvMsgQueue::set_remove_on_drop
    pub fn open_id(id: i32) -> Result<SysvMsgQueue, OpenError> {
        ipc_stat(id).map_err(open_error)?;
        Ok(SysvMsgQueue::with_limits(id, false))
    }

    fn with_limits(id: i32, remove_on_drop: bool) -> SysvMsgQueue {
        let msgmax = read_limit(MSGMAX).and_then(|v| usize::try_from(v).ok());
        let qbytes = ipc_stat(id).ok().and_then(|ds| usize::try_from(ds.msg_qbytes).ok());
        SysvMsgQueue { id, remove_on_drop, msgmax, qbytes }
    }

    /// The queue's identifier (`msqid`), which other processes pass to [`open_id`].
    ///
    /// [`open_id`]: SysvMsgQueue::open_id
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Sets whether dropping this handle removes the queue.
    pub fn set_remove_on_drop(&mut self, remove: bool) {
        self.remove_on_drop = remove;
    }

    /// The queue's mode, owner and fill level.
    pub fn status(&self) -> Result<Status, StatError> {
        let ds = ipc_stat(self.id).map_err(stat_error)?;
        Ok(Status {
            mode: u32::from(ds.msg_perm.mode) & 0o777,
            uid: ds.msg_perm.uid,
            gid: ds.msg_perm.gid,
            messages: ds.msg_qnum,
            bytes: ds.__msg_cbytes,
            max_bytes: ds.msg_qbytes,
            last_send_pid: ds.msg_lspid,
            last_recv_pid: ds.msg_lrpid,
            ctime: ds.msg_ctime,
        })
    }

    /// Removes the queue now. Processes waiting on it get a `Removed` error.
    pub fn remove(mut self) -> Result<(), RemoveError> {
        self.remove_on_drop = false;
        rmid(self.id).map_err(remove_error)
    }
}

impl Drop for SysvMsgQueue {
    fn drop(&mut self) {
        if self.remove_on_drop {
            rmid(self.id).ok();
        }
    }
}

fn msgget(key: libc::key_t, flags: libc::c_int) -> Result<i32, Errno> {
    // SAFETY: msgget takes no pointers.
    let id = unsafe { libc::msgget(key, flags) };
    if id < 0 {
        return Err(last_errno());
    }
    Ok(id)
}

fn ipc_stat(id: i32) -> Result<libc::msqid_ds, Errno> {
    // SAFETY: msqid_ds is plain integers (and padding); all zeroes is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: ds is a live msqid_ds that IPC_STAT fills in.
    if unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) } < 0 {
        return Err(last_errno());
    }
    Ok(ds)
}

fn rmid(id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID does not use the buffer argument, so null is allowed.
    if unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_key_zero_and_opening_a_private_queue() {
        let r = SysvMsgQueue::builder(MsgKey::Key(0)).open();
        assert!(matches!(r, Err(OpenError::BadKey)));
        let r = SysvMsgQueue::builder(MsgKey::Private).create_mode(CreateMode::Open).open();
        assert!(matches!(r, Err(OpenError::PrivateNeedsCreate)));
    }

    #[test]
    fn private_queue_has_exact_mode_and_is_removed_on_drop() {
        let perms = Permissions::from_mode(0o640).unwrap();
        let q = SysvMsgQueue::builder(MsgKey::Private).permissions(perms).open().unwrap();
        let st = q.status().unwrap();
        assert_eq!((st.mode, st.messages, st.bytes), (0o640, 0, 0));
        let other = SysvMsgQueue::open_id(q.id()).unwrap();
        drop(q);
        assert!(matches!(other.status(), Err(StatError::Removed(_))));
        assert!(matches!(SysvMsgQueue::open_id(other.id()), Err(OpenError::NotFound(_))));
    }
}
