//! `ipcx call SERVICE TEXT`: one request/response call with a UTF-8 string message; prints
//! the reply.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use ipcx::rpc::RpcClient;

use crate::cli::CallArgs;

/// Runs the call.
pub fn run(args: CallArgs, ns: ipcx::Namespace) -> anyhow::Result<()> {
    let transport = super::transport(&args.transport)?;
    let timeout = Duration::from_millis(args.timeout);
    // A timeout too long to represent means none.
    let end = Instant::now().checked_add(timeout);
    let mut client = RpcClient::<String, String>::connect(&ns, &args.service, transport, timeout)?;
    let left = end.map_or(timeout, |end| end.saturating_duration_since(Instant::now()));
    let reply = client.call(&args.text, left)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{reply}").and_then(|()| out.flush()).context("writing to standard output")
}
