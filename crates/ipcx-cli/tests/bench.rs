//! `ipcx bench` end to end: the built binary, its peer processes, the JSON it writes and
//! its errors. Runs use a fixed, small number of samples (hidden `--samples`) to stay quick.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::TempJson;
use serde_json::Value;

fn bench(args: &[&str], json: Option<&TempJson>, env: Option<(&str, &str)>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipcx"));
    cmd.arg("bench").args(args);
    if let Some(json) = json {
        cmd.arg("--json").arg(&json.0);
    }
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    cmd.output().expect("ipcx runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn names_and_sizes(list: &Value) -> Vec<(String, u64)> {
    let list = list.as_array().expect("an array");
    list.iter()
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r["size"].as_u64().unwrap()))
        .collect()
}

fn entry(name: &str, size: u64) -> (String, u64) {
    (name.to_owned(), size)
}

const QUICK: &[&str] = &["--raw", "--quick", "--sizes", "64", "--samples", "300"];

#[test]
fn quick_raw_run_writes_plausible_results() {
    let json = TempJson::new("run");
    let out = bench(&[QUICK, &["--filter", "pipe,eventfd"]].concat(), Some(&json), None);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.is_empty(), "no progress bar when stderr is not a terminal: {stderr}");

    let v = json.read();
    let mut top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["failed", "results", "skipped"]);
    assert_eq!(
        names_and_sizes(&v["results"]),
        [entry("floor.eventfd", 0), entry("floor.pipe", 64)]
    );
    for r in v["results"].as_array().unwrap() {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["msgs_per_s", "name", "p50_ns", "p999_ns", "p99_ns", "samples", "size"]);
        let ns = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
        assert!(0 < ns("p50_ns") && ns("p50_ns") <= ns("p99_ns"), "{r}");
        assert!(ns("p99_ns") <= ns("p999_ns") && ns("p999_ns") < 1_000_000_000, "{r}");
        assert_eq!(ns("samples"), 300);
        match &r["msgs_per_s"] {
            // eventfd signals coalesce: a burst drained in one read has no rate.
            Value::Null => assert_eq!(r["name"], "floor.eventfd"),
            rate => assert!(rate.as_f64().unwrap() > 0.0, "{r}"),
        }
    }
    assert_eq!(names_and_sizes(&v["skipped"]), [entry("floor.eventfd", 64)]);
    assert_eq!(v["skipped"][0]["reason"], "signal only, carries no payload");
    assert_eq!(v["failed"], Value::Array(vec![]));

    assert!(stdout.lines().any(|l| l.starts_with("floor.pipe ") && l.contains("64 B")), "{stdout}");
    assert!(stdout.contains("floor.eventfd (64 B) skipped: signal only, carries no payload"));
}

/// Every floor, in table order; signal-only ones are measured at size 0.
const FLOORS: &[(&str, u64)] = &[
    ("floor.spin", 64),
    ("floor.futex", 0),
    ("floor.eventfd", 0),
    ("floor.pipe", 64),
    ("floor.fifo", 64),
    ("floor.uds-stream", 64),
    ("floor.uds-seqpacket", 64),
    ("floor.uds-dgram", 64),
    ("floor.tcp", 64),
    ("floor.posix-mq", 64),
    ("floor.sysv-msg", 64),
    ("floor.posix-sem", 0),
    ("floor.sysv-sem", 0),
];

/// Runs `ipcx bench` like [`bench`] and also returns the bench's pid, which every named
/// object it creates carries (`ipcx-bench-<tag>-<pid>-...`).
fn bench_with_pid(args: &[&str], json: &TempJson, env: Option<(&str, &str)>) -> (Output, u32) {
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

/// What bench `pid` left behind: names in /dev/shm (shm objects, semaphores) and the temp
/// dir (FIFO directories) that carry its pid, and System V queues it last used.
fn leftovers(pid: u32) -> Vec<String> {
    let tag = format!("-{pid}-");
    let mut left = Vec::new();
    for dir in [PathBuf::from("/dev/shm"), std::env::temp_dir()] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.contains("ipcx-bench-") && name.contains(&tag) {
                left.push(dir.join(name).display().to_string());
            }
        }
    }
    // Columns: key msqid perms cbytes qnum lspid lrpid ...
    let queues = std::fs::read_to_string("/proc/sysvipc/msg").unwrap();
    for line in queues.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(5..7).is_some_and(|pids| pids.contains(&pid.to_string().as_str())) {
            left.push(format!("System V message queue: {line}"));
        }
    }
    left
}

