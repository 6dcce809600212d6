//! Group commit: one thread turns "make everything written so far durable"
//! requests into as few flushes as possible.
//!
//! Why a thread and a queue: a durable flush costs 2–8 ms on this class of
//! disk whatever it carries, so 64 concurrent commits must share one flush
//! rather than queue 64 of them. A caller enqueues a waiter *after* its writes
//! are applied; the thread takes every queued waiter, then flushes, so the
//! flush covers all of them. A waiter that arrives during a flush waits for
//! the next one.
//!
//! Fail-stop: once a flush fails, every later request for durability is
//! refused ([`MetaError::FailStopped`]) until the process restarts. After a
//! failed fsync Linux may drop the dirty pages it could not write and report
//! success on the next fsync, so a later success proves nothing about what
//! came before; acknowledging on top of it could lose acknowledged writes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};

use tokio::sync::oneshot;

use crate::MetaError;

/// Someone waiting for a flush: an async task or a blocking caller.
enum Waiter {
    Task(oneshot::Sender<Result<(), String>>),
    Thread(mpsc::Sender<Result<(), String>>),
}

impl Waiter {
    fn wake(self, result: Result<(), String>) {
        let _ = match self {
            Waiter::Task(tx) => tx.send(result),
            Waiter::Thread(tx) => tx.send(result).map_err(|e| e.0),
        };
    }
}

/// The committer. Dropping it stops the thread and waits for it, which closes
/// the database (and releases its lock) before the drop returns.
pub(crate) struct GroupCommit {
    queue: Option<mpsc::Sender<Waiter>>,
    thread: Option<std::thread::JoinHandle<()>>,
    failed: Arc<OnceLock<String>>,
    /// Set by tests: the next flush fails with EIO.
    #[cfg_attr(not(test), allow(dead_code))]
    fail_next: Arc<AtomicBool>,
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl GroupCommit {
    pub(crate) fn start(db: sled::Db, dir: PathBuf) -> Result<Self, MetaError> {
        // sled 0.34 keeps its log in `db`, its settings in `conf` (written at
        // creation, never synced by sled), snapshots in `snap.*` and node
        // images too large for the log in `blobs/`. The files and the
        // directories that name them are made durable once here; what sled
        // writes later is synced by every flush (see `flush`).
        let log = File::open(dir.join("db")).map_err(MetaError::Sync)?;
        if let Ok(conf) = File::open(dir.join("conf")) {
            conf.sync_all().map_err(MetaError::Sync)?;
        }
        sync_dir(&dir.join(BLOBS)).map_err(MetaError::Sync)?;
        sync_dir(&dir).map_err(MetaError::Sync)?;
        let (queue, rx) = mpsc::channel::<Waiter>();
        let failed = Arc::new(OnceLock::new());
        let fail_next = Arc::new(AtomicBool::new(false));
        let (f, n) = (failed.clone(), fail_next.clone());
        let thread = std::thread::Builder::new()
            .name("coffer-meta-commit".into())
            .spawn(move || {
                let mut files = Synced::default();
                run(db, log, dir, &mut files, rx, &f, &n)
            })
            .map_err(MetaError::Sync)?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            failed,
            fail_next,
        })
    }

    #[cfg(test)]
    pub(crate) fn fail_next_flush(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }

    /// Why the store stopped taking writes, if a flush failed.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    fn enqueue(&self, w: Waiter) -> Result<(), MetaError> {
        if let Some(e) = self.failed.get() {
            return Err(MetaError::FailStopped(e.clone()));
        }
        self.queue
            .as_ref()
            .ok_or(MetaError::Closed)?
            .send(w)
            .map_err(|_| MetaError::Closed)
    }

    /// Wait until every write applied before this call is on stable storage.
    pub(crate) async fn durable(&self) -> Result<(), MetaError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Waiter::Task(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(MetaError::FailStopped(msg)),
            Err(_) => Err(MetaError::Closed),
        }
    }

    /// The blocking form, for code that is not async (tests, CLI tools).
    pub(crate) fn durable_blocking(&self) -> Result<(), MetaError> {
        let (tx, rx) = mpsc::channel();
        self.enqueue(Waiter::Thread(tx))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(MetaError::FailStopped(msg)),
            Err(_) => Err(MetaError::Closed),
        }
    }
}

fn run(
    db: sled::Db,
    log: File,
    dir: PathBuf,
    files: &mut Synced,
    rx: mpsc::Receiver<Waiter>,
    failed: &OnceLock<String>,
    fail_next: &AtomicBool,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let result = match failed.get() {
            Some(e) => Err(e.clone()),
            None => flush(&db, &log, &dir, files, fail_next).map_err(|e| e.to_string()),
        };
        if let Err(e) = &result {
            if failed.set(e.clone()).is_ok() {
                tracing::error!(error = %e, "metadata flush failed: no write is acknowledged from now on, and /readyz fails; restart the server once the disk is healthy");
            }
        }
        for waiter in batch {
            waiter.wake(result.clone());
        }
    }
    // Last flush on the way out, so a clean shutdown leaves nothing pending.
    if failed.get().is_none() {
        let _ = flush(&db, &log, &dir, files, fail_next);
    }
}

