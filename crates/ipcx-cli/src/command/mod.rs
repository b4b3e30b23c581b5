//! One file per verb.

mod bench;
mod doctor;

use crate::cli::{Cli, Command};

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Doctor => doctor::run(),
        Command::Bench(args) => bench::run(args),
        Command::BenchPeer(args) => bench::run_peer(args),
    }
}
