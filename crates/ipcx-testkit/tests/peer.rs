//! The peer mechanism itself: markers, commands, uid drop, kill.

use ipcx_testkit::{peer, read_command, signal, NOBODY_UID};

ipcx_testkit::peer_entry!(peer_main);

fn peer_main(role: &str, args: &[String]) {
    match role {
        "echo" => {
            signal("args", &args.join(","));
            while let Some(cmd) = read_command() {
                signal("echo", &cmd);
            }
        }
        "whoami" => {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
            signal("uid", uid_line.split_whitespace().nth(1).unwrap());
        }
        "hang" => {
            signal("ready", "");
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn markers_and_commands_round_trip() {
    let mut p = peer("echo").arg("a b").arg("c").spawn();
    assert_eq!(p.expect("args"), "a b,c");
    p.send("hello");
    assert_eq!(p.expect("echo"), "hello");
    p.close_stdin();
    p.wait_success();
}

#[test]
fn peer_can_run_as_another_uid() {
    let mut p = peer("whoami").uid(NOBODY_UID).spawn();
    assert_eq!(p.expect("uid"), NOBODY_UID.to_string());
    p.wait_success();
}

#[test]
fn kill_ends_a_hanging_peer() {
    let mut p = peer("hang").spawn();
    p.expect("ready");
    p.kill();
    assert!(!p.wait().success());
}
