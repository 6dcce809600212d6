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
        // sled 0.34 keeps its log in `db`; `conf` and `snap.*` are written
        // rarely. We fdatasync the log after each flush; the directory is
        // fsynced once here so the files themselves are durable.
        let log = File::open(dir.join("db")).map_err(MetaError::Sync)?;
        sync_dir(&dir).map_err(MetaError::Sync)?;
        let (queue, rx) = mpsc::channel::<Waiter>();
        let failed = Arc::new(OnceLock::new());
        let fail_next = Arc::new(AtomicBool::new(false));
        let (f, n) = (failed.clone(), fail_next.clone());
        let thread = std::thread::Builder::new()
            .name("coffer-meta-commit".into())
            .spawn(move || run(db, log, dir, rx, &f, &n))
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
    rx: mpsc::Receiver<Waiter>,
    failed: &OnceLock<String>,
    fail_next: &AtomicBool,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let result = match failed.get() {
            Some(e) => Err(e.clone()),
            None => flush(&db, &log, &dir, fail_next).map_err(|e| e.to_string()),
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
        let _ = flush(&db, &log, &dir, fail_next);
    }
}

fn flush(db: &sled::Db, log: &File, dir: &Path, fail: &AtomicBool) -> std::io::Result<()> {
    // Tests make a flush fail as a disk answering EIO would.
    if fail.swap(false, Ordering::SeqCst) {
        return Err(std::io::Error::from_raw_os_error(5));
    }
    db.flush().map_err(std::io::Error::other)?;
    log.sync_data()?;
    // Snapshot files are rewritten by sled in the background; sync any that
    // exist so a restart does not read a torn snapshot. They are few and
    // small, and an fsync of a clean file is cheap.
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("snap.") {
            if let Ok(f) = File::open(entry.path()) {
                let _ = f.sync_all();
            }
        }
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
