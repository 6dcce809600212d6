//! JSON bodies of the agent protocol (`/v1/…`) and the admin API
//! (`/admin/v1/…`). `docs/protocol.md` documents them with examples; a change
//! here is a protocol change.

use serde::{Deserialize, Serialize};

use crate::{BlockId, ErrorCode, Name, UnixMillis};

/// Every error answer: `{"error": {"code": "…", "message": "…"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// A sentence for a person.
    pub message: String,
    /// Whether the same request may succeed if sent again later.
    pub retryable: bool,
    /// With `missing_blocks`: the ids the archive does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<BlockId>>,
}

/// `PUT /v1/archives/{archive}/blocks/{id}` answer (201 stored, 200 present).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutBlockResponse {
    pub id: BlockId,
    pub size: u64,
    /// True when this request stored the block, false when it was present.
    pub created: bool,
}

/// `POST /v1/archives/{archive}/blocks/bundle`: several blocks in one
/// request, as records `id (32 bytes) | length (u32, little-endian) | bytes`.
/// A bundle's body is at most this many bytes.
pub const BUNDLE_MAX_BYTES: usize = 8 << 20;
/// A bundle holds at most this many blocks.
pub const BUNDLE_MAX_BLOCKS: usize = 1024;
/// Bytes before each block's own bytes in a bundle.
pub const BUNDLE_RECORD_HEADER: usize = 32 + 4;

/// `POST /v1/archives/{archive}/blocks/bundle` response: one answer per
/// block, in the bundle's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutBundleResponse {
    pub blocks: Vec<PutBlockResponse>,
}

/// `POST /v1/archives/{archive}/blocks/fetch` request: whole blocks to
/// read in one answer, at most [`BUNDLE_MAX_BLOCKS`] ids holding at most
/// [`BUNDLE_MAX_BYTES`]. The answer is records in the bundle format, in the
/// order asked; a block the archive does not hold has the length
/// [`FETCH_ABSENT`] and no bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    pub ids: Vec<BlockId>,
}

/// The length of a fetch record whose block the archive does not hold.
pub const FETCH_ABSENT: u32 = u32::MAX;

/// Append a record of a bundle or a fetch answer to `out`: `id | length |
/// bytes`, or for `None` the id and [`FETCH_ABSENT`].
pub fn push_record(out: &mut Vec<u8>, id: &BlockId, bytes: Option<&[u8]>) {
    out.extend_from_slice(id.as_bytes());
    match bytes {
        Some(b) => {
            let len = u32::try_from(b.len()).expect("a block is far below 4 GiB");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&FETCH_ABSENT.to_le_bytes()),
    }
}

/// The id and length of the record `buf` starts with; `None` if `buf` is
/// shorter than a record header.
pub fn record_header(buf: &[u8]) -> Option<(BlockId, u32)> {
    let h = buf.get(..BUNDLE_RECORD_HEADER)?;
    let id = BlockId::from_bytes(h[..32].try_into().expect("32 bytes"));
    Some((id, u32::from_le_bytes(h[32..].try_into().expect("4 bytes"))))
}

/// `POST /v1/archives/{archive}/blocks/missing` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingRequest {
    pub ids: Vec<BlockId>,
    /// An open session: the ids found present are pinned to it against GC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Name>,
}

/// `POST /v1/archives/{archive}/blocks/missing` answer: the subset of the ids
/// asked about that the archive does not hold, in the order asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissingResponse {
    pub missing: Vec<BlockId>,
}

/// The state of a backup session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Open,
    Committed,
    Aborted,
}

/// A backup session as the server sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session: Name,
    pub archive: Name,
    pub state: SessionState,
    pub opened_at: UnixMillis,
    /// Last server-stamped progress or block upload in this session.
    pub last_activity: UnixMillis,
    /// Percent of the selection completed, as last reported (0–100).
    pub percent: f64,
    pub bytes: u64,
    pub files: u64,
    /// Blocks uploaded or announced present in this session, pinned against GC
    /// while the session is open.
    pub pinned_blocks: u64,
    /// With `committed`: the backup this session produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Name>,
}

/// `POST /v1/archives/{archive}/sessions/{sid}/progress` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    /// Percent of the selection completed, 0–100.
    pub percent: f64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub files: u64,
}

/// What a backup covers, as the agent reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupStats {
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// Percent of the selection this backup completed, 0–100. A backup at
    /// 100 % counts as the device's last *completed* backup.
    #[serde(default = "hundred")]
    pub percent: f64,
}

fn hundred() -> f64 {
    100.0
}

/// `POST /v1/archives/{archive}/sessions/{sid}/commit` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// The block holding the (encrypted) manifest of this backup.
    pub manifest: BlockId,
    /// Every block the backup references (the manifest may be listed too).
    pub blocks: Vec<BlockId>,
    #[serde(default)]
    pub stats: BackupStats,
}

