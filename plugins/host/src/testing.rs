//! Building the plugins of `plugins/guest` from source, for tests and
//! benchmarks: `cargo build --release --target wasm32-wasip2` in that
//! workspace, once per process, after `plugins/guest/ensure-target` has
//! added the target to the toolchain if a fresh machine lacks it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's `plugins/guest` workspace.
pub fn guest_workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest")
}

/// Build every guest (once per process) and return the directory holding
/// the `.wasm` components. The build uses its own target directory beside
/// the caller's, so it never waits on the outer cargo's lock.
pub fn build_guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build("guest-wasm", &[]))
}

/// The examples that existed at `coffer:plugin@0.1.0` (webhook,
/// gfs-retention, csv-report), built against that version
/// (`wit/v0.1.0/`): what a partner's plugin built before 0.2.0 is.
pub fn build_guests_v0_1() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_examples_as("0-1"))
}

/// The same examples built against `coffer:plugin@0.2.0` (`wit/v0.2.0/`):
/// what a plugin built before 0.3.0 is.
pub fn build_guests_v0_2() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_examples_as("0-2"))
}

/// The examples built with the SDK's feature `contract-VERSION`, in a
/// target directory of their own (`guest-wasm-0.1`, …, as CI's clippy).
fn build_examples_as(version: &str) -> PathBuf {
    build(
        &format!("guest-wasm-{}", version.replace('-', ".")),
        &[
            "-p",
            "webhook",
            "-p",
            "gfs-retention",
            "-p",
            "csv-report",
            "--features",
            &format!("webhook/contract-{version}"),
        ],
    )
}

fn build(dir: &str, args: &[&str]) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/<profile>/deps/<test> or target/<profile>/<bin>
            std::env::current_exe()
                .ok()
                .and_then(|e| {
                    let up = if e.parent()?.ends_with("deps") { 3 } else { 2 };
                    e.ancestors().nth(up).map(Path::to_path_buf)
                })
                .unwrap_or_else(|| guest_workspace().join("target"))
        })
        .join(dir);
    ensure_target();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(guest_workspace())
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(args)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo to build the guest plugins");
    assert!(
        out.status.success(),
        "building plugins/guest for wasm32-wasip2 failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("wasm32-wasip2/release")
}

/// Add the `wasm32-wasip2` target when the toolchain lacks it (the script
/// says what to run when it cannot).
fn ensure_target() {
    let script = guest_workspace().join("ensure-target");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "the guest plugins need the wasm32-wasip2 target, and it could not be installed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A guest component's bytes and its manifest text, by crate name (e.g.
/// `gfs-retention`).
pub fn guest(name: &str) -> (Vec<u8>, String) {
    guest_in(build_guests(), name)
}

/// The same, built against `coffer:plugin@0.1.0` ([`build_guests_v0_1`]).
pub fn guest_v0_1(name: &str) -> (Vec<u8>, String) {
    guest_in(build_guests_v0_1(), name)
}

/// The same, built against `coffer:plugin@0.2.0` ([`build_guests_v0_2`]).
pub fn guest_v0_2(name: &str) -> (Vec<u8>, String) {
    guest_in(build_guests_v0_2(), name)
}

fn guest_in(dir: &Path, name: &str) -> (Vec<u8>, String) {
    let wasm = dir.join(format!("{}.wasm", name.replace('-', "_")));
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
    let ws = guest_workspace();
    let manifest = [
        ws.join("examples").join(name),
        ws.join("test-plugins").join(name),
    ]
    .into_iter()
    .chain((name == "plugin-template").then(|| ws.join("template")))
    .map(|d| d.join("plugin.toml"))
    .find(|p| p.exists())
    .unwrap_or_else(|| panic!("no plugin.toml for {name}"));
    (bytes, std::fs::read_to_string(manifest).unwrap())
}
