//! `ipcx ls`: the services and nodes of a namespace, with liveness.

use anyhow::Context;
use ipcx::discovery::{list_nodes, list_services};
use ipcx::Namespace;
use serde_json::json;

use super::liveness;
use crate::cli::LsArgs;

/// Lists services, then nodes.
pub fn run(ns: &Namespace, args: &LsArgs) -> anyhow::Result<()> {
    let services = list_services(ns).context("cannot list services")?;
    let nodes = list_nodes(ns).context("cannot list nodes")?;
    if args.json {
        let services: Vec<_> = services
            .iter()
            .map(|s| {
                let d = &s.descriptor;
                json!({
                    "name": d.name, "pattern": d.pattern, "transport": d.transport,
                    "contract": d.contract, "owner": d.owner, "owner_liveness": liveness(s.owner),
                })
            })
            .collect();
        let nodes: Vec<_> = nodes
            .iter()
            .map(|n| {
                let r = n.record.as_ref();
                json!({
                    "id": n.id, "liveness": liveness(n.liveness),
                    "label": r.and_then(|r| r.label.clone()), "pid": r.map(|r| r.pid),
                    "uid": r.map(|r| r.uid), "started_unix_ms": r.map(|r| r.started_unix_ms),
                    "ipcx_version": r.map(|r| r.ipcx_version.clone()),
                })
            })
            .collect();
        let out = json!({ "namespace": ns.name(), "services": services, "nodes": nodes });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("namespace {} ({})", ns.name(), ns.dir().display());
    println!("\nservices: {}", services.len());
    for s in &services {
        let d = &s.descriptor;
        println!(
            "  {:<24} {:<8} {:<14} {} {}  owner {} ({})",
            d.name,
            d.pattern,
            d.transport,
            d.contract.name,
            d.contract.version,
            d.owner,
            liveness(s.owner)
        );
    }
    println!("\nnodes: {}", nodes.len());
    for n in &nodes {
        let (label, pid) = match &n.record {
            Some(r) => (r.label.clone().unwrap_or_default(), r.pid.to_string()),
            None => (String::new(), "?".to_owned()),
        };
        println!("  {}  {:<6} pid {:<8} {}", n.id, liveness(n.liveness), pid, label);
    }
    Ok(())
}
