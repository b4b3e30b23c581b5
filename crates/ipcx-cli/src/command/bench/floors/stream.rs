//! An [`Endpoint`] over any byte stream (pipe, FIFO, stream socket): a message of `size`
//! bytes is written whole with `write_all` and read whole with `read_exact`.

use std::io::{Read, Write};

use anyhow::{Context, Result};

use super::Endpoint;

/// Reads messages from `R` and writes them to `W` (the same socket cloned, or two pipes).
#[derive(Debug)]
pub struct StreamEnd<R, W> {
    reader: R,
    writer: W,
}

impl<R: Read, W: Write> StreamEnd<R, W> {
    /// An endpoint reading from `reader` and writing to `writer`.
    pub fn new(reader: R, writer: W) -> StreamEnd<R, W> {
        StreamEnd { reader, writer }
    }
}

impl<R: Read, W: Write> Endpoint for StreamEnd<R, W> {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.writer.write_all(msg).context("write failed")
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        self.reader.read_exact(buf).context("read failed (peer gone?)")?;
        Ok(1)
    }
}
