//! A hostile peer against both ends of an SPSC ring: fuzzer bytes become the control-block
//! positions, the data-area headers and a sequence of peeks, pops and claims. Any panic,
//! hang or out-of-bounds access is a bug; `Ok` and `Corrupt` are the only outcomes allowed.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipcx_shm::fuzzing::ring_reader(data));
