//! Anonymous pipes (within a process, across threads) and FIFOs (across real processes).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipcx_sys::pipe::{
    pipe, CapacityError, Fifo, FifoCreateError, FifoOpenError, FifoRemoveError, PipeReader,
    ReadError, WriteError, PIPE_BUF,
};
use ipcx_sys::{CreateMode, Permissions};
use ipcx_testkit::{peer, read_command, signal, unique_name, NOBODY_UID};

ipcx_testkit::peer_entry!(peer_main);

const LONG: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    let fifo = |path: &str| Fifo::builder(path).create_mode(CreateMode::Open).open().unwrap();
    match role {
        // Echoes everything read from FIFO args[0] into FIFO args[1] until the writer leaves.
        "echo" => {
            let (a, b) = (fifo(&args[0]), fifo(&args[1]));
            assert!(!a.is_creator());
            let reader = a.open_reader().unwrap();
            let writer = b.open_writer_timeout(LONG).unwrap();
            signal("ready", "");
            let mut buf = vec![0u8; 65536];
            loop {
                match reader.read_timeout(&mut buf, LONG) {
                    Ok(n) => writer.write_all_timeout(&buf[..n], LONG).unwrap(),
                    Err(ReadError::PeerGone) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        // Opens a writer, writes one message and holds the FIFO open until killed.
        "writer" => {
            let writer = fifo(&args[0]).open_writer_timeout(LONG).unwrap();
            writer.write_atomic(args[1].as_bytes()).unwrap();
            signal("wrote", "");
            read_command();
        }
        // Holds a reader open until killed.
        "reader" => {
            let _reader = fifo(&args[0]).open_reader().unwrap();
            signal("open", "");
            read_command();
        }
        // Tries both ends as another user.
        "open" => {
            let f = fifo(&args[0]);
            let r = match f.open_reader() {
                Err(FifoOpenError::PermissionDenied(_)) => "denied".to_owned(),
                other => format!("{other:?}"),
            };
            let w = match f.try_open_writer() {
                Err(FifoOpenError::PermissionDenied(_)) => "denied".to_owned(),
                other => format!("{other:?}"),
            };
            signal("opened", &format!("{r}/{w}"));
        }
        // Creates a FIFO under umask args[1] with mode args[2]; holds it until told.
        "umask" => {
            let umask = u32::from_str_radix(&args[1], 8).unwrap();
            let mode = u32::from_str_radix(&args[2], 8).unwrap();
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
            let perms = Permissions::from_mode(mode).unwrap();
            let _f = Fifo::builder(&args[0]).permissions(perms).open().unwrap();
            signal("created", "");
            read_command();
        }
        other => panic!("unknown role {other}"),
    }
}

/// A fresh directory under /tmp with mode 0755, removed with its content on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = Path::new("/tmp").join(unique_name("fifo"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn anon_pipe_streams_across_threads_and_reports_eof() {
    let (r, w) = pipe().unwrap();
    let data = pattern(1 << 20);
    let sent = data.clone();
    let t = std::thread::spawn(move || {
        w.write_all_timeout(&sent, LONG).unwrap();
        // `w` dropped here: the reader then sees the end.
    });
    let mut got = vec![0u8; data.len()];
    r.read_exact_timeout(&mut got, LONG).unwrap();
    assert!(got == data);
    t.join().unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(r.read_timeout(&mut buf, LONG), Err(ReadError::PeerGone)));
    assert!(matches!(r.try_read(&mut buf), Err(ReadError::PeerGone)));
    assert_eq!(r.read_timeout(&mut [], LONG).unwrap(), 0);
}

#[test]
fn writes_to_a_pipe_without_reader_report_peer_gone() {
    let (r, w) = pipe().unwrap();
    drop(r);
    assert!(matches!(w.write_all(b"x"), Err(WriteError::PeerGone { written: 0 })));
    assert!(matches!(w.write_atomic(b"x"), Err(WriteError::PeerGone { written: 0 })));
}

#[test]
fn atomic_writes_are_limited_to_pipe_buf() {
    assert_eq!(PIPE_BUF, 4096);
    let (r, w) = pipe().unwrap();
    let err = w.write_atomic(&[0u8; PIPE_BUF + 1]).unwrap_err();
    assert!(matches!(err, WriteError::TooLargeForAtomic { len: 4097, limit: 4096 }));
    assert!(err.to_string().contains("PIPE_BUF (4096)"));
    w.write_atomic(&[1u8; PIPE_BUF]).unwrap();
    let mut buf = vec![0u8; 2 * PIPE_BUF];
    assert_eq!(r.read(&mut buf).unwrap(), PIPE_BUF);
}

