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
/// the server at `url`; return the device's client and token.
pub async fn enroll_device(
    url: &str,
    tls: &ClientTls,
    admin_token: &str,
) -> anyhow::Result<(Client, DeviceToken)> {
    let admin = Client::connect(url, tls)
        .await?
        .with_token(admin_token.trim());
    admin
        .post_json("/admin/v1/orgs", &serde_json::json!({"name": "bench"}))
        .await?;
    admin
        .post_json(
            "/admin/v1/users",
            &serde_json::json!({"org": "bench", "name": "bench"}),
        )
        .await?;
    let t: DeviceToken = admin
        .post_json(
            "/admin/v1/devices",
            &serde_json::json!({"org": "bench", "user": "bench", "name": "bench"}),
        )
        .await?
        .json()?;
    let client = Client::connect(url, tls).await?.with_token(&t.token);
    Ok((client, t))
}
