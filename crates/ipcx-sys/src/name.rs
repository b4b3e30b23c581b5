//! Names of POSIX IPC objects (shm, message queues, named semaphores).

use thiserror::Error;

/// Longest name accepted, leaving room for the `sem.` prefix glibc adds under `/dev/shm`.
pub const MAX_NAME_LEN: usize = 250;

/// A name that cannot be used for a POSIX IPC object.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    #[error("ipc object name is empty; pass a name such as \"ipcx.myns.chan\"")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error(
        "ipc object name is {len} bytes long; the limit is {MAX_NAME_LEN}, use a shorter name"
    )]
    TooLong {
        /// Length of the rejected name in bytes.
        len: usize,
    },
    /// The name holds a `/` or NUL byte, or is `.` or `..`.
    #[error("ipc object name {name:?} contains '/' or NUL or is '.'/'..'; use letters, digits, '.', '-' and '_'")]
    BadCharacter {
        /// The rejected name.
        name: String,
    },
}

/// Checks `name` (given without the leading `/`) and returns it as `/name`, the form
/// `shm_open`, `mq_open` and `sem_open` take.
pub fn posix_name(name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if name.contains(['/', '\0']) || name == "." || name == ".." {
        return Err(NameError::BadCharacter { name: name.to_owned() });
    }
    Ok(format!("/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_adds_slash() {
        assert_eq!(posix_name("ipcx.ns.a-b_c").unwrap(), "/ipcx.ns.a-b_c");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(posix_name(""), Err(NameError::Empty));
        assert!(matches!(posix_name("a/b"), Err(NameError::BadCharacter { .. })));
        assert!(matches!(posix_name("a\0b"), Err(NameError::BadCharacter { .. })));
        assert!(matches!(posix_name(".."), Err(NameError::BadCharacter { .. })));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(posix_name(&long), Err(NameError::TooLong { len: MAX_NAME_LEN + 1 }));
    }
}
