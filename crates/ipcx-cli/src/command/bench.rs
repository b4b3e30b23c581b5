//! `ipcx bench`.

use crate::cli::{BenchArgs, BenchPeerArgs};

pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench is not implemented yet")
}

pub fn run_peer(_args: BenchPeerArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench peer is not implemented yet")
}
