//! Background work, supervised: every loop the server runs besides serving
//! requests is a named [`Worker`] with a step and an interval, started by the
//! [`Supervisor`] with the server and stopped by the one shutdown signal.
//!
//! Why a supervisor rather than `tokio::spawn` per loop: an operator must be
//! able to see what runs, when it last ran and why it failed; a step that
//! fails (an error, or a panic) must not end its loop, but must not retry in a
//! tight loop either. So each worker runs in its own task that records its
//! state around every step, waits its interval after a success and a
//! doubling backoff after each failure in a row, and is cut short only by
//! shutdown: a waiting worker stops at once, a running step gets the grace
//! period and is then dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_types::wire::WorkerInfo;
use coffer_types::UnixMillis;
use futures::FutureExt;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{watch, Notify};

use crate::access::{Permission, Principal};
use crate::clock::Clock;
use crate::{Coffer, CoreError, Result};

/// What a step returns.
pub type StepFuture<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send + 'a>>;

/// A piece of background work.
pub trait Worker: Send + Sync + 'static {
    /// A short, stable name (`plugin-reload`, `spool-sweep`).
    fn name(&self) -> &str;
    /// Time from the end of one successful step to the start of the next.
    fn interval(&self) -> Duration;
    /// Time before the first step (default: none, it runs at start).
    fn first_delay(&self) -> Duration {
        Duration::ZERO
    }
    /// One unit of work. An error (a sentence) is recorded and the step is
    /// tried again after a backoff.
    fn step(&self) -> StepFuture<'_>;
}

/// Where a worker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Idle,
    Running,
    BackingOff,
    Stopped,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Running => "running",
            WorkerState::BackingOff => "backing_off",
            WorkerState::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
struct Status {
    state: WorkerState,
    last_run: Option<UnixMillis>,
    last_success: Option<UnixMillis>,
    next_run: Option<UnixMillis>,
    last_error: Option<String>,
    in_a_row: u32,
}

struct Entry {
    worker: Arc<dyn Worker>,
    status: Mutex<Status>,
    runs: AtomicU64,
    failures: AtomicU64,
    kick: Notify,
}

impl Entry {
    fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn info(&self) -> WorkerInfo {
        let s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        WorkerInfo {
            name: self.worker.name().to_string(),
            state: s.state.as_str().into(),
            interval_secs: self.worker.interval().as_secs(),
            runs: self.runs.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            failures_in_a_row: s.in_a_row,
            last_run: s.last_run,
            last_success: s.last_success,
            next_run: s.next_run,
            last_error: s.last_error.clone(),
        }
    }
}

/// Backoff after failures in a row: `initial`, doubling, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    fn after(&self, in_a_row: u32) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(1u32 << in_a_row.saturating_sub(1).min(20));
        doubled.min(self.max)
    }
}

/// Runs the workers. Cheap to share behind an `Arc`.
pub struct Supervisor {
    clock: Arc<dyn Clock>,
    entries: Vec<Arc<Entry>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("workers", &self.entries.len())
            .finish()
    }
}

impl Supervisor {
    /// Start every worker, each in its own task.
    pub fn start(
        workers: Vec<Arc<dyn Worker>>,
        clock: Arc<dyn Clock>,
        backoff: Backoff,
    ) -> Arc<Self> {
        let (stop, _) = watch::channel(false);
        let entries: Vec<Arc<Entry>> = workers
            .into_iter()
            .map(|worker| {
                Arc::new(Entry {
                    worker,
                    status: Mutex::new(Status {
                        state: WorkerState::Idle,
                        last_run: None,
                        last_success: None,
                        next_run: None,
                        last_error: None,
                        in_a_row: 0,
                    }),
                    runs: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    kick: Notify::new(),
                })
            })
            .collect();
        let sup = Arc::new(Self {
            clock,
            entries,
            stop,
            tasks: Mutex::default(),
        });
        let tasks = sup
            .entries
            .iter()
            .map(|e| {
                tokio::spawn(run(
                    e.clone(),
                    sup.clock.clone(),
                    backoff,
                    sup.stop.subscribe(),
                ))
            })
            .collect();
        *sup.tasks.lock().unwrap() = tasks;
        for e in &sup.entries {
            tracing::info!(
                worker = e.worker.name(),
                interval_secs = e.worker.interval().as_secs(),
                "worker started"
            );
        }
        sup
    }

