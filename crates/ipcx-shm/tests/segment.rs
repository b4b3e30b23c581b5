//! Segments: header validation against every corrupted field, and create/open across real
//! processes (kinds, contracts, versions, crashed creators, permissions, cleanup).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipcx_shm::segment::header::field;
use ipcx_shm::segment::{
    encode_header, validate_header, CreateError, Expect, HeaderError, LayoutFault, OpenError,
    Segment, SegmentInfo, SegmentKind, SegmentSpec, HEADER_SIZE, INIT_READY, LAYOUT_VERSION,
    PAYLOAD_ALIGN,
};
use ipcx_shm::Region;
use ipcx_sys::mapping::Access;
use ipcx_sys::posix_shm::{self, PosixShm};
use ipcx_sys::{CreateMode, Permissions};
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name, NOBODY_UID};

ipcx_testkit::peer_entry!(peer_main);

const FP: u64 = 0x0123_4567_89ab_cdef;
const PAYLOAD: usize = 8192;

fn peer_main(role: &str, args: &[String]) {
    match role {
        "create" => {
            let mode = u32::from_str_radix(&args[1], 8).unwrap();
            let spec = SegmentSpec {
                fingerprint: FP,
                permissions: Permissions::from_mode(mode).unwrap(),
                ..SegmentSpec::new(SegmentKind::SpscRing, PAYLOAD)
            };
            let seg = Segment::create(&args[0], &spec).unwrap();
            let region = seg.region().get();
            region.write_at(seg.payload_offset(), b"from-creator").unwrap();
            signal("created", &std::process::id().to_string());
            while let Some(cmd) = read_command() {
                if cmd == "read" {
                    let mut buf = [0u8; 11];
                    region.read_at(seg.payload_offset() + 64, &mut buf).unwrap();
                    signal("read", &String::from_utf8_lossy(&buf));
                }
            }
        }
        "half-create" => {
            // A creator that wrote its header but not the init word yet.
            let info = info_for(PAYLOAD as u64);
            let shm = PosixShm::builder(&args[0]).size(info.total_size as usize).open().unwrap();
            let map = shm.map(Access::ReadWrite).unwrap();
            map.write_at(0, &encode_header(&info, 0)).unwrap();
            signal("written", "");
            if read_command().as_deref() == Some("init") {
                map.atomic_u32_at(field::INIT).unwrap().store(INIT_READY, Ordering::Release);
                signal("ready", "");
                read_command();
            }
        }
        "open" => {
            match Segment::open(&args[0], Expect { kind: SegmentKind::SpscRing, fingerprint: FP }) {
                Ok(seg) => {
                    let h = seg.header();
                    signal("opened", &format!("{} {}", h.creator_pid, h.creator_uid));
                }
                Err(e @ OpenError::Shm(posix_shm::OpenError::PermissionDenied { .. })) => {
                    signal("err", &format!("perm|{e}"))
                }
                Err(e) => signal("err", &format!("other|{e}")),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// The header a segment of `payload` bytes gets, with a fixed fingerprint and creator.
fn info_for(payload: u64) -> SegmentInfo {
    SegmentInfo {
        kind: SegmentKind::SpscRing,
        total_size: PAYLOAD_ALIGN + payload,
        payload_offset: PAYLOAD_ALIGN,
        payload_size: payload,
        fingerprint: FP,
        creator_pid: 4242,
        creator_uid: 1000,
    }
}

fn expect() -> Expect {
    Expect { kind: SegmentKind::SpscRing, fingerprint: FP }
}

fn spec() -> SegmentSpec {
    SegmentSpec { fingerprint: FP, ..SegmentSpec::new(SegmentKind::SpscRing, PAYLOAD) }
}

fn header_error(r: Result<Segment, OpenError>) -> HeaderError {
    match r {
        Err(e) => e.header_error().unwrap_or_else(|| panic!("not a header error: {e}")),
        Ok(_) => panic!("segment opened"),
    }
}

/// Unlinks a raw object on drop, for objects whose creator was killed.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = posix_shm::unlink(&self.0);
    }
}

// ---- validation of bytes (no shared memory) ----

fn put(b: &mut [u8; HEADER_SIZE], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

#[test]
fn a_valid_header_validates() {
    let info = info_for(PAYLOAD as u64);
    let bytes = encode_header(&info, INIT_READY);
    assert_eq!(validate_header(&bytes, info.total_size), Ok(info));
}

#[test]
fn every_corrupted_field_gives_its_own_error() {
    let info = info_for(PAYLOAD as u64);
    let len = info.total_size;
    let good = encode_header(&info, INIT_READY);
    let check = |at: usize, v: &[u8], want: HeaderError| {
        let mut b = good;
        put(&mut b, at, v);
        assert_eq!(validate_header(&b, len), Err(want), "field at {at} = {v:?}");
    };
    check(field::MAGIC, b"NOTIPCX\0", HeaderError::BadMagic { found: *b"NOTIPCX\0" });
    check(
        field::VERSION,
        &2u32.to_ne_bytes(),
        HeaderError::VersionMismatch { found: 2, expected: LAYOUT_VERSION },
    );
    check(field::INIT, &0u32.to_ne_bytes(), HeaderError::NotInitialised);
    check(field::INIT, &7u32.to_ne_bytes(), HeaderError::BadInit { value: 7 });
    check(field::KIND, &0u32.to_ne_bytes(), HeaderError::UnknownKind { raw: 0 });
    check(field::KIND, &99u32.to_ne_bytes(), HeaderError::UnknownKind { raw: 99 });
    check(
        field::HEADER_SIZE,
        &64u32.to_ne_bytes(),
        HeaderError::BadLayout(LayoutFault::HeaderSize { found: 64 }),
    );
    check(
        field::TOTAL_SIZE,
        &(len + 1).to_ne_bytes(),
        HeaderError::SizeMismatch { header: len + 1, mapping: len },
    );
    for bad in [0u64, 64, 4095, 4097] {
        check(
            field::PAYLOAD_OFFSET,
            &bad.to_ne_bytes(),
            HeaderError::BadLayout(LayoutFault::PayloadOffset { offset: bad }),
        );
    }
    check(
        field::PAYLOAD_OFFSET,
        &(u64::MAX - PAYLOAD_ALIGN + 1).to_ne_bytes(),
        HeaderError::BadLayout(LayoutFault::PayloadBounds {
            offset: u64::MAX - PAYLOAD_ALIGN + 1,
            size: PAYLOAD as u64,
            total: len,
        }),
    );
    check(
        field::PAYLOAD_SIZE,
        &0u64.to_ne_bytes(),
        HeaderError::BadLayout(LayoutFault::EmptyPayload),
    );
    for bad in [PAYLOAD as u64 + 1, u64::MAX] {
        check(
            field::PAYLOAD_SIZE,
            &bad.to_ne_bytes(),
            HeaderError::BadLayout(LayoutFault::PayloadBounds {
                offset: PAYLOAD_ALIGN,
                size: bad,
                total: len,
            }),
        );
    }
    check(field::RESERVED + 5, &[1], HeaderError::BadLayout(LayoutFault::Reserved { offset: 69 }));
    // The fingerprint, pid and uid are data, not structure: any value validates, and the
    // opener's expectation decides about the fingerprint.
    let mut b = good;
    put(&mut b, field::FINGERPRINT, &7u64.to_ne_bytes());
    put(&mut b, field::CREATOR_PID, &u32::MAX.to_ne_bytes());
    let found = validate_header(&b, len).unwrap();
    assert_eq!((found.fingerprint, found.creator_pid), (7, u32::MAX));
    assert_eq!(
        expect().check(&found),
        Err(HeaderError::IncompatibleContract { found: 7, expected: FP })
    );
    let wrong_kind = Expect { kind: SegmentKind::Broadcast, fingerprint: FP };
    assert_eq!(
        wrong_kind.check(&info),
        Err(HeaderError::WrongKind {
            found: SegmentKind::SpscRing,
            expected: SegmentKind::Broadcast
        })
    );
    // The mapping's own length is checked against the header.
    assert_eq!(
        validate_header(&good, len - 1),
        Err(HeaderError::SizeMismatch { header: len, mapping: len - 1 })
    );
    assert_eq!(validate_header(&good, 100), Err(HeaderError::TooSmall { len: 100 }));
}

#[test]
fn uninitialised_and_foreign_objects_are_told_apart() {
    let zero = [0u8; HEADER_SIZE];
    assert_eq!(validate_header(&zero, 8192), Err(HeaderError::NotInitialised));
    let mut foreign = [0u8; HEADER_SIZE];
    foreign[..4].copy_from_slice(b"\x7fELF");
    assert!(matches!(validate_header(&foreign, 8192), Err(HeaderError::BadMagic { .. })));
    // A newer layout still being written is "not initialised", not "other version".
    let mut newer = encode_header(&info_for(4096), 0);
    put(&mut newer, field::VERSION, &9u32.to_ne_bytes());
    assert_eq!(validate_header(&newer, 8192), Err(HeaderError::NotInitialised));
}

/// A tiny xorshift, so the flips are reproducible without a dependency.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_corruption_never_panics_and_never_passes_a_bad_layout() {
    let info = info_for(PAYLOAD as u64);
    let good = encode_header(&info, INIT_READY);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200_000 {
        let mut b = good;
        for _ in 0..=(xorshift(&mut rng) % 4) {
            let r = xorshift(&mut rng);
            b[(r % HEADER_SIZE as u64) as usize] ^= 1 << ((r >> 8) % 8);
        }
        let len = match xorshift(&mut rng) % 4 {
            0 => xorshift(&mut rng),
            1 => xorshift(&mut rng) % 200,
            _ => info.total_size,
        };
        if let Ok(v) = validate_header(&b, len) {
            // Whatever passes describes a payload inside the mapping, aligned.
            assert_eq!(v.total_size, len);
            assert!(v.payload_offset >= HEADER_SIZE as u64);
            assert_eq!(v.payload_offset % PAYLOAD_ALIGN, 0);
            assert!(v.payload_size > 0 && v.payload_offset + v.payload_size <= len);
            assert!(SegmentKind::from_raw(v.kind.raw()) == Some(v.kind));
        }
    }
}

// ---- segments across processes ----

#[test]
fn peer_creates_and_parent_opens() {
    let name = unique_name("seg");
    let mut p = peer("create").arg(&name).arg("600").spawn();
    let pid: u32 = p.expect("created").parse().unwrap();
    let seg = Segment::open(&name, expect()).unwrap();
    let h = seg.header();
    assert_eq!((h.kind, h.fingerprint, h.creator_pid), (SegmentKind::SpscRing, FP, pid));
    assert_eq!(h.creator_uid, ipcx_sys::process::current_uid());
    assert_eq!((seg.payload_offset(), seg.payload_size()), (PAYLOAD_ALIGN as usize, PAYLOAD));
    assert_eq!(seg.region().len(), PAYLOAD_ALIGN as usize + PAYLOAD);
    assert!(!seg.created());
    let region = seg.region().get();
    let mut buf = [0u8; 12];
    region.read_at(seg.payload_offset(), &mut buf).unwrap();
    assert_eq!(&buf, b"from-creator");
    region.write_at(seg.payload_offset() + 64, b"from-opener").unwrap();
    p.send("read");
    assert_eq!(p.expect("read"), "from-opener");
    let mode = fs::metadata(format!("/dev/shm/{name}")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The opener's drop leaves the object; the creator's removes it.
    drop(seg);
    assert_eq!(leftovers(&name).len(), 1);
    p.close_stdin();
    p.wait_success();
    assert!(leftovers(&name).is_empty());
}

#[test]
fn wrong_kind_and_contract_are_refused_by_name() {
    let name = unique_name("seg");
    let mut p = peer("create").arg(&name).arg("600").spawn();
    p.expect("created");
    let other = Expect { kind: SegmentKind::Broadcast, fingerprint: FP };
    let e = Segment::open(&name, other).unwrap_err();
    assert_eq!(
        e.header_error(),
        Some(HeaderError::WrongKind {
            found: SegmentKind::SpscRing,
            expected: SegmentKind::Broadcast
        })
    );
    assert!(e.to_string().contains(&name), "{e}");
    let e =
        Segment::open(&name, Expect { kind: SegmentKind::SpscRing, fingerprint: 1 }).unwrap_err();
    assert_eq!(
        e.header_error(),
        Some(HeaderError::IncompatibleContract { found: FP, expected: 1 })
    );
    assert!(e.to_string().contains("0x0123456789abcdef"), "{e}");
    p.close_stdin();
    p.wait_success();
    assert!(leftovers(&name).is_empty());
}

#[test]
fn other_layout_versions_are_refused_naming_the_side_to_upgrade() {
    let name = unique_name("seg");
    let mut p = peer("create").arg(&name).arg("600").spawn();
    p.expect("created");
    let raw = PosixShm::builder(&name).create_mode(CreateMode::Open).open().unwrap();
    let map = raw.map(Access::ReadWrite).unwrap();
    map.write_at(field::VERSION, &2u32.to_ne_bytes()).unwrap();
    let e = Segment::open(&name, expect()).unwrap_err();
    assert_eq!(e.header_error(), Some(HeaderError::VersionMismatch { found: 2, expected: 1 }));
    assert!(e.to_string().contains("upgrade this program"), "{e}");
    map.write_at(field::VERSION, &0u32.to_ne_bytes()).unwrap();
    let e = Segment::open(&name, expect()).unwrap_err();
    assert!(e.to_string().contains("older ipcx: upgrade it"), "{e}");
    p.close_stdin();
    p.wait_success();
    assert!(leftovers(&name).is_empty());
}

#[test]
fn creator_killed_before_init_leaves_an_uninitialised_segment() {
    let name = unique_name("seg");
    let _cleanup = Unlink(name.clone());
    let mut p = peer("half-create").arg(&name).spawn();
    p.expect("written");
    p.kill();
    assert_eq!(header_error(Segment::open(&name, expect())), HeaderError::NotInitialised);
    let e = Segment::open_with_timeout(&name, expect(), Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, OpenError::InitTimeout { .. }), "{e}");
    assert!(e.to_string().contains("ipcx clean"), "{e}");
    posix_shm::unlink(&name).unwrap();
    assert!(leftovers(&name).is_empty());
}

#[test]
fn open_with_timeout_waits_for_the_creator_to_finish() {
    let name = unique_name("seg");
    let _cleanup = Unlink(name.clone());
    let mut p = peer("half-create").arg(&name).spawn();
    p.expect("written");
    assert!(Segment::open(&name, expect()).unwrap_err().is_not_initialised());
    let opener = {
        let name = name.clone();
        std::thread::spawn(move || {
            Segment::open_with_timeout(&name, expect(), Duration::from_secs(20)).map(|s| s.header())
        })
    };
    p.send("init");
    p.expect("ready");
    assert_eq!(opener.join().unwrap().unwrap(), info_for(PAYLOAD as u64));
    p.close_stdin();
    p.wait_success();
    assert!(leftovers(&name).is_empty());
}

#[test]
fn unsized_tiny_and_foreign_objects_are_refused() {
    let name = unique_name("seg");
    let _cleanup = Unlink(name.clone());
    let path = format!("/dev/shm/{name}");
    let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
    // Created, not sized yet: a creator that died before ftruncate.
    assert_eq!(header_error(Segment::open(&name, expect())), HeaderError::NotInitialised);
    file.set_len(10).unwrap();
    assert_eq!(header_error(Segment::open(&name, expect())), HeaderError::TooSmall { len: 10 });
    file.set_len(8192).unwrap();
    fs::write(&path, [0xa5u8; 8192]).unwrap();
    let e = header_error(Segment::open(&name, expect()));
    assert_eq!(e, HeaderError::BadMagic { found: [0xa5; 8] });
}

#[test]
fn a_resized_segment_is_a_size_mismatch() {
    let name = unique_name("seg");
    let seg = Segment::create(&name, &spec()).unwrap();
    let total = seg.header().total_size;
    let file = OpenOptions::new().write(true).open(format!("/dev/shm/{name}")).unwrap();
    file.set_len(total + 4096).unwrap();
    assert_eq!(
        header_error(Segment::open(&name, expect())),
        HeaderError::SizeMismatch { header: total, mapping: total + 4096 }
    );
    drop(seg);
    assert!(leftovers(&name).is_empty());
}

#[test]
fn nobody_is_denied_a_private_segment_but_may_open_a_shared_one() {
    let private = unique_name("seg");
    let seg = Segment::create(&private, &spec()).unwrap();
    let mut p = peer("open").arg(&private).uid(NOBODY_UID).spawn();
    let err = p.expect("err");
    assert!(err.starts_with("perm|"), "{err}");
    p.wait_success();
    drop(seg);

    let shared = unique_name("seg");
    let open_spec = SegmentSpec { permissions: Permissions::from_mode(0o666).unwrap(), ..spec() };
    let seg = Segment::create(&shared, &open_spec).unwrap();
    let mode = fs::metadata(format!("/dev/shm/{shared}")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666);
    let mut p = peer("open").arg(&shared).uid(NOBODY_UID).spawn();
    let h = seg.header();
    assert_eq!(p.expect("opened"), format!("{} {}", h.creator_pid, h.creator_uid));
    p.wait_success();
    drop(seg);
    assert!(leftovers(&private).is_empty() && leftovers(&shared).is_empty());
}

#[test]
fn creation_is_exclusive_and_checks_its_spec() {
    let name = unique_name("seg");
    let seg = Segment::create(&name, &spec()).unwrap();
    assert!(seg.created());
    let e = Segment::create(&name, &spec()).unwrap_err();
    assert!(matches!(e, CreateError::Shm(posix_shm::OpenError::AlreadyExists { .. })), "{e}");
    let empty = SegmentSpec::new(SegmentKind::SpscRing, 0);
    assert!(matches!(Segment::create(&unique_name("seg"), &empty), Err(CreateError::EmptyPayload)));
    let reserved = SegmentSpec::new(SegmentKind::Other(7), 64);
    let e = Segment::create(&unique_name("seg"), &reserved).unwrap_err();
    assert!(matches!(e, CreateError::InvalidKind { raw: 7 }), "{e}");
    let huge = SegmentSpec::new(SegmentKind::SpscRing, usize::MAX);
    assert!(matches!(
        Segment::create(&unique_name("seg"), &huge),
        Err(CreateError::TooLarge { .. })
    ));
    let app = SegmentSpec::new(SegmentKind::Other(0x8000_0001), 64);
    let app_name = unique_name("seg");
    let app_seg = Segment::create(&app_name, &app).unwrap();
    let e =
        Segment::open(&app_name, Expect { kind: SegmentKind::Other(0x8000_0002), fingerprint: 0 });
    assert!(matches!(header_error(e), HeaderError::WrongKind { .. }));
    let opened =
        Segment::open(&app_name, Expect { kind: SegmentKind::Other(0x8000_0001), fingerprint: 0 })
            .unwrap();
    assert_eq!(opened.payload_size(), 64);
    drop((seg, app_seg, opened));
    let missing = Segment::open(&name, expect()).unwrap_err();
    assert!(matches!(missing, OpenError::Shm(posix_shm::OpenError::NotFound { .. })), "{missing}");
    assert!(leftovers(&name).is_empty() && leftovers(&app_name).is_empty());
}

#[test]
fn persisted_segments_outlive_their_creator_until_removed() {
    let name = unique_name("seg");
    let seg = Segment::create(&name, &spec()).unwrap().persist();
    drop(seg);
    assert_eq!(leftovers(&name).len(), 1);
    let seg = Segment::open(&name, expect()).unwrap();
    assert_eq!(seg.header().creator_pid, std::process::id());
    seg.remove().unwrap();
    assert!(leftovers(&name).is_empty());
    // An opener may take over removal.
    let seg = Segment::create(&name, &spec()).unwrap().persist();
    let opener = Segment::open(&name, expect()).unwrap().remove_on_drop(true);
    drop(seg);
    assert_eq!(leftovers(&name).len(), 1);
    drop(opener);
    assert!(leftovers(&name).is_empty());
}
