//! Fuzzing entry points (not a stable API): each takes the fuzzer's bytes, plays a hostile
//! peer with them and panics only when this crate misbehaves. The targets in `fuzz/` call
//! them; the unit tests below replay a few inputs so the harness itself is checked by
//! `cargo test` and Miri.
//!
//! A hostile peer may write anything to the shared words the ring reads: the positions in
//! the control block and every header in the data area. Whatever it writes, the ring must
//! answer with `Ok` or a `Corrupt`/`LayoutError`, never panic, never spin, and never hand
//! out bytes outside its data area.

use std::ops::Range;
use std::sync::Arc;

use crate::record::{self, Record, KIND_DATA, KIND_PAD};
use crate::region::{HeapRegion, Region};
use crate::ring::spsc::{self, Consumer, Producer};
use crate::ring::{max_payload, ClaimError};
use crate::sync::{AtomicU32, DataWord, Ordering};

/// Byte offsets of the words a peer controls in an SPSC control block (see the layout in
/// `ring::spsc`; `layout_matches_the_ring` below checks them).
const WRITE_AT: usize = 0;
const READ_AT: usize = 128;
const CAP_LOG2_AT: usize = 256 + 4;
const CONTROL: usize = spsc::required_size(0) as usize;

/// The fuzzer's bytes, read front to back; zeros once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        b.iter_mut().for_each(|x| *x = self.u8());
        u64::from_le_bytes(b)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A ring in heap memory whose shared words the fuzzer overwrites at will.
struct Hostile {
    region: Arc<HeapRegion>,
    cap: u64,
    data: Range<usize>,
}

impl Hostile {
    fn new(cap: u64) -> Hostile {
        let region = Arc::new(HeapRegion::new(spsc::required_size(cap) as usize));
        spsc::init(&region, 0, cap).expect("a valid capacity");
        let base = region.base().as_ptr() as usize;
        let data = base + CONTROL..base + CONTROL + cap as usize;
        Hostile { region, cap, data }
    }

    /// The 8-aligned word at byte `at` of the region, as the ring itself accesses it.
    fn word(&self, at: usize) -> &DataWord {
        assert!(at % 8 == 0 && at + 8 <= self.region.len());
        // SAFETY: in bounds and 8-aligned (asserted); the ring only ever accesses these
        // words atomically, and this harness is single-threaded.
        unsafe { &*self.region.base().as_ptr().wrapping_add(at).cast::<DataWord>() }
    }

    /// The info line's `cap_log2` word.
    fn cap_log2(&self) -> &AtomicU32 {
        // SAFETY: in bounds and 4-aligned (an offset inside the control block, which starts
        // at the 4096-aligned base); accessed atomically only, single-threaded.
        unsafe { &*self.region.base().as_ptr().wrapping_add(CAP_LOG2_AT).cast::<AtomicU32>() }
    }

    fn set(&self, at: usize, value: u64) {
        self.word(at).store(value, Ordering::Relaxed);
    }

    fn get(&self, at: usize) -> u64 {
        self.word(at).load(Ordering::Relaxed)
    }

    /// A position near `base`: one the checks may accept (or just miss), so the fuzzer
    /// gets past them often.
    fn near(&self, base: u64, delta: u8) -> u64 {
        base.wrapping_add(u64::from(delta) * 8).wrapping_sub(self.cap / 2)
    }

    /// A position: raw fuzzer bits, or one near the other side's.
    fn position(&self, input: &mut Input<'_>, other_at: usize) -> u64 {
        match input.u8() % 4 {
            0 => input.u64(),
            1 => input.u64() & !7,
            _ => self.near(self.get(other_at), input.u8()),
        }
    }

