//! Typed channels: contract agreement at connect, encode/decode, refusal of another shape.

use std::time::Duration;

use ipcx::channel::{Channel, ConnectError, Transport, TypedChannel};
use ipcx::Namespace;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: f64,
}
ipcx::message!(Reading, "test.reading", 1, 0);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ReadingV2 {
    sensor: String,
    value: f64,
    unit: String,
}
ipcx::message!(ReadingV2, "test.reading", 1, 1);

fn namespace() -> Namespace {
    Namespace::new(&ipcx_testkit::unique_name("typed")).unwrap()
}

#[test]
fn typed_messages_round_trip() {
    let ns = namespace();
    let b = Channel::builder("r", Transport::UdsStream).namespace(ns.clone());
    let mut listener = b.clone().typed::<Reading>().unwrap().listen().unwrap();
    let client = std::thread::spawn(move || {
        let ch = b.typed::<Reading>().unwrap().connect().unwrap();
        let mut ch = TypedChannel::<Reading>::new(ch).unwrap();
        ch.send(&Reading { sensor: "t1".into(), value: 21.5 }).unwrap();
    });
    let ch = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut ch = TypedChannel::<Reading>::new(ch).unwrap();
    assert_eq!(ch.recv().unwrap(), Reading { sensor: "t1".into(), value: 21.5 });
    client.join().unwrap();
    drop(listener);
    std::fs::remove_dir(ns.dir()).unwrap();
}

#[test]
fn another_shape_is_refused_naming_both_sides() {
    let ns = namespace();
    let b = Channel::builder("r", Transport::UdsStream).namespace(ns.clone());
    let mut listener = b.clone().typed::<Reading>().unwrap().listen().unwrap();
    let client = std::thread::spawn(move || b.typed::<ReadingV2>().unwrap().connect());
    let accepted = listener.accept_timeout(Duration::from_millis(500));
    assert!(accepted.is_err(), "the incompatible peer is not accepted");
    let err = client.join().unwrap().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConnectError::Refused(_)), "{err}");
    assert!(text.contains("1.0") && text.contains("1.1"), "names both versions: {text}");
    assert_eq!(listener.refused(), 1);
    drop(listener);
    std::fs::remove_dir(ns.dir()).unwrap();
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Sample {
    seq: u64,
    value: f64,
}

impl ipcx::channel::PodMessage for Sample {
    const NAME: &'static str = "test.sample";
    const VERSION: ipcx::Version = ipcx::Version::new(1, 0);
    const LAYOUT: &'static str = "seq:u64,value:f64";
}

#[test]
fn fixed_layout_messages_travel_unencoded_and_are_read_in_place_on_shm() {
    use ipcx::channel::PodChannel;
    let ns = namespace();
    let b = Channel::builder("p", Transport::Shm).namespace(ns.clone());
    let mut listener = b.clone().pod::<Sample>().unwrap().listen().unwrap();
    let client = std::thread::spawn(move || {
        let ch = b.pod::<Sample>().unwrap().connect().unwrap();
        let mut ch = PodChannel::<Sample>::new(ch).unwrap();
        for seq in 0..100 {
            ch.send(&Sample { seq, value: seq as f64 / 2.0 }, None).unwrap();
        }
    });
    let ch = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut ch = PodChannel::<Sample>::new(ch).unwrap();
    for seq in 0..100 {
        let got = ch.recv_in_place(Some(Duration::from_secs(10)), |s| *s).unwrap();
        assert_eq!(got, Sample { seq, value: seq as f64 / 2.0 });
    }
    client.join().unwrap();
    drop(listener);
    std::fs::remove_dir(ns.dir()).unwrap();
}
