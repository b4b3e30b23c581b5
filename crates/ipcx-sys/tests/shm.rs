//! Shared memory across real processes: POSIX shm, memfd, System V shm and mappings.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use std::os::fd::{AsRawFd, OwnedFd};

use ipcx_sys::mapping::{Access, MapError, MapOptions, Mapping};
use ipcx_sys::memfd::{Memfd, ReceiveError, SealError, Seals};
use ipcx_sys::posix_shm::{self, OpenError, PosixShm, UnlinkError};
use ipcx_sys::sysv_shm::{self, AttachError, RemoveError, SysvKey, SysvShm};
use ipcx_sys::{CreateMode, Permissions};
use ipcx_testkit::{
    leftovers, peer, read_command, signal, sysv_id_exists, unique_name, SysvKind, NOBODY_UID,
};

ipcx_testkit::peer_entry!(peer_main);

fn peer_main(role: &str, args: &[String]) {
    match role {
        "posix-echo" => posix_echo(&args[0]),
        "posix-open" => match PosixShm::builder(&args[0]).create_mode(CreateMode::Open).open() {
            Ok(_) => signal("opened", ""),
            Err(e) => signal("err", &format!("{}|{e}", open_kind(&e))),
        },
        "posix-unlink" => match posix_shm::unlink(&args[0]) {
            Ok(()) => signal("unlinked", ""),
            Err(e @ UnlinkError::PermissionDenied { .. }) => signal("err", &format!("perm|{e}")),
            Err(e) => signal("err", &format!("other|{e}")),
        },
        "posix-create-umask" => {
            let umask: u32 = u32::from_str_radix(&args[1], 8).unwrap();
            let mode = Permissions::from_mode(u32::from_str_radix(&args[2], 8).unwrap()).unwrap();
            // SAFETY: umask only swaps the process's file mode mask.
            unsafe { libc::umask(umask as libc::mode_t) };
            let _shm = PosixShm::builder(&args[0]).permissions(mode).size(4096).open().unwrap();
            signal("created", "");
            read_command();
        }
        "posix-create-and-hang" => {
            let shm = PosixShm::builder(&args[0]).size(4096).open().unwrap();
            let map = shm.map(Access::ReadWrite).unwrap();
            map.write_at(0, b"left").unwrap();
            signal("created", "");
            read_command();
        }
        "tiny-tmpfs" => tiny_tmpfs(&args[0]),
        "sysv-echo" => {
            let shm = match args[0].as_str() {
                "id" => SysvShm::from_id(args[1].parse().unwrap()).unwrap(),
                _ => SysvShm::builder(SysvKey::Key(args[1].parse().unwrap()))
                    .create_mode(CreateMode::Open)
                    .size(4096)
                    .open()
                    .unwrap(),
            };
            assert!(!shm.created());
            let att = shm.attach(Access::ReadWrite).unwrap();
            let mut buf = [0u8; 4];
            att.read_at(0, &mut buf).unwrap();
            signal("got", std::str::from_utf8(&buf).unwrap());
            att.write_at(64, b"pong").unwrap();
            att.atomic_u64_at(128).unwrap().store(9, Ordering::Release);
            signal("wrote", "");
            read_command();
        }
        "sysv-denied" => {
            let key = SysvKey::Key(args[0].parse().unwrap());
            let e = SysvShm::builder(key).create_mode(CreateMode::Open).open().unwrap_err();
            assert!(matches!(e, sysv_shm::OpenError::PermissionDenied { .. }), "{e}");
            signal("open", &e.to_string());
            // Even knowing the id, neither reading its status nor attaching is allowed.
            let id: i32 = args[1].parse().unwrap();
            let e = SysvShm::from_id(id).unwrap_err();
            assert!(matches!(e, sysv_shm::OpenError::PermissionDenied { .. }), "{e}");
            signal("from_id", &e.to_string());
        }
        "sysv-create-umask" => {
            // SAFETY: umask only swaps the process's file mode mask.
            unsafe { libc::umask(0) };
            let key = SysvKey::Key(args[0].parse().unwrap());
            let shm = SysvShm::builder(key)
                .permissions(Permissions::from_mode(0o640).unwrap())
                .size(4096)
                .open()
                .unwrap();
            signal("created", &shm.id().to_string());
            read_command();
        }
        "sysv-create-and-hang" => {
            let key = SysvKey::Key(args[0].parse().unwrap());
            let shm = SysvShm::builder(key).size(4096).open().unwrap();
            let att = shm.attach(Access::ReadWrite).unwrap();
            att.write_at(0, b"left").unwrap();
            signal("created", &shm.id().to_string());
            read_command();
        }
        "memfd-receive" => memfd_receive(&args[0]),
        "memfd-write" => {
            let fd: OwnedFd =
                std::fs::OpenOptions::new().read(true).write(true).open(&args[0]).unwrap().into();
            let memfd = Memfd::from_received(fd, Seals::EMPTY).unwrap();
            let map = memfd.map(Access::ReadWrite).unwrap();
            map.write_at(0, b"child").unwrap();
            signal("mapped", "");
            read_command();
        }
        other => panic!("unknown role {other}"),
    }
}

