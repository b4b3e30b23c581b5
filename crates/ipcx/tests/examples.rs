//! Runs every program of `crates/ipcx/examples` (each runs both sides of its pattern in two
//! processes) and checks that it exits 0, prints what it should and leaves nothing behind.
//!
//! `cargo test` builds the examples next to the test binaries (`target/<profile>/examples`);
//! when only this test was built (`cargo test --test examples`), they are built here first.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Longest an example may run.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The compiled example `name`, built with cargo if it is missing.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/<name>
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap().to_owned();
    let path = profile_dir.join("examples").join(name);
    static BUILD: Once = Once::new();
    if !path.exists() {
        BUILD.call_once(|| {
            let mut cargo = Command::new(env!("CARGO"));
            cargo.args(["build", "-p", "ipcx", "--examples"]);
            if profile_dir.file_name().is_some_and(|p| p == "release") {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("running cargo to build the examples");
            assert!(status.success(), "building the examples failed");
        });
    }
    assert!(path.exists(), "example {name} not found at {}", path.display());
    path
}

/// Runs example `name` with a timeout; returns its standard output after checking it
/// succeeded and left nothing in /dev/shm or the runtime directory.
fn run(name: &str) -> String {
    let mut child =
        Command::new(example(name)).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = out.join().unwrap().unwrap();
    let err = err.join().unwrap().unwrap();
    assert!(status.success(), "example {name}: {status}\nstdout:\n{out}\nstderr:\n{err}");
    // Each example works in namespace `example-<name>-<its pid>` and removes it.
    let ns = ipcx::Namespace::new(&format!("example-{name}-{pid}")).unwrap();
    assert!(!ns.dir().exists(), "example {name} left {}", ns.dir().display());
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(ns.name()))
        .collect();
    assert!(left.is_empty(), "example {name} left in /dev/shm: {left:?}");
    out
}

/// Asserts that `out` has each of `lines`.
fn has_lines(name: &str, out: &str, lines: &[&str]) {
    for line in lines {
        assert!(out.lines().any(|l| l == *line), "example {name}: no line {line:?} in\n{out}");
    }
}

#[test]
fn pubsub() {
    let out = run("pubsub");
    has_lines(
        "pubsub",
        &out,
        &[
            "[subscriber] attached to \"temperatures\"",
            "[subscriber] got seq 0 from kitchen: 20.0 °C",
            "[subscriber] got seq 4 from kitchen: 22.0 °C",
            "done",
        ],
    );
}

#[test]
fn rpc() {
    let out = run("rpc");
    has_lines(
        "rpc",
        &out,
        &["[client] 2 + 3 = 5", "[client] 10 + 20 = 30, 100 + 200 = 300", "done"],
    );
}

#[test]
fn stream() {
    let out = run("stream");
    has_lines(
        "stream",
        &out,
        &[
            "[client] \"hello\" has 5 bytes",
            "[client] \"bye\" has 3 bytes",
            "[server] the client closed the stream",
            "done",
        ],
    );
}

#[test]
fn event() {
    let out = run("event");
    has_lines("event", &out, &["[notifier] door <- 1", "[notifier] window <- 8", "done"]);
    // The listener saw every id, however the wait set grouped them.
    let ids: Vec<&str> = out.lines().filter(|l| l.starts_with("[listener] door:")).collect();
    assert!(!ids.is_empty(), "{out}");
}

#[test]
fn channel() {
    let out = run("channel");
    has_lines(
        "channel",
        &out,
        &[
            "[client] apples -> Value(Some(3))",
            "[client] pears -> Value(None)",
            "[server] the client left",
            "done",
        ],
    );
}
