//! JSON bodies of the agent protocol (`/v1/…`) and the admin API
//! (`/admin/v1/…`). `docs/protocol.md` documents them with examples; a change
//! here is a protocol change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{BlockId, ErrorCode, Name, Role, UnixMillis};

/// Every error answer: `{"error": {"code": "…", "message": "…"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PutBundleResponse {
    pub blocks: Vec<PutBlockResponse>,
}

/// `POST /v1/archives/{archive}/blocks/fetch` request: whole blocks to
/// read in one answer, at most [`BUNDLE_MAX_BLOCKS`] ids holding at most
/// [`BUNDLE_MAX_BYTES`]. The answer is records in the bundle format, in the
/// order asked; a block the archive does not hold has the length
/// [`FETCH_ABSENT`] and no bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    #[serde(deserialize_with = "at_most::<_, BUNDLE_MAX_BLOCKS>")]
    pub ids: Vec<BlockId>,
}

/// A list of at most `N` items, refused by the parser at item `N + 1`, so a
/// long list costs no more than a short one to turn down.
pub fn at_most<'de, D, const N: usize>(d: D) -> Result<Vec<BlockId>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Bounded<const N: usize>;
    impl<'de, const N: usize> serde::de::Visitor<'de> for Bounded<N> {
        type Value = Vec<BlockId>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a list of at most {N} block ids")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N));
            while let Some(id) = seq.next_element()? {
                if v.len() == N {
                    return Err(serde::de::Error::custom(format_args!(
                        "more than {N} block ids; ask for at most {N} at a time"
                    )));
                }
                v.push(id);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(Bounded::<N>)
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MissingResponse {
    pub missing: Vec<BlockId>,
}

/// The state of a backup session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Open,
    Committed,
    Aborted,
}

/// A backup session as the server sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Referenced blocks whose stored copy was found damaged (by a read or
    /// the scrub) and not yet healed by a new upload: while above 0 the
    /// backup cannot be fully restored.
    #[serde(default)]
    pub damaged_blocks: u64,
    /// With `GET …/backups/{id}`: the referenced blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<BlockId>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupList {
    pub backups: Vec<BackupInfo>,
}

/// `PUT /v1/archives/{archive}/refs/{name}` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetRef {
    /// A block stored in the archive.
    pub block: BlockId,
}

/// A named reference of an archive to one of its blocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefInfo {
    pub name: Name,
    pub block: BlockId,
    pub updated_at: UnixMillis,
}

// ---- admin API ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    pub name: Name,
    #[serde(default)]
    pub parent: Option<Name>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgInfo {
    pub name: Name,
    pub parent: Option<Name>,
    pub created_at: UnixMillis,
}

/// One effective org setting: its stored value (durations in seconds,
/// sizes in bytes), the same as a person writes it, and where it comes from
/// (the org that holds it, or `"default"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingValue {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub value: serde_json::Value,
    pub text: String,
    pub from: String,
    /// Device defaults: how the value reaches devices (`save`, `push`,
    /// `lock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Device defaults: when the value in force was pushed or locked (the
    /// version devices apply once), 0 when it was only saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Device defaults: the org that locked it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
}

/// `GET /v1/settings`: the device defaults a device applies, each with
/// whether it is locked (and by which org), and a version that grows with
/// every push or lock that reaches the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceSettings {
    pub device: Name,
    pub org: Name,
    /// The newest `pushed_at` of its values.
    pub version: u64,
    pub values: std::collections::BTreeMap<String, DeviceSetting>,
    /// The archive security in force for the device, and its escrow.
    /// Absent from servers before key escrow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<DeviceSecurity>,
}

/// The part of `security` an agent acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceSecurity {
    /// `standard` or `enhanced`.
    pub archive_security: String,
    /// The escrow public key in force (`coffer-escrow-v1:…`), under
    /// standard security; the agent seals its archive key to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow_public_key: Option<String>,
    /// The public key the archive's escrowed key is sealed to, if the
    /// server holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrowed_to: Option<String>,
}

/// The prefix of an escrow public key's text: `coffer-escrow-v1:` and 64
/// lowercase hex digits (an X25519 public key).
pub const ESCROW_PUBLIC_KEY_PREFIX: &str = "coffer-escrow-v1:";

/// The most bytes a sealed archive key may take.
pub const ESCROW_SEALED_MAX: usize = 1024;

