//! Broadcast ring across real processes: the ring lives in a POSIX shm object that a writer
//! (this process) and reader processes map.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use ipcx_shm::ring::broadcast::{self, Config, Policy, Reader, RecvError, SendError, Writer};
use ipcx_shm::MappedRegion;
use ipcx_sys::mapping::Access;
use ipcx_sys::posix_shm::{OpenError, PosixShm};
use ipcx_sys::CreateMode;
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name, NOBODY_UID};

ipcx_testkit::peer_entry!(peer_main);

const CAP: u64 = 1 << 16;
const SLOTS: u32 = 4;
const RECORDS: u64 = 200_000;
const PATIENCE: Duration = Duration::from_secs(20);

fn size() -> usize {
    broadcast::required_size(CAP, SLOTS) as usize
}

fn peer_main(role: &str, args: &[String]) {
    match role {
        "reader" => {
            let mut r = Reader::attach(open_region(&args[0]), 0).unwrap();
            signal("ready", &r.slot().to_string());
            let (got, lagged) = read_all(&mut r, args[1].parse().unwrap());
            signal("done", &format!("{got} {lagged}"));
        }
        "idle-reader" => {
            let r = Reader::attach(open_region(&args[0]), 0).unwrap();
            signal("ready", &r.slot().to_string());
            read_command(); // until killed
        }
        "open" => match PosixShm::builder(&args[0]).create_mode(CreateMode::Open).open() {
            Ok(_) => signal("opened", ""),
            Err(e @ OpenError::PermissionDenied { .. }) => signal("denied", &e.to_string()),
            Err(e) => signal("other", &e.to_string()),
        },
        other => panic!("unknown role {other}"),
    }
}

fn open_region(name: &str) -> MappedRegion {
    let shm = PosixShm::builder(name).create_mode(CreateMode::Open).size(size()).open().unwrap();
    MappedRegion::new(shm.map(Access::ReadWrite).unwrap()).unwrap()
}

/// Creates the object (0600, removed when the handle drops) and a ring in it.
fn create(name: &str, policy: Policy) -> (PosixShm, MappedRegion) {
    let shm = PosixShm::builder(name).size(size()).open().unwrap();
    let region = MappedRegion::new(shm.map(Access::ReadWrite).unwrap()).unwrap();
    broadcast::init(&region, 0, Config { capacity: CAP, slots: SLOTS, policy, history: 0 })
        .unwrap();
    (shm, region)
}

/// Payload of record `i`: index, filler of varying length, crc32 of both.
fn msg(i: u64) -> Vec<u8> {
    let fill = (i * 29 % 300) as usize;
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..fill).map(|j| (i as usize * 3 + j) as u8));
    let crc = crc32fast::hash(&m);
    m.extend_from_slice(&crc.to_le_bytes());
    m
}

/// Reads until record `n - 1` is accounted for, checking order and checksums; returns
/// (received, lagged).
fn read_all(r: &mut Reader<MappedRegion>, n: u64) -> (u64, u64) {
    let (mut next, mut got, mut lagged, mut buf) = (0, 0, 0, Vec::new());
    while next < n {
        match r.recv_timeout(&mut buf, PATIENCE) {
            Ok(Some(_)) => {
                let (body, crc) = buf.split_at(buf.len() - 4);
                assert_eq!(crc32fast::hash(body).to_le_bytes(), crc, "torn record");
                let i = u64::from_le_bytes(body[..8].try_into().unwrap());
                assert_eq!(i, next, "out of order");
                assert_eq!(buf, msg(i));
                (next, got) = (next + 1, got + 1);
            }
            Ok(None) => panic!("no record for {PATIENCE:?} after {next}"),
            Err(RecvError::Lagged(k)) => (next, lagged) = (next + k, lagged + k),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(next, n, "lag counts overshoot");
    assert_eq!(r.try_recv(&mut buf), Ok(None));
    (got, lagged)
}

/// One writer here, two reader processes, RECORDS records each checked by both.
fn fan_out(policy: Policy) {
    let name = unique_name("bcast");
    let (shm, region) = create(&name, policy);
    let mut peers: Vec<_> =
        (0..2).map(|_| peer("reader").arg(&name).arg(RECORDS).spawn()).collect();
    for p in &mut peers {
        p.expect("ready");
    }
    let mut w = Writer::attach(region, 0).unwrap();
    let start = Instant::now();
    for i in 0..RECORDS {
        w.send_timeout(msg(i), PATIENCE).unwrap();
    }
    let sent = start.elapsed();
    let results: Vec<String> = peers.iter_mut().map(|p| p.expect("done")).collect();
    let elapsed = start.elapsed();
    for p in &mut peers {
        p.wait_success();
    }
    let s = w.stats();
    eprintln!(
        "{policy:?}: sent {RECORDS} in {sent:?}, both read in {elapsed:?}: {results:?}, {s:?}"
    );
    for r in &results {
        let (got, lagged) = r.split_once(' ').unwrap();
        let (got, lagged): (u64, u64) = (got.parse().unwrap(), lagged.parse().unwrap());
        assert_eq!(got + lagged, RECORDS);
        if policy == Policy::Block {
            assert_eq!(lagged, 0);
        }
    }
    assert_eq!(s.published, RECORDS);
    assert!(s.readers.is_empty(), "exited readers keep their slots: {s:?}");
    drop((w, shm));
    assert!(leftovers(&name).is_empty());
}

#[test]
fn two_reader_processes_get_every_record_under_block() {
    fan_out(Policy::Block);
}

#[test]
fn two_reader_processes_get_ordered_subsequences_under_drop_oldest() {
    fan_out(Policy::DropOldest);
}

#[test]
fn killed_reader_is_reclaimed_and_never_blocks_the_writer() {
    let name = unique_name("bcast");
    let (_shm, region) = create(&name, Policy::Block);
    let mut p = peer("idle-reader").arg(&name).spawn();
    let slot: u32 = p.expect("ready").parse().unwrap();
    let mut w = Writer::attach(region, 0).unwrap();
    let mut sent = 0;
    while w.try_send(msg(sent)).is_ok() {
        sent += 1;
    }
    // Alive and not reading: the writer waits, and does not take the slot.
    let e = w.send_timeout(msg(sent), Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, SendError::Full(_)), "{e:?}");
    let s = w.stats();
    assert_eq!((s.reclaimed, s.readers.len(), s.readers[0].slot), (0, 1, slot));
    assert_eq!(s.readers[0].pid, p.pid());
    p.kill();
    let start = Instant::now();
    w.send_timeout(msg(sent), PATIENCE).unwrap();
    eprintln!("dead reader reclaimed after {:?}", start.elapsed());
    let s = w.stats();
    assert_eq!((s.reclaimed, s.readers.len()), (1, 0));
    for i in sent + 1..sent + 1000 {
        w.try_send(msg(i)).unwrap();
    }
}

#[test]
fn other_users_cannot_open_the_ring() {
    let name = unique_name("bcast");
    let (_shm, _region) = create(&name, Policy::Block);
    let mode = std::fs::metadata(format!("/dev/shm/{name}")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut p = peer("open").arg(&name).uid(NOBODY_UID).spawn();
    let msg = p.expect("denied");
    assert!(msg.contains("permission"), "{msg}");
    p.wait_success();
}
