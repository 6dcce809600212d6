//! What the bench binaries share: a server process killed on drop, and one
//! enrolled bench device.

use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use coffer_http::client::{Client, ClientTls};
use coffer_storage::conformance::block_bytes;
use coffer_types::wire::DeviceToken;
use coffer_types::BlockId;

/// A child process, killed and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Create org `bench`, user `bench` and a device through the admin API of
/// the server at `url` (the typed client); return a connection carrying the
/// device's token, for raw requests built with `coffer_client::paths`, and
/// the token.
pub async fn enroll_device(
    url: &str,
    tls: &ClientTls,
    admin_token: &str,
) -> anyhow::Result<(Client, DeviceToken)> {
    let admin = coffer_client::Client::connect(url, tls)
        .await?
        .with_token(admin_token.trim());
    let t = coffer_client::enroll(&admin, "bench", "bench", "bench").await?;
    let client = Client::connect(url, tls).await?.with_token(&t.token);
    Ok((client, t))
}

/// `coffer serve` over h2c on a free loopback port, on `data_dir`.
pub fn serve_h2c(coffer: &std::path::Path, data_dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(coffer);
    cmd.args([
        "serve",
        "--insecure-h2c",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(data_dir);
    cmd
}

/// Start a configured `coffer serve` (stdout is piped here, stderr
/// inherited) and wait for its `listening on URL` line: the server, killed
/// on drop, and its URL.
pub fn spawn_server(mut cmd: std::process::Command) -> anyhow::Result<(Proc, String)> {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("start {:?}: {e}", cmd.get_program()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let proc = Proc(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    match line.trim().strip_prefix("listening on ") {
        Some(url) => Ok((proc, url.to_string())),
        None => anyhow::bail!("server did not start: {line:?}"),
    }
}

/// The `p`-quantile (0..=1) of `v`, in the unit of `v`.
pub fn quantile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Distinct incompressible blocks, like client-side-encrypted data, with
/// their ids (computed here, outside any timed section).
pub fn make_blocks(size: usize, n: usize, seed: &mut u64) -> Vec<(String, Bytes)> {
    let out = (0..n)
        .map(|i| {
            let b = Bytes::from(block_bytes(*seed + i as u64, size));
            (BlockId::of(&b).to_hex(), b)
        })
        .collect();
    *seed += n as u64;
    out
}

/// Upload `blocks` to `archive` over `streams` concurrent requests; each
/// upload's latency in seconds.
pub async fn upload(
    client: &Client,
    archive: &str,
    blocks: Arc<Vec<(String, Bytes)>>,
    streams: usize,
) -> anyhow::Result<Vec<f64>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (client, blocks, next, archive) = (
            client.clone(),
            blocks.clone(),
            next.clone(),
            archive.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, b)) = blocks.get(i) else {
                    return anyhow::Ok(lat);
                };
                let path = coffer_client::paths::block(&archive, id);
                let t = Instant::now();
                let r = client.put(&path, b.clone()).await?;
                if r.status != 201 {
                    anyhow::bail!(
                        "upload answered {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                }
                lat.push(t.elapsed().as_secs_f64());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}
