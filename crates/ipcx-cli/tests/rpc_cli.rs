//! `ipcx serve --echo` and `ipcx call` end to end, as real processes of the built binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ipcx_testkit::{leftovers, unique_name};

const IPCX: &str = env!("CARGO_BIN_EXE_ipcx");

/// A random namespace whose directory is removed on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        Ns(unique_name(tag))
    }

    fn dir(&self) -> std::path::PathBuf {
        ipcx::Namespace::new(&self.0).unwrap().dir()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir());
        if !thread::panicking() {
            assert!(leftovers(&self.0).is_empty(), "left in /dev/shm");
        }
    }
}

/// A child killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ipcx serve NAME --echo` and waits for its ready line.
fn serve(ns: &Ns, name: &str) -> Killed {
    let mut child = Command::new(IPCX)
        .args(["serve", name, "--echo", "--until-eof", "--namespace", &ns.0])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let child = Killed(child);
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("serve prints its ready line");
    assert_eq!(line, format!("serving {name} on shm in namespace {}\n", ns.0));
    child
}

fn call(ns: &Ns, name: &str, text: &str, timeout_ms: u64) -> std::process::Output {
    let timeout = timeout_ms.to_string();
    Command::new(IPCX)
        .args(["call", name, text, "--namespace", &ns.0, "--timeout", &timeout])
        .output()
        .unwrap()
}

#[test]
fn serve_echo_and_call() {
    let ns = Ns::new("cli-rpc");
    let mut server = serve(&ns, "echo");
    for text in ["hello", "grüße, world"] {
        let out = call(&ns, "echo", text, 5000);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{text}\n"));
    }
    // End of stdin stops the server cleanly; its endpoint goes with it.
    drop(server.0.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = server.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "serve did not stop at end of input");
        thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
    assert!(!ns.dir().join("echo.shm").exists(), "endpoint removed");
}

#[test]
fn call_without_server_fails_with_one_line() {
    let ns = Ns::new("cli-rpc-none");
    let t = Instant::now();
    let out = call(&ns, "nobody", "hi", 500);
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("ipcx: error: no listener for \"nobody\""), "{err}");
}

/// `ipcx ls --json` in `ns`.
fn ls(ns: &Ns) -> serde_json::Value {
    let out = Command::new(IPCX).args(["ls", "--json", "--namespace", &ns.0]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_served_service_is_listed_and_a_killed_server_is_cleaned() {
    let ns = Ns::new("cli-rpc-ls");
    let mut server = serve(&ns, "echo");
    let listed = ls(&ns).to_string();
    assert!(
        listed.contains("\"echo\"") && listed.contains("rpc"),
        "ls shows the service: {listed}"
    );
    let endpoint = ns.dir().join("echo.shm");
    assert!(endpoint.exists());
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let out = Command::new(IPCX).args(["clean", "--namespace", &ns.0]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!endpoint.exists(), "clean removed the dead server's endpoint");
    let listed = ls(&ns).to_string();
    assert!(!listed.contains("\"echo\""), "the dead server's service is gone: {listed}");
    let out = call(&ns, "echo", "hi", 500);
    assert!(!out.status.success());
}