/// Opens the object, reports what the parent wrote, writes a reply, then waits.
fn posix_echo(name: &str) {
    let shm = PosixShm::builder(name).create_mode(CreateMode::Open).size(4096).open().unwrap();
    assert!(!shm.created());
    let map = shm.map(Access::ReadWrite).unwrap();
    let mut buf = [0u8; 4];
    map.read_at(0, &mut buf).unwrap();
    signal("got", std::str::from_utf8(&buf).unwrap());
    map.write_at(64, b"pong").unwrap();
    map.atomic_u32_at(128).unwrap().store(7, Ordering::Release);
    signal("wrote", "");
    read_command();
}

/// In a private mount namespace, mounts a 64 KiB tmpfs over /dev/shm and checks that a
/// 1 MiB object fails with NoSpace at creation, not with SIGBUS later.
fn tiny_tmpfs(name: &str) {
    // SAFETY: unshare only detaches this process's mount namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        signal("result", "skip: unshare(CLONE_NEWNS) not permitted");
        return;
    }
    let none = c"none";
    let root = c"/";
    let shm_dir = c"/dev/shm";
    let tmpfs = c"tmpfs";
    let opts = c"size=64k";
    // SAFETY: the strings are NUL-terminated; this makes mounts private to this namespace.
    let rc = unsafe {
        libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "make / private");
    // SAFETY: the strings are NUL-terminated; mounts a small tmpfs in this namespace only.
    let rc = unsafe {
        libc::mount(none.as_ptr(), shm_dir.as_ptr(), tmpfs.as_ptr(), 0, opts.as_ptr().cast())
    };
    assert_eq!(rc, 0, "mount tiny tmpfs");

    let e = PosixShm::builder(name).size(1 << 20).open().unwrap_err();
    assert!(matches!(e, OpenError::NoSpace { size: 1048576, .. }), "{e}");
    assert!(e.to_string().contains("df -h /dev/shm"), "{e}");
    assert!(leftovers(name).is_empty(), "a failed create must not leave the object");

    // An object sized without reserving (as another tool might make it): mapping it
    // writable reserves first and reports NoSpace instead of faulting later.
    let path = format!("/dev/shm/{name}");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(1 << 20).unwrap();
    let e = Mapping::map(file.as_fd(), Access::ReadWrite).unwrap_err();
    assert!(matches!(e, MapError::NoSpace { .. }), "{e}");
    signal("result", "nospace");
}

/// Reopens the parent's memfd through /proc (as good as receiving it), checks its seals and
/// what the parent wrote, and that it cannot be mapped writable.
fn memfd_receive(path: &str) {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let memfd = Memfd::from_received(file.into(), Seals::FIXED_SIZE | Seals::FUTURE_WRITE).unwrap();
    let map = memfd.map(Access::ReadOnly).unwrap();
    let mut buf = [0u8; 6];
    map.read_at(100, &mut buf).unwrap();
    signal("got", std::str::from_utf8(&buf).unwrap());
    let e = memfd.map(Access::ReadWrite).unwrap_err();
    signal("rw", &format!("{}", matches!(e, MapError::Sealed(_))));
}

fn open_kind(e: &OpenError) -> &'static str {
    match e {
        OpenError::PermissionDenied { .. } => "perm",
        OpenError::NotFound { .. } => "notfound",
        _ => "other",
    }
}

/// Removes a test object on drop, so a failing test leaves nothing behind.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = posix_shm::unlink(&self.0);
    }
}

fn mode_of(name: &str) -> u32 {
    std::fs::metadata(format!("/dev/shm/{name}"))
        .map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o777
        })
        .unwrap()
}

