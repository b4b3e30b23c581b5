//! `ipcx doctor` run as the built binary.

use std::process::Command;

#[test]
fn doctor_reports_limits_and_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcx")).arg("doctor").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(stdout.contains(release.trim()), "kernel release missing:\n{stdout}");
    assert!(stdout.contains("msg_max"), "msg_max missing:\n{stdout}");
    for group in [
        "Shared memory",
        "POSIX message queues",
        "System V",
        "Files and CPUs",
        "Kernel",
        "What will bite",
    ] {
        assert!(stdout.lines().any(|l| l == group), "group {group:?} missing:\n{stdout}");
    }
}
