//! `ipcx serve SERVICE --echo`: a request/response server for UTF-8 string messages.
//!
//! Prints `serving SERVICE on TRANSPORT in namespace NS` once clients can connect, then
//! serves until interrupted, or (with `--until-eof`) until standard input is closed.
//! The server runs in a node of its own and publishes a service descriptor (pattern `rpc`,
//! the endpoint's path: [`RpcServer::create`]) so that `ipcx ls` and `ipcx inspect` see it; a
//! killed server's descriptor, endpoint and node are removed by the next cleanup.

use std::io::Write;

use anyhow::Context;
use ipcx::rpc::RpcServer;

use super::UsageError;
use crate::cli::ServeArgs;

/// Runs the server.
pub fn run(args: ServeArgs, ns: ipcx::Namespace) -> anyhow::Result<()> {
    if !args.echo {
        return Err(UsageError(
            "say what to serve: --echo (answer each request with itself)".into(),
        )
        .into());
    }
    let transport = super::transport(&args.transport)?;
    // A node owns the service, so `ipcx ls` lists it and a cleaner removes it if we are killed.
    let node = ipcx::node::Node::builder().namespace(ns.clone()).name("ipcx-serve").create()?;
    let server = RpcServer::<String, String>::create(&node, &args.service, transport)?;
    let handle = server.serve(Ok);
    let mut out = std::io::stdout().lock();
    writeln!(out, "serving {} on {transport} in namespace {ns}", args.service)
        .and_then(|()| out.flush())
        .context("writing to standard output")?;
    drop(out);
    if args.until_eof {
        // Read and discard until end of file (or a read error: nobody can talk to us then).
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        handle.shutdown(ipcx::rpc::DEFAULT_SHUTDOWN_WAIT);
        drop(node);
        return Ok(());
    }
    loop {
        std::thread::park();
    }
}