#[test]
fn posix_round_trip_between_processes() {
    let name = unique_name("shm");
    let _c = Cleanup(name.clone());
    let shm = PosixShm::builder(&name).size(4096).open().unwrap();
    assert!(shm.created());
    assert_eq!(shm.size(), 4096);
    let map = shm.map(Access::ReadWrite).unwrap();
    map.write_at(0, b"ping").unwrap();

    let mut p = peer("posix-echo").arg(&name).spawn();
    assert_eq!(p.expect("got"), "ping");
    p.expect("wrote");
    let mut buf = [0u8; 4];
    map.read_at(64, &mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    assert_eq!(map.atomic_u32_at(128).unwrap().load(Ordering::Acquire), 7);
    p.close_stdin();
    p.wait_success();
    assert_eq!(leftovers(&name).len(), 1, "an opener must not unlink");
    drop(shm);
    assert!(leftovers(&name).is_empty(), "the creator unlinks on drop");
    // The mapping outlives the handle and the name.
    map.read_at(64, &mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}

#[test]
fn posix_create_modes_and_bad_arguments() {
    let name = unique_name("shm");
    let _c = Cleanup(name.clone());
    let e = PosixShm::builder(&name).create_mode(CreateMode::Open).open().unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e}");
    let first = PosixShm::builder(&name).size(8192).open().unwrap();
    let e = PosixShm::builder(&name).size(8192).open().unwrap_err();
    assert!(matches!(e, OpenError::AlreadyExists { .. }), "{e}");
    let second =
        PosixShm::builder(&name).create_mode(CreateMode::OpenOrCreate).size(100).open().unwrap();
    assert!(!second.created());
    assert_eq!(second.size(), 8192);
    let e = PosixShm::builder(&name).create_mode(CreateMode::Open).size(8193).open().unwrap_err();
    assert!(matches!(e, OpenError::TooSmall { size: 8192, required: 8193, .. }), "{e}");

    let ro = PosixShm::builder(&name)
        .create_mode(CreateMode::Open)
        .access(Access::ReadOnly)
        .open()
        .unwrap();
    let e = ro.map(Access::ReadWrite).unwrap_err();
    assert!(matches!(e, MapError::FdAccess(_)), "{e}");
    let m = ro.map_with(MapOptions::new(Access::ReadOnly).length(100)).unwrap();
    assert_eq!(m.len(), 100);
    assert!(matches!(m.atomic_u32_at(0), Err(ipcx_sys::mapping::AccessError::ReadOnly)));
    let e = ro.map_with(MapOptions::new(Access::ReadOnly).length(8193)).unwrap_err();
    assert!(matches!(e, MapError::TooSmall { object_len: 8192, requested: 8193 }), "{e}");

    for bad in ["", "a/b", ".."] {
        let e = PosixShm::builder(bad).size(1).open().unwrap_err();
        assert!(matches!(e, OpenError::BadName(_)), "{bad:?}: {e}");
    }
    let e = PosixShm::builder(&unique_name("shm")).size(0).open().unwrap_err();
    assert!(matches!(e, OpenError::MissingSize { .. }), "{e}");
    drop((first, second, ro));
    assert!(leftovers(&name).is_empty());
}

#[test]
fn posix_cleanup_and_explicit_removal() {
    let name = unique_name("shm");
    let _c = Cleanup(name.clone());
    // remove() unlinks now; a second removal reports NotFound.
    let shm = PosixShm::builder(&name).size(4096).open().unwrap();
    shm.remove().unwrap();
    assert!(leftovers(&name).is_empty());
    assert!(matches!(posix_shm::unlink(&name), Err(UnlinkError::NotFound { .. })));

    // An opener asked to remove on drop does; a creator does not remove a newer object
    // that took the same name after its own was unlinked.
    let old = PosixShm::builder(&name).size(4096).open().unwrap();
    posix_shm::unlink(&name).unwrap();
    let newer = PosixShm::builder(&name).size(4096).open().unwrap();
    drop(old);
    assert_eq!(leftovers(&name).len(), 1, "dropping the old handle must keep the newer object");
    let opener =
        PosixShm::builder(&name).create_mode(CreateMode::Open).remove_on_drop(true).open().unwrap();
    drop(opener);
    assert!(leftovers(&name).is_empty());
    drop(newer);
}

#[test]
fn posix_object_survives_a_killed_creator_and_can_be_removed() {
    let name = unique_name("shm");
    let _c = Cleanup(name.clone());
    let mut p = peer("posix-create-and-hang").arg(&name).spawn();
    p.expect("created");
    p.kill();
    assert_eq!(leftovers(&name).len(), 1, "SIGKILL leaves the object behind");
    let shm = PosixShm::builder(&name).create_mode(CreateMode::OpenOrCreate).size(4096).open();
    let shm = shm.unwrap();
    assert!(!shm.created());
    let mut buf = [0u8; 4];
    shm.map(Access::ReadOnly).unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"left");
    posix_shm::unlink(&name).unwrap();
    assert!(leftovers(&name).is_empty());
}

