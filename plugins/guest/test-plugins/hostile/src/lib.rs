//! A retention plugin that misbehaves on request (`mode` setting), for the
//! host's hostile-plugin tests. Not an example to follow.

use coffer_plugin_sdk::retention::{
    export, log, Archive, BackupSummary, CallContext, Expiry, Guest, Plan, PluginError,
};

struct Hostile;

impl Guest for Hostile {
    fn plan(
        ctx: CallContext,
        archive: Archive,
        backups: Vec<BackupSummary>,
    ) -> Result<Plan, PluginError> {
        // An archive named `mode-X` picks the mode for one call.
        let mode = archive
            .id
            .strip_prefix("mode-")
            .or(ctx.config("mode"))
            .unwrap_or("ok");
        match mode {
            "ok" => Ok(Plan {
                expire: backups
                    .iter()
                    .map(|b| Expiry {
                        backup: b.id.clone(),
                        reason: "expire everything".into(),
                    })
                    .collect(),
            }),
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "trap" => panic!("deliberate trap"),
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 8 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "huge" => Ok(Plan {
                expire: (0..64)
                    .map(|i| Expiry {
                        backup: format!("bk_{i}"),
                        reason: "x".repeat(256 << 10),
                    })
                    .collect(),
            }),
            "chatty" => {
                for i in 0..10_000 {
                    log::log(log::Level::Info, &format!("line {i}"));
                }
                Ok(Plan { expire: vec![] })
            }
            "clock" => Err(PluginError::new(
                "clock",
                format!(
                    "{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                ),
            )),
            "env" => Err(PluginError::new(
                "env",
                format!(
                    "{} vars, root readable: {}",
                    std::env::vars().count(),
                    std::fs::read_dir("/").is_ok()
                ),
            )),
            m => Err(PluginError::new("bad_config", format!("unknown mode {m}"))),
        }
    }
}

export!(Hostile);
