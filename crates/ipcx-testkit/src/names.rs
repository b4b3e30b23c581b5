//! Random names so parallel tests never share an IPC object.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A name unique to this call: `ipcxt-<tag>-<pid>-<16 random hex digits>`.
///
/// Every name starts with `ipcxt-`, so [`crate::leftovers`] can find what tests left behind.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    format!("ipcxt-{tag}-{}-{:016x}", std::process::id(), h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_and_carry_the_tag() {
        let a = unique_name("shm");
        let b = unique_name("shm");
        assert_ne!(a, b);
        assert!(a.starts_with("ipcxt-shm-"));
    }
}
