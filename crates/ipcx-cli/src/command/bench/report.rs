//! The results of a bench run: the human table on stdout and the JSON file.
//!
//! JSON shape (`--json FILE`):
//! `{"results":[{"name","size","p50_ns","p99_ns","p999_ns","samples","msgs_per_s"}],
//!   "skipped":[{"name","size","reason"}], "failed":[{"name","size","error"}]}`.
//! Latencies are one-way (round trip / 2); `msgs_per_s` is measured at the receiver and is
//! `null` when the entry has no throughput figure. Signal-only entries have size 0. Runs
//! without `--raw` add the targets' `"ratios"` (see [`targets`](super::targets)).

use std::fmt::Write as _;

use serde::Serialize;

/// Everything one `ipcx bench` run measured, skipped or failed, in run order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Measured entries.
    pub results: Vec<Row>,
    /// Entries (or sizes of an entry) not measured, with the reason.
    pub skipped: Vec<Skipped>,
    /// Entries whose measurement failed, with the error.
    pub failed: Vec<Failed>,
}

/// One measured entry at one message size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Entry name, e.g. `floor.pipe`.
    pub name: String,
    /// Message size in bytes (0: a signal without payload).
    pub size: usize,
    /// Median one-way latency, nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile one-way latency, nanoseconds.
    pub p99_ns: u64,
    /// 99.9th percentile one-way latency, nanoseconds.
    pub p999_ns: u64,
    /// Round trips measured.
    pub samples: u64,
    /// Messages per second in one direction, measured at the receiver.
    pub msgs_per_s: Option<f64>,
}

/// An entry and size that was not measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// Entry name.
    pub name: String,
    /// Message size in bytes.
    pub size: usize,
    /// Why it was not measured.
    pub reason: String,
}

/// An entry and size whose measurement failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failed {
    /// Entry name.
    pub name: String,
    /// Message size in bytes.
    pub size: usize,
    /// What went wrong, causes included.
    pub error: String,
}

impl Report {
    /// The JSON document written by `--json`.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of numbers and strings cannot fail; keep the fallback honest.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human table, then the skipped and failed entries, one line each.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let header = ["entry", "size", "p50", "p99", "p99.9", "samples", "msgs/s", "MB/s"];
        let mut rows = vec![header.map(String::from)];
        for r in &self.results {
            rows.push([
                r.name.clone(),
                size(r.size),
                ns(r.p50_ns),
                ns(r.p99_ns),
                ns(r.p999_ns),
                r.samples.to_string(),
                r.msgs_per_s.map_or("-".into(), per_second),
                match r.msgs_per_s {
                    Some(rate) if r.size > 0 => sig3(rate * r.size as f64 / 1e6),
                    _ => "-".into(),
                },
            ]);
        }
        let mut widths = [0; 8];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = format!("{:<w$}", row[0], w = widths[0]);
            for (cell, w) in row.iter().zip(widths).skip(1) {
                let _ = write!(line, "  {cell:>w$}");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if self.results.is_empty() {
            out.push_str("(no entry measured)\n");
        }
        for (name, reason, sizes) in
            group(self.skipped.iter().map(|s| (&s.name, &s.reason, s.size)))
        {
            let _ = writeln!(out, "{name} ({sizes}) skipped: {reason}");
        }
        for f in &self.failed {
            let _ = writeln!(out, "{} ({}) FAILED: {}", f.name, size(f.size), f.error);
        }
        out
    }
}

/// Runs of equal (name, reason) with their sizes joined: one skip line per run.
fn group<'a>(
    items: impl Iterator<Item = (&'a String, &'a String, usize)>,
) -> Vec<(&'a str, &'a str, String)> {
    let mut groups: Vec<(&str, &str, String)> = Vec::new();
    for (name, reason, sz) in items {
        match groups.last_mut() {
            Some((n, r, sizes)) if *n == name.as_str() && *r == reason.as_str() => {
                sizes.push_str(", ");
                sizes.push_str(&size(sz));
            }
            _ => groups.push((name, reason, size(sz))),
        }
    }
    groups
}

/// A message size: `signal` for 0, else bytes in B, KiB or MiB when exact.
pub fn size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    match bytes {
        0 => "signal".into(),
        b if b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} B"),
    }
}

