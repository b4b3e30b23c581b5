//! One file per verb.

mod bench;
mod doctor;
mod pub_;
mod sub;

use std::fmt;

use crate::cli::{Cli, Command};

/// A mistake in the command line that clap's parsing cannot see (e.g. an unknown transport
/// name): `main` prints it like any error but exits with code 2, as clap does for usage errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Doctor => doctor::run(),
        Command::Bench(args) => bench::run(args),
        Command::BenchPeer(args) => bench::run_peer(args),
        Command::Pub(args) => pub_::run(args),
        Command::Sub(args) => sub::run(args),
    }
}

/// The namespace named by `--namespace`, else the default one.
pub(crate) fn namespace(name: Option<&str>) -> anyhow::Result<ipcx::Namespace> {
    let ns = match name {
        Some(name) => ipcx::Namespace::new(name),
        None => ipcx::Namespace::from_env(),
    };
    ns.map_err(|e| UsageError(e.to_string()).into())
}