#[test]
fn reads_that_poll_first_take_what_is_there_wait_for_more_and_see_the_end() {
    let (r, w) = pipe().unwrap();
    let mut buf = [0u8; 64];
    // Data there already: the poll returns at once.
    w.write_all(b"ready").unwrap();
    assert_eq!(r.read_when_ready(&mut buf, Some(LONG)).unwrap(), 5);
    assert_eq!(&buf[..5], b"ready");
    // Nothing there: the timeout, never early.
    let t = Duration::from_millis(30);
    let start = Instant::now();
    assert!(matches!(r.read_when_ready(&mut buf, Some(t)), Err(ReadError::Timeout)));
    assert!(start.elapsed() >= t);
    // Written by another thread while (or before) the read waits without a limit; then the
    // writer closes, and a read that polls first sees the end, not a timeout.
    let writer = std::thread::spawn(move || w.write_all(b"later").unwrap());
    assert_eq!(r.read_when_ready(&mut buf, None).unwrap(), 5);
    assert_eq!(&buf[..5], b"later");
    writer.join().unwrap();
    assert!(matches!(r.read_when_ready(&mut buf, Some(LONG)), Err(ReadError::PeerGone)));
    assert!(matches!(r.read_when_ready(&mut buf, None), Err(ReadError::PeerGone)));
    assert_eq!(r.read_when_ready(&mut [], None).unwrap(), 0);
}

