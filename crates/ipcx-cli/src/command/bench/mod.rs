//! `ipcx bench`: latency and throughput between two processes pinned to different CPUs.
//!
//! `--raw` runs the floors of the OS primitives (`floor.*`, see [`floors`]); without it the
//! same run also measures the ipcx shared-memory entries (`shm.*`, see [`shm`]) and the
//! channel API over each transport (`chan.*`, see [`chan`]) and publish/subscribe
//! (`pubsub.*`, see [`pubsub`]), and checks their performance
//! targets against the floors of that run ([`targets`]). `--transport` keeps the entries of
//! the transports it lists ([`chan::transport_of`]). Each entry runs
//! in a fresh peer process (this binary as `ipcx __bench-peer`, see [`peer`]); [`harness`]
//! drives the measurement, [`stats`] and [`report`] turn it into the table on stdout and
//! the `--json` file. Progress goes to stderr when it is a terminal.

mod chan;
mod control;
mod floors;
mod harness;
mod peer;
mod pubsub;
mod report;
mod rpc;
mod shm;
mod stats;
mod targets;

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ipcx::channel::Transport;

use self::floors::{Entry, Floor};
use self::harness::Plan;
use self::report::{Failed, Report, Row, Skipped};
use super::UsageError;
use crate::cli::{BenchArgs, BenchPeerArgs};

/// Largest message size `--sizes` accepts (64 MiB).
const MAX_SIZE: usize = 64 << 20;
/// Skip reason of signal-only floors at payload sizes.
const SIGNAL_ONLY: &str = "signal only, carries no payload";
/// Skip reason of floors not wired yet.
const NOT_WIRED: &str = "not yet wired";

