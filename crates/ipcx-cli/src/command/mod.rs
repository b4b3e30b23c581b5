//! One file per verb.

mod bench;
mod call;
mod clean;
mod doctor;
mod inspect;
mod ls;
mod pub_;
mod serve;
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
        Command::Ls(args) => ls::run(&namespace(cli.namespace)?, &args),
        Command::Inspect(args) => inspect::run(&namespace(cli.namespace)?, &args),
        Command::Clean(args) => clean::run(&namespace(cli.namespace)?, &args),
        Command::Bench(args) => bench::run(args),
        Command::BenchPeer(args) => bench::run_peer(args),
        Command::Serve(args) => serve::run(args, namespace(cli.namespace.clone())?),
        Command::Call(args) => call::run(args, namespace(cli.namespace.clone())?),
        Command::Pub(args) => pub_::run(args, namespace(cli.namespace.clone())?),
        Command::Sub(args) => sub::run(args, namespace(cli.namespace.clone())?),
    }
}

/// The namespace of `--namespace`, else of `IPCX_NAMESPACE`, else "default".
fn namespace(flag: Option<String>) -> anyhow::Result<ipcx::Namespace> {
    let ns = match flag {
        Some(name) => ipcx::Namespace::new(&name),
        None => ipcx::Namespace::from_env(),
    };
    ns.map_err(|e| UsageError(format!("--namespace: {e}")).into())
}

/// How `ls` and `inspect` spell a liveness.
fn liveness(l: ipcx::discovery::Liveness) -> &'static str {
    use ipcx::discovery::Liveness;
    match l {
        Liveness::Alive => "alive",
        Liveness::Dead => "dead",
        Liveness::Missing => "gone",
    }
}

/// The transport named `name`, or a usage error.
fn transport(name: &str) -> anyhow::Result<ipcx::Transport> {
    name.parse().map_err(|e: ipcx::channel::UnknownTransport| UsageError(e.to_string()).into())
}
