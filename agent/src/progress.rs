//! Progress for people and programs: a bar on a terminal, plain lines when
//! stderr is not one, JSON lines on stdout with `--json`.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Progress(Arc<Inner>);

struct Inner {
    mode: Mode,
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Bar,
    Lines,
    Json,
    Quiet,
}

struct State {
    files: (u64, u64),
    bytes: u64,
    total: u64,
    uploaded: u64,
    last: Instant,
    start: Instant,
}

impl Progress {
    pub fn new(json: bool) -> Self {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        };
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}")
                    .expect("valid template"),
            );
            b
        });
        Self::with(mode, bar)
    }

    /// No output at all (library callers and tests).
    pub fn quiet() -> Self {
        Self::with(Mode::Quiet, None)
    }

    fn with(mode: Mode, bar: Option<ProgressBar>) -> Self {
        let now = Instant::now();
        let state = State {
            files: (0, 0),
            bytes: 0,
            total: 0,
            uploaded: 0,
            last: now,
            start: now,
        };
        Self(Arc::new(Inner {
            mode,
            bar,
            state: Mutex::new(state),
        }))
    }

    pub fn plan(&self, files: u64, bytes: u64) {
        let mut s = self.0.state.lock().unwrap();
        s.files.1 = files;
        s.total = bytes;
        if let Some(b) = &self.0.bar {
            b.set_length(bytes);
        }
    }

    pub fn files(&self, done: u64, total: u64) {
        self.0.state.lock().unwrap().files = (done, total);
        if let Some(b) = &self.0.bar {
            b.set_message(format!("{done}/{total} files"));
        }
    }

    pub fn bytes(&self, done: u64, uploaded: u64) {
        let mut s = self.0.state.lock().unwrap();
        s.bytes = done;
        s.uploaded = uploaded;
        if let Some(b) = &self.0.bar {
            b.set_position(done);
        }
        if s.last.elapsed().as_secs_f64() >= 2.0 {
            s.last = Instant::now();
            let secs = s.start.elapsed().as_secs_f64().max(0.001);
            match self.0.mode {
                Mode::Lines => eprintln!(
                    "{}/{} files, {} of {} MiB read, {} MiB uploaded, {:.1} MiB/s",
                    s.files.0,
                    s.files.1,
                    s.bytes >> 20,
                    s.total >> 20,
                    s.uploaded >> 20,
                    s.bytes as f64 / secs / (1 << 20) as f64
                ),
                Mode::Json => println!(
                    "{}",
                    serde_json::json!({"event": "progress", "files_done": s.files.0, "files_total": s.files.1, "bytes_done": s.bytes, "bytes_total": s.total, "bytes_uploaded": s.uploaded, "seconds": secs})
                ),
                Mode::Bar | Mode::Quiet => {}
            }
        }
    }

    pub fn warn(&self, msg: &str) {
        match &self.0.bar {
            Some(b) => b.println(format!("warning: {msg}")),
            None if self.0.mode == Mode::Json => println!(
                "{}",
                serde_json::json!({"event": "warning", "message": msg})
            ),
            None if self.0.mode == Mode::Quiet => {}
            None => eprintln!("warning: {msg}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.0.bar {
            b.finish_and_clear();
        }
    }
}