#[test]
fn posix_other_user_gets_permission_denied_on_0600() {
    let name = unique_name("shm");
    let _c = Cleanup(name.clone());
    let _shm = PosixShm::builder(&name).size(4096).open().unwrap();
    assert_eq!(mode_of(&name), 0o600);

    let mut p = peer("posix-open").arg(&name).uid(NOBODY_UID).spawn();
    let err = p.expect("err");
    assert!(err.starts_with("perm|"), "{err}");
    assert!(err.contains("mode 0o600") && err.contains("uid 0"), "{err}");
    p.wait_success();

    let mut p = peer("posix-unlink").arg(&name).uid(NOBODY_UID).spawn();
    let err = p.expect("err");
    assert!(err.starts_with("perm|"), "{err}");
    p.wait_success();
    assert_eq!(leftovers(&name).len(), 1);
}

#[test]
fn posix_mode_is_exact_whatever_the_umask() {
    for (umask, mode) in [("000", 0o640), ("077", 0o660), ("000", 0o600)] {
        let name = unique_name("shm");
        let _c = Cleanup(name.clone());
        let mut p =
            peer("posix-create-umask").arg(&name).arg(umask).arg(format!("{mode:o}")).spawn();
        p.expect("created");
        assert_eq!(mode_of(&name), mode, "umask {umask}");
        p.close_stdin();
        p.wait_success();
        assert!(leftovers(&name).is_empty());
    }
}

#[test]
fn full_dev_shm_is_an_error_not_sigbus() {
    let name = unique_name("shm");
    let mut p = peer("tiny-tmpfs").arg(&name).spawn();
    let result = p.expect("result");
    if result.starts_with("skip") {
        eprintln!("{result}");
    } else {
        assert_eq!(result, "nospace");
    }
    p.wait_success();
}

fn proc_path(fd: &impl AsRawFd) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd())
}

#[test]
fn memfd_sealed_round_trip_between_processes() {
    let memfd = Memfd::create("ipcx-test", 4096).unwrap();
    let map = memfd.map(Access::ReadWrite).unwrap();
    map.write_at(100, b"sealed").unwrap();
    memfd.add_seals(Seals::FIXED_SIZE | Seals::FUTURE_WRITE | Seals::SEAL).unwrap();
    let seals = memfd.seals().unwrap();
    assert!(seals.contains(Seals::FIXED_SIZE | Seals::FUTURE_WRITE | Seals::SEAL), "{seals}");
    // FUTURE_WRITE keeps the existing writable mapping working.
    map.write_at(0, b"still writable").unwrap();
    // The size is fixed now.
    assert_eq!(rustix::fs::ftruncate(&memfd, 10), Err(rustix::io::Errno::PERM));

    let mut p = peer("memfd-receive").arg(proc_path(&memfd.as_fd())).spawn();
    assert_eq!(p.expect("got"), "sealed");
    assert_eq!(p.expect("rw"), "true");
    p.wait_success();
}

