//! `ipcx bench` end to end: the built binary, its peer processes, the JSON it writes and
//! its errors. Runs use a fixed, small number of samples (hidden `--samples`) to stay quick.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// A JSON output path in the temp dir, removed on drop.
struct TempJson(PathBuf);

impl TempJson {
    fn new(tag: &str) -> TempJson {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("ipcxt-bench-{tag}-{}-{nanos:x}.json", std::process::id());
        TempJson(std::env::temp_dir().join(name))
    }

    fn read(&self) -> Value {
        let text = std::fs::read_to_string(&self.0).expect("the JSON file was written");
        serde_json::from_str(&text).expect("valid JSON")
    }
}

impl Drop for TempJson {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

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

#[test]
fn entries_not_wired_yet_are_skipped_with_a_reason() {
    let json = TempJson::new("todo");
    let out = bench(&[QUICK, &["--filter", "spin"]].concat(), Some(&json), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = json.read();
    assert_eq!(v["results"], Value::Array(vec![]));
    assert_eq!(names_and_sizes(&v["skipped"]), [entry("floor.spin", 64)]);
    assert_eq!(v["skipped"][0]["reason"], "not yet wired");
    assert!(text(&out.stdout).contains("floor.spin (64 B) skipped: not yet wired"));
}

#[test]
fn bad_arguments_give_one_clear_error_line() {
    let cases: &[&[&str]] = &[
        &["--raw", "--sizes", "0"],
        &["--raw", "--sizes", "64,0"],
        &["--raw", "--filter", "nosuchprimitive"],
        &["--raw", "--filter", "pipe,"],
        &["--raw", "--samples", "0"],
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