    /// Checks that `bytes` lies inside the data area.
    fn check_inside(&self, bytes: &[u8], what: &str) {
        let start = bytes.as_ptr() as usize;
        let inside = start >= self.data.start && start + bytes.len() <= self.data.end;
        assert!(inside, "{what} of {} bytes at {start:#x} outside {:#x?}", bytes.len(), self.data);
        assert!(bytes.len() as u64 <= max_payload(self.cap), "{what} longer than max payload");
    }
}

/// Plays a hostile peer against both ends of an SPSC ring.
///
/// Input: capacity selector, then the initial control-block positions and `cap_log2`, then
/// a list of operations: consumer peeks/pops, producer claims, and overwrites of positions
/// and data-area words (raw, or well-formed headers with fuzzer-chosen kind/length/lap).
pub fn ring_reader(bytes: &[u8]) {
    let mut input = Input(bytes);
    let cap = 256u64 << (input.u8() % 4);
    let ring = Hostile::new(cap);
    let log2 = cap.trailing_zeros();
    let flags = input.u8();
    if flags & 1 != 0 {
        let w = ring.position(&mut input, READ_AT);
        ring.set(WRITE_AT, w);
    }
    if flags & 2 != 0 {
        let r = ring.position(&mut input, WRITE_AT);
        ring.set(READ_AT, r);
    }
    if flags & 4 != 0 {
        ring.cap_log2().store(u32::from(input.u8()), Ordering::Relaxed);
    }
    let mut consumer = Consumer::attach(ring.region.clone(), 0).ok();
    let mut producer = Producer::attach(ring.region.clone(), 0).ok();
    let mut buf = Vec::new();
    let mut ops = 0;
    while !input.is_empty() && ops < 1024 {
        ops += 1;
        let op = input.u8();
        match op % 8 {
            0 | 1 => {
                let Some(c) = consumer.as_mut() else { continue };
                if let Ok(Some(rec)) = c.peek() {
                    ring.check_inside(rec.bytes(), "peeked record");
                    let sum = rec.bytes().iter().fold(0u8, |a, &b| a.wrapping_add(b));
                    std::hint::black_box(sum);
                    if op & 0x80 != 0 {
                        rec.release();
                    }
                }
            }
            2 => {
                let Some(c) = consumer.as_mut() else { continue };
                if let Ok(Some(n)) = c.pop_into(&mut buf) {
                    assert_eq!(n, buf.len());
                    assert!(n as u64 <= max_payload(cap));
                }
            }
            3 => {
                let Some(p) = producer.as_mut() else { continue };
                let len = usize::from(input.u16()) % (cap as usize / 2);
                match p.claim(len) {
                    Ok(mut claim) => {
                        ring.check_inside(claim.bytes(), "claimed record");
                        claim.bytes().fill(op);
                        if op & 0x80 != 0 {
                            claim.commit();
                        }
                    }
                    Err(ClaimError::TooLarge { len: l, max }) => assert!(l as u64 > max),
                    Err(ClaimError::Full | ClaimError::Corrupt(_)) => {}
                }
            }
            4 => {
                let w = ring.position(&mut input, READ_AT);
                ring.set(WRITE_AT, w);
            }
            5 => {
                let r = ring.position(&mut input, WRITE_AT);
                ring.set(READ_AT, r);
            }
            6 => {
                // A raw word anywhere in the data area.
                let at = usize::from(input.u16()) * 8 % cap as usize;
                ring.set(CONTROL + at, input.u64());
            }
            _ => {
                // A well-formed header at the read or write position, with fuzzer-chosen
                // kind, length and lap, so decoding gets past the cheap checks.
                let pos = if op & 0x80 != 0 { ring.get(READ_AT) } else { ring.get(WRITE_AT) };
                let pos = pos.wrapping_add(u64::from(input.u8() % 4) * cap) & !7;
                let kind = [KIND_DATA, KIND_PAD, 0, 3][usize::from(input.u8() % 4)];
                let len = u32::from(input.u16());
                let at = (pos & (cap - 1)) as usize;
                ring.set(CONTROL + at, record::encode(kind, len, pos, log2));
            }
        }
        if let Some(c) = consumer.as_ref() {
            assert!(c.stats().queued_bytes <= cap);
        }
    }
}