#[test]
fn every_floor_is_wired_measured_and_cleaned_up() {
    let json = TempJson::new("all");
    let (out, pid) = bench_with_pid(QUICK, &json, None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));

    let v = json.read();
    let want: Vec<(String, u64)> = FLOORS.iter().map(|&(n, s)| entry(n, s)).collect();
    assert_eq!(names_and_sizes(&v["results"]), want);
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["samples"], 300, "{r}");
        match &r["msgs_per_s"] {
            // Counters coalesce signals: a burst drained at once has no rate.
            Value::Null => assert!(
                ["floor.eventfd", "floor.futex"].contains(&r["name"].as_str().unwrap()),
                "{r}"
            ),
            rate => assert!(rate.as_f64().unwrap() > 0.0, "{r}"),
        }
    }
    let skipped = v["skipped"].as_array().unwrap();
    let signal_only: Vec<&str> = FLOORS.iter().filter(|f| f.1 == 0).map(|f| f.0).collect();
    assert_eq!(skipped.len(), signal_only.len(), "{skipped:?}");
    for s in skipped {
        assert!(signal_only.contains(&s["name"].as_str().unwrap()), "{s}");
        assert_eq!(s["reason"], "signal only, carries no payload");
    }
    assert!(!stdout.contains("not yet wired"), "{stdout}");
    assert_eq!(v["failed"], Value::Array(vec![]));
    assert_eq!(leftovers(pid), Vec::<String>::new());
}

#[test]
fn a_killed_peer_leaves_no_system_v_queue_behind() {
    // A System V queue outlives its processes: the bench must notice the peer's death
    // (rather than block forever) and remove the queue.
    let json = TempJson::new("sysv");
    let fault = Some(("IPCX_BENCH_PEER_FAULT", "floor.sysv-msg=exit"));
    let (out, pid) = bench_with_pid(&[QUICK, &["--filter", "sysv-msg"]].concat(), &json, fault);
    assert!(!out.status.success());
    let error = json.read()["failed"][0]["error"].as_str().unwrap().to_owned();
    assert!(error.contains("removed"), "{error}");
    assert_eq!(leftovers(pid), Vec::<String>::new());
}

#[test]
fn repeated_rounds_report_one_row_per_entry() {
    let json = TempJson::new("repeat");
    let out = bench(&[QUICK, &["--filter", "pipe", "--repeat", "3"]].concat(), Some(&json), None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.lines().next().unwrap().contains("median of 3 rounds"), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("floor.pipe ")).count(), 1, "{stdout}");
    let v = json.read();
    assert_eq!(names_and_sizes(&v["results"]), [entry("floor.pipe", 64)]);
    assert_eq!(v["results"][0]["samples"].as_u64(), Some(300), "one round's samples");
}

#[test]
fn bad_arguments_give_one_clear_error_line() {
    let cases: &[&[&str]] = &[
        &["--raw", "--sizes", "0"],
        &["--raw", "--sizes", "64,0"],
        &["--raw", "--filter", "nosuchprimitive"],
        &["--raw", "--filter", "pipe,"],
        &["--raw", "--samples", "0"],
        &["--raw", "--repeat", "0"],
    ];
    for args in cases {
        let out = bench(args, None, None);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("ipcx: error: --"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} measured something");
    }
}

#[test]
fn a_peer_that_dies_fails_its_entry_and_the_run_continues() {
    let json = TempJson::new("exit");
    let fault = Some(("IPCX_BENCH_PEER_FAULT", "floor.pipe=exit"));
    let out = bench(&[QUICK, &["--filter", "pipe,uds-stream"]].concat(), Some(&json), fault);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("1 of 2 measurements failed"), "{}", text(&out.stderr));
    let v = json.read();
    assert_eq!(names_and_sizes(&v["results"]), [entry("floor.uds-stream", 64)]);
    assert_eq!(names_and_sizes(&v["failed"]), [entry("floor.pipe", 64)]);
    assert!(text(&out.stdout).contains("floor.pipe (64 B) FAILED: "));
}

#[test]
fn a_peer_that_hangs_is_killed_and_reported() {
    let json = TempJson::new("hang");
    let fault = Some(("IPCX_BENCH_PEER_FAULT", "floor.pipe=hang"));
    let out = bench(&[QUICK, &["--filter", "pipe"]].concat(), Some(&json), fault);
    assert!(!out.status.success());
    let v = json.read();
    let error = v["failed"][0]["error"].as_str().unwrap();
    assert!(error.contains("did not finish") && error.contains("killed"), "{error}");
}

#[test]
fn the_peer_refuses_to_run_by_hand() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcx"))
        .args(["__bench-peer", "floor.pipe", "64"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("internal"), "{}", text(&out.stderr));
}
