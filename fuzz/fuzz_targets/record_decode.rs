//! Arbitrary record header words at arbitrary positions: `record::decode` must never panic
//! and must accept only records that fit where they are.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipcx_shm::fuzzing::record_decode(data));
