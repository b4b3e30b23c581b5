//! Namespaces: where named endpoints live, so two namespaces never see each other.
//!
//! A namespace is a short name (`[A-Za-z0-9._-]`, at most [`MAX_NAME_LEN`] bytes). Its
//! runtime directory is `$XDG_RUNTIME_DIR/ipcx/<ns>` when `XDG_RUNTIME_DIR` is set, else
//! `/tmp/ipcx-<uid>/<ns>`; it is created on first use with mode `0700`, so other users can
//! neither list nor reach what is inside. Socket files, FIFOs and address files of endpoints
//! go there; kernel objects with flat names (POSIX queues) are named `ipcx.<ns>.<...>`.
//!
//! The default namespace is `IPCX_NAMESPACE` when set, else `default`: per user, because the
//! runtime directory is.

use std::fs::{self, DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Longest namespace or endpoint name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Environment variable that overrides the default namespace.
pub const NAMESPACE_ENV: &str = "IPCX_NAMESPACE";

/// A validated namespace name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    name: String,
}

/// A namespace or endpoint name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty.
    #[error("empty {what} name; use letters, digits, '.', '_' or '-'")]
    Empty {
        /// "namespace" or "endpoint".
        what: &'static str,
    },
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("{what} name of {len} bytes is longer than {MAX_NAME_LEN}; shorten it")]
    TooLong {
        /// "namespace" or "endpoint".
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The name holds a character outside `[A-Za-z0-9._-]` or starts with '.'.
    #[error(
        "{what} name {name:?} may hold only letters, digits, '.', '_' and '-', and may not \
         start with '.'"
    )]
    BadChar {
        /// "namespace" or "endpoint".
        what: &'static str,
        /// The name.
        name: String,
    },
}

/// The runtime directory could not be prepared.
#[derive(Debug, Error)]
pub enum DirError {
    /// Creating or fixing the mode of the directory failed.
    #[error("cannot create the ipcx runtime directory {path}; check that its parent is writable")]
    Create {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The directory exists but belongs to another user: someone may be impersonating us.
    #[error(
        "the ipcx runtime directory {path} belongs to uid {owner}, not to us (uid {us}); \
         remove it or set XDG_RUNTIME_DIR"
    )]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        us: u32,
    },
}

/// Checks a namespace or endpoint name (`what` names which, for the error).
pub(crate) fn check_name(name: &str, what: &'static str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { what, len: name.len() });
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.starts_with('.') || !name.chars().all(ok) {
        return Err(NameError::BadChar { what, name: name.to_owned() });
    }
    Ok(())
}

impl Namespace {
    /// A namespace called `name`.
    pub fn new(name: &str) -> Result<Namespace, NameError> {
        check_name(name, "namespace")?;
        Ok(Namespace { name: name.to_owned() })
    }

    /// `IPCX_NAMESPACE` if set (and valid), else `default`.
    pub fn from_env() -> Result<Namespace, NameError> {
        match std::env::var(NAMESPACE_ENV) {
            Ok(name) => Namespace::new(&name),
            Err(_) => Namespace::new("default"),
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The runtime directory of this namespace (not created).
    pub fn dir(&self) -> PathBuf {
        let uid = ipcx_sys::process::current_uid();
        let root = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("ipcx"),
            _ => PathBuf::from(format!("/tmp/ipcx-{uid}")),
        };
        root.join(&self.name)
    }

    /// The runtime directory, created (mode `0700`, with its parent) if missing and checked
    /// to belong to us.
    pub fn ensure_dir(&self) -> Result<PathBuf, DirError> {
        let dir = self.dir();
        if let Some(parent) = dir.parent() {
            make_private_dir(parent)?;
        }
        make_private_dir(&dir)?;
        Ok(dir)
    }

    /// The flat name of a kernel object of this namespace: `ipcx.<ns>.<rest>`.
    pub fn object_name(&self, rest: &str) -> String {
        format!("ipcx.{}.{rest}", self.name)
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Creates `path` with mode 0700 if missing; refuses a directory owned by someone else.
fn make_private_dir(path: &Path) -> Result<(), DirError> {
    let create = |source| DirError::Create { path: path.to_owned(), source };
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => fs::set_permissions(path, Permissions::from_mode(0o700)).map_err(create)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(create(e)),
    }
    let meta = fs::metadata(path).map_err(create)?;
    let us = ipcx_sys::process::current_uid();
    if meta.uid() != us {
        return Err(DirError::ForeignOwner { path: path.to_owned(), owner: meta.uid(), us });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(Namespace::new("test-1.a_b").is_ok());
        assert_eq!(Namespace::new(""), Err(NameError::Empty { what: "namespace" }));
        assert!(matches!(Namespace::new("a/b"), Err(NameError::BadChar { .. })));
        assert!(matches!(Namespace::new(".."), Err(NameError::BadChar { .. })));
        assert!(matches!(Namespace::new(&"x".repeat(65)), Err(NameError::TooLong { .. })));
    }

    #[test]
    fn object_names_carry_the_namespace() {
        let ns = Namespace::new("n1").unwrap();
        assert_eq!(ns.object_name("svc"), "ipcx.n1.svc");
        assert!(ns.dir().ends_with("n1"));
    }
}
