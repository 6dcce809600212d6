//! The manifest: the file tree of one backup, sealed and stored as blocks.
//!
//! Paths are stored as they were on the machine, without the leading `/`, as
//! UTF-8 text when they are valid UTF-8 and as hex bytes otherwise, so odd
//! file names survive the round trip.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use coffer_types::BlockId;
use serde::{Deserialize, Serialize};

/// Kind of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

/// A path as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PathRepr {
    Text(String),
    Raw { hex: String },
}

impl PathRepr {
    pub fn from_bytes(b: &[u8]) -> Self {
        match std::str::from_utf8(b) {
            Ok(s) => PathRepr::Text(s.to_owned()),
            Err(_) => PathRepr::Raw {
                hex: hex::encode(b),
            },
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        match self {
            PathRepr::Text(s) => s.as_bytes().to_vec(),
            PathRepr::Raw { hex } => hex::decode(hex).unwrap_or_default(),
        }
    }

    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// The relative path to restore to, or `None` if it is not a plain
    /// relative path (absolute, `..`, `.`, empty components, NUL): a
    /// manifest that tries to escape the target is refused.
    pub fn safe_relative(&self) -> Option<PathBuf> {
        let b = self.bytes();
        if b.is_empty() || b.contains(&0) || b.starts_with(b"/") {
            return None;
        }
        if b.split(|c| *c == b'/')
            .any(|seg| seg.is_empty() || seg == b"." || seg == b"..")
        {
            return None;
        }
        let p = Path::new(OsStr::from_bytes(&b));
        p.components()
            .all(|c| matches!(c, Component::Normal(_)))
            .then(|| p.to_path_buf())
    }
}

/// One file, directory or symlink.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub path: PathRepr,
    pub kind: Kind,
    pub mode: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    #[serde(default)]
    pub size: u64,
    /// With `symlink`: the link target as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PathRepr>,
    /// With `file`: the blocks of its chunks, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<BlockId>,
    /// A file gone from the backup selection (deleted, or no longer
    /// selected), carried forward from an earlier backup while
    /// `device_defaults.keep_deleted` says so: when the agent first found it
    /// gone (ms). A restore skips it unless asked for deleted files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub skipped: u64,
    /// Deleted files carried forward (not counted in `files` and `bytes`).
    #[serde(default)]
    pub deleted: u64,
}

/// The tree of one backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub created_ms: u64,
    pub host: String,
    pub roots: Vec<PathRepr>,
    pub stats: Stats,
    pub entries: Vec<Entry>,
}

/// The manifest's root block: the parts that hold the serialized manifest.
#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestRoot {
    pub version: u32,
    pub parts: Vec<BlockId>,
}

/// Bytes of serialized manifest per part block.
pub const PART: usize = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/./b",
            "a\0b",
        ] {
            assert_eq!(
                PathRepr::Text(bad.into()).safe_relative(),
                None,
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            PathRepr::Text("home/ann/ü x".into()).safe_relative(),
            Some(PathBuf::from("home/ann/ü x"))
        );
        let raw = PathRepr::from_bytes(b"dir/\xff\xfe");
        assert!(matches!(raw, PathRepr::Raw { .. }));
        assert_eq!(
            raw.safe_relative().unwrap().as_os_str().as_bytes(),
            b"dir/\xff\xfe"
        );
    }
}
