//! What the bench binaries share: a server process killed on drop, and one
//! enrolled bench device.

use std::process::Child;

use coffer_http::client::{Client, ClientTls};
use coffer_types::wire::DeviceToken;

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