    /// Every worker's state, by name.
    pub fn status(&self) -> Vec<WorkerInfo> {
        let mut v: Vec<WorkerInfo> = self.entries.iter().map(|e| e.info()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Run `name` now instead of at its next time (a running or backing-off
    /// worker runs once it is waiting again). False if there is no such
    /// worker.
    pub fn kick(&self, name: &str) -> bool {
        match self.entries.iter().find(|e| e.worker.name() == name) {
            Some(e) => {
                e.kick.notify_one();
                true
            }
            None => false,
        }
    }

    /// Stop every worker: waiting ones at once, running steps within
    /// `grace`, after which they are dropped. Returns when all have ended.
    pub async fn stop(&self, grace: Duration) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("workers still running after the grace period; stopping them");
            for a in aborts {
                a.abort();
            }
        }
        for e in &self.entries {
            e.set(|s| {
                s.state = WorkerState::Stopped;
                s.next_run = None;
            });
        }
    }
}

/// One worker's loop.
async fn run(
    e: Arc<Entry>,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    mut stop: watch::Receiver<bool>,
) {
    let name = e.worker.name().to_string();
    let mut wait = e.worker.first_delay();
    loop {
        let now = clock.now();
        e.set(|s| s.next_run = Some(now.saturating_add(wait.as_millis() as u64)));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = e.kick.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if *stop.borrow() {
            return;
        }
        let started = clock.now();
        e.set(|s| {
            s.state = WorkerState::Running;
            s.last_run = Some(started);
            s.next_run = None;
        });
        e.runs.fetch_add(1, Ordering::Relaxed);
        let outcome = std::panic::AssertUnwindSafe(e.worker.step())
            .catch_unwind()
            .await;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(msg)) => Some(msg),
            Err(panic) => Some(format!(
                "the step panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)")
            )),
        };
        match error {
            None => {
                let done = clock.now();
                e.set(|s| {
                    s.state = WorkerState::Idle;
                    s.last_success = Some(done);
                    s.in_a_row = 0;
                });
                wait = e.worker.interval();
            }
            Some(msg) => {
                e.failures.fetch_add(1, Ordering::Relaxed);
                let mut in_a_row = 0;
                e.set(|s| {
                    s.state = WorkerState::BackingOff;
                    s.in_a_row += 1;
                    in_a_row = s.in_a_row;
                    s.last_error = Some(msg.clone());
                });
                wait = backoff.after(in_a_row);
                tracing::warn!(worker = %name, failures_in_a_row = in_a_row, retry_in_ms = wait.as_millis() as u64, error = %msg, "worker step failed");
            }
        }
    }
}

/// The supervisor's series for `/metrics`: runs and failures per worker,
/// and whether it is backing off.
impl prometheus_client::collector::Collector for Supervisor {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        type Labels = Vec<(String, String)>;
        let runs = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let backing_off = Family::<Labels, Gauge>::default();
        for e in &self.entries {
            let l = vec![("worker".to_string(), e.worker.name().to_string())];
            runs.get_or_create(&l)
                .inc_by(e.runs.load(Ordering::Relaxed));
            failures
                .get_or_create(&l)
                .inc_by(e.failures.load(Ordering::Relaxed));
            let state = e.status.lock().unwrap_or_else(|p| p.into_inner()).state;
            backing_off
                .get_or_create(&l)
                .set(i64::from(state == WorkerState::BackingOff));
        }
        runs.encode(encoder.encode_descriptor(
            "worker_runs",
            "Steps a background worker started",
            None,
            runs.metric_type(),
        )?)?;
        failures.encode(encoder.encode_descriptor(
            "worker_failures",
            "Steps of a background worker that failed",
            None,
            failures.metric_type(),
        )?)?;
        backing_off.encode(encoder.encode_descriptor(
            "worker_backing_off",
            "1 while a worker waits after a failure",
            None,
            backing_off.metric_type(),
        )?)?;
        Ok(())
    }
}

