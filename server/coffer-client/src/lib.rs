//! The typed client of Coffer's admin API and agent protocol: one function
//! per route, with paths and queries escaped ([`paths`]), answers decoded
//! into the wire types, and the server's errors as [`Error::Api`] with their
//! status, code and sentence. The `coffer admin` CLI, the integration tests
//! and the benchmarks speak to the server through it.
//!
//! The transport is `coffer_http::client` (HTTP/2 over TLS or h2c, one
//! connection, clones share it).

pub mod paths;

use bytes::Bytes;
use coffer_types::wire::*;
use coffer_types::{BlockId, ErrorCode, Name};
use futures::Stream;
use http::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use coffer_http::client::{ClientError as TransportError, ClientResponse, ClientTls};
pub use paths::AuditQuery;

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No answer: the connection or the request failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server refused, with its machine-readable code and sentence.
    #[error("the server answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
        /// With `missing_blocks`: the ids to upload.
        missing: Option<Vec<BlockId>>,
    },
    /// An answer that is not what the route gives.
    #[error("the server answered {status}: {text}")]
    Unexpected { status: u16, text: String },
}

impl Error {
    /// The status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Unexpected { status, .. } => Some(*status),
            Error::Transport(_) => None,
        }
    }

    /// The code of an API error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A successful answer's body as `T`, or the server's error as an error.
pub fn decode<T: DeserializeOwned>(r: ClientResponse) -> Result<T> {
    let r = check(r)?;
    r.json().map_err(|e| Error::Unexpected {
        status: r.status,
        text: format!("{e}: {}", String::from_utf8_lossy(&r.body)),
    })
}

/// The answer if it is a success, the server's error otherwise.
pub fn check(r: ClientResponse) -> Result<ClientResponse> {
    if let Some(e) = r.error() {
        return Err(Error::Api {
            status: r.status,
            code: e.error.code,
            message: e.error.message,
            missing: e.error.missing,
        });
    }
    if !r.is_success() {
        return Err(Error::Unexpected {
            status: r.status,
            text: String::from_utf8_lossy(&r.body).into_owned(),
        });
    }
    Ok(r)
}

/// A connection to a server, with the token its calls carry. Cheap to
/// clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    http: coffer_http::client::Client,
}

impl Client {
    /// Connect to `url` (`https://host:port`, or `http://host:port` for h2c).
    pub async fn connect(url: &str, tls: &ClientTls) -> Result<Self> {
        Ok(Self {
            http: coffer_http::client::Client::connect(url, tls).await?,
        })
    }

