//! `ipcx bench`'s `chan.*` entries and `--transport`, end to end: the built binary, its peer
//! processes, the JSON it writes. Runs use a fixed, small number of samples (hidden
//! `--samples`) to stay quick.

mod common;

use std::process::{Command, Output, Stdio};

use common::TempJson;
use ipcx::channel::Transport;
use serde_json::Value;

/// Runs `ipcx bench ARGS [--json FILE]`; returns its output and its pid, which every
/// namespace and object it creates carries (`ipcx-bench-<pid>-...`).
fn bench(args: &[&str], json: Option<&TempJson>) -> (Output, u32) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipcx"));
    cmd.arg("bench").args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(json) = json {
        cmd.arg("--json").arg(&json.0);
    }
    let child = cmd.spawn().expect("ipcx runs");
    let pid = child.id();
    (child.wait_with_output().expect("ipcx runs"), pid)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
}

/// What bench `pid` left behind: namespace directories, shm objects and POSIX queues whose
/// name carries `ipcx-bench-<pid>-`.
fn leftovers(pid: u32) -> Vec<String> {
    let tag = format!("ipcx-bench-{pid}-");
    let ns_root = ipcx::Namespace::new("probe").unwrap().dir();
    let roots = [ns_root.parent().unwrap().to_owned(), "/dev/shm".into(), "/dev/mqueue".into()];
    let mut left = Vec::new();
    for dir in roots {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.contains(&tag) {
                left.push(dir.join(name).display().to_string());
            }
        }
    }
    left
}

const QUICK: &[&str] = &["--quick", "--samples", "200"];

#[test]
fn chan_uds_stream_is_measured_and_cleaned_up() {
    let json = TempJson::new("chan-uds");
    let args = [QUICK, &["--filter", "chan.uds-stream", "--sizes", "64"]].concat();
    let (out, pid) = bench(&args, Some(&json));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    let v = json.read();
    let rows = v["results"].as_array().unwrap();
    assert_eq!(names(&v["results"]), ["chan.uds-stream"], "{stdout}");
    let row = &rows[0];
    assert_eq!((row["size"].as_u64(), row["samples"].as_u64()), (Some(64), Some(200)));
    assert!(row["p50_ns"].as_u64().unwrap() > 0, "{row}");
    assert!(row["msgs_per_s"].as_f64().unwrap() > 0.0, "{row}");
    // Its target is listed, without a value: floor.uds-stream was filtered out.
    let ratio = v["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "chan.uds-stream 64 B p50 / floor.uds-stream 64 B p50")
        .expect("the chan.uds-stream target");
    assert_eq!(ratio["value"], Value::Null);
    assert_eq!(leftovers(pid), Vec::<String>::new());
}

#[test]
fn an_unknown_transport_is_one_usage_error_line() {
    let (out, _) = bench(&["--transport", "pipe,nope"], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ipcx: error: --transport: ") && stderr.contains("\"nope\""));
    for t in Transport::ALL {
        assert!(stderr.contains(t.name()), "{t} missing: {stderr}");
    }
    assert!(out.stdout.is_empty(), "measured something");
}

#[test]
fn every_transport_is_measured_or_skipped_with_a_reason() {
    let json = TempJson::new("chan-all");
    let list: Vec<&str> = Transport::ALL.iter().map(|t| t.name()).collect();
    let list = list.join(",");
    let args = [QUICK, &["--filter", "chan", "--sizes", "64", "--transport", &list]].concat();
    let (out, pid) = bench(&args, Some(&json));
    let stdout = text(&out.stdout);
    let v = json.read();
    let (measured, skipped) = (names(&v["results"]), names(&v["skipped"]));
    assert_eq!(v["failed"], Value::Array(vec![]), "{stdout}");
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    for t in Transport::ALL {
        let entry = format!("chan.{t}");
        let is_measured = measured.contains(&entry);
        assert!(is_measured != skipped.contains(&entry), "{entry}: {stdout}");
        if !is_measured {
            let line = format!("{entry} (64 B) skipped: ");
            assert!(stdout.lines().any(|l| l.starts_with(&line)), "{entry}: {stdout}");
        }
    }
    assert_eq!(leftovers(pid), Vec::<String>::new());
}

#[test]
fn transport_keeps_only_that_transports_entries_and_targets() {
    let json = TempJson::new("chan-pipe");
    let args = [QUICK, &["--transport", "pipe", "--sizes", "64"]].concat();
    let (out, pid) = bench(&args, Some(&json));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    let v = json.read();
    assert_eq!(names(&v["results"]), ["floor.pipe", "chan.pipe"], "{stdout}");
    assert_eq!(names(&v["ratios"]), ["chan.pipe 64 B p50 / floor.pipe 64 B p50"]);
    assert!(v["ratios"][0]["value"].as_f64().unwrap() > 0.0);
    assert_eq!(leftovers(pid), Vec::<String>::new());
}