/// `PUT /v1/archives/{archive}/escrow`: the archive key sealed to the
/// escrow public key (an X25519 sealed box the server cannot open), and
/// that key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EscrowUpload {
    pub public_key: String,
    /// The sealed box, in hex.
    pub sealed: String,
}

/// `GET /v1/archives/{archive}/escrow`: the archive's escrowed key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EscrowInfo {
    pub archive: Name,
    pub public_key: String,
    /// The sealed box, in hex.
    pub sealed: String,
    pub stored_at: UnixMillis,
}

/// One device default for a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceSetting {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub value: serde_json::Value,
    pub text: String,
    /// The org whose value it is, or `"default"`.
    pub from: String,
    /// Locked: the agent refuses any local choice that contradicts it.
    pub locked: bool,
    /// The org that locked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
    /// When it was pushed or locked (0: saved only). An agent applies a
    /// pushed value over its local choice once per `pushed_at`.
    pub pushed_at: u64,
}

/// One settings group of an org: whether it inherits it, and the values
/// in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingsGroupInfo {
    pub inherit: bool,
    pub values: std::collections::BTreeMap<String, SettingValue>,
}

/// `GET /admin/v1/orgs/{org}/settings`: every group of the org.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgSettingsInfo {
    pub org: Name,
    pub groups: std::collections::BTreeMap<String, SettingsGroupInfo>,
    /// What the org's subtree stores against its quotas.
    #[serde(default)]
    pub usage: QuotaUsage,
}

/// An org's storage use against the quotas in effect for it (0 = none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaUsage {
    /// Bytes stored by the org and the orgs below it, after dedupe.
    pub bytes_stored: u64,
    pub org_bytes: u64,
    pub user_bytes: u64,
    pub device_bytes: u64,
    /// Scopes of its subtree at or over their warning level
    /// (`quotas.warn_at`).
    pub warnings: Vec<QuotaWarning>,
}

/// A device, user or org whose usage reached the warning level of its quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaWarning {
    /// `org:acme`, `user:acme/ann` or `device:dv_…`.
    pub scope: String,
    /// Bytes stored when the level was reached.
    pub used: u64,
    pub quota: u64,
    pub at: UnixMillis,
}

/// `PATCH /admin/v1/orgs/{org}/settings`: values of one group, each as a
/// person writes it (`"3d"`, `"500GiB"`) or as stored (a number, a list).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetOrgSettings {
    pub group: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub values: std::collections::BTreeMap<String, serde_json::Value>,
    /// Device defaults only: `save` (the default), `push` or `lock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `PUT /admin/v1/orgs/{org}/settings/{group}/inherit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetInherit {
    pub inherit: bool,
}

/// An org's own value that a change dropped (turning inheritance back on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DroppedSetting {
    pub key: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub value: serde_json::Value,
    pub text: String,
}

/// The answer to a settings change: the org's settings after it, whether
/// the change first turned the group's inheritance off (setting a value of
/// an inherited group does), and the own values it dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgSettingsChange {
    pub settings: OrgSettingsInfo,
    pub inheritance_turned_off: bool,
    pub dropped: Vec<DroppedSetting>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgList {
    pub orgs: Vec<OrgInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddUser {
    pub org: Name,
    pub name: Name,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    pub org: Name,
    pub name: Name,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    pub users: Vec<UserInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceToken {
    pub device: Name,
    pub archive: Name,
    pub token: String,
}

/// `POST /admin/v1/devices/{device}/restore-token`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IssueRestoreToken {
    /// How long the token works (`"1h"`, `"90s"`; default 1h, at most 7d).
    #[serde(default)]
    pub expires: Option<String>,
}

/// A restore token: lists and reads the one archive, never writes, until
/// `expires_at`. Shown once: the server keeps only its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestoreToken {
    /// Names the token in the audit log.
    pub id: Name,
    pub device: Name,
    pub archive: Name,
    pub token: String,
    pub expires_at: UnixMillis,
    /// The escrow public key the archive's key is sealed to: the private
    /// half of this key opens it.
    pub escrow_public_key: String,
}

