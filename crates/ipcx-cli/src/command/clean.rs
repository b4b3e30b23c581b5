//! `ipcx clean [--dry-run]`: removes what dead nodes left behind and prints it.

use anyhow::Context;
use ipcx::cleanup::clean;
use ipcx::Namespace;

use crate::cli::CleanArgs;

/// Cleans (or, with `--dry-run`, lists) and prints one line per item.
pub fn run(ns: &Namespace, args: &CleanArgs) -> anyhow::Result<()> {
    let report = clean(ns, args.dry_run).context("cleanup failed")?;
    let verb = if args.dry_run { "would remove" } else { "removed" };
    let nothing = report.nodes.is_empty()
        && report.endpoints.is_empty()
        && report.temp_files.is_empty()
        && report.sysv_queues.is_empty();
    if nothing {
        println!("nothing to clean in namespace {}", ns.name());
        return Ok(());
    }
    for path in &report.endpoints {
        println!("dead listener: {verb} endpoint {}", path.display());
    }
    for id in &report.sysv_queues {
        println!("dead sysv-msg channel: {verb} System V queue {id}");
    }
    for path in &report.temp_files {
        println!("killed writer: {verb} temporary file {}", path.display());
    }
    let mut failed = 0;
    for node in &report.nodes {
        let (label, pid) = match &node.record {
            Some(r) => (r.label.clone().unwrap_or_default(), r.pid.to_string()),
            None => (String::new(), "?".to_owned()),
        };
        println!("dead node {} (pid {pid}) {label}", node.id);
        for item in &node.removed {
            println!("  {verb} {item}");
        }
        for f in &node.failures {
            failed += 1;
            println!("  failed to remove {}: {}", f.item, chain(&f.error));
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} items could not be removed; see above, then rerun `ipcx clean`");
    }
    Ok(())
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
