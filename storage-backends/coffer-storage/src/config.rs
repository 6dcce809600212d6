//! Storage configuration: which backend and its settings. Parsed as the
//! `[storage]` table of the server's config file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which backend holds the blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Files under a directory on local disk (default: `DATA_DIR/blocks`).
    #[default]
    Disk,
    /// An S3 bucket or an S3-compatible server.
    S3,
    /// Process memory: lost at exit. For tests and demos only.
    Memory,
}

/// The `[storage]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `disk` (default), `s3` or `memory`.
    #[serde(default)]
    pub backend: Backend,
    /// With `disk`: where blocks go. Default: `DATA_DIR/blocks`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Refuse new blocks (507 `storage_full`) while the disk holding the blocks
    /// or the upload spool has less than this many bytes free, so metadata and
    /// reads keep working. Default 256 MiB.
    #[serde(default = "default_reserve")]
    pub reserve_bytes: u64,
    /// With `disk`: blocks of at most this many bytes are appended to pack
    /// files, many per flush, instead of one file each. 0 turns packing off.
    /// Default 131072 (128 KiB).
    #[serde(default = "default_pack_max")]
    pub pack_max_block_bytes: u64,
    /// With `s3`: the bucket settings.
    #[serde(default)]
    pub s3: Option<S3Config>,
}

fn default_pack_max() -> u64 {
    128 << 10
}

fn default_reserve() -> u64 {
    256 << 20
}

/// The `[storage.s3]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name (must exist).
    pub bucket: String,
    /// Endpoint URL for S3-compatible servers, e.g. `http://127.0.0.1:9000`.
    /// Unset: AWS's endpoint for the region.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region; S3-compatible servers usually accept `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id. Unset: `AWS_ACCESS_KEY_ID` and the usual AWS chain.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key. Unset: `AWS_SECRET_ACCESS_KEY` and the usual chain.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// S3-compatible servers need. Default true.
    #[serde(default = "yes")]
    pub path_style: bool,
    /// Allow a plain `http://` endpoint. Default false.
    #[serde(default)]
    pub allow_http: bool,
    /// Key prefix inside the bucket, so several deployments can share one.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Retries of a failed request (5xx, throttling, connection errors),
    /// with exponential backoff. Default 5.
    #[serde(default = "default_retries")]
    pub max_retries: usize,
    /// Give up retrying a request after this many seconds. Default 30.
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout_secs: u64,
    /// Timeout of one HTTP request to S3, in seconds. Default 60.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Blocks above this size are uploaded in parts of this size (at least
    /// 5 MiB, S3's minimum part). Default 8 MiB.
    #[serde(default = "default_part_size")]
    pub part_size: usize,
    /// At most this many block uploads to S3 run at once; further ones wait,
    /// which bounds the memory spent on upload buffers. Default 32.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_uploads: usize,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn yes() -> bool {
    true
}
fn default_retries() -> usize {
    5
}
fn default_retry_timeout() -> u64 {
    30
}
fn default_request_timeout() -> u64 {
    60
}
fn default_part_size() -> usize {
    8 << 20
}
fn default_concurrency() -> usize {
    32
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            path: None,
            reserve_bytes: default_reserve(),
            pack_max_block_bytes: default_pack_max(),
            s3: None,
        }
    }
}

impl StorageConfig {
    /// Check the settings without touching the backend; the error names the
    /// key at fault.
    pub fn validate(&self) -> Result<(), String> {
        match (self.backend, &self.s3) {
            (Backend::S3, None) => {
                return Err(
                    "storage.backend is \"s3\" but there is no [storage.s3] table with a bucket"
                        .into(),
                )
            }
            (Backend::Disk | Backend::Memory, Some(_)) => {
                return Err("storage.s3 is set but storage.backend is not \"s3\"".into())
            }
            _ => {}
        }
        if self.backend != Backend::Disk && self.path.is_some() {
            return Err("storage.path applies only to the \"disk\" backend".into());
        }
        if self.pack_max_block_bytes > 256 << 10 {
            return Err(format!(
                "storage.pack_max_block_bytes is {}; at most 262144 (256 KiB) is packed",
                self.pack_max_block_bytes
            ));
        }
        if let Some(s3) = &self.s3 {
            if s3.bucket.is_empty() {
                return Err("storage.s3.bucket must not be empty".into());
            }
            if let Some(ep) = &s3.endpoint {
                if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                    return Err(format!(
                        "storage.s3.endpoint {ep:?} must start with http:// or https://"
                    ));
                }
                if ep.starts_with("http://") && !s3.allow_http {
                    return Err(format!("storage.s3.endpoint {ep:?} is plain http; set storage.s3.allow_http = true to allow it"));
                }
            }
            if s3.part_size < 5 << 20 {
                return Err(format!(
                    "storage.s3.part_size is {} bytes; S3 needs at least 5 MiB (5242880)",
                    s3.part_size
                ));
            }
            if s3.max_concurrent_uploads == 0 {
                return Err("storage.s3.max_concurrent_uploads must be at least 1".into());
            }
        }
        Ok(())
    }
}