/// A device and the server-stamped health facts of its archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Blocks of its archive found damaged and not yet healed, and the
    /// backups that reference any of them (damaged backups).
    #[serde(default)]
    pub damaged_blocks: u64,
    #[serde(default)]
    pub damaged_backups: u64,
    /// The `quotas.device_bytes` in effect for it (0 = none).
    #[serde(default)]
    pub quota_bytes: u64,
    /// Parked (on leave, retired): shown as `parked`, raises no alerts.
    #[serde(default)]
    pub parked: bool,
    /// Its health now (absent from servers before health).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<DeviceHealth>,
    /// Deactivated at: it may not back up, its archive is in cold storage
    /// until `cold_until` (compliance time), then purged (`purged_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<UnixMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_until: Option<UnixMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<UnixMillis>,
    /// The matters holding its user (active holds and quarantines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_by: Vec<String>,
}

/// One alert transition of a device's alert level, as recorded once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertInfo {
    pub seq: u64,
    pub at: UnixMillis,
    pub device: Name,
    pub org: Name,
    /// `ok`, `warning`, `critical` or `parked`.
    pub from: String,
    pub to: String,
    pub reason: String,
    /// A reminder that the device is still critical (`from` = `to`).
    #[serde(default)]
    pub reminder: bool,
    /// An org's digest, not a device's alert: `device` is the org's name,
    /// `reason` the period (`daily`, `weekly`), `at` when it began.
    #[serde(default)]
    pub digest: bool,
    /// Its deliveries per channel and target.
    #[serde(default)]
    pub deliveries: Vec<DeliveryInfo>,
}

/// One delivery of an alert: `pending` until the channel handed it over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryInfo {
    /// `mail` or `webhook`.
    pub channel: String,
    /// The recipients, or the URL.
    pub target: String,
    /// `pending` or `delivered`.
    pub state: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<UnixMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<UnixMillis>,
    /// What the far end answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// `POST /admin/v1/mail/test`: send a test mail to `to`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MailTest {
    pub to: String,
}

/// What the mail server answered a test mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MailTestResult {
    pub to: String,
    /// The SMTP answer (`250 OK …`).
    pub answer: String,
}

/// `GET /admin/v1/alerts`: transitions oldest first; `next_after` pages on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertList {
    pub alerts: Vec<AlertInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// A device's health: the state (`ok`, `warning`, `critical`, `parked`)
/// from the org's `reporting.warning_after` / `critical_after` without new
/// data, the reason, when it began, the alert level (from
/// `alert_warning_after` / `alert_critical_after`), and when any of them
/// next changes if nothing arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceHealth {
    pub state: String,
    /// `ok`, `never_backed_up`, `not_connecting`, `connecting_no_new_data`
    /// or `not_completing`.
    pub reason: String,
    pub since: UnixMillis,
    pub alert: String,
    pub alert_since: UnixMillis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_change: Option<UnixMillis>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    pub devices: Vec<DeviceInfo>,
}

/// A plugin as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// reporter, retention or integration.
    pub world: String,
    /// The contract version it was built against (`0.1.0`, `0.2.0`).
    #[serde(default)]
    pub contract: String,
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginList {
    pub plugins: Vec<PluginInfo>,
}

/// `POST /admin/v1/plugins/{name}/report`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunReport {
    /// The organization the report is for (the plugin sees its inventory).
    pub org: Name,
    /// Parameters as `[key, value]` pairs.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AbortRequest {
    /// Set when the backup failed (rather than being cancelled): why, in a
    /// sentence. Integrations receive a `session-failed` event with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

// ---- accounts and tokens ----

/// `POST /admin/v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub name: Name,
    pub role: Role,
    /// The org subtree of an `org-admin` (required) or a `read-only` account
    /// (optional: without it, the whole server).
    #[serde(default)]
    pub org: Option<Name>,
    /// A password for the console's login (kept as an Argon2id hash): at
    /// least 12 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// An admin account as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountInfo {
    pub name: Name,
    pub role: Role,
    pub org: Option<Name>,
    pub disabled: bool,
    /// Whether a password is set (the hash is never shown).
    pub has_password: bool,
    pub created_at: UnixMillis,
    pub created_by: String,
    /// Tokens of the account that still work (not revoked, not expired).
    pub active_tokens: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountList {
    pub accounts: Vec<AccountInfo>,
}

/// `POST /admin/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub account: Name,
    /// How long the token works, as a duration (`"90d"`, `"12h"`, `"3600s"`)
    /// or `"never"`. Default `"90d"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// A new admin token: shown once, the server keeps only its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    pub id: Name,
    pub account: Name,
    pub token: String,
    pub expires_at: Option<UnixMillis>,
}

