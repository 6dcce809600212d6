//! The test harness: start, stop, kill and restart the real server; enroll
//! devices; run the CLI; start a local S3-compatible server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use coffer_client::paths;
use coffer_http::client::{Client, ClientResponse, ClientTls};
use coffer_types::wire::SessionInfo;
use coffer_types::BlockId;
use serde_json::json;

pub use coffer_storage::conformance::block_bytes;

pub const COFFER: &str = env!("CARGO_BIN_EXE_coffer");

/// The `coffer-agent` binary. It belongs to another package, so Cargo gives
/// this test no `CARGO_BIN_EXE_` for it; `cargo test --workspace` builds it
/// beside `coffer` (the agent has integration tests of its own, which makes
/// Cargo build its binary). `COFFER_AGENT_BIN` overrides.
pub fn agent_binary() -> PathBuf {
    let path = std::env::var_os("COFFER_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(COFFER).with_file_name("coffer-agent"));
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, or \
         `cargo build -p coffer-agent` first",
        path.display()
    );
    path
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// Serve TLS (self-signed) instead of h2c.
    pub tls: bool,
    /// Extra environment, e.g. `COFFER__LIMITS__MAX_BLOCK_BYTES`.
    pub env: Vec<(String, String)>,
    /// A config file's text.
    pub config: Option<String>,
    /// Serve this existing data directory instead of a new one.
    pub data_dir: Option<PathBuf>,
    /// Run under this open-files limit (soft and hard), through `prlimit`.
    pub nofile: Option<u64>,
}

impl Opts {
    pub fn env(mut self, k: &str, v: impl ToString) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
}

/// A running `coffer serve` process with its own data directory.
pub struct TestServer {
    pub root: Arc<tempfile::TempDir>,
    pub data_dir: PathBuf,
    pub url: String,
    pub log: PathBuf,
    opts: Opts,
    child: Option<Child>,
}