/// Runs `ipcx bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let sizes = args.sizes.as_deref().map(check_sizes).transpose()?;
    let transports = check_transports(&args.transport)?;
    let all: Vec<Entry> = if args.raw {
        floors::ALL.to_vec()
    } else {
        floors::ALL
            .iter()
            .chain(shm::ALL)
            .chain(chan::ALL)
            .chain(rpc::ALL)
            .chain(pubsub::ALL)
            .copied()
            .collect()
    };
    let mut entries = select(&all, &args.filter)?;
    if let Some(transports) = &transports {
        entries.retain(|e| chan::transport_of(e.name()).is_some_and(|t| transports.contains(&t)));
    }
    if args.samples == Some(0) {
        bail!("--samples must be at least 1");
    }
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let plan = Plan::new(args.quick, args.samples);
    let cpus = Placement::pin();

    let mut report = Report::default();
    let mut work: Vec<(&dyn Floor, usize)> = Vec::new();
    for entry in entries {
        let sizes = match (&sizes, entry) {
            (Some(sizes), _) => sizes.as_slice(),
            (None, Entry::Ready(floor)) => floor.default_sizes(),
            (None, Entry::NotWired(_)) => floors::DEFAULT_SIZES,
        };
        let skip = |size, reason: &str| Skipped {
            name: entry.name().to_owned(),
            size,
            reason: reason.to_owned(),
        };
        match entry {
            Entry::NotWired(_) => report.skipped.extend(sizes.iter().map(|&s| skip(s, NOT_WIRED))),
            Entry::Ready(floor) if floor.signal_only() => {
                work.push((floor, 0));
                report.skipped.extend(sizes.iter().map(|&s| skip(s, SIGNAL_ONLY)));
            }
            Entry::Ready(floor) => {
                for &size in sizes {
                    match floor.cannot_carry(size) {
                        Some(reason) => report.skipped.push(skip(size, &reason)),
                        None => work.push((floor, size)),
                    }
                }
            }
        }
    }

    let bar = progress(work.len() * args.repeat as usize);
    // rounds[i]: what each round measured of work item i.
    let mut rounds: Vec<Vec<Result<Row, String>>> = work.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.repeat {
        for (i, &(floor, size)) in work.iter().enumerate() {
            bar.set_message(format!("{} {}", floor.name(), report::size(size)));
            let measured = harness::measure(floor, size, &plan, cpus.peer).map(|m| Row {
                name: floor.name().to_owned(),
                size,
                p50_ns: m.latency.p50_ns,
                p99_ns: m.latency.p99_ns,
                p999_ns: m.latency.p999_ns,
                samples: m.latency.samples,
                msgs_per_s: m.msgs_per_s,
            });
            rounds[i].push(measured.map_err(|e| format!("{e:#}")));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    for ((floor, size), measured) in work.iter().zip(rounds) {
        match median_round(measured) {
            Ok(row) => report.results.push(row),
            Err(error) => {
                report.failed.push(Failed { name: floor.name().to_owned(), size: *size, error })
            }
        }
    }

    let mode = if args.quick { "quick" } else { "full" };
    let kind = if args.raw { "raw floors" } else { "all entries" };
    let rounds = match args.repeat {
        1 => String::new(),
        n => format!(", median of {n} rounds"),
    };
    println!("ipcx bench ({kind}, {mode}{rounds}): {}", cpus.describe());
    println!(
        "latency is one-way (round trip / 2); msgs/s and MB/s in one direction, at the receiver"
    );
    print!("{}", report.table());
    let ratios = (!args.raw).then(|| {
        let mut ratios = targets::evaluate(&report);
        if let Some(transports) = &transports {
            ratios.retain(|r| r.transport.is_none_or(|t| transports.contains(&t)));
        }
        ratios
    });
    if let Some(ratios) = &ratios {
        print!("{}", targets::table(ratios));
    }
    if let Some(path) = &args.json {
        let json = match &ratios {
            Some(ratios) => targets::json(&report, ratios),
            None => report.to_json(),
        };
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the JSON results to {}", path.display()))?;
    }
    if !report.failed.is_empty() {
        let measured = report.results.len() + report.failed.len();
        bail!("{} of {measured} measurements failed (listed above)", report.failed.len());
    }
    Ok(())
}

/// The round with the median p50 (the lower one of an even count); the first error if any
/// round failed (a failure is never hidden behind a good round).
fn median_round(rounds: Vec<Result<Row, String>>) -> Result<Row, String> {
    let mut rows = rounds.into_iter().collect::<Result<Vec<Row>, String>>()?;
    rows.sort_by_key(|r| r.p50_ns);
    let middle = rows.len().saturating_sub(1) / 2;
    rows.into_iter().nth(middle).ok_or_else(|| "not measured".to_owned())
}

/// Runs the hidden `ipcx __bench-peer`: the far side of one measurement.
pub fn run_peer(args: BenchPeerArgs) -> Result<()> {
    peer::serve(args)
}

/// The sizes to run, deduplicated in order; rejects sizes no message can have.
fn check_sizes(sizes: &[usize]) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for &size in sizes {
        if size == 0 || size > MAX_SIZE {
            bail!(
                "--sizes: {size} is not a message size; give sizes in bytes from 1 to {MAX_SIZE}"
            );
        }
        if !out.contains(&size) {
            out.push(size);
        }
    }
    if out.is_empty() {
        bail!("--sizes is empty; give sizes in bytes, e.g. --sizes 64,4096");
    }
    Ok(out)
}

/// The transports `--transport` lists (`None` when not given), deduplicated in order. An
/// unknown name is a usage error naming the valid ones.
fn check_transports(names: &[String]) -> Result<Option<Vec<Transport>>> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for name in names {
        let t: Transport =
            name.trim().parse().map_err(|e| UsageError(format!("--transport: {e}")))?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(Some(out))
}

/// The entries whose name contains one of the `filter` words (all when there is none);
/// each word must match some entry, so a typo is an error rather than an empty run.
fn select(all: &[Entry], filter: &[String]) -> Result<Vec<Entry>> {
    if filter.is_empty() {
        return Ok(all.to_vec());
    }
    for word in filter {
        if word.trim().is_empty() {
            bail!(
                "--filter has an empty word; give parts of entry names, e.g. --filter pipe,futex"
            );
        }
        if !all.iter().any(|e| e.name().contains(word.as_str())) {
            let names: Vec<&str> = all.iter().map(Entry::name).collect();
            bail!("--filter {word:?} matches no bench entry; entries are {}", names.join(", "));
        }
    }
    Ok(all
        .iter()
        .filter(|e| filter.iter().any(|w| e.name().contains(w.as_str())))
        .copied()
        .collect())
}

/// Where the bench and its peers run.
struct Placement {
    /// The CPU this (measuring) thread is pinned to.
    parent: Option<usize>,
    /// The CPU each peer pins itself to.
    peer: Option<usize>,
    /// Why nothing is pinned, if so.
    unpinned: Option<String>,
}