/// A latency in ns, µs, ms or s with three significant digits.
pub fn ns(n: u64) -> String {
    let v = n as f64;
    match n {
        0..=999 => format!("{n} ns"),
        1_000..=999_999 => format!("{} µs", sig3(v / 1e3)),
        1_000_000..=999_999_999 => format!("{} ms", sig3(v / 1e6)),
        _ => format!("{} s", sig3(v / 1e9)),
    }
}

/// A rate per second with a k or M suffix and three significant digits.
pub fn per_second(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{} M", sig3(rate / 1e6))
    } else if rate >= 1e3 {
        format!("{} k", sig3(rate / 1e3))
    } else {
        format!("{rate:.0}")
    }
}

/// Three significant digits for values from 1 to 999 (more digits above, as integers).
fn sig3(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, size: usize, p50: u64, rate: Option<f64>) -> Row {
        Row {
            name: name.into(),
            size,
            p50_ns: p50,
            p99_ns: p50 * 2,
            p999_ns: p50 * 3,
            samples: 1000,
            msgs_per_s: rate,
        }
    }

    fn skip(name: &str, size: usize, reason: &str) -> Skipped {
        Skipped { name: name.into(), size, reason: reason.into() }
    }

    #[test]
    fn formats_units() {
        assert_eq!(ns(850), "850 ns");
        assert_eq!(ns(4_123), "4.12 µs");
        assert_eq!(ns(41_230), "41.2 µs");
        assert_eq!(ns(412_300), "412 µs");
        assert_eq!(ns(1_500_000), "1.50 ms");
        assert_eq!(ns(2_000_000_000), "2.00 s");
        assert_eq!(size(0), "signal");
        assert_eq!(size(64), "64 B");
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(size(1000), "1000 B");
        assert_eq!(per_second(950.4), "950");
        assert_eq!(per_second(312_000.0), "312 k");
        assert_eq!(per_second(1_234_000.0), "1.23 M");
    }

    #[test]
    fn table_aligns_columns_and_lists_skips_grouped() {
        let report = Report {
            results: vec![
                row("floor.eventfd", 0, 3_400, Some(1.5e6)),
                row("floor.pipe", 65536, 41_000, None),
            ],
            skipped: vec![
                skip("floor.eventfd", 64, "signal only, carries no payload"),
                skip("floor.eventfd", 4096, "signal only, carries no payload"),
                skip("floor.spin", 64, "not yet wired"),
            ],
            failed: vec![Failed { name: "floor.tcp".into(), size: 64, error: "boom".into() }],
        };
        let text = report.table();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("entry"), "{text}");
        assert!(lines[1].starts_with("floor.eventfd") && lines[1].contains("1.50 M"), "{text}");
        assert!(lines[2].contains("64 KiB") && lines[2].ends_with('-'), "{text}");
        // Right-aligned cells end in the same column.
        let col = |l: &str, cell: &str| l.find(cell).map(|i| i + cell.chars().count());
        assert_eq!(col(lines[0], "p50"), col(lines[1], "3.40 µs"));
        assert_eq!(
            lines[3],
            "floor.eventfd (64 B, 4 KiB) skipped: signal only, carries no payload"
        );
        assert_eq!(lines[4], "floor.spin (64 B) skipped: not yet wired");
        assert_eq!(lines[5], "floor.tcp (64 B) FAILED: boom");
    }

    #[test]
    fn json_has_the_documented_shape() {
        let report = Report {
            results: vec![row("floor.pipe", 64, 4_000, Some(2.0e5))],
            skipped: vec![skip("floor.spin", 64, "not yet wired")],
            failed: vec![],
        };
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let r = &v["results"][0];
        assert_eq!(r["name"], "floor.pipe");
        assert_eq!(r["size"], 64);
        assert_eq!(r["p50_ns"], 4000);
        assert_eq!(r["p99_ns"], 8000);
        assert_eq!(r["p999_ns"], 12000);
        assert_eq!(r["samples"], 1000);
        assert_eq!(r["msgs_per_s"], 200000.0);
        assert_eq!(v["skipped"][0]["reason"], "not yet wired");
        assert_eq!(v["failed"].as_array().unwrap().len(), 0);
    }
}
