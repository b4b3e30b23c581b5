//! Helpers shared by the `ipcx bench` integration tests.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// A JSON output path in the temp dir, removed on drop.
pub struct TempJson(pub PathBuf);

impl TempJson {
    /// A fresh path named after `tag`, this process and the clock.
    pub fn new(tag: &str) -> TempJson {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("ipcxt-bench-{tag}-{}-{nanos:x}.json", std::process::id());
        TempJson(std::env::temp_dir().join(name))
    }

    /// The JSON the bench wrote.
    #[allow(dead_code)] // not every test file reads it back this way
    pub fn read(&self) -> Value {
        let text = std::fs::read_to_string(&self.0).expect("the JSON file was written");
        serde_json::from_str(&text).expect("valid JSON")
    }
}

impl Drop for TempJson {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