impl Placement {
    /// Pins the calling thread to the first available CPU and picks the second for peers.
    fn pin() -> Placement {
        let unpinned = |why: String| Placement { parent: None, peer: None, unpinned: Some(why) };
        let cpus = match ipcx_sys::process::available_cpus() {
            Ok(cpus) if cpus.len() >= 2 => cpus,
            Ok(_) => return unpinned("1 CPU available, processes not pinned".into()),
            Err(e) => return unpinned(format!("not pinned: {e}")),
        };
        match ipcx_sys::process::pin_current_thread(cpus[0]) {
            Ok(()) => Placement { parent: Some(cpus[0]), peer: Some(cpus[1]), unpinned: None },
            Err(e) => unpinned(format!("not pinned: {e}")),
        }
    }

    fn describe(&self) -> String {
        match (self.parent, self.peer, &self.unpinned) {
            (Some(a), Some(b), _) => format!("bench on cpu {a}, peer on cpu {b}"),
            (_, _, Some(why)) => why.clone(),
            _ => "not pinned".into(),
        }
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal. Updated only between
/// entries (no ticker thread that could disturb a measurement).
fn progress(len: usize) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    if let Ok(style) =
        ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_round_is_reported() {
        let row = |p50_ns| Row {
            name: "floor.x".into(),
            size: 64,
            p50_ns,
            p99_ns: p50_ns,
            p999_ns: p50_ns,
            samples: 1,
            msgs_per_s: None,
        };
        let p50 = |r: Result<Row, String>| r.map(|r| r.p50_ns);
        assert_eq!(p50(median_round(vec![Ok(row(30)), Ok(row(10)), Ok(row(20))])), Ok(20));
        assert_eq!(p50(median_round(vec![Ok(row(30)), Ok(row(10))])), Ok(10), "lower middle");
        let failed = || Err("peer died".to_owned());
        let failure = Err("peer died".to_owned());
        assert_eq!(p50(median_round(vec![Ok(row(5)), failed()])), failure, "never hidden");
        assert_eq!(p50(median_round(vec![failed(), failed()])), failure);
    }

    #[test]
    fn sizes_are_checked_and_deduplicated() {
        assert_eq!(check_sizes(&[64, 4096, 64]).unwrap(), vec![64, 4096]);
        assert!(check_sizes(&[0]).unwrap_err().to_string().contains("from 1 to"));
        assert!(check_sizes(&[MAX_SIZE + 1]).is_err());
        assert!(check_sizes(&[]).is_err());
    }

    #[test]
    fn transports_are_parsed_and_unknown_names_are_usage_errors() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_transports(&[]).unwrap(), None);
        let got = check_transports(&list(&["pipe", "shm", "pipe"])).unwrap();
        assert_eq!(got, Some(vec![Transport::Pipe, Transport::Shm]));
        let err = check_transports(&list(&["pipe", "nope"])).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        let text = err.to_string();
        assert!(text.starts_with("--transport: ") && text.contains("sysv-msg"), "{text}");
    }

    #[test]
    fn filter_selects_by_substring_and_rejects_typos() {
        let names = |f: &[&str]| -> Vec<&str> {
            let f: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            select(floors::ALL, &f).unwrap().iter().map(Entry::name).collect()
        };
        assert_eq!(names(&[]).len(), 13);
        assert_eq!(names(&["pipe", "eventfd"]), ["floor.eventfd", "floor.pipe"]);
        assert_eq!(names(&["uds"]), ["floor.uds-stream", "floor.uds-seqpacket", "floor.uds-dgram"]);
        let err = select(floors::ALL, &["pipez".into()]).unwrap_err().to_string();
        assert!(err.contains("matches no bench entry") && err.contains("floor.sysv-sem"), "{err}");
        assert!(select(floors::ALL, &["".into()]).is_err());
    }

    #[test]
    fn every_entry_is_named_floor_dot_something_once() {
        let names: Vec<&str> = floors::ALL.iter().map(Entry::name).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(n.starts_with("floor."), "{n}");
            assert!(!names[..i].contains(n), "{n} twice");
        }
        for e in floors::ALL {
            if let Entry::Ready(f) = e {
                assert!(floors::find(f.name()).is_some());
            }
        }
    }
}
