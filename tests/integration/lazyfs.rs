//! A file system that forgets what was never synced: the power-loss test's
//! disk, modelled on the idea of Jepsen's LazyFS.
//!
//! Everything lives in memory. Each file has the bytes processes see and
//! the bytes that were on "disk" at its last `fsync`/`fdatasync`; each
//! directory has the names processes see and the names it had at its last
//! `fsync`. A [`LazyFs::power_cut`] (with the file system unmounted, as after
//! a real cut) throws away everything unsynced: every directory goes back to
//! its synced names, every file reachable from them to its synced bytes, and
//! whatever is no longer reachable is gone. That is the strict POSIX
//! contract, the one a program must write to: a new file's name, or a
//! rename, survives only once its directory is synced, and a new directory's
//! name only once its parent is.
//!
//! No page cache of the kernel's stands between the program and these
//! rules: without FUSE's writeback cache every write reaches us at once, and
//! the kernel's caches of the mount go away with it at the unmount.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;

/// The byte range of a file written since its last sync.
type Dirty = Option<(usize, usize)>;

enum Body {
    /// `dirty`: the byte range written since the last sync, so that a sync
    /// copies only what changed.
    File {
        now: Vec<u8>,
        synced: Vec<u8>,
        dirty: Dirty,
    },
    Dir {
        now: BTreeMap<OsString, u64>,
        synced: BTreeMap<OsString, u64>,
    },
}

struct Node {
    body: Body,
    perm: u16,
    mtime: SystemTime,
    ctime: SystemTime,
    atime: SystemTime,
    uid: u32,
    gid: u32,
}

impl Node {
    fn new(body: Body, perm: u16, uid: u32, gid: u32) -> Self {
        let t = SystemTime::now();
        Self {
            body,
            perm,
            mtime: t,
            ctime: t,
            atime: t,
            uid,
            gid,
        }
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size, nlink) = match &self.body {
            Body::File { now, .. } => (FileType::RegularFile, now.len() as u64, 1),
            Body::Dir { now, .. } => (FileType::Directory, 0, 2 + now.len() as u32),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.ctime,
            kind,
            perm: self.perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

/// What a power cut threw away.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lost {
    /// Names that existed but were never synced into their directory.
    pub names: u64,
    /// Surviving files that went back to older (synced) contents.
    pub files: u64,
}

#[derive(Default)]
struct State {
    nodes: HashMap<u64, Node>,
    next: u64,
    fsyncs: u64,
}

impl State {
    fn dir(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::Dir { now, .. }) => Ok(now),
            Some(Body::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file(&mut self, ino: u64) -> Result<(&mut Vec<u8>, &mut Dirty), Errno> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::File { now, dirty, .. }) => Ok((now, dirty)),
            Some(Body::Dir { .. }) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn add(&mut self, parent: u64, name: &OsStr, node: Node) -> Result<(u64, FileAttr), Errno> {
        if self.dir(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        self.next += 1;
        let ino = self.next;
        let attr = node.attr(ino);
        self.nodes.insert(ino, node);
        self.dir(parent)?.insert(name.to_owned(), ino);
        self.touch(parent);
        Ok((ino, attr))
    }

    /// What `ino` holds now becomes what is on "disk": a file's bytes (only
    /// the range written since the last sync is copied), a directory's names.
    fn sync(&mut self, ino: u64, dir_only: bool) -> Result<(), Errno> {
        self.fsyncs += 1;
        match self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::File { .. }) if dir_only => Err(Errno::ENOTDIR),
            Some(Body::File { now, synced, dirty }) => {
                synced.resize(now.len(), 0);
                if let Some((a, b)) = dirty.take() {
                    let b = b.min(now.len());
                    if a < b {
                        synced[a..b].copy_from_slice(&now[a..b]);
                    }
                }
                Ok(())
            }
            Some(Body::Dir { now, synced }) => {
                synced.clone_from(now);
                Ok(())
            }
            None => Err(Errno::ENOENT),
        }
    }

    fn touch(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            let t = SystemTime::now();
            n.mtime = t;
            n.ctime = t;
        }
    }
}

/// The file system. Clones share one state, which outlives the mounts.
#[derive(Clone)]
pub struct LazyFs {
    state: Arc<Mutex<State>>,
}