/// An admin token as the API lists it (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: Name,
    pub account: Name,
    pub created_at: UnixMillis,
    pub created_by: String,
    pub expires_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// `GET /admin/v1/whoami`: who the token belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmI {
    pub account: Name,
    pub role: Role,
    pub org: Option<Name>,
    pub token: Option<Name>,
}

// ---- the audit log ----

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub seq: u64,
    /// Server-stamped.
    pub at: UnixMillis,
    /// The account that acted, or `system`.
    pub actor: String,
    pub role: Option<String>,
    /// What was done, e.g. `org.create`, `device.revoke`.
    pub action: String,
    /// On what, e.g. `org:acme`, `device:dv_…`.
    pub target: String,
    /// `ok` or `refused`.
    pub outcome: String,
    pub details: std::collections::BTreeMap<String, String>,
    /// blake3 of the previous entry, hex.
    pub prev: String,
    /// blake3 of this entry, hex.
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// `GET /admin/v1/audit/verify`: the chain recomputed from the first entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditVerify {
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// The first entry that does not match, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<u64>,
    /// What is wrong there, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

// ---- workers ----

/// A background worker as the supervisor sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    pub name: String,
    /// `idle`, `running`, `backing_off` or `stopped`.
    pub state: String,
    /// Seconds between runs.
    pub interval_secs: u64,
    pub runs: u64,
    pub failures: u64,
    pub failures_in_a_row: u32,
    pub last_run: Option<UnixMillis>,
    pub last_success: Option<UnixMillis>,
    pub next_run: Option<UnixMillis>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerList {
    pub workers: Vec<WorkerInfo>,
}

/// `GET /admin/v1/scrub`: where the scrub stands, and every block found
/// damaged and not healed yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScrubStatus {
    /// A pass is running now.
    pub running: bool,
    /// The configured pace, bytes read per second.
    pub bytes_per_sec: u64,
    /// Seconds from the end of one pass to the start of the next.
    pub interval_secs: u64,
    /// The current pass (or the last one): when it started, and how far.
    pub started_at: Option<UnixMillis>,
    pub checked_blocks: u64,
    pub checked_bytes: u64,
    /// When the last complete pass finished.
    pub last_finished: Option<UnixMillis>,
    /// Damaged blocks found in the last complete pass (0 before one).
    pub last_found: u64,
    /// Archives with damaged blocks, and which.
    pub archives: Vec<ScrubArchive>,
}

/// One archive's damaged blocks. Each is reported missing to the archive's
/// device, whose next backup uploads it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScrubArchive {
    pub archive: Name,
    /// Stored, but the bytes do not match the id.
    pub corrupt: Vec<BlockId>,
    /// Recorded, but the bytes are gone from the storage.
    pub missing: Vec<BlockId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every JSON body the agent protocol takes, parsed from `bytes`.
    fn parse_all(bytes: &[u8]) {
        let _ = serde_json::from_slice::<MissingRequest>(bytes);
        let _ = serde_json::from_slice::<FetchRequest>(bytes);
        let _ = serde_json::from_slice::<CommitRequest>(bytes);
        let _ = serde_json::from_slice::<ProgressRequest>(bytes);
        let _ = serde_json::from_slice::<AbortRequest>(bytes);
        let _ = serde_json::from_slice::<SetRef>(bytes);
    }

    fn id_strategy() -> impl Strategy<Value = BlockId> {
        any::<[u8; 32]>().prop_map(BlockId::from_bytes)
    }

    proptest! {
        /// Any bytes: parsed or refused, never a panic.
        #[test]
        fn fuzz_json_requests_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            parse_all(&bytes);
        }

        /// JSON-shaped noise around the real field names.
        #[test]
        fn fuzz_json_requests_take_any_json_shape(
            s in r#"\{("(ids|manifest|blocks|stats|session|percent|files|bytes|block|failed)"|[0-9a-f"\[\],:\{\}. -]){0,60}\}"#
        ) {
            parse_all(s.as_bytes());
        }

        /// Requests as agents send them read back as sent; a fetch of more
        /// than its most ids is refused by the parser.
        #[test]
        fn fuzz_json_requests_round_trip(
            ids in proptest::collection::vec(id_strategy(), 0..50),
            extra in 1usize..5,
            percent in 0.0f64..=100.0,
        ) {
            let m = MissingRequest { ids: ids.clone(), session: None };
            let back: MissingRequest = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
            prop_assert_eq!(back.ids, ids.clone());
            let c = CommitRequest {
                manifest: ids.first().copied().unwrap_or(BlockId::of(b"m")),
                blocks: ids.clone(),
                stats: BackupStats { files: 1, bytes: 2, percent },
            };
            let back: CommitRequest = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
            prop_assert_eq!(back.blocks, ids);
            let many: Vec<String> = (0..BUNDLE_MAX_BLOCKS + extra).map(|i| BlockId::of(&i.to_le_bytes()).to_hex()).collect();
            let e = serde_json::from_value::<FetchRequest>(serde_json::json!({"ids": many})).unwrap_err();
            prop_assert!(e.to_string().contains("at most 1024"), "{}", e);
        }
    }

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

