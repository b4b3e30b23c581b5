//! The performance targets of the shm and chan entries (docs/DESIGN.md), as ratios between
//! rows of the same run, so a noisy machine moves both sides of each ratio alike.
//!
//! | ratio | target |
//! |---|---|
//! | `shm.spin` 64 B p50 / `floor.spin` 64 B p50 | ≤ 1.5 |
//! | `shm.spin` 1 MiB p50 / `shm.spin` 64 B p50 | ≤ 1.1 (within 10%) |
//! | `shm.block` 64 B p50 / `floor.futex` p50 | ≤ 1.15 |
//! | `shm.throughput` 64 B msgs/s | ≥ 15 M |
//! | `chan.shm` 64 B p50 / `shm.block` 64 B p50 | ≤ 1.10 |
//! | `chan.<t>` 64 B p50 / `floor.<t>` 64 B p50, for the seven other transports | ≤ 1.10 |
//! | `rpc.shm.spin` 64 B round trip (2 × p50) / `shm.spin` 64 B p50 | ≤ 2.2 |
//! | `pubsub.shm` 64 B p50 / `shm.block` 64 B p50 | ≤ 1.20 |
//! | `pubsub.shm.spin` 64 B p50 / `shm.spin` 64 B p50 | ≤ 1.20 |
//!
//! The channel API may cost at most 10% over the primitive it runs on: the frame header and
//! the sequence number, not a second copy or a second system call per message.
//!
//! A target whose rows were not measured (filtered out, other `--sizes`, failed) has no
//! value and does not pass. JSON: `"ratios":[{"name","value","target","pass"}]` next to the
//! report's own keys, `value` `null` when not measured.

use std::fmt::Write as _;

use ipcx::channel::Transport;
use serde::Serialize;

use super::report::{Report, Row};

/// One target checked against the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratio {
    /// What is compared, e.g. `shm.spin 64 B p50 / floor.spin 64 B p50`.
    pub name: &'static str,
    /// The measured value; `None` when a row it needs is missing.
    pub value: Option<f64>,
    /// The bound the value must meet.
    pub target: f64,
    /// Whether the value was measured and meets the target.
    pub pass: bool,
    /// The transport the target is about (`--transport` hides the others' targets).
    #[serde(skip)]
    pub transport: Option<Transport>,
    /// Whether the target is a ceiling (≤) or a floor (≥).
    #[serde(skip)]
    bound: Bound,
    /// The rows that were missing, for the text report.
    #[serde(skip)]
    missing: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    AtMost,
    AtLeast,
}

/// 64 B, 1 MiB.
const SMALL: usize = 64;
const LARGE: usize = 1 << 20;

/// A quantity taken from the report, or the rows that were missing for it.
type Measure = Result<f64, Vec<String>>;

/// Most a `chan.*` entry's 64 B p50 may be over its floor's.
const CHAN_OVER_FLOOR: f64 = 1.10;

/// The `chan.*` targets: (transport, chan entry, the row it is held to, ratio name).
macro_rules! chan_targets {
    ($($t:ident $name:literal over $floor:literal),* $(,)?) => {
        &[$((
            Transport::$t,
            concat!("chan.", $name),
            $floor,
            concat!("chan.", $name, " 64 B p50 / ", $floor, " 64 B p50"),
        )),*]
    };
}
static CHAN_TARGETS: &[(Transport, &str, &str, &str)] = chan_targets![
    Shm "shm" over "shm.block",
    UdsStream "uds-stream" over "floor.uds-stream",
    UdsSeqpacket "uds-seqpacket" over "floor.uds-seqpacket",
    Pipe "pipe" over "floor.pipe",
    Fifo "fifo" over "floor.fifo",
    PosixMq "posix-mq" over "floor.posix-mq",
    SysvMsg "sysv-msg" over "floor.sysv-msg",
    Tcp "tcp" over "floor.tcp",
];

/// Most a `pubsub.*` entry's 64 B p50 may be over the matching `shm.*` row's.
const PUBSUB_OVER_SHM: f64 = 1.20;

