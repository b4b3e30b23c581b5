//! POSIX named semaphores across real processes.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use ipcx_sys::posix_sem::{OpenError, PosixSem, UnlinkError, WaitError, SEM_VALUE_MAX};
use ipcx_sys::{CreateMode, Permissions};
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name, NOBODY_UID};

ipcx_testkit::peer_entry!(peer_main);

const LONG: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    let open = |name: &str| PosixSem::builder(name).create_mode(CreateMode::Open).open();
    match role {
        // Answers each post of `<name>.ping` with a post of `<name>.pong`, `args[1]` times.
        "pong" => {
            let ping = open(&format!("{}.ping", args[0])).unwrap();
            let pong = open(&format!("{}.pong", args[0])).unwrap();
            assert!(!ping.is_creator());
            signal("ready", "");
            for _ in 0..args[1].parse::<u32>().unwrap() {
                ping.wait_timeout(LONG).unwrap();
                pong.post().unwrap();
            }
        }
        // Tries to open the semaphore; reports the outcome.
        "open" => {
            let outcome = match open(&args[0]) {
                Ok(_) => "ok".to_owned(),
                Err(OpenError::PermissionDenied(_)) => "denied".to_owned(),
                Err(e) => format!("{e:?}"),
            };
            signal("opened", &outcome);
        }
        // Blocks in wait(); the parent kills it mid-wait.
        "waiter" => {
            let sem = open(&args[0]).unwrap();
            signal("waiting", "");
            sem.wait().unwrap();
            signal("woke", "");
        }
        // Creates a semaphore under the given umask, waits until the parent has checked it.
        "umask" => {
            let umask = u32::from_str_radix(&args[1], 8).unwrap();
            let mode = u32::from_str_radix(&args[2], 8).unwrap();
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
            let perms = Permissions::from_mode(mode).unwrap();
            let _sem = PosixSem::builder(&args[0]).permissions(perms).open().unwrap();
            signal("created", "");
            read_command();
        }
        other => panic!("unknown role {other}"),
    }
}

fn file_mode(name: &str) -> u32 {
    let meta = std::fs::metadata(format!("/dev/shm/sem.{name}")).unwrap();
    meta.permissions().mode() & 0o777
}

#[test]
fn ping_pong_between_processes() {
    let name = unique_name("psem");
    let builder = |suffix: &str| {
        PosixSem::builder(&format!("{name}.{suffix}")).create_mode(CreateMode::CreateExclusive)
    };
    let ping = builder("ping").open().unwrap();
    let pong = builder("pong").open().unwrap();
    let rounds = 200;
    let mut p = peer("pong").arg(&name).arg(rounds).spawn();
    p.expect("ready");
    for _ in 0..rounds {
        ping.post().unwrap();
        pong.wait_timeout(LONG).unwrap();
    }
    p.wait_success();
    assert_eq!(ping.value().unwrap(), 0);
    assert_eq!(pong.value().unwrap(), 0);
    drop((ping, pong));
    assert!(leftovers(&name).is_empty());
}

#[test]
fn try_wait_and_timeout() {
    let name = unique_name("psem");
    let sem = PosixSem::builder(&name).initial(1).open().unwrap();
    assert!(sem.try_wait().unwrap());
    assert!(!sem.try_wait().unwrap());
    let start = Instant::now();
    assert!(matches!(sem.wait_timeout(Duration::from_millis(50)), Err(WaitError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(45));
    sem.post().unwrap();
    sem.wait_timeout(Duration::ZERO).unwrap();
}

#[test]
fn bad_arguments_are_typed_errors() {
    let name = unique_name("psem");
    let r = PosixSem::builder(&name).initial(SEM_VALUE_MAX + 1).open();
    assert!(
        matches!(r, Err(OpenError::InitialTooLarge { value, max }) if value == SEM_VALUE_MAX + 1 && max == SEM_VALUE_MAX)
    );
    assert!(matches!(PosixSem::builder("a/b").open(), Err(OpenError::BadName(_))));
    assert!(matches!(PosixSem::builder("").open(), Err(OpenError::BadName(_))));
    let open_only = PosixSem::builder(&name).create_mode(CreateMode::Open).open();
    assert!(matches!(open_only, Err(OpenError::NotFound(_))));
    let _first = PosixSem::builder(&name).create_mode(CreateMode::CreateExclusive).open().unwrap();
    let again = PosixSem::builder(&name).create_mode(CreateMode::CreateExclusive).open();
    assert!(matches!(again, Err(OpenError::AlreadyExists(_))));
    let max = PosixSem::builder(&unique_name("psem")).initial(SEM_VALUE_MAX).open().unwrap();
    assert!(max.post().is_err());
    assert!(matches!(PosixSem::unlink(&unique_name("psem")), Err(UnlinkError::NotFound(_))));
}

#[test]
fn creator_unlinks_opener_does_not() {
    let name = unique_name("psem");
    let creator = PosixSem::builder(&name).initial(3).open().unwrap();
    assert!(creator.is_creator());
    let opener = PosixSem::builder(&name).create_mode(CreateMode::Open).open().unwrap();
    assert_eq!(opener.value().unwrap(), 3);
    drop(opener);
    assert_eq!(leftovers(&name).len(), 1);
    drop(creator);
    assert!(leftovers(&name).is_empty());

    // remove() unlinks at once; the handle stays usable and drop does not fail.
    let mut sem = PosixSem::builder(&name).open().unwrap();
    sem.remove().unwrap();
    assert!(leftovers(&name).is_empty());
    sem.post().unwrap();
    assert!(sem.try_wait().unwrap());
}

#[test]
fn killed_waiter_does_not_consume_a_post() {
    let name = unique_name("psem");
    let sem = PosixSem::builder(&name).open().unwrap();
    let mut p = peer("waiter").arg(&name).spawn();
    p.expect("waiting");
    p.kill();
    sem.post().unwrap();
    assert!(sem.try_wait().unwrap());
    drop(sem);
    assert!(leftovers(&name).is_empty());
}

#[test]
fn other_user_is_denied_on_owner_only_semaphore() {
    let name = unique_name("psem");
    let _sem = PosixSem::builder(&name).permissions(Permissions::OWNER_ONLY).open().unwrap();
    assert_eq!(file_mode(&name), 0o600);
    let mut p = peer("open").arg(&name).uid(NOBODY_UID).spawn();
    assert_eq!(p.expect("opened"), "denied");
    p.wait_success();
}

#[test]
fn mode_is_exact_whatever_the_umask() {
    for (umask, mode) in [("000", 0o640), ("077", 0o666), ("022", 0o660)] {
        let name = unique_name("psem");
        let mut p = peer("umask").arg(&name).arg(umask).arg(format!("{mode:o}")).spawn();
        p.expect("created");
        assert_eq!(file_mode(&name), mode, "umask {umask}");
        p.send("done");
        p.wait_success();
        assert!(leftovers(&name).is_empty());
    }
}