/// The query of a health report (`GET /admin/v1/reports/{report}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReportQuery {
    /// Only this org and the orgs below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Only these states (comma-separated: `warning,critical`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only these reasons (comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The column to sort by (the report's `columns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Descending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<bool>,
    /// The previous page's `next_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Rows per page (default 1000, at most 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// One page of a health report: `rows` are objects keyed by `columns`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportPage {
    /// `device-status`, `orgs` or `users`.
    pub report: String,
    pub columns: Vec<String>,
    /// Rows in the whole (filtered) report.
    pub total: usize,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub rows: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// A row of the device-status report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceStatusRow {
    pub device: Name,
    pub name: String,
    pub user: Name,
    pub org: Name,
    pub state: String,
    pub reason: String,
    pub percent_complete: Option<f64>,
    pub last_activity: Option<UnixMillis>,
    pub last_completed: Option<UnixMillis>,
    pub last_connection: Option<UnixMillis>,
    pub agent_version: Option<String>,
    pub os: Option<String>,
    pub bytes_stored: u64,
    pub backups: u64,
}

/// A row of the orgs report: its own devices (not those of orgs below).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrgReportRow {
    pub org: Name,
    pub parent: Option<Name>,
    pub devices: u64,
    pub ok: u64,
    pub warning: u64,
    pub critical: u64,
    pub parked: u64,
    pub users: u64,
    pub bytes_stored: u64,
}

/// A row of the users report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserReportRow {
    pub user: Name,
    pub org: Name,
    pub devices: u64,
    /// The worst state of its devices (none without devices).
    pub worst_state: Option<String>,
    pub bytes_stored: u64,
}

/// A preservation policy: what a matter keeps of its custodians' backups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldPolicyInfo {
    pub name: Name,
    /// `all` (every backup), or `tiers` (the `retention` tiers below, each
    /// applied as the stricter of it and the org's).
    pub keep: String,
    /// With `keep = tiers`: `keep_all`, `daily`, `weekly`, `monthly` as
    /// durations (`monthly` may be `forever`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retention: BTreeMap<String, String>,
    /// Deleted-file handling pushed to the custodians' agents
    /// (`device_defaults.keep_deleted`): `forever` or a duration.
    #[serde(default)]
    pub keep_deleted: String,
    pub created_by: String,
    pub created_at: UnixMillis,
}

/// `POST /admin/v1/holds/policies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateHoldPolicy {
    pub name: String,
    /// `all` (the default) or `tiers`.
    #[serde(default)]
    pub keep: Option<String>,
    /// With `keep = tiers`: any of `keep_all`, `daily`, `weekly`, `monthly`.
    #[serde(default)]
    pub retention: BTreeMap<String, String>,
    /// How long the custodians' agents keep files gone from their backup
    /// selection: `forever` (the default) or a duration.
    #[serde(default)]
    pub keep_deleted: Option<String>,
}

/// A legal matter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MatterInfo {
    pub name: Name,
    pub description: String,
    pub policy: Name,
    /// `active` or `closed`.
    pub status: String,
    pub created_by: String,
    pub created_at: UnixMillis,
    pub closed_by: Option<String>,
    pub closed_at: Option<UnixMillis>,
    pub close_reason: Option<String>,
    /// Custodians on hold now.
    pub active_custodians: u64,
    /// Custodians listed (active, pending release, released).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custodians: Vec<CustodianInfo>,
}

