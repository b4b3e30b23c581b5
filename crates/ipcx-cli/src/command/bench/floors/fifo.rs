//! `floor.fifo`: two named FIFOs, one per direction, in a fresh private directory under the
//! temp dir whose path is the rendezvous. Like `floor.pipe` but reached by path; the
//! default 64 KiB buffer streams bigger messages.
//!
//! Opening a FIFO for writing blocks until someone opens it for reading, so the ends are
//! opened in an order where nobody waits: the bench opens its reader of `to-bench` before
//! the peer starts; the peer opens its reader of `to-peer`, then its writer of `to-bench`,
//! then says ready; only then does the bench open its writer of `to-peer`. With all four
//! ends open the bench removes the paths and the directory.
//!
//! The ends are ipcx-sys pipe ends: non-blocking, every wait a `poll` with a timeout, so
//! each message costs a `poll` more than `floor.pipe`'s blocking reads when it has to wait.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipcx_sys::pipe::{Fifo as NamedFifo, PipeReader, PipeWriter};
use ipcx_sys::CreateMode;

use super::{unique_name, Channel, Endpoint, Floor, PeerIo, OP_TIMEOUT};

/// File name of the FIFO bench → peer.
const TO_PEER: &str = "to-peer";
/// File name of the FIFO peer → bench.
const TO_BENCH: &str = "to-bench";

/// Named FIFOs (`mkfifo`).
#[derive(Debug)]
pub struct Fifo;

impl Floor for Fifo {
    fn name(&self) -> &'static str {
        "floor.fifo"
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let fifos = Fifos::create()?;
        let rx = fifos.to_bench.open_reader().context("cannot open the FIFO for reading")?;
        let rendezvous = fifos.dir.0.to_str().context("the temp dir path is not UTF-8")?;
        let rendezvous = rendezvous.to_owned();
        let channel = Channel::connect_with(move |_| {
            // The peer holds its reader of `to-peer` open: this does not wait.
            let tx = fifos.to_peer.open_writer_timeout(OP_TIMEOUT).context("open of `to-peer`")?;
            fifos.remove()?;
            Ok(Box::new(FifoEnd { rx, tx }))
        });
        Ok(channel.rendezvous(rendezvous))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        let dir = Path::new(io.rendezvous()?);
        let find = |file| {
            let path = dir.join(file);
            let fifo = NamedFifo::builder(&path).create_mode(CreateMode::Open).open();
            fifo.with_context(|| format!("cannot find the FIFO {}", path.display()))
        };
        let rx = find(TO_PEER)?.open_reader().context("cannot open `to-peer` for reading")?;
        // The bench holds its reader of `to-bench` open: this does not wait.
        let tx = find(TO_BENCH)?.open_writer_timeout(OP_TIMEOUT).context("open of `to-bench`")?;
        Ok(Box::new(FifoEnd { rx, tx }))
    }
}

/// The two FIFOs and their directory, made by the bench. Dropping removes them all: the
/// FIFOs first (fields drop in order), then the emptied directory.
#[derive(Debug)]
struct Fifos {
    to_peer: NamedFifo,
    to_bench: NamedFifo,
    dir: TempDir,
}

impl Fifos {
    fn create() -> Result<Fifos> {
        let dir = TempDir::create()?;
        let make = |file| {
            let path = dir.0.join(file);
            let fifo = NamedFifo::builder(&path).create_mode(CreateMode::CreateExclusive).open();
            fifo.with_context(|| format!("cannot create the FIFO {}", path.display()))
        };
        Ok(Fifos { to_peer: make(TO_PEER)?, to_bench: make(TO_BENCH)?, dir })
    }

    /// Removes the paths now (open ends keep working), reporting what failed.
    fn remove(mut self) -> Result<()> {
        self.to_peer.remove().context("cannot remove the FIFO `to-peer`")?;
        self.to_bench.remove().context("cannot remove the FIFO `to-bench`")?;
        let Fifos { dir, .. } = self;
        dir.remove()
    }
}

/// A directory only this user can enter, removed (if empty) on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir> {
        let path = std::env::temp_dir().join(unique_name("fifo"));
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create the directory {}", path.display()))?;
        Ok(TempDir(path))
    }

    /// Removes the directory now, reporting a failure; drop will not try again.
    fn remove(mut self) -> Result<()> {
        let path = std::mem::take(&mut self.0);
        std::fs::remove_dir(&path).with_context(|| format!("cannot remove {}", path.display()))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
}

/// Reads whole messages from `rx`, writes them to `tx`, each wait bounded by [`OP_TIMEOUT`].
#[derive(Debug)]
struct FifoEnd {
    rx: PipeReader,
    tx: PipeWriter,
}

impl Endpoint for FifoEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.write_all_timeout(msg, OP_TIMEOUT).context("write failed")
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        self.rx.read_exact_timeout(buf, OP_TIMEOUT).context("read failed")?;
        Ok(1)
    }
}