impl Coffer {
    /// Plug in the supervisor (once, at start).
    pub fn set_supervisor(&self, s: Arc<Supervisor>) {
        let _ = self.workers.set(s);
    }

    /// The background workers and their state.
    pub async fn workers(&self, p: &Principal) -> Result<Vec<WorkerInfo>> {
        self.require(p, Permission::ReadServer, "listing workers")
            .await?;
        Ok(self.workers.get().map(|s| s.status()).unwrap_or_default())
    }

    /// The supervisor, for shutdown.
    pub fn supervisor(&self) -> Result<&Arc<Supervisor>> {
        self.workers
            .get()
            .ok_or_else(|| CoreError::Internal("the workers are not started".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::AtomicU32;

    /// Fails its first `fail` steps (the second time by panicking), then
    /// succeeds.
    struct Flaky {
        fail: u32,
        steps: AtomicU32,
    }

    impl Worker for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn interval(&self) -> Duration {
            Duration::from_secs(60)
        }
        fn step(&self) -> StepFuture<'_> {
            Box::pin(async move {
                let n = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
                match n {
                    2 if self.fail >= 2 => panic!("boom"),
                    n if n <= self.fail => Err(format!("failure {n}")),
                    _ => Ok(()),
                }
            })
        }
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_worker_backs_off_doubling_then_recovers_and_shows_its_error() {
        let w = Arc::new(Flaky {
            fail: 3,
            steps: AtomicU32::new(0),
        });
        let clock = ManualClock::new(1_000);
        let sup = Supervisor::start(vec![w.clone()], Arc::new(clock), Backoff::default());
        settle().await;
        let s = &sup.status()[0];
        assert_eq!(
            (s.runs, s.failures, s.state.as_str()),
            (1, 1, "backing_off")
        );
        assert_eq!(s.last_error.as_deref(), Some("failure 1"));
        // 1 s, then 2 s, then 4 s between tries.
        tokio::time::advance(Duration::from_millis(999)).await;
        settle().await;
        assert_eq!(w.steps.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(w.steps.load(Ordering::SeqCst), 2);
        // The panic is a failure like any other; the loop goes on.
        assert!(sup.status()[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("boom"));
        tokio::time::advance(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(w.steps.load(Ordering::SeqCst), 3);
        assert_eq!(sup.status()[0].failures_in_a_row, 3);
        tokio::time::advance(Duration::from_secs(4)).await;
        settle().await;
        let s = &sup.status()[0];
        assert_eq!((s.runs, s.failures, s.failures_in_a_row), (4, 3, 0));
        assert_eq!(s.state, "idle");
        // After a success it waits its interval; a kick runs it now.
        tokio::time::advance(Duration::from_secs(59)).await;
        settle().await;
        assert_eq!(w.steps.load(Ordering::SeqCst), 4);
        assert!(sup.kick("flaky"));
        settle().await;
        assert_eq!(w.steps.load(Ordering::SeqCst), 5);
        sup.stop(Duration::from_secs(1)).await;
        assert_eq!(sup.status()[0].state, "stopped");
    }

    struct Slow;
    impl Worker for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        fn interval(&self) -> Duration {
            Duration::from_secs(1)
        }
        fn step(&self) -> StepFuture<'_> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stop_drops_a_step_that_outlives_the_grace() {
        let sup = Supervisor::start(
            vec![Arc::new(Slow)],
            Arc::new(ManualClock::new(0)),
            Backoff::default(),
        );
        settle().await;
        assert_eq!(sup.status()[0].state, "running");
        let t = tokio::time::Instant::now();
        sup.stop(Duration::from_secs(5)).await;
        assert!(t.elapsed() <= Duration::from_secs(6));
        assert_eq!(sup.status()[0].state, "stopped");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=10).map(|n| b.after(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
    }
}
