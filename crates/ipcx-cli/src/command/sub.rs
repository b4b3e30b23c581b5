//! `ipcx sub`: prints the text messages of a pub/sub service, one per line.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ipcx::discovery::{wait_for_service, WaitError};
use ipcx::pubsub::{RecvError, Subscriber};

use crate::cli::SubArgs;

pub fn run(args: SubArgs, ns: ipcx::Namespace) -> anyhow::Result<()> {
    let timeout = args.timeout.map(Duration::from_millis);
    let start = Instant::now();
    // The service may not exist yet: wait for it (within the timeout, if any).
    match wait_for_service(&ns, &args.service, timeout.unwrap_or(Duration::MAX)) {
        Ok(_) => {}
        Err(WaitError::Timeout { waited, .. }) => {
            bail!("no service {:?} appeared in namespace {ns} within {waited:?}", args.service)
        }
        Err(e) => return Err(e.into()),
    }
    let mut sub = Subscriber::<String>::open(&ns, &args.service)
        .with_context(|| format!("cannot subscribe to service {:?}", args.service))?;
    let mut out = std::io::stdout().lock();
    let mut received = 0u64;
    while args.count.is_none_or(|n| received < n) {
        let got = match timeout {
            Some(t) => sub.recv_timeout(t),
            None => sub.recv(),
        };
        match got {
            Ok(text) => {
                received += 1;
                writeln!(out, "{}", *text)?;
                out.flush()?;
            }
            Err(RecvError::Lagged { missed, .. }) => eprintln!("ipcx: missed {missed} messages"),
            Err(RecvError::PublisherGone { .. }) => {}
            Err(e @ RecvError::Decode { .. }) => eprintln!("ipcx: {e}"),
            Err(RecvError::Timeout) => {
                let waited = timeout.unwrap_or_default();
                eprintln!(
                    "ipcx: no message within {} ms; received {received} in {:.1} s",
                    waited.as_millis(),
                    start.elapsed().as_secs_f64()
                );
                if let Some(n) = args.count {
                    bail!("timed out after {received} of {n} messages");
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
