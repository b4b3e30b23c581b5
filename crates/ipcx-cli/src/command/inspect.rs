//! `ipcx inspect SERVICE`: a service's descriptor, its owner's liveness, and what the
//! pattern exposes live: for pub/sub, the publishers with their rings' counters and the
//! subscribers' lag; for request/response, whether the endpoint is listening. Reading
//! never joins, connects to or cleans anything.

use std::path::Path;

use anyhow::Context;
use ipcx::discovery::{endpoint_listening, list_services};
use ipcx::pubsub::{PubSubInfo, ReadError, RingInfo};
use ipcx::service::{Pattern, ServiceDescriptor};
use ipcx::Namespace;
use serde_json::{json, Value};

use super::liveness;
use crate::cli::InspectArgs;

/// Prints one service (dead owners included, marked as such).
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
    let live = Live::read(ns, d)?;
    if args.json {
        let mut out = json!({ "descriptor": d, "owner_liveness": liveness(info.owner) });
        live.add_json(&mut out);
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
    live.print();
    Ok(())
}

/// What the service's pattern shows of its current state.
enum Live {
    /// A pub/sub service's publishers and subscribers.
    PubSub(Box<PubSubInfo>),
    /// Whether a request/response endpoint is listening (`None`: cannot tell).
    Rpc(Option<bool>),
    /// Nothing more to show for this pattern.
    None,
}

impl Live {
    fn read(ns: &Namespace, d: &ServiceDescriptor) -> anyhow::Result<Live> {
        Ok(match d.pattern {
            Pattern::PubSub => Live::PubSub(Box::new(
                ipcx::pubsub::inspect(ns, &d.name)
                    .with_context(|| format!("cannot inspect service {:?}", d.name))?,
            )),
            // A tcp endpoint file holds an address, not a socket: nothing to look up.
            Pattern::Rpc if d.transport != "tcp" => {
                Live::Rpc(endpoint_listening(Path::new(&d.endpoint)).ok())
            }
            Pattern::Rpc => Live::Rpc(None),
            _ => Live::None,
        })
    }

    fn add_json(&self, out: &mut Value) {
        match self {
            Live::PubSub(info) => {
                out["subscribers"] = json!(info.subscribers());
                out["bell"] = match &info.bell {
                    Ok(b) => {
                        json!({ "parks": b.parks, "wakeups": b.wakeups, "waiters": b.waiters })
                    }
                    Err(e) => json!({ "error": e.to_string() }),
                };
                out["publishers"] = info
                    .publishers
                    .iter()
                    .map(|p| {
                        let mut v = json!({
                            "node": p.node, "pid": p.pid, "alive": p.alive, "segment": p.segment,
                        });
                        match &p.ring {
                            Ok(ring) => v["ring"] = ring_json(ring),
                            Err(e) => v["error"] = json!(chain(e)),
                        }
                        v
                    })
                    .collect();
            }
            Live::Rpc(listening) => out["listening"] = json!(listening),
            Live::None => {}
        }
    }

    fn print(&self) {
        match self {
            Live::PubSub(info) => {
                println!("subscribers   {}", info.subscribers());
                if let Ok(b) = &info.bell {
                    println!("bell          {} parks, {} wakeups", b.parks, b.wakeups);
                }
                println!("publishers    {}", info.publishers.len());
                for p in &info.publishers {
                    let alive = if p.alive { "alive" } else { "dead" };
                    println!("  node {} pid {} ({alive})", p.node, p.pid);
                    match &p.ring {
                        Ok(r) => print_ring(r),
                        Err(e) => println!("    unreadable: {}", chain(e)),
                    }
                }
            }
            Live::Rpc(Some(listening)) => println!("listening     {}", yes_no(*listening)),
            Live::Rpc(None) => println!("listening     unknown (not a unix socket endpoint)"),
            Live::None => {}
        }
    }
}

fn ring_json(r: &RingInfo) -> Value {
    let subs: Vec<Value> = r
        .subscribers
        .iter()
        .map(|s| {
            json!({
                "slot": s.slot, "pid": s.pid, "joining": s.joining, "consumed": s.consumed,
                "lagged": s.lagged, "lag_bytes": s.lag_bytes,
            })
        })
        .collect();
    json!({
        "policy": r.policy.name(), "capacity": r.capacity, "published": r.published,
        "full": r.full, "overwritten": r.overwritten, "dropped": r.dropped,
        "reclaimed": r.reclaimed, "full_waits": r.space.parks, "space_wakeups": r.space.wakeups,
        "subscribers": subs,
    })
}

fn print_ring(r: &RingInfo) {
    println!(
        "    ring        {} bytes, {}: {} published, {} full, {} overwritten, {} dropped",
        r.capacity, r.policy, r.published, r.full, r.overwritten, r.dropped
    );
    println!(
        "    waits       {} full waits, {} wakeups, {} dead subscribers reclaimed",
        r.space.parks, r.space.wakeups, r.reclaimed
    );
    for s in &r.subscribers {
        let joining = if s.joining { " (joining)" } else { "" };
        println!(
            "    subscriber  slot {} pid {}{joining}: {} read, {} missed, lag {} bytes",
            s.slot, s.pid, s.consumed, s.lagged, s.lag_bytes
        );
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// An error and its causes on one line.
fn chain(e: &ReadError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e).and_then(std::error::Error::source);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
