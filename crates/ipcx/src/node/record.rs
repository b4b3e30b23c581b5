//! On-disk layout of a namespace's nodes: ids, paths, the node record, and the small file
//! helpers (atomic write, JSON read) that nodes, services and cleaners share.
//!
//! ```text
//! <nsdir>/nodes/<id>.token      liveness token (flock held for the node's life)
//! <nsdir>/nodes/<id>.json       node record (NodeRecord)
//! <nsdir>/nodes/<id>.resources  one JSON Resource per line, appended
//! <nsdir>/nodes/<id>.cleaning   present while a cleaner removes a dead node's files
//! <nsdir>/services/<name>.json  service descriptor
//! ```

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Namespace;

/// Format version of node records and resource lines; readers refuse higher ones.
pub const RECORD_FORMAT: u32 = 1;

/// A node's id: 16 lowercase hex digits, random, unique within a namespace. Checked when
/// read from a file too: ids become file names (`nodes/<id>.token`), so a forged one such
/// as `../x` must never reach a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct NodeId(String);

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = String;

    fn try_from(s: String) -> Result<NodeId, String> {
        NodeId::parse(&s).ok_or_else(|| format!("{s:?} is not a node id (16 lowercase hex digits)"))
    }
}

impl NodeId {
    /// A fresh random id.
    pub(crate) fn random() -> NodeId {
        NodeId(format!("{:016x}", random_u64()))
    }

    /// Parses an id as found in a file name; `None` unless it is 16 lowercase hex digits.
    pub fn parse(s: &str) -> Option<NodeId> {
        let ok = s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| NodeId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a node writes about itself at `<nsdir>/nodes/<id>.json`, for `ipcx ls` and cleaners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Format version ([`RECORD_FORMAT`]).
    pub format: u32,
    /// The node's id.
    pub id: NodeId,
    /// The optional label given at creation (not unique).
    #[serde(default)]
    pub label: Option<String>,
    /// The pid of the node's process when it was created (diagnostics only: never signal it).
    pub pid: u32,
    /// The uid of the node's process.
    pub uid: u32,
    /// When the node was created, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// The version of the ipcx crate that wrote the record.
    pub ipcx_version: String,
}

/// Where a namespace's node and service files live.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub nodes: PathBuf,
    pub services: PathBuf,
}

impl Layout {
    /// The layout of `ns` (directories not created).
    pub fn of(ns: &Namespace) -> Layout {
        let dir = ns.dir();
        Layout { nodes: dir.join("nodes"), services: dir.join("services") }
    }

    /// The token path of node `id`.
    pub fn token(&self, id: &NodeId) -> PathBuf {
        self.nodes.join(format!("{id}.token"))
    }

    /// The record path of node `id`.
    pub fn record(&self, id: &NodeId) -> PathBuf {
        self.nodes.join(format!("{id}.json"))
    }

    /// The resource list path of node `id`.
    pub fn resources(&self, id: &NodeId) -> PathBuf {
        self.nodes.join(format!("{id}.resources"))
    }

    /// The marker a cleaner of node `id` holds while it works: a token that looks alive
    /// with this marker beside it belongs to a dead node being cleaned.
    pub fn cleaning(&self, id: &NodeId) -> PathBuf {
        self.nodes.join(format!("{id}.cleaning"))
    }

    /// The descriptor path of service `name`.
    pub fn service(&self, name: &str) -> PathBuf {
        self.services.join(format!("{name}.json"))
    }

    /// The ids of every node that has a token, record or resource list, sorted.
    pub fn node_ids(&self) -> io::Result<Vec<NodeId>> {
        let mut ids: Vec<NodeId> = file_names(&self.nodes)?
            .iter()
            .filter_map(|n| {
                let (stem, ext) = n.rsplit_once('.')?;
                matches!(ext, "token" | "json" | "resources" | "cleaning")
                    .then(|| NodeId::parse(stem))?
            })
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The names of every service descriptor, sorted.
    pub fn service_names(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = file_names(&self.services)?
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// The file names in `dir`; empty if it does not exist.
fn file_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Creates `dir` (mode 0700) if missing.
pub(crate) fn ensure_subdir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to a fresh temporary file next to `path` with exactly `mode` (whatever
/// the umask) and returns the temporary path; the caller publishes it.
pub(crate) fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // The writer's pid in the name lets a cleaner remove what a killed writer left.
    let tmp = dir.join(format!(".{}.{:016x}.tmp", std::process::id(), random_u64()));
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
    let res =
        file.set_permissions(fs::Permissions::from_mode(mode)).and_then(|()| file.write_all(bytes));
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// The temporary files in `dir` (and its subdirectories, one level down) whose writer
/// process no longer exists: left by a writer killed between writing and publishing.
pub(crate) fn orphan_temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![(dir.to_owned(), 0)];
    while let Some((d, depth)) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if depth < 2 {
                    dirs.push((path, depth + 1));
                }
                continue;
            }
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix('.')?.strip_suffix(".tmp"))
                .and_then(|n| n.split_once('.'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !pid_alive(pid) {
                found.push(path);
            }
        }
    }
    found
}

/// Whether process `pid` exists (in our pid namespace). A reused pid reads as alive: callers
/// use this only to leave things alone, never to touch a live process's objects.
pub(crate) fn pid_alive(pid: u32) -> bool {
    pid != 0 && Path::new("/proc").join(pid.to_string()).exists()
}

/// Replaces `path` atomically with `bytes` (temporary file, then rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Creates `path` atomically with `bytes`, failing with `AlreadyExists` if it exists
/// (temporary file, then `link`, which never replaces).
pub(crate) fn create_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    let res = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    res
}

/// Removes `path`; a missing file is fine. Returns whether this call removed it.
pub(crate) fn remove_file(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_unix_ms() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A random 64-bit number (unique, not secret).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u64(now_unix_ms());
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_read_from_files_are_checked() {
        let ok: NodeId = serde_json::from_str("\"0123456789abcdef\"").unwrap();
        assert_eq!(ok.as_str(), "0123456789abcdef");
        for bad in ["\"../../x\"", "\"0123456789ABCDEF\"", "\"\"", "\"0123\""] {
            assert!(serde_json::from_str::<NodeId>(bad).is_err(), "{bad} refused");
        }
    }

    use super::*;

    #[test]
    fn ids_are_16_hex_digits() {
        let id = NodeId::random();
        assert_eq!(id.as_str().len(), 16);
        assert_eq!(NodeId::parse(id.as_str()), Some(id));
        assert_eq!(NodeId::parse("0123456789abcdeF"), None);
        assert_eq!(NodeId::parse("short"), None);
    }
}