/// Decodes arbitrary header words at arbitrary positions and checks every accepted record
/// against what the reader knows independently.
pub fn record_decode(bytes: &[u8]) {
    let mut input = Input(bytes);
    while !input.is_empty() {
        let log2 = 8 + u32::from(input.u8()) % 33; // the valid capacities, 256 B ..= 1 TiB
        let cap = 1u64 << log2;
        let pos = input.u64();
        let avail = match input.u8() % 3 {
            0 => input.u64(),
            _ => input.u64() % (cap + 1),
        };
        let max = max_payload(cap);
        let word = match input.u8() % 2 {
            0 => input.u64(),
            _ => {
                let kind = input.u8() % 4;
                record::encode(kind, u32::from(input.u16()), pos, log2)
            }
        };
        let to_end = cap - (pos & (cap - 1));
        match record::decode(word, pos, log2, avail, max) {
            Ok(Record::Data { len, total }) => {
                assert_eq!(record::record_size(u64::from(len)), Some(total));
                assert!(u64::from(len) <= max && total <= to_end && total <= avail);
                assert_eq!(record::split(word), (record::lap_tag(pos, log2), KIND_DATA, len));
            }
            Ok(Record::Pad { total }) => {
                assert!(total == to_end && total <= avail && total >= record::HEADER);
                assert_eq!(record::split(word).1, KIND_PAD);
            }
            Err(_) => {}
        }
        // Round trip: a well-formed data header that fits is always accepted.
        let len = (u64::from(input.u16()) % (max + 1)) as u32;
        let fits = record::record_size(u64::from(len)).is_some_and(|t| t <= to_end.min(avail));
        let decoded =
            record::decode(record::encode(KIND_DATA, len, pos, log2), pos, log2, avail, max);
        if fits {
            assert!(matches!(decoded, Ok(Record::Data { len: l, .. }) if l == len));
        } else {
            assert!(decoded.is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_ring() {
        let ring = Hostile::new(256);
        let mut p = Producer::attach(ring.region.clone(), 0).unwrap();
        let mut c = Consumer::attach(ring.region.clone(), 0).unwrap();
        p.push(&[1; 5]).unwrap();
        assert_eq!(ring.get(WRITE_AT), 16);
        assert_eq!(ring.cap_log2().load(Ordering::Relaxed), 8);
        let rec = c.peek().unwrap().unwrap();
        assert_eq!(rec.bytes().as_ptr() as usize, ring.data.start + 8);
        rec.release();
        assert_eq!(ring.get(READ_AT), 16);
    }

    #[test]
    fn replays_hostile_inputs() {
        // A mixed bag: positions near each other, forged headers, claims, pops.
        let inputs: [&[u8]; 6] = [
            // Found by ring_reader: a forged write position 424 bytes below 2^64 made
            // Producer::claim overflow (a panic in debug builds).
            &[75, 75, 75, 75, 75, 75, 75, 193, 126, 99],
            &[],
            &[0, 3, 2, 9, 2, 3, 0x80, 0, 1, 0x83, 40, 0, 0x80, 7, 1, 0, 8, 0, 0x81, 2],
            &[1, 1, 0, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0x82, 3, 0x10, 0],
            &[3, 7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 9, 40, 6, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0],
            &[2, 2, 2, 0, 0x87, 0, 1, 0x20, 0, 0x80, 4, 2, 3, 0x81, 5, 2, 0, 0x80, 0x80, 0x80],
        ];
        for input in inputs {
            ring_reader(input);
        }
        record_decode(&[5, 1, 2, 3, 4, 5, 6, 7, 8, 1, 9, 0, 0, 0, 0, 0, 0, 0, 1, 1, 7, 0, 3, 0]);
    }
}