    /// The same connection, sending `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            http: self.http.clone().with_token(token),
        }
    }

    /// The transport, for raw requests (with a path from [`paths`]).
    pub fn raw(&self) -> &coffer_http::client::Client {
        &self.http
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        decode(self.http.get(path).await?)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        decode(self.http.post_json(path, body).await?)
    }

    async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.post(path, &serde_json::json!({})).await
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let body = serde_json::to_vec(body).expect("serializable");
        decode(
            self.http
                .send(
                    method,
                    path,
                    &[("content-type", "application/json")],
                    body.into(),
                )
                .await?,
        )
    }

    async fn send<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        decode(self.http.send(method, path, &[], Bytes::new()).await?)
    }

    // ---- ops ----

    pub async fn healthz(&self) -> Result<serde_json::Value> {
        self.get(&paths::healthz()).await
    }

    pub async fn readyz(&self) -> Result<serde_json::Value> {
        self.get(&paths::readyz()).await
    }

    /// The Prometheus text.
    pub async fn metrics(&self) -> Result<String> {
        let r = check(self.http.get(&paths::metrics()).await?)?;
        Ok(String::from_utf8_lossy(&r.body).into_owned())
    }

    /// The OpenAPI description.
    pub async fn openapi(&self) -> Result<serde_json::Value> {
        self.get(&paths::openapi()).await
    }

    // ---- admin: the caller, orgs, users, devices ----

    pub async fn admin_whoami(&self) -> Result<WhoAmI> {
        self.get(&paths::admin_whoami()).await
    }

    pub async fn list_orgs(&self) -> Result<OrgList> {
        self.get(&paths::orgs()).await
    }

    pub async fn create_org(&self, req: &CreateOrg) -> Result<OrgInfo> {
        self.post(&paths::orgs(), req).await
    }

    pub async fn org_settings(&self, org: &str) -> Result<OrgSettingsInfo> {
        self.get(&paths::org_settings(org)).await
    }

    pub async fn set_org_settings(
        &self,
        org: &str,
        req: &SetOrgSettings,
    ) -> Result<OrgSettingsChange> {
        self.send_json(Method::PATCH, &paths::org_settings(org), req)
            .await
    }

    pub async fn set_org_inherit(
        &self,
        org: &str,
        group: &str,
        inherit: bool,
    ) -> Result<OrgSettingsChange> {
        self.send_json(
            Method::PUT,
            &paths::org_inherit(org, group),
            &SetInherit { inherit },
        )
        .await
    }

    pub async fn list_users(&self) -> Result<UserList> {
        self.get(&paths::users()).await
    }

    pub async fn add_user(&self, req: &AddUser) -> Result<UserInfo> {
        self.post(&paths::users(), req).await
    }

    pub async fn list_devices(&self) -> Result<DeviceList> {
        self.get(&paths::devices()).await
    }

    pub async fn enroll_device(&self, req: &EnrollDevice) -> Result<DeviceToken> {
        self.post(&paths::devices(), req).await
    }

    pub async fn device(&self, device: &str) -> Result<DeviceInfo> {
        self.get(&paths::device(device)).await
    }

    pub async fn revoke_device(&self, device: &str) -> Result<DeviceInfo> {
        self.post_empty(&paths::device_revoke(device)).await
    }

    pub async fn rotate_device(&self, device: &str) -> Result<DeviceToken> {
        self.post_empty(&paths::device_rotate(device)).await
    }

    /// Health alert transitions after `after`.
    pub async fn mail_test(&self, to: &str) -> Result<MailTestResult> {
        self.post(&paths::mail_test(), &MailTest { to: to.into() })
            .await
    }

    /// One page of a health report.
    pub async fn report(&self, report: &str, q: &ReportQuery) -> Result<ReportPage> {
        self.get(&paths::report(report, q, "json")).await
    }

    /// A whole health report as CSV.
    pub async fn report_csv(&self, report: &str, q: &ReportQuery) -> Result<Bytes> {
        Ok(check(self.http.get(&paths::report(report, q, "csv")).await?)?.body)
    }

    pub async fn alerts(&self, after: Option<u64>, limit: Option<usize>) -> Result<AlertList> {
        self.get(&paths::alerts(after, limit)).await
    }

    /// Park (`true`) or unpark a device.
    pub async fn park_device(&self, device: &str, parked: bool) -> Result<DeviceInfo> {
        let path = if parked {
            paths::device_park(device)
        } else {
            paths::device_unpark(device)
        };
        self.post_empty(&path).await
    }

    /// Deactivate a device (its archive enters cold storage).
    pub async fn deactivate_device(&self, device: &str) -> Result<DeviceInfo> {
        self.post_empty(&paths::device_deactivate(device)).await
    }

    pub async fn reactivate_device(&self, device: &str) -> Result<DeviceInfo> {
        self.post_empty(&paths::device_reactivate(device)).await
    }

    /// Purge a deactivated device's archive now.
    pub async fn purge_device(&self, device: &str, reason: &str) -> Result<DeviceInfo> {
        self.post(
            &paths::device_purge(device),
            &coffer_types::wire::Reason {
                reason: reason.into(),
            },
        )
        .await
    }

    /// Deactivate every device of a user.
    pub async fn deactivate_user(
        &self,
        org: &str,
        user: &str,
    ) -> Result<coffer_types::wire::DeviceList> {
        let body = serde_json::json!({"org": org, "user": user});
        self.post(&paths::user_deactivate(), &body).await
    }

    // ---- admin: legal hold ----

    pub async fn hold_policies(&self) -> Result<coffer_types::wire::HoldPolicyList> {
        self.get(&paths::hold_policies()).await
    }

    pub async fn create_hold_policy(
        &self,
        req: &coffer_types::wire::CreateHoldPolicy,
    ) -> Result<coffer_types::wire::HoldPolicyInfo> {
        self.post(&paths::hold_policies(), req).await
    }

    pub async fn matters(&self) -> Result<coffer_types::wire::MatterList> {
        self.get(&paths::matters()).await
    }

    pub async fn create_matter(
        &self,
        req: &coffer_types::wire::CreateMatter,
    ) -> Result<coffer_types::wire::MatterInfo> {
        self.post(&paths::matters(), req).await
    }

    pub async fn matter(&self, name: &str) -> Result<coffer_types::wire::MatterInfo> {
        self.get(&paths::matter(name)).await
    }

    pub async fn close_matter(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<coffer_types::wire::MatterInfo> {
        self.post(
            &paths::matter_close(name),
            &coffer_types::wire::Reason {
                reason: reason.into(),
            },
        )
        .await
    }

    pub async fn custodians(
        &self,
        matter: Option<&str>,
    ) -> Result<coffer_types::wire::CustodianList> {
        self.get(&paths::custodians(matter)).await
    }

    pub async fn add_custodian(
        &self,
        req: &coffer_types::wire::CustodianRequest,
    ) -> Result<coffer_types::wire::CustodianInfo> {
        self.post(&paths::custodians(None), req).await
    }

    pub async fn release_custodian(
        &self,
        req: &coffer_types::wire::CustodianRequest,
    ) -> Result<coffer_types::wire::CustodianInfo> {
        self.post(&paths::custodian_release(), req).await
    }

    // ---- admin: retention, collection, the clock ----

    pub async fn retention_dry_run(
        &self,
        archive: &str,
    ) -> Result<coffer_types::wire::RetentionReport> {
        self.get(&paths::retention_dry_run(archive)).await
    }

    pub async fn retention_run(
        &self,
        archive: &str,
    ) -> Result<coffer_types::wire::RetentionReport> {
        self.post_empty(&paths::retention_run(archive)).await
    }

    pub async fn gc_status(&self) -> Result<coffer_types::wire::GcStatus> {
        self.get(&paths::gc()).await
    }

    pub async fn gc_run(&self, dry_run: bool) -> Result<coffer_types::wire::GcReport> {
        self.post_empty(&paths::gc_run(dry_run)).await
    }

    pub async fn clock(&self) -> Result<coffer_types::wire::ClockInfo> {
        self.get(&paths::clock()).await
    }

    pub async fn clock_accept(&self) -> Result<coffer_types::wire::ClockInfo> {
        self.post_empty(&paths::clock_accept()).await
    }

    /// A read-only, expiring token for the device's archive
    /// (administrator restore).
    pub async fn restore_token(
        &self,
        device: &str,
        req: &IssueRestoreToken,
    ) -> Result<RestoreToken> {
        self.post(&paths::device_restore_token(device), req).await
    }

    // ---- admin: accounts and tokens ----

    pub async fn list_accounts(&self) -> Result<AccountList> {
        self.get(&paths::accounts()).await
    }

    pub async fn create_account(&self, req: &CreateAccount) -> Result<AccountInfo> {
        self.post(&paths::accounts(), req).await
    }

    pub async fn account(&self, name: &str) -> Result<AccountInfo> {
        self.get(&paths::account(name)).await
    }

    pub async fn disable_account(&self, name: &str) -> Result<AccountInfo> {
        self.post_empty(&paths::account_disable(name)).await
    }

    pub async fn enable_account(&self, name: &str) -> Result<AccountInfo> {
        self.post_empty(&paths::account_enable(name)).await
    }

    pub async fn delete_account(&self, name: &str) -> Result<serde_json::Value> {
        self.send(Method::DELETE, &paths::account(name)).await
    }

    pub async fn list_tokens(&self, account: Option<&str>) -> Result<TokenList> {
        self.get(&paths::tokens(account)).await
    }

    pub async fn create_token(&self, req: &CreateToken) -> Result<NewToken> {
        self.post(&paths::tokens(None), req).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<TokenInfo> {
        self.post_empty(&paths::token_revoke(id)).await
    }

    // ---- admin: audit, workers, plugins ----

    pub async fn audit(&self, q: &AuditQuery) -> Result<AuditList> {
        self.get(&paths::audit(q)).await
    }

    /// The whole log as JSON lines.
    pub async fn audit_export(&self) -> Result<Bytes> {
        Ok(check(self.http.get(&paths::audit_export()).await?)?.body)
    }

    pub async fn audit_verify(&self) -> Result<AuditVerify> {
        self.get(&paths::audit_verify()).await
    }

    pub async fn workers(&self) -> Result<WorkerList> {
        self.get(&paths::workers()).await
    }

    pub async fn scrub_status(&self) -> Result<ScrubStatus> {
        self.get(&paths::scrub()).await
    }

    pub async fn scrub_run(&self) -> Result<ScrubStatus> {
        self.post_empty(&paths::scrub_run()).await
    }

    pub async fn list_plugins(&self) -> Result<PluginList> {
        self.get(&paths::plugins()).await
    }

    pub async fn enable_plugin(&self, name: &str) -> Result<PluginInfo> {
        self.post_empty(&paths::plugin_enable(name)).await
    }

    pub async fn disable_plugin(&self, name: &str) -> Result<PluginInfo> {
        self.post_empty(&paths::plugin_disable(name)).await
    }

    pub async fn reload_plugin(&self, name: &str) -> Result<PluginInfo> {
        self.post_empty(&paths::plugin_reload(name)).await
    }

    /// A reporter's report: its media type and bytes.
    pub async fn run_report(&self, plugin: &str, req: &RunReport) -> Result<(String, Bytes)> {
        let r = check(
            self.http
                .post_json(&paths::plugin_report(plugin), req)
                .await?,
        )?;
        let media = r
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        Ok((media, r.body))
    }

    pub async fn retention_plan(
        &self,
        archive: &str,
        plugin: Option<&str>,
    ) -> Result<serde_json::Value> {
        self.get(&paths::retention_plan(archive, plugin)).await
    }

    // ---- the agent protocol ----

    pub async fn agent_whoami(&self) -> Result<serde_json::Value> {
        self.get(&paths::agent_whoami()).await
    }

    /// Upload a block (its id is its blake3), pinned to `session` if given.
    pub async fn put_block(
        &self,
        archive: &str,
        body: Bytes,
        session: Option<&str>,
    ) -> Result<PutBlockResponse> {
        let id = BlockId::of(&body);
        let mut headers = vec![("content-type", "application/octet-stream")];
        if let Some(s) = session {
            headers.push(("coffer-session", s));
        }
        decode(
            self.http
                .send(
                    Method::PUT,
                    &paths::block(archive, &id.to_hex()),
                    &headers,
                    body,
                )
                .await?,
        )
    }

    /// Upload a block whose body is streamed (a caller can pace it).
    pub async fn put_block_stream<S>(
        &self,
        archive: &str,
        id: &BlockId,
        content_length: Option<u64>,
        body: S,
    ) -> Result<PutBlockResponse>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static,
    {
        decode(
            self.http
                .send_stream(
                    Method::PUT,
                    &paths::block(archive, &id.to_hex()),
                    &[("content-type", "application/octet-stream")],
                    content_length,
                    body,
                )
                .await?,
        )
    }

    /// A block's bytes (or the range `range`, e.g. `bytes=0-99`).
    pub async fn get_block(
        &self,
        archive: &str,
        id: &BlockId,
        range: Option<&str>,
    ) -> Result<Bytes> {
        let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        let r = self
            .http
            .send(
                Method::GET,
                &paths::block(archive, &id.to_hex()),
                &headers,
                Bytes::new(),
            )
            .await?;
        Ok(check(r)?.body)
    }

    /// A block's size, or `None` if the archive does not hold it.
    pub async fn head_block(&self, archive: &str, id: &BlockId) -> Result<Option<u64>> {
        let r = self
            .http
            .send(
                Method::HEAD,
                &paths::block(archive, &id.to_hex()),
                &[],
                Bytes::new(),
            )
            .await?;
        match r.status {
            404 => Ok(None),
            _ => Ok(check(r)?
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
        }
    }

    pub async fn missing_blocks(
        &self,
        archive: &str,
        req: &MissingRequest,
    ) -> Result<MissingResponse> {
        self.post(&paths::blocks_missing(archive), req).await
    }

    /// Upload a bundle (records built with `coffer_types::wire::push_record`).
    pub async fn put_bundle(
        &self,
        archive: &str,
        records: Bytes,
        session: Option<&str>,
    ) -> Result<PutBundleResponse> {
        let mut headers = vec![("content-type", "application/octet-stream")];
        if let Some(s) = session {
            headers.push(("coffer-session", s));
        }
        decode(
            self.http
                .send(
                    Method::POST,
                    &paths::blocks_bundle(archive),
                    &headers,
                    records,
                )
                .await?,
        )
    }

    /// Many whole blocks: records in the bundle format.
    pub async fn fetch_blocks(&self, archive: &str, req: &FetchRequest) -> Result<Bytes> {
        Ok(check(
            self.http
                .post_json(&paths::blocks_fetch(archive), req)
                .await?,
        )?
        .body)
    }

    pub async fn open_session(&self, archive: &str) -> Result<SessionInfo> {
        self.post_empty(&paths::sessions(archive)).await
    }

    pub async fn session(&self, archive: &str, session: &str) -> Result<SessionInfo> {
        self.get(&paths::session(archive, session)).await
    }

    pub async fn progress(
        &self,
        archive: &str,
        session: &str,
        req: &ProgressRequest,
    ) -> Result<SessionInfo> {
        self.post(&paths::session_progress(archive, session), req)
            .await
    }

    /// Commit a session: the backup, and whether this call made it (false
    /// for a retried commit).
    pub async fn commit(
        &self,
        archive: &str,
        session: &str,
        req: &CommitRequest,
    ) -> Result<(BackupInfo, bool)> {
        let r = self
            .http
            .post_json(&paths::session_commit(archive, session), req)
            .await?;
        let created = r.status == 201;
        Ok((decode(r)?, created))
    }

    pub async fn abort(
        &self,
        archive: &str,
        session: &str,
        req: &AbortRequest,
    ) -> Result<SessionInfo> {
        self.post(&paths::session_abort(archive, session), req)
            .await
    }

    pub async fn delete_session(&self, archive: &str, session: &str) -> Result<SessionInfo> {
        self.send(Method::DELETE, &paths::session(archive, session))
            .await
    }

    pub async fn backups(&self, archive: &str) -> Result<BackupList> {
        self.get(&paths::backups(archive)).await
    }

    pub async fn backup(&self, archive: &str, backup: &str) -> Result<BackupInfo> {
        self.get(&paths::backup(archive, backup)).await
    }

    pub async fn set_ref(&self, archive: &str, name: &str, block: BlockId) -> Result<RefInfo> {
        let body = serde_json::to_vec(&SetRef { block }).expect("serializable");
        decode(
            self.http
                .send(
                    Method::PUT,
                    &paths::named_ref(archive, name),
                    &[("content-type", "application/json")],
                    body.into(),
                )
                .await?,
        )
    }

    pub async fn get_ref(&self, archive: &str, name: &str) -> Result<RefInfo> {
        self.get(&paths::named_ref(archive, name)).await
    }
}

/// Create org, user and device (each unless it exists) as the admin of
/// `client`: what the benchmarks and tests need for one device.
pub async fn enroll(client: &Client, org: &str, user: &str, device: &str) -> Result<DeviceToken> {
    let name = |s: &str| {
        Name::new(s).map_err(|e| Error::Unexpected {
            status: 0,
            text: format!("{s:?}: {e}"),
        })
    };
    let exists = |r: Result<()>| match r {
        Err(Error::Api {
            code: ErrorCode::AlreadyExists,
            ..
        }) => Ok(()),
        other => other,
    };
    exists(
        client
            .create_org(&CreateOrg {
                name: name(org)?,
                parent: None,
            })
            .await
            .map(|_| ()),
    )?;
    exists(
        client
            .add_user(&AddUser {
                org: name(org)?,
                name: name(user)?,
            })
            .await
            .map(|_| ()),
    )?;
    client
        .enroll_device(&EnrollDevice {
            org: name(org)?,
            user: name(user)?,
            name: device.to_string(),
            os: None,
        })
        .await
}
