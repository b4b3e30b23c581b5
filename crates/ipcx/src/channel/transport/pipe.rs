//! `pipe` and `fifo`: two one-way pipes, one per direction, carrying framed byte streams.
//!
//! `pipe`: the listener's side creates two anonymous pipes and passes the connector its two
//! ends (the read end of listener → connector, the write end of connector → listener) with
//! the setup message; it closes its copies of those ends, so each pipe has exactly one
//! reader and one writer and the death of either gives end-of-file or `EPIPE` at once.
//!
//! `fifo`: the listener's side creates two FIFOs in the namespace directory,
//! `<name>.<id>.up` (connector → listener) and `<name>.<id>.down`, with the channel's
//! permissions, opens its reading end of `up` and its writing end of `down` (through a
//! reading end of its own, held until the connector confirms, so the open does not wait),
//! and names them in the setup message. The connector opens its reading end of `down`, then
//! its writing end of `up`, and confirms; the listener then drops its own reading end of
//! `down` and removes both paths, which stay usable through the open ends. Nothing is left
//! in the directory once the connection is set up, whatever happens afterwards. (Opening the
//! writing end only after the confirmation would find no reader when a fast connector had
//! already sent, closed and gone, and fail the accept.)

use std::os::fd::AsFd;
use std::path::PathBuf;

use ipcx_sys::pipe::{pipe, Fifo, PipeReader, PipeWriter};
use ipcx_sys::uds::UdsStream;
use ipcx_sys::CreateMode;

use super::control::{recv_ready, recv_setup, send_ready, send_setup};
use super::stream::{PipeIo, StreamLink};
use super::{Link, Setup};
use crate::channel::error::ConnectError;

/// The payload of a `pipe` setup message (the fds carry the rest).
const PIPE_SETUP: &[u8] = b"pipe";

/// Listener side of `pipe`.
pub(crate) fn accept_pipe(ctl: UdsStream, setup: &Setup<'_>) -> Result<Link, ConnectError> {
    let os = |e| ConnectError::os("creating a pipe", e);
    let (down_r, down_w) = pipe().map_err(os)?;
    let (up_r, up_w) = pipe().map_err(os)?;
    send_setup(&ctl, PIPE_SETUP, &[down_r.as_fd(), up_w.as_fd()])?;
    drop((down_r, up_w));
    recv_ready(&ctl, setup.deadline)?;
    let io = PipeIo::new(up_r, down_w);
    Ok(Link::Pipe(StreamLink::new(io, setup.max_frame)))
}

/// Connector side of `pipe`.
pub(crate) fn connect_pipe(ctl: UdsStream, setup: &Setup<'_>) -> Result<Link, ConnectError> {
    let (payload, fds) = recv_setup(&ctl, 2, setup.deadline)?;
    let [down_r, up_w]: [_; 2] = fds.try_into().map_err(|fds: Vec<_>| {
        ConnectError::Handshake(format!("pipe setup carried {} fds, not 2", fds.len()).into())
    })?;
    if payload != PIPE_SETUP {
        return Err(ConnectError::Handshake("pipe setup payload is not \"pipe\"".into()));
    }
    let os = |e| ConnectError::os("taking the pipe ends received", e);
    let io = PipeIo::new(
        PipeReader::from_fd(down_r).map_err(os)?,
        PipeWriter::from_fd(up_w).map_err(os)?,
    );
    send_ready(&ctl)?;
    Ok(Link::Pipe(StreamLink::new(io, setup.max_frame)))
}

/// The two FIFO paths of connection `id`.
fn fifo_paths(dir: &std::path::Path, name: &str, id: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.{id}.up")), dir.join(format!("{name}.{id}.down")))
}

/// Listener side of `fifo`.
pub(crate) fn accept_fifo(ctl: UdsStream, setup: &Setup<'_>) -> Result<Link, ConnectError> {
    let dir = setup.namespace.ensure_dir()?;
    let id = format!("{:016x}", crate::node::random_u64());
    let (up_path, down_path) = fifo_paths(&dir, setup.name, &id);
    let make = |path: &PathBuf| {
        Fifo::builder(path)
            .create_mode(CreateMode::CreateExclusive)
            .permissions(setup.permissions)
            .open()
            .map_err(|e| ConnectError::os("creating a FIFO", e))
    };
    // Both paths are removed when these handles drop, on every path out of here.
    let (up, down) = (make(&up_path)?, make(&down_path)?);
    let open = |e| ConnectError::os("opening a FIFO", e);
    let reader = up.open_reader().map_err(open)?;
    // A reading end of our own makes the writing end's open return at once; dropped once
    // the connector has its reading end, so the connector is then the only reader.
    let hold = down.open_reader().map_err(open)?;
    let writer = down.open_writer().map_err(open)?;
    send_setup(&ctl, id.as_bytes(), &[])?;
    recv_ready(&ctl, setup.deadline)?;
    drop((hold, up, down));
    Ok(Link::Pipe(StreamLink::new(PipeIo::new(reader, writer), setup.max_frame)))
}

/// Connector side of `fifo`.
pub(crate) fn connect_fifo(ctl: UdsStream, setup: &Setup<'_>) -> Result<Link, ConnectError> {
    let (payload, _) = recv_setup(&ctl, 0, setup.deadline)?;
    let id = std::str::from_utf8(&payload)
        .ok()
        .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            ConnectError::Handshake("fifo setup does not hold a connection id".into())
        })?;
    let (up_path, down_path) = fifo_paths(&setup.namespace.dir(), setup.name, id);
    let find = |path: &PathBuf| {
        Fifo::builder(path)
            .create_mode(CreateMode::Open)
            .open()
            .map_err(|e| ConnectError::os("finding a FIFO", e))
    };
    let (up, down) = (find(&up_path)?, find(&down_path)?);
    let open = |e| ConnectError::os("opening a FIFO", e);
    let reader = down.open_reader().map_err(open)?;
    let writer = match setup.deadline.remaining() {
        None => up.open_writer(),
        Some(t) => up.open_writer_timeout(t),
    }
    .map_err(open)?;
    send_ready(&ctl)?;
    Ok(Link::Pipe(StreamLink::new(PipeIo::new(reader, writer), setup.max_frame)))
}