/// The `pubsub.*` targets: (entry, the `shm.*` row it is held to, ratio name).
static PUBSUB_TARGETS: &[(&str, &str, &str)] = &[
    ("pubsub.shm", "shm.block", "pubsub.shm 64 B p50 / shm.block 64 B p50"),
    ("pubsub.shm.spin", "shm.spin", "pubsub.shm.spin 64 B p50 / shm.spin 64 B p50"),
];

/// Every target, evaluated on `report`: the four of the shm entries, one per chan entry, the
/// rpc round trip and one per pubsub entry.
pub fn evaluate(report: &Report) -> Vec<Ratio> {
    let get = |name: &str, size: usize, pick: fn(&Row) -> Option<f64>| -> Measure {
        report
            .results
            .iter()
            .find(|r| r.name == name && r.size == size)
            .and_then(pick)
            .ok_or_else(|| vec![format!("{name} {}", super::report::size(size))])
    };
    let p50 = |name, size| get(name, size, |r| Some(r.p50_ns as f64));
    let rate = |name, size| get(name, size, |r| r.msgs_per_s);
    let shm = Some(Transport::Shm);
    let mut ratios = vec![
        Ratio::new(
            shm,
            "shm.spin 64 B p50 / floor.spin 64 B p50",
            over(p50("shm.spin", SMALL), p50("floor.spin", SMALL)),
            Bound::AtMost,
            1.5,
        ),
        Ratio::new(
            shm,
            "shm.spin 1 MiB p50 / shm.spin 64 B p50",
            over(p50("shm.spin", LARGE), p50("shm.spin", SMALL)),
            Bound::AtMost,
            1.1,
        ),
        Ratio::new(
            shm,
            "shm.block 64 B p50 / floor.futex p50",
            over(p50("shm.block", SMALL), p50("floor.futex", 0)),
            Bound::AtMost,
            1.15,
        ),
        Ratio::new(
            shm,
            "shm.throughput 64 B msgs/s",
            rate("shm.throughput", SMALL),
            Bound::AtLeast,
            15e6,
        ),
    ];
    ratios.extend(CHAN_TARGETS.iter().map(|&(t, chan, floor, name)| {
        let value = over(p50(chan, SMALL), p50(floor, SMALL));
        Ratio::new(Some(t), name, value, Bound::AtMost, CHAN_OVER_FLOOR)
    }));
    // A row shows half a round trip; the rpc target is about the whole one.
    let rpc_round_trip = p50("rpc.shm.spin", SMALL).map(|half| 2.0 * half);
    ratios.push(Ratio::new(
        shm,
        "rpc.shm.spin 64 B round trip / shm.spin 64 B p50",
        over(rpc_round_trip, p50("shm.spin", SMALL)),
        Bound::AtMost,
        2.2,
    ));
    ratios.extend(PUBSUB_TARGETS.iter().map(|&(entry, shm_row, name)| {
        let value = over(p50(entry, SMALL), p50(shm_row, SMALL));
        Ratio::new(shm, name, value, Bound::AtMost, PUBSUB_OVER_SHM)
    }));
    ratios
}

/// `a / b`, or every row either side is missing.
fn over(a: Measure, b: Measure) -> Measure {
    match (a, b) {
        (Ok(x), Ok(y)) => Ok(x / y.max(f64::MIN_POSITIVE)),
        (a, b) => Err(a.err().into_iter().chain(b.err()).flatten().collect()),
    }
}

impl Ratio {
    fn new(
        transport: Option<Transport>,
        name: &'static str,
        measured: Measure,
        bound: Bound,
        target: f64,
    ) -> Ratio {
        let (value, missing) = match measured {
            Ok(v) => (Some(v), Vec::new()),
            Err(missing) => (None, missing),
        };
        let pass = value.is_some_and(|v| match bound {
            Bound::AtMost => v <= target,
            Bound::AtLeast => v >= target,
        });
        Ratio { name, value, target, pass, transport, bound, missing }
    }
}

