//! `floor.pipe`: two anonymous pipes, one per direction, made by std as the peer's stdin
//! and stdout. Default pipe capacity is 64 KiB; bigger messages stream through it.

use std::fs::File;

use anyhow::{Context, Result};

use super::stream::StreamEnd;
use super::{Channel, Endpoint, Floor, PeerIo};

/// Anonymous pipes.
#[derive(Debug)]
pub struct Pipe;

impl Floor for Pipe {
    fn name(&self) -> &'static str {
        "floor.pipe"
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let channel = Channel::connect_with(|child| {
            let to_peer = child.stdin.take().context("peer has no stdin pipe")?;
            let from_peer = child.stdout.take().context("peer has no stdout pipe")?;
            Ok(Box::new(StreamEnd::new(from_peer, to_peer)))
        });
        Ok(channel.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        Ok(Box::new(StreamEnd::new(File::from(io.stdin()?), File::from(io.stdout()?))))
    }
}
