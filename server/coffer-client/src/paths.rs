//! The path of every route, with each segment percent-encoded and query
//! values form-encoded. The typed functions of [`crate::Client`] use these;
//! tests that send a raw request (a malformed body, a wrong method) use
//! them too, so no path is written by hand outside this crate.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What stays as is in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment, percent-encoded (a `/` in it cannot make a new
/// segment).
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// `?k=v&…` of the pairs whose value is set, form-encoded; empty when none
/// is.
pub fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<String>)>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, &v);
            any = true;
        }
    }
    if any {
        format!("?{}", q.finish())
    } else {
        String::new()
    }
}

// ---- ops ----

pub fn healthz() -> String {
    "/healthz".into()
}
pub fn readyz() -> String {
    "/readyz".into()
}
pub fn metrics() -> String {
    "/metrics".into()
}
pub fn openapi() -> String {
    "/admin/v1/openapi.json".into()
}

// ---- agent ----

pub fn agent_whoami() -> String {
    "/v1/whoami".into()
}
fn archive(a: &str) -> String {
    format!("/v1/archives/{}", seg(a))
}
pub fn blocks_missing(a: &str) -> String {
    format!("{}/blocks/missing", archive(a))
}
pub fn blocks_bundle(a: &str) -> String {
    format!("{}/blocks/bundle", archive(a))
}
pub fn blocks_fetch(a: &str) -> String {
    format!("{}/blocks/fetch", archive(a))
}
/// A block: PUT, GET (with `Range`) and HEAD.
pub fn block(a: &str, id: &str) -> String {
    format!("{}/blocks/{}", archive(a), seg(id))
}
/// POST opens a session.
pub fn sessions(a: &str) -> String {
    format!("{}/sessions", archive(a))
}
/// GET reads a session, DELETE aborts it.
pub fn session(a: &str, s: &str) -> String {
    format!("{}/sessions/{}", archive(a), seg(s))
}
pub fn session_progress(a: &str, s: &str) -> String {
    format!("{}/progress", session(a, s))
}
pub fn session_commit(a: &str, s: &str) -> String {
    format!("{}/commit", session(a, s))
}
pub fn session_abort(a: &str, s: &str) -> String {
    format!("{}/abort", session(a, s))
}
pub fn backups(a: &str) -> String {
    format!("{}/backups", archive(a))
}
pub fn backup(a: &str, b: &str) -> String {
    format!("{}/backups/{}", archive(a), seg(b))
}
/// PUT stores, GET reads the archive's escrowed key.
pub fn escrow(a: &str) -> String {
    format!("{}/escrow", archive(a))
}
/// PUT sets, GET reads a named reference.
pub fn named_ref(a: &str, name: &str) -> String {
    format!("{}/refs/{}", archive(a), seg(name))
}

// ---- admin ----

const ADMIN: &str = "/admin/v1";

pub fn admin_whoami() -> String {
    format!("{ADMIN}/whoami")
}
/// GET lists, POST creates.
pub fn orgs() -> String {
    format!("{ADMIN}/orgs")
}
/// GET shows an org's settings, PATCH sets values of one group.
/// `GET /v1/settings`: the device defaults of the calling device.
pub fn device_settings() -> String {
    "/v1/settings".to_string()
}

pub fn org_settings(org: &str) -> String {
    format!("{ADMIN}/orgs/{}/settings", seg(org))
}
/// PUT turns a group's inheritance on or off.
pub fn org_inherit(org: &str, group: &str) -> String {
    format!("{ADMIN}/orgs/{}/settings/{}/inherit", seg(org), seg(group))
}
/// GET lists, POST adds.
pub fn users() -> String {
    format!("{ADMIN}/users")
}
/// GET lists, POST enrolls.
pub fn devices() -> String {
    format!("{ADMIN}/devices")
}
pub fn device(d: &str) -> String {
    format!("{ADMIN}/devices/{}", seg(d))
}
pub fn device_revoke(d: &str) -> String {
    format!("{}/revoke", device(d))
}
pub fn device_rotate(d: &str) -> String {
    format!("{}/rotate", device(d))
}
pub fn mail_test() -> String {
    format!("{ADMIN}/mail/test")
}

/// A health report (`device-status`, `orgs`, `users`), as JSON or CSV.
pub fn report(report: &str, q: &coffer_types::wire::ReportQuery, format: &str) -> String {
    format!(
        "{ADMIN}/reports/{}{}",
        seg(report),
        query([
            ("org", q.org.clone()),
            ("state", q.state.clone()),
            ("reason", q.reason.clone()),
            ("sort", q.sort.clone()),
            ("desc", q.desc.map(|d| d.to_string())),
            ("after", q.after.clone()),
            ("limit", q.limit.map(|v| v.to_string())),
            ("format", Some(format.to_string())),
        ])
    )
}

