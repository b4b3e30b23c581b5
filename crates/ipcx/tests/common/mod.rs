//! What several cross-process test files share.

use ipcx::Namespace;
use ipcx_testkit::{leftovers, unique_name};

/// A namespace of its own for one test, removed (with whatever is in its directory) on
/// drop; a test that passed also checks that nothing of it is left in /dev/shm.
pub struct Ns(pub Namespace);

impl Ns {
    /// A fresh namespace named after `tag`.
    pub fn new(tag: &str) -> Ns {
        Ns(Namespace::new(&unique_name(tag)).unwrap())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.dir());
        if !std::thread::panicking() {
            assert!(leftovers(self.0.name()).is_empty(), "left in /dev/shm");
            assert!(!self.0.dir().exists(), "namespace directory removed");
        }
    }
}
