//! Directories whose names are on stable storage.
//!
//! A new file's name lives in its directory, and a new directory's name in
//! its parent: neither survives a power cut until that parent is fsynced.
//! Uploads create the fan-out directories of the block tree concurrently, so
//! "I created it, I sync it" is not enough: an upload that finds a directory
//! another upload has just created (and not yet synced) would answer before
//! the directory is durable. [`DurableDirs`] remembers which directories are
//! known durable, and whoever needs one that is not makes it durable itself
//! before answering. A directory enters the set only after the fsync of its
//! parent has returned.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Result, StorageError};

#[derive(Debug)]
pub(crate) struct DurableDirs {
    root: PathBuf,
    known: Mutex<HashSet<PathBuf>>,
}

impl DurableDirs {
    /// Create `root` (and its missing ancestors) durably. Everything below it
    /// is made durable on demand. The root is kept in canonical form.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let mut missing = Vec::new();
        let mut d = root;
        while !d.exists() {
            missing.push(d.to_path_buf());
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        std::fs::create_dir_all(root).map_err(StorageError::io("create storage directory"))?;
        // Each missing ancestor's entry lives in its parent (`missing[0]` is
        // the root itself); the root's own entry is synced in any case, in
        // case an earlier run created it and crashed before syncing.
        for m in missing.iter().skip(1).rev() {
            if let Some(p) = m.parent() {
                sync_dir(p)?;
            }
        }
        if let Some(p) = root.parent() {
            sync_dir(p)?;
        }
        let root = root
            .canonicalize()
            .map_err(StorageError::io("resolve block directory"))?;
        Ok(Self {
            root,
            known: Mutex::new(HashSet::new()),
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Create `dir` (under the root) if needed, and make it durable.
    pub(crate) fn create(&self, dir: &Path) -> Result<()> {
        match std::fs::create_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StorageError::io("create block directory")(e)),
        }
        self.ensure(dir)
    }

    /// Make the existing directory `dir` durable: its entry, and its
    /// ancestors' entries up to the root, are on stable storage on return.
    pub(crate) fn ensure(&self, dir: &Path) -> Result<()> {
        if dir == self.root || !dir.starts_with(&self.root) || self.is_known(dir) {
            return Ok(());
        }
        std::fs::metadata(dir).map_err(StorageError::io("find block directory"))?;
        let parent = dir.parent().expect("below the root");
        self.ensure(parent)?;
        sync_dir(parent)?;
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dir.to_path_buf());
        Ok(())
    }

    /// Make the name `file` (already in place) durable, even if another
    /// writer put it there and has not yet synced its directory.
    pub(crate) fn ensure_name(&self, file: &Path) -> Result<()> {
        let dir = file.parent().expect("files have a directory");
        self.ensure(dir)?;
        sync_dir(dir)
    }

    fn is_known(&self, dir: &Path) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(dir)
    }
}

/// Create `dir` and any missing ancestors so that they survive power loss
/// (each new directory's parent is fsynced). For directories outside the
/// block tree: the server's data directory.
pub fn create_dir_durably(dir: &Path) -> Result<()> {
    DurableDirs::open(dir).map(|_| ())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("sync block directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_become_known_only_below_the_root_and_once_synced() {
        let t = tempfile::tempdir().unwrap();
        let dirs = DurableDirs::open(&t.path().join("a/blocks")).unwrap();
        let root = dirs.root().to_path_buf();
        assert!(root.is_dir() && root.ends_with("a/blocks"));
        let fan = root.join("arch/ab");
        dirs.create(&fan).unwrap();
        assert!(dirs.is_known(&fan) && dirs.is_known(&root.join("arch")));
        // Outside the root nothing is recorded (and nothing fails).
        let outside = root.parent().unwrap();
        dirs.ensure(outside).unwrap();
        assert!(!dirs.is_known(outside));
        std::fs::write(fan.join("f"), b"x").unwrap();
        dirs.ensure_name(&fan.join("f")).unwrap();
        // A directory that does not exist cannot be synced: an error, not a
        // false "durable".
        assert!(dirs.ensure(&root.join("nope/cd")).is_err());
        assert!(!dirs.is_known(&root.join("nope/cd")));
    }
}
