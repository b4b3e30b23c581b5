//! `ipcx bench` with the `shm.*` entries: every entry and default size measured, the targets
//! computed from the same run (JSON `ratios`), `--raw` leaving them out, a dead peer failing
//! its entry at once, and nothing left in /dev/shm. Fixed, small sample counts (hidden
//! `--samples`): these check wiring, not speed.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::TempJson;
use serde_json::Value;

/// Runs `ipcx bench ARGS --json FILE`; returns its output and pid (which every name it
/// creates in /dev/shm carries: `ipcx-bench-<tag>-<pid>-...`).
fn bench(args: &[&str], json: &TempJson, env: Option<(&str, &str)>) -> (Output, u32) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipcx"));
    cmd.arg("bench").args(args).arg("--json").arg(&json.0);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("ipcx runs");
    let pid = child.id();
    (child.wait_with_output().expect("ipcx runs"), pid)
}

/// Names bench `pid` left in /dev/shm.
fn leftovers(pid: u32) -> Vec<String> {
    let tag = format!("-{pid}-");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ipcx-bench-") && n.contains(&tag))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The (name, size) of each entry in `list` but the `chan.*`, `rpc.*` and `pubsub.*` ones (a
/// `--filter shm` also runs `chan.shm*`, `rpc.shm*` and `pubsub.shm*`, tested in bench_chan.rs,
/// the rpc tests and bench_pubsub.rs).
fn rows(list: &Value) -> Vec<(String, u64)> {
    let list = list.as_array().expect("an array");
    list.iter()
        .filter(|r| {
            let name = r["name"].as_str().unwrap();
            !name.starts_with("chan.") && !name.starts_with("rpc.") && !name.starts_with("pubsub.")
        })
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r["size"].as_u64().unwrap()))
        .collect()
}

const LATENCY: &[&str] =
    &["shm.spin", "shm.block", "shm.adaptive", "shm.spin.copy", "shm.block.copy"];
const LATENCY_SIZES: &[u64] = &[8, 64, 4096, 65536, 1 << 20];
const RATIOS: &[&str] = &[
    "shm.spin 64 B p50 / floor.spin 64 B p50",
    "shm.spin 1 MiB p50 / shm.spin 64 B p50",
    "shm.block 64 B p50 / floor.futex p50",
    "shm.throughput 64 B msgs/s",
];

#[test]
fn every_shm_entry_runs_at_its_default_sizes_with_ratios() {
    let json = TempJson::new("all");
    let (out, pid) = bench(&["--quick", "--filter", "shm", "--samples", "200"], &json, None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));

    let v = json.read();
    let mut want: Vec<(String, u64)> = LATENCY
        .iter()
        .flat_map(|n| LATENCY_SIZES.iter().map(move |&s| (n.to_string(), s)))
        .collect();
    want.extend([("shm.throughput".to_string(), 64), ("shm.throughput".to_string(), 4096)]);
    assert_eq!(rows(&v["results"]), want);
    let shm_rows = v["results"].as_array().unwrap().iter();
    for r in shm_rows.filter(|r| r["name"].as_str().unwrap().starts_with("shm.")) {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["msgs_per_s", "name", "p50_ns", "p999_ns", "p99_ns", "samples", "size"]);
        assert_eq!(r["samples"], 200, "{r}");
        let ns = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
        assert!(0 < ns("p50_ns") && ns("p50_ns") <= ns("p99_ns"), "{r}");
        assert!(ns("p99_ns") <= ns("p999_ns") && ns("p999_ns") < 10_000_000_000, "{r}");
        match r["name"].as_str().unwrap() {
            "shm.throughput" => assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0, "{r}"),
            _ => assert_eq!(r["msgs_per_s"], Value::Null, "latency only: {r}"),
        }
    }
    assert_eq!(rows(&v["skipped"]), []);
    assert_eq!(v["failed"], Value::Array(vec![]));

    // Ratios against floors that were filtered out have no value and do not pass.
    let ratios = v["ratios"].as_array().expect("ratios");
    let names: Vec<&str> = ratios.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names[..RATIOS.len()], *RATIOS);
    for r in ratios {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["name", "pass", "target", "value"]);
        assert!(r["target"].as_f64().unwrap() > 0.0 && r["pass"].is_boolean(), "{r}");
    }
    for i in [0, 2] {
        assert_eq!((&ratios[i]["value"], &ratios[i]["pass"]), (&Value::Null, &false.into()));
    }
    for i in [1, 3] {
        assert!(ratios[i]["value"].as_f64().unwrap() > 0.0, "{}", ratios[i]);
    }
    assert!(stdout.contains("targets (ratios within this run):"), "{stdout}");
    assert!(stdout.contains("n/a: floor.spin 64 B not measured"), "{stdout}");
    assert_eq!(leftovers(pid), Vec::<String>::new());
}

#[test]
fn floors_and_shm_entries_in_one_run_give_every_ratio_a_value() {
    let json = TempJson::new("ratios");
    let filter = "floor.spin,floor.futex,shm.spin,shm.block,shm.throughput";
    let args = ["--quick", "--filter", filter, "--sizes", "64,1048576", "--samples", "200"];
    let (out, pid) = bench(&args, &json, None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    let v = json.read();
    let measured = rows(&v["results"]);
    assert!(measured.contains(&("floor.futex".into(), 0)), "{measured:?}");
    assert!(measured.contains(&("shm.throughput".into(), 1 << 20)), "--sizes applies to all");
    for r in v["ratios"].as_array().unwrap() {
        if r["name"].as_str().unwrap().starts_with("shm.") {
            assert!(r["value"].as_f64().unwrap() > 0.0 && r["pass"].is_boolean(), "{r}");
        }
    }
    let section = stdout.split("targets (ratios within this run):").nth(1).expect("a section");
    let judged = |l: &&str| {
        let l = l.trim_start();
        !l.starts_with("pubsub.")
            && !l.starts_with("rpc.")
            && (l.ends_with("PASS") || l.ends_with("MISS"))
    };
    assert_eq!(section.lines().filter(judged).count(), 4);
    assert_eq!(leftovers(pid), Vec::<String>::new());
}

#[test]
fn raw_runs_only_floors() {
    let json = TempJson::new("raw");
    let (out, _) = bench(&["--raw", "--filter", "shm"], &json, None);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("matches no bench entry") && !stderr.contains("shm."), "{stderr}");

    let args = ["--raw", "--quick", "--filter", "floor.spin", "--sizes", "64", "--samples", "50"];
    let (out, _) = bench(&args, &json, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(json.read().get("ratios").is_none());
    assert!(!text(&out.stdout).contains("targets"));
}

#[test]
fn a_dead_peer_fails_its_entry_at_once_and_leaves_nothing() {
    // The peer exits at its first command; the bench's blocked receive must end when its
    // doorbell is closed on the peer's exit, not after the 10 s operation timeout.
    let json = TempJson::new("dead");
    let fault = Some(("IPCX_BENCH_PEER_FAULT", "shm.block=exit"));
    let args = ["--quick", "--filter", "shm.block", "--sizes", "64", "--samples", "50"];
    let start = Instant::now();
    let (out, pid) = bench(&args, &json, fault);
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(8), "took {:?}", start.elapsed());
    let v = json.read();
    let failed = rows(&v["failed"]);
    assert!(failed.contains(&("shm.block".into(), 64)), "{failed:?}");
    let error = v["failed"][0]["error"].as_str().unwrap();
    assert!(error.contains("exited"), "{error}");
    assert_eq!(leftovers(pid), Vec::<String>::new());
}