#[test]
fn timeouts_and_try_forms() {
    let (r, w) = pipe().unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(r.try_read(&mut buf).unwrap(), None);
    let start = Instant::now();
    assert!(matches!(r.read_timeout(&mut buf, Duration::from_millis(50)), Err(ReadError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(45));

    assert_eq!(w.set_capacity(PIPE_BUF).unwrap(), PIPE_BUF);
    assert_eq!(r.capacity().unwrap(), PIPE_BUF);
    let big = pattern(3 * PIPE_BUF);
    let res = w.write_all_timeout(&big, Duration::from_millis(30));
    assert!(matches!(res, Err(WriteError::Timeout { written: PIPE_BUF })), "{res:?}");
    assert_eq!(w.try_write(b"more").unwrap(), None);
    assert!(!w.try_write_atomic(b"more").unwrap());
    let atomic = w.write_atomic_timeout(b"more", Duration::from_millis(10));
    assert!(matches!(atomic, Err(WriteError::Timeout { written: 0 })));
    let mut first = vec![0u8; PIPE_BUF];
    r.read_exact_timeout(&mut first, LONG).unwrap();
    assert!(first[..] == big[..PIPE_BUF]);
    assert_eq!(w.try_write(b"more").unwrap(), Some(4));
}

#[test]
fn capacity_can_grow_and_refuses_to_drop_data() {
    let (r, w) = pipe().unwrap();
    assert_eq!(r.set_capacity(100_000).unwrap(), 131_072);
    assert_eq!(w.capacity().unwrap(), 131_072);
    w.write_all(&pattern(3 * PIPE_BUF)).unwrap();
    assert!(matches!(w.set_capacity(PIPE_BUF), Err(CapacityError::Busy { .. })));
    assert!(matches!(w.set_capacity(usize::MAX), Err(CapacityError::TooLarge { .. })));
}

#[test]
fn fifo_round_trip_between_processes() {
    let dir = TempDir::new();
    let (pa, pb) = (dir.path("a"), dir.path("b"));
    let to_child = Fifo::builder(&pa).create_mode(CreateMode::CreateExclusive).open().unwrap();
    let from_child = Fifo::builder(&pb).create_mode(CreateMode::CreateExclusive).open().unwrap();
    assert!(to_child.is_creator());
    let reader = from_child.open_reader().unwrap();
    let mut p = peer("echo").arg(pa.display()).arg(pb.display()).spawn();
    p.expect("ready");
    let writer = to_child.open_writer_timeout(LONG).unwrap();
    for i in 0..100u32 {
        let msg = format!("message {i}");
        writer.write_atomic(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        reader.read_exact_timeout(&mut back, LONG).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    // A stream larger than the pipe buffer, echoed back while it is written.
    let data = pattern(1 << 20);
    let sent = data.clone();
    let t = std::thread::spawn(move || {
        writer.write_all_timeout(&sent, LONG).unwrap();
    });
    let mut got = vec![0u8; data.len()];
    reader.read_exact_timeout(&mut got, LONG).unwrap();
    assert!(got == data);
    t.join().unwrap(); // closes our writer: the child sees PeerGone and exits
    p.wait_success();
    let mut buf = [0u8; 8];
    assert!(matches!(reader.read_timeout(&mut buf, LONG), Err(ReadError::PeerGone)));
    drop((to_child, from_child));
    assert!(!pa.exists() && !pb.exists());
}

#[test]
fn fifo_open_and_read_time_out_without_a_peer() {
    let dir = TempDir::new();
    let fifo = Fifo::builder(dir.path("f")).open().unwrap();
    assert!(fifo.try_open_writer().unwrap().is_none());
    let start = Instant::now();
    let w = fifo.open_writer_timeout(Duration::from_millis(50));
    assert!(matches!(w, Err(FifoOpenError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(45));
    // No writer has connected yet: that is a wait, not an end of file.
    let reader = fifo.open_reader().unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(reader.try_read(&mut buf).unwrap(), None);
    let r = reader.read_timeout(&mut buf, Duration::from_millis(30));
    assert!(matches!(r, Err(ReadError::Timeout)));
    // With a reader open, a writer opens at once.
    assert!(fifo.try_open_writer().unwrap().is_some());
}

#[test]
fn fifo_reader_sees_a_killed_writer_and_recovers_with_a_new_one() {
    let dir = TempDir::new();
    let path = dir.path("f");
    let fifo = Fifo::builder(&path).open().unwrap();
    let reader: PipeReader = fifo.open_reader().unwrap();
    let mut buf = [0u8; 64];
    for round in 0..2 {
        let msg = format!("hello-{round}");
        let mut p = peer("writer").arg(path.display()).arg(&msg).spawn();
        p.expect("wrote");
        let n = reader.read_timeout(&mut buf, LONG).unwrap();
        assert_eq!(&buf[..n], msg.as_bytes());
        p.kill();
        assert!(matches!(reader.read_timeout(&mut buf, LONG), Err(ReadError::PeerGone)));
    }
}

#[test]
fn fifo_writer_sees_a_killed_reader() {
    let dir = TempDir::new();
    let path = dir.path("f");
    let fifo = Fifo::builder(&path).open().unwrap();
    let mut p = peer("reader").arg(path.display()).spawn();
    p.expect("open");
    let writer = fifo.open_writer_timeout(LONG).unwrap();
    writer.write_atomic(b"unread").unwrap();
    p.kill();
    assert!(matches!(writer.write_all(b"x"), Err(WriteError::PeerGone { written: 0 })));
}

#[test]
fn fifo_bad_arguments_are_typed_errors() {
    let dir = TempDir::new();
    let path = dir.path("f");
    let missing = Fifo::builder(&path).create_mode(CreateMode::Open).open();
    assert!(matches!(missing, Err(FifoCreateError::NotFound(_))));
    let no_dir = Fifo::builder(dir.path("nodir/f")).open();
    assert!(matches!(no_dir, Err(FifoCreateError::NotFound(_))));
    let _f = Fifo::builder(&path).create_mode(CreateMode::CreateExclusive).open().unwrap();
    let again = Fifo::builder(&path).create_mode(CreateMode::CreateExclusive).open();
    assert!(matches!(again, Err(FifoCreateError::AlreadyExists(_))));
    let file = dir.path("plain");
    std::fs::write(&file, b"").unwrap();
    assert!(matches!(Fifo::builder(&file).open(), Err(FifoCreateError::NotAFifo)));
}

#[test]
fn fifo_creator_removes_the_path_opener_does_not() {
    let dir = TempDir::new();
    let path = dir.path("f");
    let creator = Fifo::builder(&path).open().unwrap();
    let opener = Fifo::builder(&path).open().unwrap();
    assert!(creator.is_creator() && !opener.is_creator());
    drop(opener);
    assert!(path.exists());
    drop(creator);
    assert!(!path.exists());

    let mut fifo = Fifo::builder(&path).open().unwrap();
    let reader = fifo.open_reader().unwrap();
    fifo.remove().unwrap();
    assert!(!path.exists());
    assert!(matches!(fifo.remove(), Err(FifoRemoveError::NotFound(_))));
    drop(reader);

    // Drop does not remove a path that was replaced after creation.
    let fifo = Fifo::builder(&path).open().unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"someone else's").unwrap();
    drop(fifo);
    assert!(path.exists());
}

#[test]
fn other_user_is_denied_on_owner_only_fifo() {
    let dir = TempDir::new();
    let path = dir.path("f");
    let fifo = Fifo::builder(&path).permissions(Permissions::OWNER_ONLY).open().unwrap();
    assert_eq!(mode_of(fifo.path()), 0o600);
    let mut p = peer("open").arg(path.display()).uid(NOBODY_UID).spawn();
    assert_eq!(p.expect("opened"), "denied/denied");
    p.wait_success();
}

#[test]
fn fifo_mode_is_exact_whatever_the_umask() {
    let dir = TempDir::new();
    for (i, (umask, mode)) in [("000", 0o600), ("077", 0o644), ("022", 0o666)].iter().enumerate() {
        let path = dir.path(&format!("f{i}"));
        let mut p = peer("umask").arg(path.display()).arg(umask).arg(format!("{mode:o}")).spawn();
        p.expect("created");
        assert_eq!(mode_of(&path), *mode, "umask {umask}");
        p.send("done");
        p.wait_success();
        assert!(!path.exists());
    }
}