impl TestServer {
    pub async fn start(opts: Opts) -> Self {
        let root = Arc::new(tempfile::tempdir().expect("temp dir"));
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| root.path().join("data"));
        let log = root.path().join("server.log");
        let mut s = Self {
            root,
            data_dir,
            url: String::new(),
            log,
            opts,
            child: None,
        };
        s.spawn();
        s
    }

    /// Start with default options over h2c.
    pub async fn h2c() -> Self {
        Self::start(Opts::default()).await
    }

    fn spawn(&mut self) {
        self.spawn_on("127.0.0.1:0")
    }

    fn spawn_on(&mut self, listen: &str) {
        let mut cmd = match self.opts.nofile {
            // prlimit sets the limit and execs the server: the same process.
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(COFFER);
                c
            }
            None => Command::new(COFFER),
        };
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(listen);
        if !self.opts.tls {
            cmd.arg("--insecure-h2c");
        }
        if let Some(text) = &self.opts.config {
            let p = self.root.path().join("coffer.toml");
            std::fs::write(&p, text).unwrap();
            cmd.arg("--config").arg(p);
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        cmd.stdout(Stdio::piped()).stderr(log).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn coffer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => {
                self.url = url.replace(
                    "127.0.0.1",
                    if self.opts.tls {
                        "localhost"
                    } else {
                        "127.0.0.1"
                    },
                )
            }
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; its log:\n{}", self.log_text());
            }
        }
        self.child = Some(child);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: the power-loss stand-in. Nothing gets to run on the way out.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn sigterm(&self) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    }

    /// Wait for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "server did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Set an environment variable for the next (re)start.
    pub fn set_env(&mut self, k: &str, v: impl ToString) {
        self.opts.env.retain(|(key, _)| key != k);
        self.opts.env.push((k.to_string(), v.to_string()));
    }

    /// Start again on the same data directory (after a kill or exit).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Start again on the same data directory and the same port, as a
    /// server that came back would (clients keep their URL).
    pub fn restart_on_same_port(&mut self) {
        self.kill9();
        let port = self
            .url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        self.spawn_on(&format!("127.0.0.1:{port}"));
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.data_dir.join("tls/cert.pem")
    }

    pub fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca_cert: self.opts.tls.then(|| self.ca_cert()),
            insecure: false,
        }
    }

    /// A raw connection (requests built with `coffer_client::paths`).
    pub async fn client(&self) -> Client {
        Client::connect(&self.url, &self.client_tls())
            .await
            .expect("connect")
    }

    /// A typed client, without a token.
    pub async fn api(&self) -> coffer_client::Client {
        coffer_client::Client::connect(&self.url, &self.client_tls())
            .await
            .expect("connect")
    }

    /// A typed client with the bootstrap admin token.
    pub async fn admin_api(&self) -> coffer_client::Client {
        self.api().await.with_token(&self.admin_token())
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub async fn admin(&self) -> Client {
        self.client().await.with_token(&self.admin_token())
    }

    /// Enroll a device (creating its org and user if needed).
    pub async fn enroll(&self, org: &str, user: &str, name: &str) -> Agent {
        let t = coffer_client::enroll(&self.admin_api().await, org, user, name)
            .await
            .expect("enroll a device");
        Agent {
            client: self.client().await.with_token(&t.token),
            archive: t.archive.to_string(),
            device: t.device.to_string(),
            token: t.token,
        }
    }

    /// Where the disk store keeps an unpacked block of `archive`.
    pub fn block_file(&self, archive: &str, id: &BlockId) -> PathBuf {
        let hex = id.to_hex();
        self.data_dir
            .join("blocks/archives")
            .join(archive)
            .join(&hex[..2])
            .join(&hex)
    }

    /// Run `coffer admin ARGS…` against this server (with the admin token
    /// of its data directory).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(None, args)
    }

    /// Run `coffer admin ARGS…` with `token` (else the data directory's).
    pub fn cli_as(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(COFFER);
        cmd.arg("admin")
            .arg("--server")
            .arg(&self.url)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("COFFER_ADMIN_TOKEN")
            .args(args);
        if let Some(t) = token {
            cmd.env("COFFER_ADMIN_TOKEN", t);
        }
        cmd.output().expect("run coffer admin")
    }

    /// Create an account of `role` (in `org`) and a token for it through
    /// the CLI; returns the token.
    pub fn account_token(&self, name: &str, role: &str, org: Option<&str>) -> String {
        let mut args = vec!["account", "create", name, "--role", role];
        if let Some(o) = org {
            args.extend(["--org", o]);
        }
        cli_ok(&self.cli(&args));
        let out = cli_ok(&self.cli(&["token", "create", "--account", name, "--json"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    /// The server's peak resident memory so far, in bytes (VmHWM).
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An enrolled device speaking the agent protocol.
#[derive(Clone)]
pub struct Agent {
    pub client: Client,
    pub archive: String,
    pub device: String,
    pub token: String,
}

impl Agent {
    /// The same device on a new connection (after a server restart).
    pub async fn reconnect(&self, server: &TestServer) -> Agent {
        Agent {
            client: server.client().await.with_token(&self.token),
            ..self.clone()
        }
    }

    pub async fn put(&self, body: &[u8]) -> ClientResponse {
        let id = BlockId::of(body);
        self.client
            .put(
                &paths::block(&self.archive, &id.to_hex()),
                Bytes::copy_from_slice(body),
            )
            .await
            .unwrap()
    }

    pub async fn put_in(&self, session: &str, body: &[u8]) -> ClientResponse {
        let id = BlockId::of(body);
        self.client
            .send(
                http::Method::PUT,
                &paths::block(&self.archive, &id.to_hex()),
                &[("coffer-session", session)],
                Bytes::copy_from_slice(body),
            )
            .await
            .unwrap()
    }

    pub async fn get(&self, id: &BlockId) -> ClientResponse {
        self.client
            .get(&paths::block(&self.archive, &id.to_hex()))
            .await
            .unwrap()
    }

    /// GET a block with a `Range` header.
    pub async fn get_range(&self, id: &BlockId, range: &str) -> ClientResponse {
        let path = paths::block(&self.archive, &id.to_hex());
        self.client
            .send(http::Method::GET, &path, &[("range", range)], Bytes::new())
            .await
            .unwrap()
    }

    pub async fn open_session(&self) -> String {
        let r = self
            .client
            .post_json(&paths::sessions(&self.archive), &json!({}))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "open session: {r:?}");
        r.json::<SessionInfo>().unwrap().session.to_string()
    }

    pub async fn commit(
        &self,
        session: &str,
        manifest: &BlockId,
        blocks: &[BlockId],
        percent: f64,
    ) -> ClientResponse {
        self.client
            .post_json(
                &paths::session_commit(&self.archive, session),
                &json!({"manifest": manifest, "blocks": blocks, "stats": {"files": blocks.len(), "bytes": 0, "percent": percent}}),
            )
            .await
            .unwrap()
    }
}

/// A command's stdout, after checking it succeeded.
#[track_caller]
/// Edits a stopped server's metadata behind its back with a raw sled handle,
/// then waits (bounded: 5 s) until sled's background threads have let go of
/// the database lock, so the next open (this process or a server) gets it.
pub fn edit_sled(meta: &Path, edit: impl FnOnce(&sled::Db)) {
    {
        let db = sled::Config::new()
            .path(meta)
            .flush_every_ms(None)
            .open()
            .unwrap();
        edit(&db);
        db.flush().unwrap();
    }
    let lock = std::fs::File::open(meta.join("db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        use rustix::fs::{flock, FlockOperation};
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
            flock(&lock, FlockOperation::Unlock).unwrap();
            return;
        }
        assert!(Instant::now() < deadline, "sled kept its lock for 5 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn cli_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The error code of an error answer.
pub fn code(r: &ClientResponse) -> String {
    r.error()
        .map(|e| e.error.code.to_string())
        .unwrap_or_else(|| format!("<no error body: {}>", String::from_utf8_lossy(&r.body)))
}

/// Assert an error answer: its status, its code, and that its message says
/// `says`.
#[track_caller]
pub fn assert_refused(r: &ClientResponse, status: u16, error_code: &str, says: &str) {
    assert_eq!(
        (r.status, code(r)),
        (status, error_code.to_owned()),
        "{r:?}"
    );
    let message = r.error().map(|e| e.error.message).unwrap_or_default();
    assert!(
        message.contains(says),
        "the message {message:?} does not say {says:?}"
    );
}

// ---- a real S3-compatible server ----

/// s3s-fs on loopback, with a bucket, stopped on drop.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub bucket: String,
    _root: tempfile::TempDir,
}

pub const S3_KEY: &str = "coffer-test";
pub const S3_SECRET: &str = "coffer-test-secret";

static INSTALL: Mutex<()> = Mutex::new(());

/// Where the harness installs the tools it needs.
fn tools_dir() -> PathBuf {
    match std::env::var("COFFER_TOOLS_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => Path::new(&std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
            .join(".cache/coffer-tools"),
    }
}

/// A Python 3 with pip: `python3` if it has pip, else pip bootstrapped with
/// `ensurepip`, else (as root, with apt-get) Debian's `python3-pip`.
/// Otherwise a sentence saying what to install.
fn python_with_pip() {
    let has_pip = || {
        Command::new("python3")
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_pip() {
        return;
    }
    let _ = Command::new("python3")
        .args(["-m", "ensurepip", "--upgrade"])
        .output();
    if !has_pip() && rustix::process::geteuid().is_root() && which("apt-get") {
        eprintln!("python3 with pip is missing: installing Debian's python3 and python3-pip");
        let _ = Command::new("apt-get").arg("update").output();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "python3", "python3-pip"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
    }
    assert!(
        has_pip(),
        "the Python plugin test needs python3 with pip, and neither `python3 -m pip` nor \
         `python3 -m ensurepip` works here: install them (Debian: apt-get install python3 \
         python3-pip)"
    );
}

/// Whether `cmd` is on PATH.
fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// componentize-py 0.25.1 (the version whose WASI matches wasmtime 48),
/// installed from PyPI with pip under the tools directory on first use.
/// Returns the command to run it (a `python3` with the right `PYTHONPATH`).
pub fn componentize_py() -> Command {
    let dir = pip_install("componentize-py==0.25.1", "componentize_py");
    let mut c = Command::new("python3");
    c.env("PYTHONPATH", &dir)
        .args(["-c", "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())"]);
    c
}

/// The s3s-fs version the tests run (newer releases need rustc 1.96).
const S3S_FS: &str = "s3s-fs@0.14.1";

/// The s3s-fs binary: `$COFFER_S3S_FS`, or the copy the harness installs
/// under `$COFFER_TOOLS_DIR` (default `~/.cache/coffer-tools`), in a
/// directory named for its version, with `cargo install` on first use.
pub fn s3s_fs_binary() -> PathBuf {
    if let Ok(p) = std::env::var("COFFER_S3S_FS") {
        return PathBuf::from(p);
    }
    let root = tools_dir().join(S3S_FS.replace('@', "-"));
    let bin = root.join("bin/s3s-fs");
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args([
                "install",
                S3S_FS,
                "--locked",
                "--features",
                "binary",
                "--root",
            ])
            .arg(&root)
            .status()
            .expect("run cargo install s3s-fs");
        assert!(
            st.success(),
            "cargo install {S3S_FS} failed (it builds from crates.io); install it yourself \
             and set COFFER_S3S_FS to the binary"
        );
    }
    bin
}

impl S3Server {
    pub fn start() -> Self {
        let bin = s3s_fs_binary();
        let root = tempfile::tempdir().unwrap();
        let bucket = "coffer".to_string();
        std::fs::create_dir_all(root.path().join(&bucket)).unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&bin)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--access-key",
                    S3_KEY,
                    "--secret-key",
                    S3_SECRET,
                ])
                .arg(root.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn s3s-fs");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                        bucket,
                        _root: root,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // port taken: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs did not start");
    }

    /// The S3 server's own directory (buckets, and multipart uploads in
    /// progress as `.upload-*` files).
    pub fn root(&self) -> &Path {
        self._root.path()
    }

    /// Stop the S3 server (to test an unreachable backend).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Server environment for the S3 backend.
    pub fn server_env(&self, opts: Opts) -> Opts {
        opts.env("COFFER__STORAGE__BACKEND", "s3")
            .env("COFFER__STORAGE__S3__BUCKET", &self.bucket)
            .env("COFFER__STORAGE__S3__ENDPOINT", &self.endpoint)
            .env("COFFER__STORAGE__S3__ALLOW_HTTP", "true")
            .env("COFFER__STORAGE__S3__ACCESS_KEY_ID", S3_KEY)
            .env("COFFER__STORAGE__S3__SECRET_ACCESS_KEY", S3_SECRET)
            .env("COFFER__STORAGE__S3__MAX_RETRIES", "1")
            .env("COFFER__STORAGE__S3__RETRY_TIMEOUT_SECS", "2")
            .env("COFFER__STORAGE__S3__REQUEST_TIMEOUT_SECS", "5")
    }

    pub fn storage_config(&self) -> coffer_storage::StorageConfig {
        coffer_storage::StorageConfig {
            backend: coffer_storage::Backend::S3,
            path: None,
            reserve_bytes: 0,
            pack_max_block_bytes: 0,
            s3: Some(coffer_storage::S3Config {
                bucket: self.bucket.clone(),
                endpoint: Some(self.endpoint.clone()),
                region: "us-east-1".into(),
                access_key_id: Some(S3_KEY.into()),
                secret_access_key: Some(S3_SECRET.into()),
                path_style: true,
                allow_http: true,
                prefix: Some("conformance".into()),
                max_retries: 2,
                retry_timeout_secs: 5,
                request_timeout_secs: 10,
                part_size: 8 << 20,
                max_concurrent_uploads: 8,
            }),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The aiosmtpd version the mail tests run.
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// A real SMTP server on loopback (aiosmtpd, installed from PyPI with pip
/// under the tools directory on first use), keeping what it receives in a
/// Maildir.
pub struct SmtpServer {
    child: Option<Child>,
    pub port: u16,
    maildir: tempfile::TempDir,
    /// With TLS: its certificate (for `localhost`), and whether TLS starts
    /// at the first byte (SMTPS) rather than with STARTTLS.
    tls: Option<(PathBuf, PathBuf, bool)>,
}

/// One message as the SMTP server stored it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub headers: Vec<(String, String)>,
    pub raw: String,
}

impl ReceivedMail {
    /// The whole message with quoted-printable undone (soft line breaks
    /// joined, `=XX` decoded), to search its parts' text.
    pub fn decoded(&self) -> String {
        let joined = self.raw.replace("=\r\n", "").replace("=\n", "");
        let b = joined.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' && i + 2 < b.len() {
                if let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The first header named `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `spec` (`name==version`) installed from PyPI with pip into a directory
/// of the tools directory named for it, on first use (when `module` is not
/// there yet); the directory, for `PYTHONPATH`.
fn pip_install(spec: &str, module: &str) -> PathBuf {
    let dir = tools_dir().join(spec.replace("==", "-"));
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join(module).exists() {
        python_with_pip();
        let st = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg(spec)
            .status()
            .expect("run python3 -m pip");
        assert!(
            st.success(),
            "pip install {spec} into {} failed (it downloads from PyPI)",
            dir.display()
        );
    }
    dir
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::launch(tempfile::tempdir().unwrap(), None)
    }

    /// The same with TLS under a self-signed certificate for `localhost`:
    /// STARTTLS required, or (`implicit`) TLS from the first byte.
    pub fn start_tls(implicit: bool) -> Self {
        let maildir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = maildir.path().join("cert.pem");
        let key = maildir.path().join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        Self::launch(maildir, Some((cert, key, implicit)))
    }

    fn launch(maildir: tempfile::TempDir, tls: Option<(PathBuf, PathBuf, bool)>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Self {
            child: None,
            port,
            maildir,
            tls,
        };
        s.resume();
        s
    }

    /// Stop answering (connections are refused) until [`SmtpServer::resume`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start (again) on the same port and Maildir.
    pub fn resume(&mut self) {
        let dir = pip_install(AIOSMTPD, "aiosmtpd");
        let mut cmd = Command::new("python3");
        cmd.env("PYTHONPATH", &dir)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port));
        match &self.tls {
            Some((cert, key, false)) => {
                cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
            }
            Some((cert, key, true)) => {
                cmd.arg("--smtpscert").arg(cert).arg("--smtpskey").arg(key);
            }
            None => {}
        }
        let mut child = cmd
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            // A Maildir that does not exist yet: aiosmtpd makes it whole.
            .arg(self.maildir.path().join("box"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn aiosmtpd");
        let implicit = matches!(self.tls, Some((_, _, true)));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                // Ready once it greets (over TLS it waits for a handshake:
                // accepting the connection is as far as we look).
                let mut b = [0u8; 3];
                if implicit || (std::io::Read::read_exact(&mut c, &mut b).is_ok() && &b == b"220") {
                    self.child = Some(child);
                    return;
                }
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!("aiosmtpd exited at start: {st}");
            }
            // (Not started yet: try again.)
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not start on port {}", self.port);
    }

    /// Server environment for mail through this server (plain SMTP, or
    /// its TLS mode to `localhost`, trusting its certificate).
    pub fn server_env(&self, opts: Opts) -> Opts {
        let opts = opts
            .env("COFFER__MAIL__PORT", self.port)
            .env("COFFER__MAIL__FROM", "Coffer <coffer@coffer.test>")
            .env("COFFER__MAIL__TIMEOUT_SECS", 5);
        match &self.tls {
            None => opts
                .env("COFFER__MAIL__HOST", "127.0.0.1")
                .env("COFFER__MAIL__TLS", "none"),
            Some((cert, _, implicit)) => opts
                .env("COFFER__MAIL__HOST", "localhost")
                .env(
                    "COFFER__MAIL__TLS",
                    if *implicit { "tls" } else { "starttls" },
                )
                .env("COFFER__MAIL__CA_FILE", cert.display()),
        }
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|d| std::fs::read_dir(self.maildir.path().join("box").join(d)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .into_iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|raw| {
                let mut headers: Vec<(String, String)> = Vec::new();
                for line in raw.lines() {
                    if line.is_empty() {
                        break;
                    }
                    if line.starts_with([' ', '\t']) {
                        if let Some(last) = headers.last_mut() {
                            last.1.push(' ');
                            last.1.push_str(line.trim());
                        }
                    } else if let Some((k, v)) = line.split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                ReceivedMail { headers, raw }
            })
            .collect()
    }

    /// Wait (at most `timeout`) until `n` messages arrived; them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