/// `POST /admin/v1/holds/matters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateMatter {
    pub name: String,
    pub policy: String,
    #[serde(default)]
    pub description: String,
}

/// A reason (closing a matter, releasing a custodian).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

/// A user on hold under a matter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustodianInfo {
    pub matter: Name,
    pub org: Name,
    pub user: Name,
    pub added_by: String,
    pub added_at: UnixMillis,
    pub reason: String,
    /// `active`, `release_pending` (waiting for a second legal-hold admin),
    /// `quarantined` (released; data it alone protects stays until
    /// `quarantine_until`) or `released`.
    pub state: String,
    /// Who asked for and approved the release, when and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ReleaseStepInfo>,
    pub released_at: Option<UnixMillis>,
    pub quarantine_until: Option<UnixMillis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseStepInfo {
    pub by: String,
    pub at: UnixMillis,
    pub reason: String,
}

/// `POST /admin/v1/holds/custodians` (add) and
/// `POST /admin/v1/holds/custodians/release`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CustodianRequest {
    pub matter: String,
    pub user: String,
    /// The user's org, needed only when the user name exists in several.
    #[serde(default)]
    pub org: Option<String>,
    /// Why (required for a release).
    #[serde(default)]
    pub reason: String,
}

/// One backup in a retention plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionItem {
    pub backup: Name,
    pub committed_at: UnixMillis,
    /// `keep` or `expire` (in a run: `expired`, or `refused` by the gate).
    pub verdict: String,
    /// The rule that keeps it (`newest`, `keep_all`, `daily`, `weekly`,
    /// `monthly`, `min_age`, `hold:MATTER`, `quarantine:MATTER`), or why the
    /// gate refused.
    pub reason: String,
}

/// What retention would do (`plan`) or did (`run`) to an archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionReport {
    pub archive: Name,
    pub device: Name,
    /// `tiers` or `plugin:NAME`.
    pub policy: String,
    /// The compliance time the plan was made at.
    pub now: UnixMillis,
    pub dry_run: bool,
    pub kept: u64,
    pub expired: u64,
    pub refused: u64,
    pub items: Vec<RetentionItem>,
}

/// One garbage-collection run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcReport {
    pub dry_run: bool,
    pub started_at: UnixMillis,
    pub finished_at: UnixMillis,
    /// Blocks are swept only if last stored before this (compliance time).
    pub cutoff: UnixMillis,
    pub archives: u64,
    /// Blocks found unreferenced and past the grace (condemned).
    pub marked: u64,
    /// Blocks destroyed (or, in a dry run, that would be).
    pub swept: u64,
    pub swept_bytes: u64,
    /// Blocks the gate refused at the moment of destruction, and sweeps of
    /// an archive started over because a backup committed meanwhile.
    pub refused: u64,
    pub restarted: u64,
    /// Packs rewritten, and the bytes their rewrite gave back.
    pub packs_rewritten: u64,
    pub pack_bytes_reclaimed: u64,
    /// Leftover reference lists and pins of old sessions dropped.
    pub orphans_dropped: u64,
    /// Journal entries of an interrupted run finished at start.
    pub recovered: u64,
    /// Multipart uploads (S3) a crash left unfinished, aborted.
    #[serde(default)]
    pub uploads_aborted: u64,
    /// Time spent marking, sweeping and rewriting packs (ms).
    #[serde(default)]
    pub mark_ms: u64,
    #[serde(default)]
    pub sweep_ms: u64,
    #[serde(default)]
    pub repack_ms: u64,
}

/// `GET /admin/v1/gc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcStatus {
    /// The grace, in seconds.
    pub grace_secs: u64,
    pub repack_below: f64,
    pub running: bool,
    pub last: Option<GcReport>,
}

/// The compliance clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockInfo {
    pub compliance: UnixMillis,
    pub wall: UnixMillis,
    pub persisted: UnixMillis,
    /// `ok`, `behind` (the wall clock was set back) or `ahead` (it jumped
    /// more than a day ahead; `coffer admin clock accept` takes it).
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldPolicyList {
    pub policies: Vec<HoldPolicyInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MatterList {
    pub matters: Vec<MatterInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustodianList {
    pub custodians: Vec<CustodianInfo>,
}

/// A user, by org and name (`POST /admin/v1/users/deactivate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    pub org: Name,
    pub user: Name,
}