/// sled's directory for node images too large for its log.
const BLOBS: &str = "blobs";

/// sled's side files already on stable storage, with the size each had
/// when it was synced.
#[derive(Default)]
struct Synced {
    blobs: HashMap<OsString, u64>,
    snaps: HashMap<OsString, u64>,
}

/// Make everything written so far durable.
///
/// sled's flush syncs its log only. A node image too large for the log goes
/// to a file of its own in `blobs/`, named by the log position of the record
/// that points at it; sled writes that file completely before the record can
/// reach the log, but never syncs it or its directory. After a power cut a
/// record whose blob file came back empty reads as a torn log, and recovery
/// drops the record *and everything after it*. So after the log is synced,
/// every blob file not yet synced (or grown since its sync) is synced, then
/// the directory, and only then is anyone told the flush is done. A crash between the two loses
/// nothing acknowledged: the records whose blobs were not yet synced all come
/// after the last acknowledged flush, and a missing blob file is skipped by
/// sled's recovery.
///
/// Snapshots (`snap.*`) are renamed into place by sled without a directory
/// sync: when their names change, the directory is synced too.
fn flush(
    db: &sled::Db,
    log: &File,
    dir: &Path,
    files: &mut Synced,
    fail: &AtomicBool,
) -> std::io::Result<()> {
    // Tests make a flush fail as a disk answering EIO would.
    if fail.swap(false, Ordering::SeqCst) {
        return Err(std::io::Error::from_raw_os_error(5));
    }
    db.flush().map_err(std::io::Error::other)?;
    log.sync_data()?;
    let blobs = dir.join(BLOBS);
    if sync_new(&blobs, &mut files.blobs, |_| true)? {
        sync_dir(&blobs)?;
    }
    if sync_new(dir, &mut files.snaps, |n| {
        n.to_string_lossy().starts_with("snap.")
    })? {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Sync every file of `dir` whose name passes `wanted` and that is new or
/// has grown since it was synced (a blob file sled was still writing when
/// an earlier flush synced it, because its record lies beyond that flush,
/// is synced again once complete); `synced` becomes what is present now.
/// True if any name came or went (the directory then needs a sync of its
/// own).
fn sync_new(
    dir: &Path,
    synced: &mut HashMap<OsString, u64>,
    wanted: impl Fn(&OsString) -> bool,
) -> std::io::Result<bool> {
    let mut now = HashMap::with_capacity(synced.len());
    let mut changed = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !wanted(&name) {
            continue;
        }
        let len = match entry.metadata() {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if synced.get(&name) != Some(&len) {
            match File::open(dir.join(&name)) {
                Ok(f) => f.sync_all()?,
                // sled removed it meanwhile (a blob that is no longer
                // needed, a snapshot replaced by a newer one).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            changed |= !synced.contains_key(&name);
        }
        now.insert(name, len);
    }
    changed |= now.len() != synced.len() || !now.keys().all(|n| synced.contains_key(n));
    *synced = now;
    Ok(changed)
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_files_are_synced_once_and_name_changes_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let mut synced = HashMap::new();
        let all = |_: &OsString| true;
        // Nothing there, nothing to do.
        assert!(!sync_new(d.path(), &mut synced, all).unwrap());
        std::fs::write(d.path().join("1024"), b"blob").unwrap();
        std::fs::write(d.path().join("2048"), b"blob").unwrap();
        assert!(sync_new(d.path(), &mut synced, all).unwrap());
        assert_eq!(synced.len(), 2);
        // Synced already: no new work, no directory sync.
        assert!(!sync_new(d.path(), &mut synced, all).unwrap());
        // A file that grew after its sync (sled was still writing it) is
        // synced again, with no directory sync: its name did not change.
        std::fs::write(d.path().join("2048"), b"blob, complete").unwrap();
        assert!(!sync_new(d.path(), &mut synced, all).unwrap());
        assert_eq!(synced[&OsString::from("2048")], 14);
        // A name gone is a change too (the directory is synced again).
        std::fs::remove_file(d.path().join("1024")).unwrap();
        assert!(sync_new(d.path(), &mut synced, all).unwrap());
        assert_eq!(synced.len(), 1);
        // Names the filter refuses are neither synced nor remembered.
        std::fs::write(d.path().join("db"), b"log").unwrap();
        let snaps = |n: &OsString| n.to_string_lossy().starts_with("snap.");
        let mut s2 = HashMap::new();
        assert!(!sync_new(d.path(), &mut s2, snaps).unwrap());
        assert!(s2.is_empty());
    }
}
