//! `ipcx bench`'s `pubsub.*` entries, end to end: the built binary, its peer processes, the
//! JSON it writes, nothing left behind. A fixed, small number of samples keeps it quick.

mod common;

use std::process::{Command, Stdio};

use common::TempJson;
use serde_json::Value;

/// What bench `pid` left behind: namespace directories and shm objects whose name carries
/// `ipcx-bench-<pid>-`.
fn leftovers(pid: u32) -> Vec<String> {
    let tag = format!("ipcx-bench-{pid}-");
    let ns_root = ipcx::Namespace::new("probe").unwrap().dir();
    let roots = [ns_root.parent().unwrap().to_owned(), "/dev/shm".into()];
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

#[test]
fn pubsub_entries_are_measured_held_to_their_shm_rows_and_cleaned_up() {
    let json = TempJson::new("pubsub");
    let child = Command::new(env!("CARGO_BIN_EXE_ipcx"))
        .args(["bench", "--quick", "--samples", "200", "--filter", "pubsub"])
        .args(["--sizes", "64,4096", "--json"])
        .arg(&json.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json.0).unwrap()).unwrap();
    let rows: Vec<(&str, u64, bool)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let rate = r["msgs_per_s"].as_f64().is_some_and(|x| x > 0.0);
            (r["name"].as_str().unwrap(), r["size"].as_u64().unwrap(), rate)
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("pubsub.shm", 64, true),
            ("pubsub.shm", 4096, false),
            ("pubsub.shm.spin", 64, false),
            ("pubsub.shm.spin", 4096, false),
        ]
    );
    assert_eq!(v["failed"], Value::Array(vec![]));
    let ratios: Vec<&str> = v["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .filter(|n| n.starts_with("pubsub."))
        .collect();
    assert_eq!(
        ratios,
        [
            "pubsub.shm 64 B p50 / shm.block 64 B p50",
            "pubsub.shm.spin 64 B p50 / shm.spin 64 B p50"
        ]
    );
    assert_eq!(leftovers(pid), Vec::<String>::new());
}