#[test]
fn memfd_received_fd_must_carry_the_required_seals() {
    let memfd = Memfd::create("ipcx-test", 4096).unwrap();
    memfd.add_seals(Seals::SHRINK).unwrap();
    let dup = memfd.as_fd().try_clone_to_owned().unwrap();
    let e = Memfd::from_received(dup, Seals::FIXED_SIZE | Seals::WRITE).unwrap_err();
    match &e {
        ReceiveError::MissingSeals { missing, present } => {
            assert_eq!(*missing, Seals::GROW | Seals::WRITE);
            assert!(present.contains(Seals::SHRINK));
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("GROW|WRITE"), "{e}");
    let dup = memfd.as_fd().try_clone_to_owned().unwrap();
    assert!(Memfd::from_received(dup, Seals::SHRINK).is_ok());

    let (r, _w) = rustix::pipe::pipe().unwrap();
    assert!(matches!(Memfd::from_received(r, Seals::EMPTY), Err(ReceiveError::NotMemfd(_))));
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let e = Memfd::from_received(file.into(), Seals::EMPTY).unwrap_err();
    assert!(matches!(e, ReceiveError::NotMemfd(_)), "{e}");
}

#[test]
fn memfd_write_seal_waits_for_writable_mappings_even_a_killed_peers() {
    let memfd = Memfd::create("ipcx-test", 4096).unwrap();
    let mut p = peer("memfd-write").arg(proc_path(&memfd.as_fd())).spawn();
    p.expect("mapped");
    let e = memfd.add_seals(Seals::WRITE).unwrap_err();
    assert!(matches!(e, SealError::MappedWritable(_)), "{e}");
    p.kill();
    // The killed peer's mapping is gone with it; its writes stay.
    memfd.add_seals(Seals::WRITE | Seals::SEAL).unwrap();
    let map = memfd.map(Access::ReadOnly).unwrap();
    let mut buf = [0u8; 5];
    map.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"child");
    assert!(matches!(memfd.map(Access::ReadWrite), Err(MapError::Sealed(_))));
    assert!(matches!(memfd.add_seals(Seals::GROW), Err(SealError::Locked(_))));
}

/// A random non-zero System V key, derived from a unique name.
fn random_key() -> i32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(unique_name("key").as_bytes());
    (h.finish() as i32 & 0x3fff_ffff) | 0x4000_0000
}

/// Removes a test segment on drop, so a failing test leaves nothing behind.
struct SysvCleanup(i32);

impl Drop for SysvCleanup {
    fn drop(&mut self) {
        if let Ok(shm) = SysvShm::from_id(self.0) {
            let _ = shm.remove();
        }
    }
}

/// Mode of segment `id` from /proc/sysvipc/shm.
fn sysv_mode(id: i32) -> u32 {
    let text = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&id.to_string()))
        .expect("segment listed");
    u32::from_str_radix(line.split_whitespace().nth(2).unwrap(), 8).unwrap() & 0o777
}

