//! An integration plugin that probes the sandbox's edges (`action`
//! setting), for the host's tests. Answers come back as plugin errors so the
//! test can read them.

use coffer_plugin_sdk::integration::{
    export, http_client, kv, CallContext, Event, Guest, PluginError,
};

struct Prober;

impl Guest for Prober {
    fn on_events(ctx: CallContext, events: Vec<Event>) -> Result<(), PluginError> {
        match ctx.config("action").unwrap_or("none") {
            // Aim at `url` while claiming to be `host`.
            "steer" => {
                let r = http_client::send(&http_client::Request {
                    method: "GET".into(),
                    url: ctx.config("url").unwrap_or_default().into(),
                    headers: vec![("Host".into(), ctx.config("host").unwrap_or_default().into())],
                    body: vec![],
                });
                Err(PluginError::new(
                    "steer",
                    match r {
                        Ok(resp) => format!("sent: {}", resp.status),
                        Err(e) => format!("denied: {e}"),
                    },
                ))
            }
            "kv-write" => {
                kv::set("secret", format!("written by {}", ctx.plugin).as_bytes())
                    .map_err(|e| PluginError::new("kv", e))?;
                Ok(())
            }
            "kv-read" => Err(PluginError::new(
                "kv",
                match kv::get("secret") {
                    Some(v) => format!("found: {}", String::from_utf8_lossy(&v)),
                    None => format!("nothing; keys: {:?}", kv::list_keys("")),
                },
            )),
            // One request to `url` per batch (slow if the server is slow).
            "post" if !events.is_empty() => {
                let r = http_client::send(&http_client::Request {
                    method: "POST".into(),
                    url: ctx.config("url").unwrap_or_default().into(),
                    headers: vec![],
                    body: format!("{} events", events.len()).into_bytes(),
                })
                .map_err(|e| PluginError::new("http", e))?;
                if r.status >= 300 {
                    return Err(PluginError::new("http", format!("status {}", r.status)));
                }
                Ok(())
            }
            // Busy until stopped, once there are events (the smoke call
            // passes none).
            "slow" if !events.is_empty() => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(3).wrapping_add(1));
                }
            }
            _ => Ok(()),
        }
    }
}

export!(Prober);