/// The "targets" section printed after the table.
pub fn table(ratios: &[Ratio]) -> String {
    let mut out = String::from("targets (ratios within this run):\n");
    let width = ratios.iter().map(|r| r.name.chars().count()).max().unwrap_or(0);
    for r in ratios {
        let (op, target) = match r.bound {
            Bound::AtMost => ("≤", number(r.target)),
            Bound::AtLeast => ("≥", number(r.target)),
        };
        let verdict = match r.value {
            Some(v) => format!(
                "{:>7}  {op} {target:<6}  {}",
                number(v),
                if r.pass { "PASS" } else { "MISS" }
            ),
            None => {
                format!("{:>7}  {op} {target:<6}  n/a: {} not measured", "-", r.missing.join(", "))
            }
        };
        let _ = writeln!(out, "  {:<width$}  {verdict}", r.name);
    }
    out
}

/// A ratio with two decimals, or a rate in M with three significant digits.
fn number(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1} M", v / 1e6)
    } else {
        format!("{v:.2}")
    }
}

/// The report's JSON with the ratios added.
pub fn json(report: &Report, ratios: &[Ratio]) -> String {
    #[derive(Serialize)]
    struct WithRatios<'a> {
        #[serde(flatten)]
        report: &'a Report,
        ratios: &'a [Ratio],
    }
    let doc = WithRatios { report, ratios };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, size: usize, p50: u64, rate: Option<f64>) -> Row {
        Row {
            name: name.into(),
            size,
            p50_ns: p50,
            p99_ns: p50,
            p999_ns: p50,
            samples: 100,
            msgs_per_s: rate,
        }
    }

    #[test]
    fn ratios_pass_miss_and_go_missing() {
        let report = Report {
            results: vec![
                row("floor.spin", 64, 200, None),
                row("floor.futex", 0, 6000, None),
                row("shm.spin", 64, 260, None),
                row("shm.spin", 1 << 20, 300, None),
                row("shm.throughput", 64, 250, Some(18e6)),
                row("floor.pipe", 64, 4000, Some(1e5)),
                row("chan.pipe", 64, 4200, Some(1e5)),
                row("floor.tcp", 64, 9000, Some(1e5)),
                row("chan.tcp", 64, 10000, Some(1e5)),
            ],
            ..Report::default()
        };
        let r = evaluate(&report);
        assert_eq!(
            r.len(),
            4 + Transport::ALL.len() + 1 + PUBSUB_TARGETS.len(),
            "shm, chan, rpc, pubsub"
        );
        assert!((r[0].value.unwrap() - 1.3).abs() < 1e-9 && r[0].pass);
        assert!(r[1].value.unwrap() > 1.1 && !r[1].pass);
        assert_eq!((r[2].value, r[2].pass), (None, false));
        assert_eq!(r[2].missing, ["shm.block 64 B"]);
        assert_eq!((r[3].value, r[3].pass), (Some(18e6), true));
        let find = |name: &str| r.iter().find(|x| x.name == name).unwrap();
        let pipe = find("chan.pipe 64 B p50 / floor.pipe 64 B p50");
        assert!((pipe.value.unwrap() - 1.05).abs() < 1e-9 && pipe.pass);
        assert_eq!(pipe.transport, Some(Transport::Pipe));
        let tcp = find("chan.tcp 64 B p50 / floor.tcp 64 B p50");
        assert!(tcp.value.unwrap() > 1.1 && !tcp.pass);
        let shm = find("chan.shm 64 B p50 / shm.block 64 B p50");
        assert_eq!(shm.missing, ["chan.shm 64 B", "shm.block 64 B"]);
        for t in Transport::ALL {
            assert!(r.iter().any(|x| x.name.starts_with(&format!("chan.{t} 64 B"))), "{t}");
        }

        let text = table(&r);
        assert!(text.contains("1.30  ≤ 1.50    PASS"), "{text}");
        assert!(text.contains("MISS"), "{text}");
        assert!(text.contains("n/a: shm.block 64 B not measured"), "{text}");
        assert!(text.contains("18.0 M  ≥ 15.0 M  PASS"), "{text}");

        let v: serde_json::Value = serde_json::from_str(&json(&report, &r)).unwrap();
        assert_eq!(v["results"].as_array().unwrap().len(), 9);
        let third = &v["ratios"][2];
        let mut keys: Vec<&str> = third.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["name", "pass", "target", "value"]);
        assert_eq!((&third["value"], &third["pass"]), (&serde_json::Value::Null, &false.into()));
        assert_eq!(v["ratios"][3]["target"], 15e6);
    }
}
