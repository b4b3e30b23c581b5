//! `ipcx sub` and `ipcx pub` run as the built binary, in a namespace of their own.

use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// A random namespace; its runtime directory is removed on drop, and nothing of it may be
/// left in /dev/shm.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        Ns(format!("ipcxt-{tag}-{}-{nanos:08x}", std::process::id()))
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if let Ok(ns) = ipcx::Namespace::new(&self.0) {
            let _ = ipcx::cleanup::clean(&ns, false);
            let _ = std::fs::remove_dir_all(ns.dir());
        }
        let left: Vec<_> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(&self.0))
            .collect();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "left in /dev/shm: {left:?}");
        }
    }
}

fn ipcx(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipcx"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

#[test]
fn sub_prints_what_pub_publishes() {
    let ns = Ns::new("cli-ps");
    let sub = ipcx(&["sub", "greet", "--count", "3", "--timeout", "10000", "--namespace", &ns.0])
        .spawn()
        .unwrap();
    let publ =
        ipcx(&["pub", "greet", "--count", "3", "--wait-subscriber", "--namespace", &ns.0, "hello"])
            .output()
            .unwrap();
    assert!(publ.status.success(), "pub: {}", String::from_utf8_lossy(&publ.stderr));
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success(), "sub: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nhello\nhello\n");
}

#[test]
fn sub_gives_up_with_a_clear_line() {
    let ns = Ns::new("cli-to");
    let out = ipcx(&["sub", "nobody", "--count", "1", "--timeout", "100", "--namespace", &ns.0])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no service \"nobody\" appeared"), "{err}");
    let out = ipcx(&["sub", "x", "--namespace", "bad/name"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
