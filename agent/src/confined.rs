//! File-system work confined to a restore target, `openat`-style.
//!
//! A path is never resolved as a whole: every directory is opened from its
//! parent's descriptor with `O_NOFOLLOW | O_DIRECTORY`, so a symlink placed
//! anywhere under the target (before the restore or during it) makes the
//! operation fail instead of leading it outside. Files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, renamed within their directory's
//! descriptor, and given their mode and times through their own descriptor;
//! symlinks get their times without the link being followed.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use anyhow::{bail, Context};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// The restore target, held open.
pub struct Root {
    fd: OwnedFd,
}

/// A directory under the root, held open.
pub struct Dir {
    fd: OwnedFd,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn times(sec: i64, nsec: u32) -> Timestamps {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec.min(999_999_999).into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl Root {
    /// Open the target directory (which the user named: it may itself be a
    /// symlink; nothing below it may).
    pub fn open(target: &Path) -> anyhow::Result<Self> {
        let fd = rustix::fs::open(
            target,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("open {}", target.display()))?;
        Ok(Self { fd })
    }

    /// Open the directory `rel` (relative, no `..`) below the root, one
    /// component at a time, creating the missing ones when `create`. An
    /// existing component that is not a real directory is refused.
    pub fn dir(&self, rel: &Path, create: bool) -> anyhow::Result<Dir> {
        let mut cur: Option<OwnedFd> = None;
        let mut at = std::path::PathBuf::new();
        for c in rel.components() {
            let name = match c {
                Component::Normal(n) => n,
                Component::CurDir => continue,
                _ => bail!("{} is not a path below the target", rel.display()),
            };
            at.push(name);
            let parent = cur.as_ref().unwrap_or(&self.fd);
            let next = match rustix::fs::openat(parent, name, dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("create {}", at.display()))
                        }
                    }
                    rustix::fs::openat(parent, name, dir_flags(), Mode::empty())
                        .map_err(|e| refusal(e, &at))?
                }
                Err(e) => return Err(refusal(e, &at)),
            };
            cur = Some(next);
        }
        let fd = match cur {
            Some(fd) => fd,
            None => rustix::fs::openat(&self.fd, ".", dir_flags(), Mode::empty())
                .context("open the target")?,
        };
        Ok(Dir { fd })
    }
}

fn refusal(e: Errno, at: &Path) -> anyhow::Error {
    match e {
        // O_NOFOLLOW on a symlink gives ELOOP; O_DIRECTORY on a file ENOTDIR.
        Errno::LOOP | Errno::NOTDIR => anyhow::anyhow!(
            "{} exists and is not a directory; not writing through it",
            at.display()
        ),
        e => anyhow::Error::new(e).context(format!("open {}", at.display())),
    }
}

impl Dir {
    /// Create a new file `name` (it must not exist, whatever it would be),
    /// readable and writable by its owner only until [`set_file_meta`].
    pub fn create_new(&self, name: &OsStr) -> std::io::Result<File> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600))?;
        Ok(File::from(fd))
    }

    /// Move `from` to `to`, both in this directory. A symlink at `to` is
    /// replaced, never followed.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> std::io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
    }

    /// Remove the file or symlink `name`, if there is one.
    pub fn remove(&self, name: &OsStr) {
        let _ = rustix::fs::unlinkat(&self.fd, name, AtFlags::empty());
    }

    /// Create the symlink `name` pointing at `target`, with its own times.
    pub fn symlink(
        &self,
        name: &OsStr,
        target: &OsStr,
        sec: i64,
        nsec: u32,
    ) -> std::io::Result<()> {
        rustix::fs::symlinkat(target, &self.fd, name)?;
        let _ = rustix::fs::utimensat(&self.fd, name, &times(sec, nsec), AtFlags::SYMLINK_NOFOLLOW);
        Ok(())
    }

    /// Give this directory its mode and times, through its descriptor.
    pub fn set_meta(&self, mode: u32, sec: i64, nsec: u32) -> std::io::Result<()> {
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode & 0o7777))?;
        Ok(rustix::fs::futimens(&self.fd, &times(sec, nsec))?)
    }
}

/// Give an open file its mode and times, through its descriptor.
pub fn set_file_meta(f: &File, mode: u32, sec: i64, nsec: u32) -> std::io::Result<()> {
    rustix::fs::fchmod(f, Mode::from_raw_mode(mode & 0o7777))?;
    Ok(rustix::fs::futimens(f, &times(sec, nsec))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_symlink_anywhere_below_the_root_is_refused_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        root.dir(Path::new("a/b"), true).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("a/evil")).unwrap();
        let e = root.dir(Path::new("a/evil/c"), true).err().unwrap();
        assert!(e.to_string().contains("not writing through it"), "{e}");
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        // A file where a directory should be.
        std::fs::write(t.path().join("a/file"), b"x").unwrap();
        assert!(root.dir(Path::new("a/file/c"), true).is_err());
        // `..` never leaves.
        assert!(root.dir(Path::new("a/../.."), true).is_err());
    }

    #[test]
    fn new_files_never_open_an_existing_name_and_metadata_goes_through_descriptors() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        let d = root.dir(Path::new("d"), true).unwrap();
        // A symlink planted at the temporary name: creation fails, nothing
        // is written outside.
        std::os::unix::fs::symlink(outside.path().join("victim"), t.path().join("d/tmp")).unwrap();
        assert!(d.create_new(OsStr::new("tmp")).is_err());
        assert!(!outside.path().join("victim").exists());
        d.remove(OsStr::new("tmp"));
        let f = d.create_new(OsStr::new("tmp")).unwrap();
        set_file_meta(&f, 0o640, 1_000_000, 5).unwrap();
        drop(f);
        // A symlink at the final name is replaced, not written through.
        std::os::unix::fs::symlink(outside.path().join("victim"), t.path().join("d/f")).unwrap();
        d.rename(OsStr::new("tmp"), OsStr::new("f")).unwrap();
        let m = std::fs::symlink_metadata(t.path().join("d/f")).unwrap();
        assert!(m.is_file() && m.mode() & 0o7777 == 0o640 && m.mtime() == 1_000_000);
        assert!(!outside.path().join("victim").exists());
        // Directory metadata through the descriptor; symlink times on the link.
        d.symlink(OsStr::new("l"), outside.path().as_os_str(), 2_000_000, 0)
            .unwrap();
        let l = std::fs::symlink_metadata(t.path().join("d/l")).unwrap();
        assert!(l.file_type().is_symlink() && l.mtime() == 2_000_000);
        d.set_meta(0o750, 3_000_000, 0).unwrap();
        let dm = std::fs::metadata(t.path().join("d")).unwrap();
        assert_eq!(
            (dm.permissions().mode() & 0o7777, dm.mtime()),
            (0o750, 3_000_000)
        );
    }
}