/// A committed backup: one restore point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupInfo {
    pub backup: Name,
    pub archive: Name,
    pub session: Name,
    /// Server-stamped time of the commit.
    pub committed_at: UnixMillis,
    pub manifest: BlockId,
    /// Distinct blocks referenced, the manifest included.
    pub block_count: u64,
    pub stats: BackupStats,
    /// With `GET …/backups/{id}`: the referenced blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<BlockId>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupList {
    pub backups: Vec<BackupInfo>,
}

/// `PUT /v1/archives/{archive}/refs/{name}` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRef {
    /// A block stored in the archive.
    pub block: BlockId,
}

/// A named reference of an archive to one of its blocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefInfo {
    pub name: Name,
    pub block: BlockId,
    pub updated_at: UnixMillis,
}

// ---- admin API ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    pub name: Name,
    #[serde(default)]
    pub parent: Option<Name>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrgInfo {
    pub name: Name,
    pub parent: Option<Name>,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrgList {
    pub orgs: Vec<OrgInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUser {
    pub org: Name,
    pub name: Name,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserInfo {
    pub org: Name,
    pub name: Name,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollDevice {
    pub org: Name,
    pub user: Name,
    /// A display name, e.g. the host name: 1 to 128 printable characters.
    pub name: String,
    #[serde(default)]
    pub os: Option<String>,
}

/// The answer to an enrollment or a token rotation. The token is shown once:
/// the server keeps only its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceToken {
    pub device: Name,
    pub archive: Name,
    pub token: String,
}

/// A device and the server-stamped health facts of its archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub device: Name,
    pub name: String,
    pub org: Name,
    pub user: Name,
    pub os: Option<String>,
    pub archive: Name,
    pub revoked: bool,
    pub enrolled_at: UnixMillis,
    /// Last request the device made with its token (session, progress, …).
    pub last_connection: Option<UnixMillis>,
    /// Agent version from the `User-Agent` of its last session.
    pub agent_version: Option<String>,
    pub bytes_stored: u64,
    pub block_count: u64,
    pub backup_count: u64,
    /// Last time any block or progress report arrived.
    pub last_activity: Option<UnixMillis>,
    /// Last commit that reported 100 % of the selection.
    pub last_completed: Option<UnixMillis>,
    /// Percent complete of the newest session or backup.
    pub percent_complete: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceList {
    pub devices: Vec<DeviceInfo>,
}

/// A plugin as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// reporter, retention or integration.
    pub world: String,
    /// Enabled by the operator (a suspended plugin is still enabled).
    pub enabled: bool,
    /// Organizations it serves (and their sub-organizations); `*` is all.
    pub orgs: Vec<String>,
    /// blake3 of the loaded component.
    pub digest: String,
    pub calls: u64,
    pub failures: u64,
    pub failures_in_a_row: u32,
    /// Seconds until a suspended plugin is tried again.
    pub suspended_for_secs: Option<u64>,
    pub last_error: Option<String>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    /// Integration plugins: events queued for it and dropped on a full queue.
    pub events_queued: u64,
    pub events_dropped: u64,
    /// Why the newest file in the plugins directory was not loaded (the
    /// previous version keeps running).
    pub load_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginList {
    pub plugins: Vec<PluginInfo>,
}

/// `POST /admin/v1/plugins/{name}/report`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunReport {
    /// The organization the report is for (the plugin sees its inventory).
    pub org: Name,
    #[serde(default)]
    pub params: Vec<(String, String)>,
    /// csv or json (for tables; documents pass through).
    #[serde(default = "json_format")]
    pub format: String,
}

fn json_format() -> String {
    "json".into()
}

/// `POST /v1/archives/{a}/sessions/{sid}/abort` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortRequest {
    /// Set when the backup failed (rather than being cancelled): why, in a
    /// sentence. Integrations receive a `session-failed` event with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_as_written() {
        let (a, b) = (BlockId::of(b"a"), BlockId::of(b"b"));
        let mut out = Vec::new();
        push_record(&mut out, &a, Some(b"hello"));
        push_record(&mut out, &b, None);
        assert_eq!(out.len(), 2 * BUNDLE_RECORD_HEADER + 5);
        assert_eq!(record_header(&out), Some((a, 5)));
        assert_eq!(
            &out[BUNDLE_RECORD_HEADER..BUNDLE_RECORD_HEADER + 5],
            b"hello"
        );
        let rest = &out[BUNDLE_RECORD_HEADER + 5..];
        assert_eq!(record_header(rest), Some((b, FETCH_ABSENT)));
        assert_eq!(record_header(&rest[..BUNDLE_RECORD_HEADER - 1]), None);
    }
}
