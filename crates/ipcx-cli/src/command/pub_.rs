//! `ipcx pub`: publishes a text message to a pub/sub service.

use std::time::Duration;

use anyhow::{bail, Context};
use ipcx::node::Node;
use ipcx::pubsub::{PubSubConfig, Publisher};

use crate::cli::PubArgs;

/// How long `--wait-subscriber` waits.
const SUBSCRIBER_WAIT: Duration = Duration::from_secs(10);

pub fn run(args: PubArgs, ns: ipcx::Namespace) -> anyhow::Result<()> {
    let node = Node::builder().namespace(ns).name("ipcx-pub").create()?;
    let mut publisher = Publisher::<String>::create(&node, &args.service, PubSubConfig::default())
        .with_context(|| format!("cannot publish to service {:?}", args.service))?;
    if args.wait_subscriber && !publisher.wait_for_subscribers(1, SUBSCRIBER_WAIT) {
        bail!("no subscriber attached to {:?} within {SUBSCRIBER_WAIT:?}", args.service);
    }
    for i in 0..args.count {
        if i > 0 && args.interval > 0 {
            std::thread::sleep(Duration::from_millis(args.interval));
        }
        publisher.send(args.text.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}
