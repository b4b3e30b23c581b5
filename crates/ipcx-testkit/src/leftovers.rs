//! Finding IPC objects a test left behind.

use std::fs;

/// Entries of `/dev/shm` (POSIX shm and named semaphores) whose name contains `needle`.
pub fn leftovers(needle: &str) -> Vec<String> {
    let Ok(dir) = fs::read_dir("/dev/shm") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(needle))
        .collect()
}

/// The System V object tables under `/proc/sysvipc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysvKind {
    /// `/proc/sysvipc/shm`
    Shm,
    /// `/proc/sysvipc/msg`
    Msg,
    /// `/proc/sysvipc/sem`
    Sem,
}

/// Whether a System V object with identifier `id` still exists.
pub fn sysv_id_exists(kind: SysvKind, id: i32) -> bool {
    let path = match kind {
        SysvKind::Shm => "/proc/sysvipc/shm",
        SysvKind::Msg => "/proc/sysvipc/msg",
        SysvKind::Sem => "/proc/sysvipc/sem",
    };
    let Ok(text) = fs::read_to_string(path) else { return false };
    // Columns: key id ...; the first line is the header.
    text.lines()
        .skip(1)
        .any(|line| line.split_whitespace().nth(1).and_then(|s| s.parse::<i32>().ok()) == Some(id))
}
