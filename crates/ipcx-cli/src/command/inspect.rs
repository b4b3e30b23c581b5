//! `ipcx inspect SERVICE`: a service's descriptor and its owner's liveness.

use anyhow::Context;
use ipcx::discovery::list_services;
use ipcx::Namespace;
use serde_json::json;

use super::liveness;
use crate::cli::InspectArgs;

/// Prints the descriptor of one service (dead owners included, marked as such).
pub fn run(ns: &Namespace, args: &InspectArgs) -> anyhow::Result<()> {
    let services = list_services(ns).context("cannot list services")?;
    let Some(info) = services.into_iter().find(|s| s.descriptor.name == args.service) else {
        anyhow::bail!(
            "no service {:?} in namespace {:?}; `ipcx --namespace {} ls` lists what there is",
            args.service,
            ns.name(),
            ns.name()
        );
    };
    let d = &info.descriptor;
    if args.json {
        let out = json!({ "descriptor": d, "owner_liveness": liveness(info.owner) });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("service       {}", d.name);
    println!("namespace     {}", ns.name());
    println!("pattern       {}", d.pattern);
    println!("transport     {}", d.transport);
    println!(
        "contract      {} {} (fingerprint {})",
        d.contract.name, d.contract.version, d.contract.fingerprint
    );
    println!("capacity      {}", d.capacity);
    println!("max message   {}", d.max_message);
    println!("back-pressure {}", d.back_pressure);
    println!("permissions   {}", d.permissions);
    println!("allow uids    {:?}", d.allow_uids);
    println!("allow gids    {:?}", d.allow_gids);
    println!("endpoint      {}", d.endpoint);
    println!("owner         {} ({})", d.owner, liveness(info.owner));
    println!("created       {} ms since the epoch", d.created_unix_ms);
    println!("format        {}", d.format);
    for (k, v) in &d.properties {
        println!("property      {k} = {v}");
    }
    Ok(())
}