/// Health alert transitions, a page after `after`.
pub fn alerts(after: Option<u64>, limit: Option<usize>) -> String {
    format!(
        "{ADMIN}/alerts{}",
        query([
            ("after", after.map(|v| v.to_string())),
            ("limit", limit.map(|v| v.to_string())),
        ])
    )
}
pub fn device_park(d: &str) -> String {
    format!("{}/park", device(d))
}
pub fn device_unpark(d: &str) -> String {
    format!("{}/unpark", device(d))
}
pub fn device_deactivate(d: &str) -> String {
    format!("{}/deactivate", device(d))
}
pub fn device_reactivate(d: &str) -> String {
    format!("{}/reactivate", device(d))
}
pub fn device_purge(d: &str) -> String {
    format!("{}/purge", device(d))
}
pub fn user_deactivate() -> String {
    format!("{ADMIN}/users/deactivate")
}
/// GET lists, POST creates.
pub fn hold_policies() -> String {
    format!("{ADMIN}/holds/policies")
}
/// GET lists, POST creates.
pub fn matters() -> String {
    format!("{ADMIN}/holds/matters")
}
pub fn matter(m: &str) -> String {
    format!("{ADMIN}/holds/matters/{}", seg(m))
}
pub fn matter_close(m: &str) -> String {
    format!("{}/close", matter(m))
}
/// GET lists (of one matter), POST places.
pub fn custodians(matter: Option<&str>) -> String {
    format!(
        "{ADMIN}/holds/custodians{}",
        query([("matter", matter.map(str::to_string))])
    )
}
pub fn custodian_release() -> String {
    format!("{ADMIN}/holds/custodians/release")
}
pub fn retention_dry_run(archive: &str) -> String {
    format!("{ADMIN}/retention/{}/plan", seg(archive))
}
pub fn retention_run(archive: &str) -> String {
    format!("{ADMIN}/retention/{}/run", seg(archive))
}
pub fn gc() -> String {
    format!("{ADMIN}/gc")
}
pub fn gc_run(dry_run: bool) -> String {
    format!(
        "{ADMIN}/gc/run{}",
        query([("dry_run", dry_run.then(|| "true".to_string()))])
    )
}
pub fn clock() -> String {
    format!("{ADMIN}/clock")
}
pub fn clock_accept() -> String {
    format!("{ADMIN}/clock/accept")
}
pub fn device_restore_token(d: &str) -> String {
    format!("{}/restore-token", device(d))
}
/// GET lists, POST creates.
pub fn accounts() -> String {
    format!("{ADMIN}/accounts")
}
/// GET reads, DELETE deletes.
pub fn account(a: &str) -> String {
    format!("{ADMIN}/accounts/{}", seg(a))
}
pub fn account_disable(a: &str) -> String {
    format!("{}/disable", account(a))
}
pub fn account_enable(a: &str) -> String {
    format!("{}/enable", account(a))
}
/// GET lists (of one account with `account`), POST creates.
pub fn tokens(account: Option<&str>) -> String {
    format!(
        "{ADMIN}/tokens{}",
        query([("account", account.map(str::to_string))])
    )
}
pub fn token_revoke(t: &str) -> String {
    format!("{ADMIN}/tokens/{}/revoke", seg(t))
}

/// What `audit` lists.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<u64>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

pub fn audit(q: &AuditQuery) -> String {
    format!(
        "{ADMIN}/audit{}",
        query([
            ("since", q.since.map(|v| v.to_string())),
            ("actor", q.actor.clone()),
            ("target", q.target.clone()),
            ("after", q.after.map(|v| v.to_string())),
            ("limit", q.limit.map(|v| v.to_string())),
        ])
    )
}
pub fn audit_export() -> String {
    format!("{ADMIN}/audit/export")
}
pub fn audit_verify() -> String {
    format!("{ADMIN}/audit/verify")
}
pub fn workers() -> String {
    format!("{ADMIN}/workers")
}
pub fn scrub() -> String {
    format!("{ADMIN}/scrub")
}
pub fn scrub_run() -> String {
    format!("{ADMIN}/scrub/run")
}
pub fn plugins() -> String {
    format!("{ADMIN}/plugins")
}
pub fn plugin_enable(p: &str) -> String {
    format!("{ADMIN}/plugins/{}/enable", seg(p))
}
pub fn plugin_disable(p: &str) -> String {
    format!("{ADMIN}/plugins/{}/disable", seg(p))
}
pub fn plugin_reload(p: &str) -> String {
    format!("{ADMIN}/plugins/{}/reload", seg(p))
}
pub fn plugin_report(p: &str) -> String {
    format!("{ADMIN}/plugins/{}/report", seg(p))
}
pub fn retention_plan(archive: &str, plugin: Option<&str>) -> String {
    format!(
        "{ADMIN}/archives/{}/retention-plan{}",
        seg(archive),
        query([("plugin", plugin.map(str::to_string))])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_queries_are_escaped() {
        assert_eq!(seg("a/b c?d#e%"), "a%2Fb%20c%3Fd%23e%25");
        assert_eq!(seg("ar_0123.x-y~z"), "ar_0123.x-y~z");
        assert_eq!(device("../admin"), "/admin/v1/devices/..%2Fadmin");
        assert_eq!(tokens(None), "/admin/v1/tokens");
        assert_eq!(tokens(Some("a&b=c")), "/admin/v1/tokens?account=a%26b%3Dc");
        assert_eq!(
            audit(&AuditQuery {
                actor: Some("ann lee".into()),
                target: Some("device:".into()),
                limit: Some(5),
                ..Default::default()
            }),
            "/admin/v1/audit?actor=ann+lee&target=device%3A&limit=5"
        );
        assert_eq!(
            retention_plan("ar_1", Some("gfs")),
            "/admin/v1/archives/ar_1/retention-plan?plugin=gfs"
        );
    }
}