/// A mount; dropping it unmounts.
pub struct Mounted {
    session: Option<BackgroundSession>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

impl LazyFs {
    pub fn new() -> Self {
        let mut st = State {
            next: ROOT,
            ..State::default()
        };
        let root = Body::Dir {
            now: BTreeMap::new(),
            synced: BTreeMap::new(),
        };
        st.nodes.insert(ROOT, Node::new(root, 0o755, 0, 0));
        Self {
            state: Arc::new(Mutex::new(st)),
        }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mount at `at` (an empty directory). Needs `/dev/fuse` and the right
    /// to mount (root, or a setuid `fusermount3`).
    pub fn mount(&self, at: &Path) -> std::io::Result<Mounted> {
        let mut cfg = Config::default();
        cfg.mount_options = vec![
            MountOption::FSName("coffer-lazyfs".into()),
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        cfg.n_threads = Some(4);
        let session = fuser::spawn_mount(self.clone(), at, &cfg)?;
        Ok(Mounted {
            session: Some(session),
        })
    }

    /// How many `fsync`/`fdatasync` calls (files and directories) it served.
    pub fn fsyncs(&self) -> u64 {
        self.st().fsyncs
    }

    /// Cut the power: forget everything never synced. Unmount first.
    pub fn power_cut(&self) -> Lost {
        let mut st = self.st();
        let mut lost = Lost::default();
        let mut keep = HashMap::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            let Some(mut node) = st.nodes.remove(&ino) else {
                // Reached twice (a rename synced on one side only).
                continue;
            };
            match &mut node.body {
                Body::File { now, synced, dirty } => {
                    if dirty.take().is_some() && now != synced {
                        lost.files += 1;
                    }
                    now.clone_from(synced);
                }
                Body::Dir { now, synced } => {
                    lost.names += now.keys().filter(|k| !synced.contains_key(*k)).count() as u64;
                    *now = synced.clone();
                    stack.extend(now.values().copied());
                }
            }
            keep.insert(ino, node);
        }
        st.nodes = keep;
        lost
    }
}

/// Widen the range written since the last sync by `a..b`.
fn mark(dirty: &mut Dirty, a: usize, b: usize) {
    *dirty = Some(match *dirty {
        Some((x, y)) => (x.min(a), y.max(b)),
        None => (a, b),
    });
}

fn reply_attr(st: &State, ino: INodeNo, reply: ReplyAttr) {
    match st.nodes.get(&ino.0) {
        Some(n) => reply.attr(&TTL, &n.attr(ino.0)),
        None => reply.error(Errno::ENOENT),
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut st = self.st();
        let ino = match st.dir(parent.0) {
            Ok(d) => d.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        match ino.and_then(|i| st.nodes.get(&i).map(|n| n.attr(i))) {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(&self.st(), ino, reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.st();
        if let Some(size) = size {
            match st.file(ino.0) {
                Ok((f, dirty)) => {
                    let (a, b) = (f.len().min(size as usize), f.len().max(size as usize));
                    f.resize(size as usize, 0);
                    mark(dirty, a, b);
                }
                Err(e) => return reply.error(e),
            }
        }
        let Some(n) = st.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let when = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => SystemTime::now(),
        };
        if let Some(m) = mode {
            n.perm = (m & 0o7777) as u16;
        }
        if let Some(u) = uid {
            n.uid = u;
        }
        if let Some(g) = gid {
            n.gid = g;
        }
        if let Some(t) = atime {
            n.atime = when(t);
        }
        if let Some(t) = mtime {
            n.mtime = when(t);
        }
        n.ctime = SystemTime::now();
        reply_attr(&st, ino, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let body = Body::Dir {
            now: BTreeMap::new(),
            synced: BTreeMap::new(),
        };
        let node = Node::new(body, (mode & !umask & 0o7777) as u16, req.uid(), req.gid());
        match self.st().add(parent.0, name, node) {
            Ok((_, attr)) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let body = Body::File {
            now: Vec::new(),
            synced: Vec::new(),
            dirty: None,
        };
        let node = Node::new(body, (mode & !umask & 0o7777) as u16, req.uid(), req.gid());
        match self.st().add(parent.0, name, node) {
            Ok((_, attr)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.st();
        let removed = match st.dir(parent.0) {
            Ok(d) => d.remove(name),
            Err(e) => return reply.error(e),
        };
        // The node stays in memory: open handles may still use it, and a
        // power cut may bring its synced name back.
        match removed {
            Some(_) => {
                st.touch(parent.0);
                reply.ok()
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.st();
        let ino = match st.dir(parent.0) {
            Ok(d) => d.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        let Some(ino) = ino else {
            return reply.error(Errno::ENOENT);
        };
        match st.dir(ino) {
            Ok(d) if !d.is_empty() => return reply.error(Errno::ENOTEMPTY),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        let _ = st.dir(parent.0).map(|d| d.remove(name));
        st.touch(parent.0);
        reply.ok()
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut st = self.st();
        let ino = match st.dir(parent.0) {
            Ok(d) => d.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        let Some(ino) = ino else {
            return reply.error(Errno::ENOENT);
        };
        let target = match st.dir(newparent.0) {
            Ok(d) => d.get(newname).copied(),
            Err(e) => return reply.error(e),
        };
        if let Some(t) = target {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return reply.error(Errno::EEXIST);
            }
            if let Ok(d) = st.dir(t) {
                if !d.is_empty() {
                    return reply.error(Errno::ENOTEMPTY);
                }
            }
        }
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let _ = st.dir(parent.0).map(|d| d.remove(name));
        let _ = st
            .dir(newparent.0)
            .map(|d| d.insert(newname.to_owned(), ino));
        st.touch(parent.0);
        st.touch(newparent.0);
        reply.ok()
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.st().nodes.get(&ino.0) {
            Some(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut st = self.st();
        match st.file(ino.0) {
            Ok((f, _)) => {
                let start = (offset as usize).min(f.len());
                let end = (start + size as usize).min(f.len());
                reply.data(&f[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut st = self.st();
        match st.file(ino.0) {
            Ok((f, dirty)) => {
                let end = offset as usize + data.len();
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[offset as usize..end].copy_from_slice(data);
                mark(dirty, offset as usize, end);
                st.touch(ino.0);
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a sync.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fsync(2) on a directory's descriptor may arrive here too.
        match self.st().sync(ino.0, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.st().dir(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut st = self.st();
        let entries: Vec<(OsString, u64)> = match st.dir(ino.0) {
            Ok(d) => d.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            Err(e) => return reply.error(e),
        };
        let mut all = vec![(OsString::from("."), ino.0), (OsString::from(".."), ino.0)];
        all.extend(entries);
        for (i, (name, child)) in all.iter().enumerate().skip(offset as usize) {
            let kind = match st.nodes.get(child).map(|n| &n.body) {
                Some(Body::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            if reply.add(INodeNo(*child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.st().sync(ino.0, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // 64 GiB, all free: the server's free-space reserve never refuses.
        let blocks = 16 << 20;
        reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