#[test]
fn sysv_private_round_trip_by_id() {
    let shm = SysvShm::builder(SysvKey::Private).size(4096).open().unwrap();
    let _c = SysvCleanup(shm.id());
    assert!(shm.created());
    assert_eq!(shm.size(), 4096);
    let att = shm.attach(Access::ReadWrite).unwrap();
    assert_eq!(att.len(), 4096);
    att.write_at(0, b"ping").unwrap();
    let mut p = peer("sysv-echo").arg("id").arg(shm.id()).spawn();
    assert_eq!(p.expect("got"), "ping");
    p.expect("wrote");
    let mut buf = [0u8; 4];
    att.read_at(64, &mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    assert_eq!(att.atomic_u64_at(128).unwrap().load(Ordering::Acquire), 9);
    p.close_stdin();
    p.wait_success();
    let id = shm.id();
    assert!(sysv_id_exists(SysvKind::Shm, id), "an opener must not remove it");
    drop(shm);
    // IPC_RMID defers destruction while attached; the attachment keeps working.
    att.write_at(0, b"late").unwrap();
    assert!(sysv_id_exists(SysvKind::Shm, id));
    drop(att);
    assert!(!sysv_id_exists(SysvKind::Shm, id), "gone once the last attachment is");
}

#[test]
fn sysv_keyed_round_trip_and_create_modes() {
    let key = random_key();
    let e = SysvShm::builder(SysvKey::Key(key)).create_mode(CreateMode::Open).open().unwrap_err();
    assert!(matches!(e, sysv_shm::OpenError::NotFound { .. }), "{e}");
    let shm = SysvShm::builder(SysvKey::Key(key)).size(4096).open().unwrap();
    let _c = SysvCleanup(shm.id());
    let e = SysvShm::builder(SysvKey::Key(key)).size(4096).open().unwrap_err();
    assert!(matches!(e, sysv_shm::OpenError::AlreadyExists { .. }), "{e}");
    let again =
        SysvShm::builder(SysvKey::Key(key)).create_mode(CreateMode::OpenOrCreate).size(10).open();
    let again = again.unwrap();
    assert!(!again.created());
    assert_eq!(again.id(), shm.id());
    let e = SysvShm::builder(SysvKey::Key(key)).create_mode(CreateMode::Open).size(4097).open();
    assert!(matches!(
        e.unwrap_err(),
        sysv_shm::OpenError::TooSmall { size: 4096, required: 4097, .. }
    ));
    let e = SysvShm::builder(SysvKey::Private).size(usize::MAX).open().unwrap_err();
    assert!(matches!(e, sysv_shm::OpenError::BadSize { .. }), "{e}");

    let att = shm.attach(Access::ReadWrite).unwrap();
    att.write_at(0, b"ping").unwrap();
    let mut p = peer("sysv-echo").arg("key").arg(key).spawn();
    assert_eq!(p.expect("got"), "ping");
    p.expect("wrote");
    let ro = again.attach(Access::ReadOnly).unwrap();
    let mut buf = [0u8; 4];
    ro.read_at(64, &mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    assert!(matches!(ro.write_at(0, b"x"), Err(ipcx_sys::mapping::AccessError::ReadOnly)));
    p.close_stdin();
    p.wait_success();

    let id = shm.id();
    drop((att, ro, again));
    assert!(sysv_id_exists(SysvKind::Shm, id));
    shm.remove().unwrap();
    assert!(!sysv_id_exists(SysvKind::Shm, id));
    assert!(matches!(SysvShm::from_id(id), Err(sysv_shm::OpenError::NotFound { .. })));
}

#[test]
fn sysv_segment_of_a_killed_creator_is_recovered_and_removed() {
    let key = random_key();
    let mut p = peer("sysv-create-and-hang").arg(key).spawn();
    let id: i32 = p.expect("created").parse().unwrap();
    let _c = SysvCleanup(id);
    p.kill();
    assert!(sysv_id_exists(SysvKind::Shm, id), "SIGKILL leaves the segment behind");
    let shm = SysvShm::builder(SysvKey::Key(key))
        .create_mode(CreateMode::OpenOrCreate)
        .size(4096)
        .remove_on_drop(true)
        .open()
        .unwrap();
    assert!(!shm.created());
    let mut buf = [0u8; 4];
    shm.attach(Access::ReadOnly).unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"left");
    drop(shm);
    assert!(!sysv_id_exists(SysvKind::Shm, id));
    let stale = SysvShm::from_id(id);
    assert!(matches!(stale, Err(sysv_shm::OpenError::NotFound { .. })));
}

#[test]
fn sysv_other_user_gets_permission_denied_on_0600() {
    let key = random_key();
    let shm = SysvShm::builder(SysvKey::Key(key)).size(4096).open().unwrap();
    let _c = SysvCleanup(shm.id());
    assert_eq!(sysv_mode(shm.id()), 0o600);
    let mut p = peer("sysv-denied").arg(key).arg(shm.id()).uid(NOBODY_UID).spawn();
    let msg = p.expect("open");
    assert!(msg.contains("mode 0o600") && msg.contains("uid 0"), "{msg}");
    p.expect("from_id");
    p.wait_success();
}

#[test]
fn sysv_attach_and_remove_errors() {
    let shm = SysvShm::builder(SysvKey::Private).size(100).open().unwrap();
    let id = shm.id();
    let _c = SysvCleanup(id);
    let other = SysvShm::from_id(id).unwrap();
    assert_eq!(other.size(), 100);
    shm.remove().unwrap();
    // Nothing was attached, so IPC_RMID destroyed it at once.
    assert!(matches!(other.attach(Access::ReadOnly), Err(AttachError::NotFound { .. })));
    assert!(matches!(SysvShm::from_id(id), Err(sysv_shm::OpenError::NotFound { .. })));
    let again = SysvShm::builder(SysvKey::Private).size(100).open().unwrap();
    let _c2 = SysvCleanup(again.id());
    let twin = SysvShm::from_id(again.id()).unwrap();
    again.remove().unwrap();
    assert!(matches!(twin.remove(), Err(RemoveError::NotFound { .. })));
}

#[test]
fn sysv_mode_is_exact_under_umask_000() {
    let key = random_key();
    let mut p = peer("sysv-create-umask").arg(key).spawn();
    let id: i32 = p.expect("created").parse().unwrap();
    let _c = SysvCleanup(id);
    assert_eq!(sysv_mode(id), 0o640);
    p.close_stdin();
    p.wait_success();
    assert!(!sysv_id_exists(SysvKind::Shm, id), "the creator removes it on drop");
}
